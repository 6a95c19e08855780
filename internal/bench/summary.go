package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Summary is the result of one run. Its JSON field names are stable: scripts
// and the compare harness read them.
type Summary struct {
	Mode         string `json:"mode"`
	Broker       string `json:"broker"`
	Protocol     string `json:"protocol"`
	QoS          int    `json:"qos"`
	PayloadBytes int    `json:"payload_bytes"`

	Clients ClientSummary `json:"clients"`

	ElapsedS float64 `json:"elapsed_s"` // the whole run, connect to disconnect
	PublishS float64 `json:"publish_s"` // the publishing phase

	Published int64   `json:"published"`
	Acked     int64   `json:"acked"`
	Received  int64   `json:"received"`
	Expected  int64   `json:"expected"` // run mode: deliveries the subscriptions call for
	PubRate   float64 `json:"pub_per_s"`
	RecvRate  float64 `json:"recv_per_s"`

	Latency LatencySummary `json:"latency"`

	// ConnectS is the time from the first dial to the last client ready
	// (CONNACK, and SUBACK for subscribers); ConnectRate is connected
	// clients over it; ConnectLatency is each client's dial to CONNACK.
	ConnectS       float64        `json:"connect_s"`
	ConnectRate    float64        `json:"connect_per_s"`
	ConnectLatency LatencySummary `json:"connect_latency"`
	TLSResumed     int64          `json:"tls_resumed"` // handshakes that resumed a session
	// SessionPresent counts the CONNACKs that had session present set.
	SessionPresent int64 `json:"session_present,omitempty"`
	// ExpectS (sub --expect) is the time from the first dial until the
	// expected distinct messages had arrived; 0 if they never did.
	ExpectS float64 `json:"expect_s,omitempty"`

	Streams    int64 `json:"streams"` // (publisher, subscriber) pairs seen
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	Reordered  int64 `json:"reordered"`

	Errors map[string]int64 `json:"errors"` // "stage: reason" -> count

	CPU CPUSummary `json:"cpu"`
}

// ClientSummary counts connections.
type ClientSummary struct {
	Target     int   `json:"target"`
	Connected  int64 `json:"connected"` // completed the handshake
	Failed     int64 `json:"failed"`
	Subscribed int64 `json:"subscribed"`
}

// CPUSummary is the bench process's own cost, so that a tool limit is not
// mistaken for a broker limit. NsPerMsg divides user+sys CPU time by the
// messages the tool handled (published + received).
type CPUSummary struct {
	UserS     float64 `json:"user_s"`
	SysS      float64 `json:"sys_s"`
	NsPerMsg  float64 `json:"ns_per_msg"`
	MaxRSSKiB int64   `json:"max_rss_kib"`
}

type cpuSample struct {
	user, sys time.Duration
	maxRSS    int64
}

func (a cpuSample) sub(b cpuSample) cpuSample {
	return cpuSample{a.user - b.user, a.sys - b.sys, a.maxRSS}
}

func (r *runner) summary(elapsed time.Duration, cpu cpuSample) *Summary {
	cfg := r.cfg
	s := &Summary{
		Mode: cfg.Mode, Broker: r.target.Scheme + "://" + r.target.Addr, Protocol: cfg.Version.String(),
		QoS: int(cfg.QoS), PayloadBytes: cfg.Size, ElapsedS: round(elapsed.Seconds(), 3),
		Errors: r.errs,
	}
	all := append(append(append([]*client(nil), r.pubs...), r.subs...), r.idle...)
	s.Clients.Target = len(all)
	for _, c := range all {
		if c.window != nil { // set once CONNACK arrived
			s.Clients.Connected++
		}
	}
	s.Clients.Failed = int64(len(all)) - s.Clients.Connected
	s.Clients.Subscribed = r.subscribed.Load()
	s.Published = sum(r.pubs, func(c *client) int64 { return c.sent.Load() })
	s.Acked = sum(r.pubs, func(c *client) int64 { return c.acked.Load() })
	s.Received = sum(r.subs, func(c *client) int64 { return c.recv.Load() })
	if cfg.Mode == "run" {
		s.Expected = r.expected()
	}
	s.SessionPresent = r.sessionPresent.Load()
	if !r.pubStart.IsZero() {
		d := r.pubEnd.Sub(r.pubStart)
		s.PublishS = round(d.Seconds(), 3)
		s.PubRate = round(float64(s.Published)/d.Seconds(), 1)
	}
	s.RecvRate = round(r.recvRate(s.Received), 1)
	s.Latency = summarizeHist(r.lat.merged())
	if d := r.connEnd.Sub(r.connStart); d > 0 {
		s.ConnectS = round(d.Seconds(), 3)
		s.ConnectRate = round(float64(s.Clients.Connected)/d.Seconds(), 1)
	}
	s.ConnectLatency = summarizeHist(r.connLat.merged())
	s.TLSResumed = r.target.Resumed.Load()
	var seq SeqStats
	r.sequence(&seq)
	s.Streams, s.Lost, s.Duplicates, s.Reordered = seq.Streams, seq.Lost, seq.Dups, seq.Reordered
	if cfg.Expect > 0 && cfg.Mode != "run" {
		// The streams and their totals are known: everything expected
		// that did not arrive is lost, at the tail too.
		s.Expected, s.Lost = cfg.Expect, max(0, cfg.Expect-seq.Unique)
		if !r.expectAt.IsZero() {
			s.ExpectS = round(r.expectAt.Sub(r.connStart).Seconds(), 3)
		}
	}
	s.CPU = CPUSummary{UserS: round(cpu.user.Seconds(), 3), SysS: round(cpu.sys.Seconds(), 3), MaxRSSKiB: cpu.maxRSS}
	if n := s.Published + s.Received; n > 0 {
		s.CPU.NsPerMsg = round(float64(cpu.user+cpu.sys)/float64(n), 1)
	}
	return s
}

