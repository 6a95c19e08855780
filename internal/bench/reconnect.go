package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// The reconnect workload of `culex bench compare --cluster` (issue 14):
// persistent sessions on one node, QoS 1 messages queued for some of them
// while they are connected and while their node is dead, the node
// SIGKILLed, and every client back through the other nodes.
//
//  1. `culex bench sub` connects Reconnect clients (MQTT 3.1.1, clean
//     session off, client ids storm-%i, one QoS 1 subscription storm/%i
//     each) to the victim: culex-3's replicant (a node no majority needs),
//     nats-3's node 3. It stays connected.
//  2. `culex bench pub` on node 1 sends reconnectPerPhase QoS 1 messages
//     to each of the first reconnectQueued sessions (one publisher per
//     session, MQTT 3.1.1 as nats-server's MQTT takes no other, every
//     PUBACK awaited).
//  3. SIGKILL of the victim; the first run ends and saves what each
//     subscriber got (--seq-file).
//  4. Once node 1 acknowledges a QoS 1 message for a session of the
//     victim again (the victim seen dead), the same publishers send
//     reconnectPerPhase more each, continuing their sequences.
//  5. The measured run: the same client ids reconnect to the surviving
//     nodes, round-robin, reconnectConcurrency handshakes in flight, and
//     subscribe again; it ends once every message of 2 and 4 arrived
//     (--expect, counted with the first run's), or after reconnectHold.
//     With AtOnce it starts as soon as the first run ended, before the
//     victim is seen dead (as clients whose connections broke come back
//     through a load balancer), and 4 happens meanwhile.
const (
	reconnectSessions    = 10000
	reconnectQueued      = 1000 // sessions that get messages
	reconnectPerPhase    = 10   // messages per such session in steps 2 and 4
	reconnectConcurrency = 1000
	reconnectHold        = 3 * time.Minute
	reconnectRetry       = 2 * time.Minute // a refused client tries again, as a device does
	// reconnectFirst bounds step 1 (Culex: under a minute on the 2-core
	// machine; nats-server's MQTT never got there, its JetStream out of
	// open files with a replicated consumer per session).
	reconnectFirst = 5 * time.Minute
)

// stormResult is what the reconnect workload measured besides the
// measured run's summary and samples.
type stormResult struct {
	FirstConnected int64   // sessions the first run made
	FirstConnectS  float64 // its first dial to last SUBACK
	Published      int64   // steps 2 and 4, acknowledged
	DeadS          float64 // SIGKILL until node 1 acknowledged a message for the victim's sessions
}

