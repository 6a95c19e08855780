package bench

import (
	"fmt"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Config is one bench run. The zero value of an optional field means its
// default (see Defaults); the CLI fills it from flags.
type Config struct {
	Mode   string // conn, pub, sub or run
	Target *Target

	Clients     int // conn, pub, sub
	Pubs, Subs  int // run
	StartNumber int // first %i

	ClientID           Template
	Username, Password Template
	Topic              Template // publish topic (sub mode: the filter)
	SubTopic           Template // subscription filter

	ConnInterval    time.Duration // between connection starts
	ConnConcurrency int           // handshakes in flight at once

	QoS, SubQoS byte
	Size        int
	Retain      bool
	Interval    time.Duration // per publisher; or
	Rate        float64       // total msg/s over all publishers
	Limit       int64         // total messages (pub, run: sent; sub: received)
	Duration    time.Duration // publishing time; conn and sub: holding time
	Drain       time.Duration // run: wait for stragglers after publishing
	Inflight    int           // unacknowledged QoS > 0 publishes per publisher

	Version       packet.Version
	Clean         bool
	SessionExpiry uint32
	KeepAlive     time.Duration
	Timeout       time.Duration // each handshake step

	// SeqStart is the first sequence number of each publisher (pub, run;
	// 0 means 1): a second run continues the streams of a first.
	SeqStart uint64
	// SeqFile (sub) carries the subscribers' sequence state across runs:
	// loaded before connecting when it exists, written at the end.
	SeqFile string
	// Retry: a client whose handshake failed (refused, timed out) tries
	// again until Retry after its first dial; 0: never.
	Retry time.Duration
	// Expect (sub) is the distinct messages expected over all streams,
	// counting those of SeqFile: the run ends once they arrived, and lost
	// is what is missing then.
	Expect int64

	Live   bool // print a line per second on stderr
	Phases bool // print "phase: connected" and "phase: closing" lines on stderr, for harnesses

	onReady func() // tests: called once every client has finished its handshake
}

// Defaults fills zero fields with defaults.
func (c *Config) Defaults() {
	if c.ConnConcurrency <= 0 {
		c.ConnConcurrency = 100
	}
	if c.Inflight <= 0 {
		c.Inflight = 32
	}
	if c.Version == 0 {
		c.Version = packet.V311
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 60 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 5 * time.Second
	}
	if c.ClientID.IsEmpty() {
		c.ClientID = ParseTemplate("bench-%i")
	}
}

// validate reports the first inconsistency among the options.
func (c *Config) validate() error {
	switch {
	case c.Target == nil:
		return fmt.Errorf("no broker address")
	case c.QoS > 2 || c.SubQoS > 2:
		return fmt.Errorf("qos %d/%d: want 0, 1 or 2", c.QoS, c.SubQoS)
	case c.Version != packet.V31 && c.Version != packet.V311 && c.Version != packet.V5:
		return fmt.Errorf("protocol version %d: want 3.1, 3.1.1 or 5", c.Version)
	case c.Size < 0 || c.Size > maxPacket/2:
		return fmt.Errorf("payload size %d out of range", c.Size)
	case c.Mode == "run" && (c.Pubs < 0 || c.Subs < 0 || c.Pubs+c.Subs == 0):
		return fmt.Errorf("run needs --pubs and/or --subs")
	case c.Mode != "run" && c.Clients <= 0:
		return fmt.Errorf("--clients must be at least 1")
	case c.Mode == "pub" || c.Mode == "run":
		if c.Topic.IsEmpty() && (c.Mode == "pub" || c.Pubs > 0) {
			return fmt.Errorf("no publish topic")
		}
	}
	return nil
}