// recvRate divides the deliveries by the time from the start of publishing
// (or the first delivery) to the last delivery.
func (r *runner) recvRate(n int64) float64 {
	var first, last time.Time
	for _, c := range r.subs {
		if c.lastRecv.After(last) {
			last = c.lastRecv
		}
		if !c.firstRecv.IsZero() && (first.IsZero() || c.firstRecv.Before(first)) {
			first = c.firstRecv
		}
	}
	if !r.pubStart.IsZero() {
		first = r.pubStart
	}
	if d := last.Sub(first); n > 0 && d > 0 {
		return float64(n) / d.Seconds()
	}
	return 0
}

// sequence sums the streams of every subscriber. In run mode the expected
// (publisher, subscriber) pairs are known, so a stream that never delivered
// anything, and loss at the tail, count as lost too.
func (r *runner) sequence(out *SeqStats) {
	for _, s := range r.subs {
		seen := map[uint32]bool{}
		if r.cfg.Mode == "run" && s.subscribedOK {
			for _, p := range r.pubs {
				if !topicMatch(s.topic, p.topic) {
					continue
				}
				st := s.streams[uint32(p.idx)]
				if st == nil {
					st = &stream{}
				}
				seen[uint32(p.idx)] = true
				out.addStream(st, p.sent.Load())
			}
		}
		for id, st := range s.streams {
			if !seen[id] {
				out.addStream(st, 0)
			}
		}
	}
}

func round(x float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(x*p+0.5)) / p
}

// WriteJSON writes s as indented JSON.
func (s *Summary) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(s)
}

// WriteText writes s for people.
func (s *Summary) WriteText(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("culex bench %s  %s  mqtt %s  qos %d  payload %d B", s.Mode, s.Broker, s.Protocol, s.QoS, s.PayloadBytes)
	p("  clients     %d/%d connected, %d failed, %d subscribed", s.Clients.Connected, s.Clients.Target, s.Clients.Failed, s.Clients.Subscribed)
	p("  elapsed     %.2fs (publishing %.2fs)", s.ElapsedS, s.PublishS)
	if l := s.ConnectLatency; l.Count > 0 {
		p("  connecting  %.2fs (%.0f/s), dial to CONNACK p50 %s  p99 %s, %d TLS sessions resumed",
			s.ConnectS, s.ConnectRate, fmtUS(l.P50US), fmtUS(l.P99US), s.TLSResumed)
	}
	if s.SessionPresent > 0 {
		p("  sessions    %d present at CONNACK", s.SessionPresent)
	}
	if s.Published > 0 || s.Mode == "pub" || s.Mode == "run" {
		p("  published   %d (%.0f/s), acked %d", s.Published, s.PubRate, s.Acked)
	}
	if s.Received > 0 || s.Mode == "sub" || s.Mode == "run" {
		exp := ""
		if s.Expected > 0 {
			exp = fmt.Sprintf(" of %d expected", s.Expected)
		}
		p("  received    %d%s (%.0f/s)", s.Received, exp, s.RecvRate)
		if s.ExpectS > 0 {
			p("  expected    every one arrived %.2fs after the first dial", s.ExpectS)
		}
		p("  sequence    %d streams: %d lost, %d duplicates, %d reordered", s.Streams, s.Lost, s.Duplicates, s.Reordered)
	}
	if l := s.Latency; l.Count > 0 {
		p("  latency     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%d samples)",
			fmtUS(l.P50US), fmtUS(l.P90US), fmtUS(l.P99US), fmtUS(l.P999US), fmtUS(l.MaxUS), l.Count)
	}
	p("  bench cpu   user %.2fs sys %.2fs, %.0f ns/msg, max rss %d KiB", s.CPU.UserS, s.CPU.SysS, s.CPU.NsPerMsg, s.CPU.MaxRSSKiB)
	keys := make([]string, 0, len(s.Errors))
	for k := range s.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p("  error       %-40s %d", k, s.Errors[k])
	}
}

func fmtUS(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.2fs", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.2fms", us/1e3)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.0fµs", us), ".0")
}
