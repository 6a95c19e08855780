package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
)

// mosqSub is a running mosquitto_sub whose messages arrive on msgs as
// "topic|payload|qos|retain" lines.
type mosqSub struct {
	ready chan struct{} // closed when SUBACK has been received
	msgs  chan string
	done  chan error
	out   *lockedBuffer
}

// mosqFormat prefixes message lines so they stand apart from -d debug lines
// ("@" is mosquitto_sub's date escape, so the prefix avoids it).
const mosqFormat = "MSG|%t|%p|%q|%r"

// startMosquittoSub runs mosquitto_sub -d with the given extra arguments,
// bounded by -W and a context deadline. Without mosquitto_sub or stdbuf the
// test is skipped, or fails in CI (brokertest.Tool).
func startMosquittoSub(t *testing.T, addr string, args ...string) *mosqSub {
	t.Helper()
	stdbuf := brokertest.Tool(t, "stdbuf", "coreutils")
	bin := brokertest.Tool(t, "mosquitto_sub", "mosquitto-clients")
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	// stdbuf -oL: mosquitto_sub's stdout is a pipe, and the SUBACK debug line
	// must arrive when printed, not when the buffer fills.
	all := append([]string{"-oL", bin, "-h", host, "-p", port, "-d", "-W", "15", "-F", mosqFormat}, args...)
	cmd := exec.CommandContext(ctx, stdbuf, all...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &mosqSub{ready: make(chan struct{}), msgs: make(chan string, 100), done: make(chan error, 1), out: &lockedBuffer{}}
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("mosquitto_sub: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		readyClosed := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(s.out, line)
			switch {
			case strings.HasPrefix(line, "MSG|"):
				s.msgs <- strings.TrimPrefix(line, "MSG|")
			case strings.Contains(line, "received SUBACK") && !readyClosed:
				readyClosed = true
				close(s.ready)
			}
		}
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mosquitto_sub %v output:\n%s", args, s.out.String())
		}
	})
	select {
	case <-s.ready:
	case err := <-s.done:
		t.Fatalf("mosquitto_sub %v exited before SUBACK: %v\n%s", args, err, s.out.String())
	case <-time.After(waitTimeout):
		t.Fatalf("mosquitto_sub %v: no SUBACK within %v\n%s", args, waitTimeout, s.out.String())
	}
	return s
}

// lines receives n message lines.
func (s *mosqSub) lines(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	deadline := time.After(waitTimeout)
	for len(out) < n {
		select {
		case l := <-s.msgs:
			out = append(out, l)
		case <-deadline:
			t.Fatalf("mosquitto_sub printed %d of %d messages: %q\n%s", len(out), n, out, s.out.String())
		}
	}
	return out
}

// mosquittoPub runs mosquitto_pub with the given arguments to completion.
// Without mosquitto_pub the test is skipped, or fails in CI.
func mosquittoPub(t *testing.T, addr string, args ...string) {
	t.Helper()
	bin := brokertest.Tool(t, "mosquitto_pub", "mosquitto-clients")
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	all := append([]string{"-h", host, "-p", port}, args...)
	out, err := exec.CommandContext(ctx, bin, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub %v: %v\n%s", args, err, out)
	}
}