// reconnect runs the reconnect workload against d (the victim last in
// d.procs, node 1 is d.pub).
func (o *compareOpts) reconnect(ctx context.Context, d *deployment, res *Result) {
	w := res.Workload
	victim := d.procs[len(d.procs)-1]
	survivors := &deployment{}
	var others []string
	for _, b := range d.procs[:len(d.procs)-1] {
		survivors.procs = append(survivors.procs, b)
		others = append(others, fmt.Sprintf("127.0.0.1:%d", b.port))
	}
	dir, err := os.MkdirTemp("", "culex-compare-storm-")
	if err != nil {
		res.Err = err.Error()
		return
	}
	defer os.RemoveAll(dir)
	st := &stormResult{}
	res.Storm = st
	sub := []string{"sub", "--clients", fmt.Sprint(w.Reconnect), "--client-id", "storm-%i", "--topic", "storm/%i",
		"--qos", "1", "--clean=false", "--seq-file", filepath.Join(dir, "seq.json"), "--timeout", "60s", "--retry", reconnectRetry.String(),
		"--json", "--quiet", "--phases"}
	if o.locals != "" {
		sub = append(sub, "--local-addrs", o.locals)
	}

	// 1. The sessions, held on the victim.
	first := append(append([]string{}, sub...), "--url", fmt.Sprintf("tcp://127.0.0.1:%d", victim.port),
		"--duration", "30m", "--conn-concurrency", "500")
	res.Prep = "culex bench " + shellJoin(first)
	fctx, cancel := context.WithTimeout(ctx, reconnectFirst)
	defer cancel()
	cmd := exec.CommandContext(fctx, o.benchBin, append([]string{"bench"}, first...)...)
	var fout, ferr bytes.Buffer
	var ph phaseWatch
	cmd.Stdout, cmd.Stderr = &fout, io.MultiWriter(&ferr, &ph)
	if err := cmd.Start(); err != nil {
		res.Err = err.Error()
		return
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := waitPhase(fctx, &ph, "connected", exited); err != nil {
		cmd.Process.Kill()
		<-exited
		res.Err = fmt.Sprintf("first run: %v: %.300s", err, ferr.String())
		return
	}

	// 2. Messages while connected.
	queued := int64(reconnectQueued * reconnectPerPhase)
	if err := o.stormPublish(ctx, d.pub, 1, st); err != nil {
		cmd.Process.Kill()
		<-exited
		res.Err = "publish while connected: " + err.Error()
		return
	}

	// 3. SIGKILL.
	victim.cmd.Process.Kill()
	killed := time.Now()
	<-victim.exited
	select {
	case err = <-exited:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		err = <-exited
	}
	var fs Summary
	if jerr := json.Unmarshal(fout.Bytes(), &fs); jerr != nil {
		res.Err = fmt.Sprintf("first run: %v, bad summary: %v: %.300s", err, jerr, ferr.String())
		return
	}
	st.FirstConnected, st.FirstConnectS = fs.Clients.Connected, fs.ConnectS
	if fs.Clients.Connected != int64(w.Reconnect) || fs.Clients.Subscribed != int64(w.Reconnect) {
		res.Err = fmt.Sprintf("first run: %d of %d sessions connected, %d subscribed (%s)", fs.Clients.Connected, w.Reconnect,
			fs.Clients.Subscribed, errorsLine(fs.Errors))
		return
	}

	// 4. Messages while the victim is dead.
	dead := func() error {
		if err := awaitAck(ctx, d.pub, fmt.Sprintf("storm/%d", w.Reconnect-1), 2*time.Minute); err != nil {
			return fmt.Errorf("victim never seen dead: %w", err)
		}
		st.DeadS = round(time.Since(killed).Seconds(), 2)
		if err := o.stormPublish(ctx, d.pub, reconnectPerPhase+1, st); err != nil {
			return fmt.Errorf("publish while dead: %w", err)
		}
		return nil
	}

	// 5. The storm, measured on the survivors: after 4, or (AtOnce) as
	// soon as the first run ended, while the victim is not seen dead yet,
	// with 4 going on meanwhile.
	args := append(append([]string{}, sub...), "--url", "tcp://"+others[0], "--sub-addrs", strings.Join(others, ","),
		"--expect", fmt.Sprint(2*queued), "--duration", reconnectHold.String(),
		"--conn-concurrency", fmt.Sprint(reconnectConcurrency))
	if !w.AtOnce {
		if err := dead(); err != nil {
			res.Err = err.Error()
			return
		}
		o.sampled(ctx, survivors, res, args, reconnectHold+2*time.Minute)
		return
	}
	errc := make(chan error, 1)
	go func() { errc <- dead() }()
	o.sampled(ctx, survivors, res, args, reconnectHold+2*time.Minute)
	if err := <-errc; err != nil && res.Err == "" {
		res.Err = err.Error()
	}
}

// stormPublish sends reconnectPerPhase QoS 1 messages to each of the
// first reconnectQueued sessions from node port, numbered from seqStart,
// and fails unless every one was acknowledged. A refused publisher tries
// again, as the subscribers do.
func (o *compareOpts) stormPublish(ctx context.Context, port int, seqStart int, st *stormResult) error {
	n := reconnectQueued * reconnectPerPhase
	args := []string{"bench", "pub", "--url", fmt.Sprintf("tcp://127.0.0.1:%d", port), "--clients", fmt.Sprint(reconnectQueued),
		"--client-id", "storm-pub-%i", "--topic", "storm/%i", "--qos", "1", "--limit", fmt.Sprint(n),
		"--seq-start", fmt.Sprint(seqStart), "--drain", "60s", "--timeout", "60s", "--retry", reconnectRetry.String(), "--json", "--quiet"}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(pctx, o.benchBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %.300s", err, errb.String())
	}
	var s Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		return fmt.Errorf("bad summary: %v", err)
	}
	if s.Published != int64(n) || s.Acked != int64(n) {
		return fmt.Errorf("%d of %d published, %d acknowledged (%s)", s.Published, n, s.Acked, errorsLine(s.Errors))
	}
	st.Published += s.Acked
	return nil
}

