package broker

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// connectStart is the start of a CONNECT that declares size bytes of body
// and protocol level: its fixed header and the first bytes of its body.
func connectStart(size int, level byte) []byte {
	b := []byte{byte(packet.CONNECT) << 4}
	for {
		d := byte(size % 128)
		size /= 128
		if size > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if size == 0 {
			break
		}
	}
	return append(b, 0, 4, 'M', 'Q', 'T', 'T', level, 0x02, 0, 60)
}

// TestPartialConnectPinsLittle: connections that declare a large CONNECT
// (under max_connect_packet_size) and send a few bytes of it hold memory
// for what they sent, not for what they declared.
func TestPartialConnectPinsLittle(t *testing.T) {
	const n, declared = 200, 120 << 10
	tb := startBroker(t, Options{AllowAnonymous: true})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := connectStart(declared, 4)
	in := tb.Stats().BytesIn
	conns := make([]net.Conn, n)
	for i := range conns {
		nc, err := net.Dial("tcp", tb.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if _, err := nc.Write(start); err != nil {
			t.Fatal(err)
		}
		conns[i] = nc
	}
	eventually(t, "the broker to read every partial CONNECT", func() bool {
		return tb.Stats().BytesIn-in >= uint64(n*len(start))
	})
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if per := grew / n; per > 8<<10 {
		t.Fatalf("each partial CONNECT of %d bytes declaring %d holds %d bytes of heap", len(start), declared, per)
	}
	runtime.KeepAlive(conns)
}

// TestConnectTooLarge: a CONNECT over max_connect_packet_size (and under
// max_packet_size) is refused before it is read: CONNACK 0x95 for MQTT 5,
// a close for 3.1.1.
func TestConnectTooLarge(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnectPacketSize = 1 << 10
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true})
	v5 := tb.dial(packet.V5)
	v5.write(connectStart(4<<10, 5))
	got := v5.expectClosed()
	if len(got) != 1 || got[0].(*packet.Connack).ReasonCode != packet.ErrPacketTooLarge.Value {
		t.Fatalf("want CONNACK 0x95, got %v", got)
	}
	v3 := tb.dial(packet.V311)
	v3.write(connectStart(4<<10, 4))
	if got := v3.expectClosed(); len(got) != 0 {
		t.Fatalf("want a close, got %v", got)
	}
	tb.connect("small", packet.V5) // under the cap
}

// TestMosquittoWillConnect: a CONNECT that carries a will payload of the
// largest size (65,535 bytes) fits the default max_connect_packet_size; a
// real client's will fires when it dies.
func TestMosquittoWillConnect(t *testing.T) {
	path, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto_sub not installed")
		}
		t.Skip("mosquitto_sub not installed")
	}
	tb := startBroker(t, Options{AllowAnonymous: true})
	watcher := tb.connect("watcher", packet.V311)
	watcher.subscribe(1, "will/+", 0)
	will := strings.Repeat("w", 65535)
	host, port, _ := net.SplitHostPort(tb.ln.Addr().String())
	cmd := exec.Command(path, "-h", host, "-p", port, "-V", "mqttv5", "-i", "dying", "-t", "alive",
		"--will-topic", "will/dying", "--will-payload", will, "--will-qos", "0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	eventually(t, "mosquitto_sub to connect", func() bool {
		return tb.Stats().ClientsConnected == 2 // the watcher and it
	})
	cmd.Process.Kill()
	watcher.expectPublish("will/dying", will)
}
