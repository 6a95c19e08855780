package eventlog

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/testlog"
)

const waitTimeout = 10 * time.Second

// serve runs a broker with an event Logger as its hook; mqttMod adjusts
// its limits.
func serve(t *testing.T, mqttMod func(*config.MQTT)) (string, *Logger, *testlog.Buffer) {
	t.Helper()
	logs := &testlog.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	l := New(log)
	cfg := config.Default().MQTT
	if mqttMod != nil {
		mqttMod(&cfg)
	}
	addr, _ := brokertest.Serve(t, broker.Options{Config: cfg, AllowAnonymous: true, Logger: log, Hooks: []broker.Hook{l}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})
	return addr, l, logs
}

func dial(addr, id, user string) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername(user).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(waitTimeout)
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) {
		return nil, fmt.Errorf("connect %s: timed out", id)
	}
	return c, tok.Error()
}

func waitLog(t *testing.T, logs *testlog.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line containing %s", want)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

// TestConnectAndDisconnectLogged: a real client's connect is logged with
// its client id, username, address, protocol and listener; its
// DISCONNECT, and another client's dropped socket, with their reasons.
func TestConnectAndDisconnectLogged(t *testing.T) {
	addr, _, logs := serve(t, nil)
	c, err := dial(addr, "dev-1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, `msg="client connected" client_id=dev-1 username=alice remote=127.0.0.1:`)
	waitLog(t, logs, `protocol=3.1.1 listener=tcp://test session_present=false`)
	c.Disconnect(1000)
	waitLog(t, logs, `msg="client disconnected" client_id=dev-1 username=alice`)
	waitLog(t, logs, `reason="client sent DISCONNECT"`)

	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte{0x10, 0x0f, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 3, 'r', 'a', 'w'}) // CONNECT, client id "raw"
	if _, err := io.ReadFull(raw, make([]byte, 4)); err != nil {                              // CONNACK
		t.Fatal(err)
	}
	raw.Close()
	waitLog(t, logs, `msg="client disconnected" client_id=raw`)
	waitLog(t, logs, `reason="connection closed by the client without DISCONNECT"`)
}

// TestRefusalsSummarised: CONNECTs refused at mqtt.max_connections are
// logged one by one up to PerPeriod, then counted in one summary line
// per period; a period without any says they stopped.
func TestRefusalsSummarised(t *testing.T) {
	addr, l, logs := serve(t, func(m *config.MQTT) { m.MaxConnections = 1 })
	c, err := dial(addr, "holder", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	const refused = PerPeriod + 3
	for i := range refused {
		if _, err := dial(addr, fmt.Sprintf("extra-%d", i), "bob"); err == nil {
			t.Fatalf("client %d connected past max_connections 1", i)
		}
	}
	if n := strings.Count(logs.String(), `msg="connect refused"`); n != PerPeriod {
		t.Errorf("%d refusals logged one by one, want %d", n, PerPeriod)
	}
	waitLog(t, logs, `msg="connect refused" client_id=extra-0 username=bob remote=127.0.0.1:`)
	l.summarise(Period)
	waitLog(t, logs, fmt.Sprintf(`msg="connect refused (summary)" count=%d period=10s logged=%d latest.client_id=extra-%d`, refused, PerPeriod, refused-1))
	l.summarise(Period)
	waitLog(t, logs, `msg="connect refused: none in the last period"`)
	before := logs.String()
	l.summarise(Period) // quiet, and said so already
	if after := logs.String(); after != before {
		t.Errorf("a second quiet period logged again:\n%s", strings.TrimPrefix(after, before))
	}
}

// TestCountersSummarised: ACL denials and drops of a period are one line
// each, with the counts by reason; a period without any logs nothing.
func TestCountersSummarised(t *testing.T) {
	logs := &testlog.Buffer{}
	l := New(slog.New(slog.NewTextHandler(logs, nil)))
	prev := counts{drops: map[string]uint64{"queue_full": 10, "expired": 1}, denied: 3}
	now := counts{drops: map[string]uint64{"queue_full": 25, "expired": 1, "offline": 2}, denied: 7}
	l.summariseCounters(prev, now, Period)
	for _, want := range []string{`msg="ACL denials" count=4 period=10s`, `msg="messages dropped" count=17 period=10s offline=2 queue_full=15`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %s in:\n%s", want, logs.String())
		}
	}
	before := logs.String()
	l.summariseCounters(now, now, Period)
	if logs.String() != before {
		t.Errorf("a period without denials or drops logged: %s", strings.TrimPrefix(logs.String(), before))
	}
}
