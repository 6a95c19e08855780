package cluster_test

import (
	"context"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// gone is how a drained client's connection ended.
type gone struct {
	at   time.Time
	code byte   // v5 DISCONNECT reason; 0 for a 3.1.1 client
	ref  string // v5 Server Reference
}

// drainees are clients of one node whose disconnections are recorded.
type drainees struct {
	mu   sync.Mutex
	gone []gone
	ch   chan struct{}
}

func newDrainees() *drainees { return &drainees{ch: make(chan struct{}, 10000)} }

func (d *drainees) add(g gone) {
	d.mu.Lock()
	d.gone = append(d.gone, g)
	d.mu.Unlock()
	d.ch <- struct{}{}
}

// v5 connects a paho.golang client to addr that records the server's
// DISCONNECT.
func (d *drainees) v5(t *testing.T, addr, id string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn, PacketTimeout: waitTimeout,
		OnServerDisconnect: func(p *paho.Disconnect) {
			g := gone{at: time.Now(), code: p.ReasonCode}
			if p.Properties != nil {
				g.ref = p.Properties.ServerReference
			}
			d.add(g)
		},
		OnClientError: func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { conn.Close() })
}

// v3 connects a paho.mqtt.golang (3.1.1) client that records when its
// connection is lost.
func (d *drainees) v3(t *testing.T, addr, id string) {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetConnectionLostHandler(func(mqtt.Client, error) { d.add(gone{at: time.Now()}) })
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("v3 connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
}

// wait waits until n clients are gone and returns them in time order.
func (d *drainees) wait(t *testing.T, n int) []gone {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for range n {
		select {
		case <-d.ch:
		case <-deadline.C:
			d.mu.Lock()
			got := len(d.gone)
			d.mu.Unlock()
			t.Fatalf("%d of %d clients disconnected within %v", got, n, waitTimeout)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := append([]gone(nil), d.gone...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].at.Before(out[j-1].at); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// checkRate checks that n disconnections at rate per second were spread
// over about (n-1)/rate: never faster than the rate allows, and not
// stalled (a loose upper bound: the machine is shared).
func checkRate(t *testing.T, g []gone, rate int) {
	t.Helper()
	spread := g[len(g)-1].at.Sub(g[0].at)
	want := time.Duration(len(g)-1) * time.Second / time.Duration(rate)
	t.Logf("%d clients disconnected over %v (rate %d/s: %v)", len(g), spread.Round(time.Millisecond), rate, want)
	if spread < want*7/10 {
		t.Errorf("%d clients disconnected within %v: faster than drain_rate %d/s allows (%v)", len(g), spread, rate, want)
	}
	if spread > want*4+3*time.Second {
		t.Errorf("%d clients disconnected over %v: far slower than drain_rate %d/s (%v)", len(g), spread, rate, want)
	}
	// The first half must not leave at once either: half the clients
	// take about half the time.
	if half := g[len(g)/2].at.Sub(g[0].at); half < want*3/10 {
		t.Errorf("half the clients gone within %v; want about %v", half, want/2)
	}
}

func culex(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, clustertest.Binary(t), args...)
	cmd.Env = clustertest.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("culex %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// refused reports whether addr refuses an MQTT connection.
func refused(addr string) bool {
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("probe-" + strconv.FormatInt(time.Now().UnixNano(), 36)).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetConnectRetry(false)
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		return true
	}
	c.Disconnect(0)
	return false
}

// TestDrain drains nodes of a three-core cluster: with `culex cluster
// drain` (v5 clients sent to another node with 0x9C, 3.1.1 clients
// closed, readiness false, new connections refused, then --undo), and with
// SIGTERM (0x8B, then the node exits).
func TestDrain(t *testing.T) {
	const rate = 20
	c := clustertest.Start(t, clustertest.Options{Cores: 3, ClusterExtra: "drain_rate: " + strconv.Itoa(rate)})
	n0, n1, n2 := c.Nodes[0], c.Nodes[1], c.Nodes[2]

	t.Run("Command", func(t *testing.T) {
		d := newDrainees()
		const nv5, nv3 = 24, 8
		for i := range nv5 {
			d.v5(t, n1.MQTT(), "drain-v5-"+strconv.Itoa(i))
		}
		for i := range nv3 {
			d.v3(t, n1.MQTT(), "drain-v3-"+strconv.Itoa(i))
		}
		out := culex(t, "cluster", "drain", n1.Name, "--to", n0.MQTT(), "-c", n0.ConfigFile())
		if !strings.Contains(out, "draining") || !strings.Contains(out, n0.MQTT()) {
			t.Fatalf("culex cluster drain said %q", out)
		}
		g := d.wait(t, nv5+nv3)
		checkRate(t, g, rate)
		var v5n int
		for _, x := range g {
			if x.code == 0 {
				continue // a 3.1.1 client: closed
			}
			v5n++
			if x.code != 0x9C || x.ref != n0.MQTT() {
				t.Errorf("v5 client got DISCONNECT 0x%02X with server reference %q; want 0x9C and %q", x.code, x.ref, n0.MQTT())
			}
		}
		if v5n != nv5 {
			t.Errorf("%d v5 clients got a DISCONNECT; want %d", v5n, nv5)
		}
		// They come back through the node they were sent to, or another.
		again := newDrainees()
		for i := range nv5 {
			again.v5(t, n0.MQTT(), "drain-v5-"+strconv.Itoa(i))
		}
		for i := range nv3 {
			again.v3(t, n2.MQTT(), "drain-v3-"+strconv.Itoa(i))
		}
		if !refused(n1.MQTT()) {
			t.Error("the drained node accepted a new connection")
		}
		if st := culex(t, "cluster", "status", "-c", n0.ConfigFile()); !regexp.MustCompile(`(?m)^` + n1.Name + `\s.*draining`).MatchString(st) {
			t.Errorf("cluster status does not show %s draining (not ready):\n%s", n1.Name, st)
		}
		out = culex(t, "cluster", "drain", n1.Name, "--undo", "-c", n0.ConfigFile())
		if !strings.Contains(out, "not draining") {
			t.Fatalf("culex cluster drain --undo said %q", out)
		}
		if refused(n1.MQTT()) {
			t.Error("the node refuses connections after drain --undo")
		}
	})

	t.Run("SIGTERM", func(t *testing.T) {
		d := newDrainees()
		const n = 24
		for i := range n {
			d.v5(t, n2.MQTT(), "term-"+strconv.Itoa(i))
		}
		stopped := make(chan struct{})
		go func() { n2.Stop(); close(stopped) }()
		checkStopDrain(t, d.wait(t, n), rate, n2, stopped)
	})
}

// checkStopDrain checks the disconnections g of a node that drained at
// rate because it got SIGTERM: 0x8B (no server reference configured),
// then the node exited once no client was left.
func checkStopDrain(t *testing.T, g []gone, rate int, n *clustertest.Node, stopped <-chan struct{}) {
	t.Helper()
	checkRate(t, g, rate)
	for _, x := range g {
		if x.code != 0x8B {
			t.Errorf("v5 client got DISCONNECT 0x%02X; want 0x8B (no server reference configured)", x.code)
		}
	}
	select {
	case <-stopped:
	case <-time.After(waitTimeout):
		t.Fatal("the node did not exit after SIGTERM and its drain")
	}
	if !strings.Contains(n.Log(), `msg="drained: no client left"`) {
		t.Errorf("the drain did not end with no client left before the node stopped:\n%s", n.Log())
	}
}