// waitPhase waits until ph reports phase name, the process exits or ctx
// ends.
func waitPhase(ctx context.Context, ph *phaseWatch, name string, exited <-chan error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for ph.phase() != name {
		select {
		case err := <-exited:
			return fmt.Errorf("exited before %q: %v", name, err)
		case <-ctx.Done():
			return fmt.Errorf("no %q: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// awaitAck publishes a QoS 1 message without a bench header (no
// subscriber counts it) on port until one is acknowledged within a
// second, for at most d: the node no longer waits for a dead node that
// had subscribers.
func awaitAck(ctx context.Context, port int, topic string, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if last = ackOnce(port, topic); last == nil {
			return nil
		}
	}
	return fmt.Errorf("no PUBACK within %v: %v", d, last)
}

func ackOnce(port int, topic string) error {
	c, err := probeConnect(port)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := probeSend(c, &packet.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: []byte("probe")}); err != nil {
		return err
	}
	_, err = probeRead(c, packet.PUBACK, time.Second)
	return err
}

// notApplicable starts the Err of a workload a deployment cannot run: its
// row says so instead of "error".
const notApplicable = "n/a: "

func writeReconnectHead(p func(string, ...any)) {
	p("")
	p("Reconnect after a node is killed: %d persistent sessions (MQTT 3.1.1, clean session off, one QoS 1 subscription each) on one node: %s's replicant (a fourth node, no majority needs it), %s's node 3; node 1 publishes %d QoS 1 messages to each of %d of them while they are connected and %d more once it no longer waits for the killed node; the node is SIGKILLed, and every client reconnects to the other nodes (round-robin, %d handshakes in flight) and subscribes again.",
		reconnectSessions, culexCluster, natsCluster, reconnectPerPhase, reconnectQueued, reconnectPerPhase, reconnectConcurrency)
	p("In the \"at once\" row the clients reconnect as soon as the killed node's connections broke, before the cluster sees it dead, and the second batch of messages is published while they come back.")
	p("A client refused (or timed out) tries again after 100 ms, doubling to 2 s, for up to %v (`--retry`); every refusal counts in errors.", reconnectRetry)
	p("\"dead seen\" is the SIGKILL until node 1 acknowledged a message for a session of the killed node; \"all back\" the first reconnect dial until the last SUBACK; \"all arrived\" until every queued message had arrived (with what the first run got before the kill); lost counts acknowledged messages that never arrived (must be 0), duplicates those that came twice (QoS 1 allows them). RSS and CPU are the surviving nodes' during the reconnect run: before it, at its peak, and the growth.")
	p("")
	p("| workload | deployment | session present | dead seen s | all back s | all arrived s | CONNACK p50 | p99 | lost | duplicates | errors | RSS before KiB | RSS peak KiB | growth KiB | broker CPU %% |")
	p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|")
}

func writeReconnectRow(p func(string, ...any), r Result) {
	s := r.Summary
	arrived := "never"
	if s.ExpectS > 0 {
		arrived = fmt.Sprintf("%.2f", s.ExpectS)
	}
	p("| %s | %s | %d/%d | %.2f | %.2f | %s | %s | %s | %d | %d | %s | %d | %d | %d | %.0f |", r.Workload.Name, r.Broker,
		s.SessionPresent, s.Clients.Target, r.Storm.DeadS, s.ConnectS, arrived, fmtUS(s.ConnectLatency.P50US),
		fmtUS(s.ConnectLatency.P99US), s.Lost, s.Duplicates, mdEscape(errorsLine(s.Errors)),
		r.BaseRSSKiB, r.BrokerRSSKiB, r.BrokerRSSKiB-r.BaseRSSKiB, r.BrokerCPUPct)
}