// TestMosquittoClientsInterop proves mosquitto_pub and mosquitto_sub, over
// MQTT 3.1.1 and 5.0, interoperate with the broker and with Paho clients:
// QoS 0/1/2 both ways, retained messages set with -r, and QoS 2 end to end.
func TestMosquittoClientsInterop(t *testing.T) {
	t.Parallel()
	brokertest.Tool(t, "mosquitto_sub", "mosquitto-clients")
	brokertest.Tool(t, "mosquitto_pub", "mosquitto-clients")
	brokertest.Tool(t, "stdbuf", "coreutils")
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	for _, ver := range []string{"mqttv311", "mqttv5"} {
		t.Run(ver, func(t *testing.T) {
			v5 := connectV5(t, addr, v5Connect("paho5-"+ver, true, 0))
			v3 := connectV3(t, srv.URL("tcp"), "paho3-"+ver, true)
			v5.subscribe(sub("to-paho/"+ver, 2))

			// mosquitto_sub receives from Paho v5, Paho v3.1.1 and mosquitto_pub.
			ms := startMosquittoSub(t, addr, "-V", ver, "-i", "msub-"+ver, "-q", "2", "-C", "3", "-t", "to-mosq/"+ver+"/#")
			v5.publish("to-mosq/"+ver+"/a", 2, "from paho5")
			v3.publish("to-mosq/"+ver+"/b", 1, false, "from paho3")
			mosquittoPub(t, addr, "-V", ver, "-i", "mpub-"+ver, "-q", "2", "-t", "to-mosq/"+ver+"/c", "-m", "from mosquitto")
			got := ms.lines(t, 3)
			slices.Sort(got)
			want := []string{
				"to-mosq/" + ver + "/a|from paho5|2|0",
				"to-mosq/" + ver + "/b|from paho3|1|0",
				"to-mosq/" + ver + "/c|from mosquitto|2|0",
			}
			if !slices.Equal(got, want) {
				t.Errorf("mosquitto_sub got %q, want %q", got, want)
			}

			// mosquitto_pub QoS 2 to a Paho subscriber.
			mosquittoPub(t, addr, "-V", ver, "-q", "2", "-t", "to-paho/"+ver, "-m", "qos2 from mosquitto")
			if m := recv1(t, v5.msgs); string(m.Payload) != "qos2 from mosquitto" || m.QoS != 2 {
				t.Errorf("paho v5 got %v, want qos 2", m)
			}

			// Retained with -r, read back by mosquitto_sub and by Paho.
			mosquittoPub(t, addr, "-V", ver, "-q", "1", "-r", "-t", "ret/"+ver, "-m", "kept")
			ms = startMosquittoSub(t, addr, "-V", ver, "-q", "1", "-C", "1", "-t", "ret/"+ver)
			if got := ms.lines(t, 1); got[0] != "ret/"+ver+"|kept|1|1" {
				t.Errorf("mosquitto_sub retained: %q, want retained qos 1", got[0])
			}
			v3.subscribe("ret/"+ver, 2)
			if m := recv1(t, v3.msgs); string(m.Payload) != "kept" || !m.Retain || m.QoS != 1 {
				t.Errorf("paho v3 retained: %v", m)
			}
			// Clearing with an empty retained message (-n).
			mosquittoPub(t, addr, "-V", ver, "-r", "-n", "-t", "ret/"+ver)
			recv1(t, v3.msgs) // the live clearing message
			late := connectV5(t, addr, v5Connect("late-"+ver, true, 0))
			late.subscribe(sub("ret/"+ver, 1), sub("ret-marker", 0))
			late.publish("ret-marker", 0, "m")
			if got := recvUntil(t, late.msgs, "ret-marker"); len(got) > 0 {
				t.Errorf("retained message survived mosquitto_pub -r -n: %v", summarize(got))
			}
		})
	}
}

// TestWebSocketPahoV3 proves the WebSocket listener carries MQTT 3.1.1 for
// Paho (mosquitto clients have no WebSocket support): QoS 0/1/2 publish and
// subscribe, retained messages, and interop with a TCP v5 client.
func TestWebSocketPahoV3(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	ws := srv.URL("ws")
	if !strings.HasPrefix(ws, "ws://") {
		t.Fatalf("srv.URL(\"ws\") = %q", ws)
	}
	a := connectV3(t, ws, "ws-a", true)
	b := connectV3(t, ws, "ws-b", true)
	tcp := connectV5(t, tcpAddr(t, srv), v5Connect("tcp5", true, 0))
	a.subscribe("ws/#", 2)
	tcp.subscribe(sub("ws/#", 2))
	for q := byte(0); q <= 2; q++ {
		b.publish(fmt.Sprintf("ws/q%d", q), q, false, fmt.Sprint("over ws ", q))
		if m := recv1(t, a.msgs); m.QoS != q || string(m.Payload) != fmt.Sprint("over ws ", q) {
			t.Errorf("ws subscriber: %v, want qos %d", m, q)
		}
		if m := recv1(t, tcp.msgs); m.QoS != q {
			t.Errorf("tcp subscriber of a ws publisher: %v, want qos %d", m, q)
		}
	}
	tcp.publish("ws/from-tcp", 2, "from tcp", retained)
	if m := recv1(t, a.msgs); string(m.Payload) != "from tcp" || m.QoS != 2 {
		t.Errorf("ws subscriber of a tcp publisher: %v", m)
	}
	recv1(t, tcp.msgs)
	c := connectV3(t, ws, "ws-c", true)
	c.subscribe("ws/from-tcp", 2)
	if m := recv1(t, c.msgs); string(m.Payload) != "from tcp" || !m.Retain {
		t.Errorf("retained over ws: %v", m)
	}
}
