package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/cliflag"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Usage is the help text of `culex bench`.
const Usage = `culex bench: load-test any MQTT broker.

Usage:
  culex bench conn    [flags]   open and hold connections
  culex bench pub     [flags]   publish
  culex bench sub     [flags]   subscribe and measure
  culex bench run     [flags]   publishers and subscribers in one process (end-to-end)
  culex bench compare [flags]   Culex vs Mosquitto matrix -> docs/benchmarks.md

Run "culex bench CMD -h" for the flags of CMD; docs/bench.md is the manual.
`

// Main runs `culex bench args...`; the summary goes to stdout, live lines
// and errors to stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, Usage)
		return errors.New("bench: missing command")
	}
	switch args[0] {
	case "conn", "pub", "sub", "run":
		cfg, asJSON, err := ParseFlags(args[0], args[1:], stderr)
		if err != nil {
			return err
		}
		s, err := Run(ctx, *cfg, stderr)
		if err != nil {
			return err
		}
		if asJSON {
			err = s.WriteJSON(stdout)
		} else {
			s.WriteText(stdout)
		}
		if err == nil {
			err = s.noneConnected()
		}
		return err
	case "compare":
		return Compare(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, Usage)
		return nil
	}
	fmt.Fprint(stderr, Usage)
	return fmt.Errorf("bench: unknown command %q", args[0])
}

// ParseFlags builds the Config of mode from command-line flags.
func ParseFlags(mode string, args []string, stderr io.Writer) (cfg *Config, asJSON bool, err error) {
	fs := flag.NewFlagSet("culex bench "+mode, flag.ContinueOnError)
	cfg = &Config{Mode: mode}
	var (
		url, host                   = "tcp://127.0.0.1:1883", ""
		port                        int
		clientID, user, pass, topic string
		subTopic, protocol, locals  string
		qos, subQoS                 int
		sessionExpiry               uint
		topt                        TLSOptions
		clients                     int
		quiet                       bool
	)
	fs.StringVar(&url, "url", url, "broker URL: tcp://, ssl://, ws://, wss:// host:port[/path]")
	fs.StringVar(&host, "host", "", "broker host (overrides the URL's host)")
	fs.IntVar(&port, "port", 0, "broker port (overrides the URL's port)")
	if mode == "run" {
		fs.IntVar(&cfg.Pubs, "pubs", 1, "publishers")
		fs.IntVar(&cfg.Subs, "subs", 1, "subscribers")
	} else {
		fs.IntVar(&clients, "clients", 1, "number of clients")
		fs.IntVar(&clients, "c", 1, "number of clients (short for --clients)")
	}
	fs.IntVar(&cfg.StartNumber, "start-number", 0, "first client index (%i)")
	fs.StringVar(&clientID, "client-id", fmt.Sprintf("bench-%d-%%i", os.Getpid()), "client id template (%i index); run mode prefixes pub-/sub-")
	fs.StringVar(&user, "username", "", "username template (%i index, %c client id)")
	fs.StringVar(&pass, "password", "", "password template (%i index, %c client id)")
	defTopic := "bench/%i"
	fs.StringVar(&topic, "topic", defTopic, "topic template (%i index, %c client id); sub mode: the filter")
	if mode == "run" {
		fs.StringVar(&subTopic, "sub-topic", "bench/#", "subscription filter template")
	}
	fs.DurationVar(&cfg.ConnInterval, "conn-interval", 0, "interval between connection starts (0: as fast as --conn-concurrency allows)")
	fs.IntVar(&cfg.ConnConcurrency, "conn-concurrency", 100, "handshakes in flight at once")
	fs.IntVar(&qos, "qos", 0, "QoS of publishes (and subscriptions unless --sub-qos)")
	fs.IntVar(&subQoS, "sub-qos", -1, "QoS of subscriptions (default: --qos)")
	fs.IntVar(&cfg.Size, "size", 64, "payload bytes; the first 20 carry publisher id, sequence and send time")
	fs.BoolVar(&cfg.Retain, "retain", false, "publish retained")
	fs.DurationVar(&cfg.Interval, "interval", 0, "publish interval per client (0: no limit)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "total publish rate in msg/s over all publishers (overrides --interval)")
	fs.Int64Var(&cfg.Limit, "limit", 0, "total messages to publish (sub: to receive); 0: no limit")
	fs.DurationVar(&cfg.Duration, "duration", 0, "how long to publish (conn, sub: to hold); 0: until --limit or Ctrl-C")
	fs.DurationVar(&cfg.Drain, "drain", 5*time.Second, "run, pub: longest wait for acks and deliveries after publishing")
	fs.IntVar(&cfg.Inflight, "inflight", 32, "unacknowledged QoS 1/2 publishes per client (capped by the broker's Receive Maximum)")
	fs.StringVar(&protocol, "protocol", "3.1.1", "MQTT version: 3.1, 3.1.1 or 5")
	fs.BoolVar(&cfg.Clean, "clean", true, "clean session (MQTT 5: clean start)")
	fs.UintVar(&sessionExpiry, "session-expiry", 0, "MQTT 5 session expiry interval in seconds")
	fs.DurationVar(&cfg.KeepAlive, "keepalive", 60*time.Second, "keep-alive interval")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "deadline of each connect, CONNACK and SUBACK wait")
	fs.DurationVar(&cfg.Retry, "retry", 0, "a client whose handshake failed (refused, timed out) tries again, after 100ms doubling to 2s, until this long after its first dial (0: never)")
	fs.StringVar(&topt.CAFile, "cafile", "", "TLS: CA certificates (PEM)")
	fs.StringVar(&topt.CertFile, "cert", "", "TLS: client certificate (PEM)")
	fs.StringVar(&topt.KeyFile, "key", "", "TLS: client key (PEM)")
	fs.StringVar(&topt.ServerName, "servername", "", "TLS: server name to verify (default: the host)")
	fs.BoolVar(&topt.Insecure, "insecure", false, "TLS: do not verify the server certificate")
	fs.StringVar(&topt.Groups, "tls-groups", "", "TLS: key exchange groups to offer, comma-separated (x25519, p256, p384, p521, x25519mlkem768); default Go's")
	resume := fs.Bool("tls-resume", true, "TLS: resume sessions with the tickets of earlier connections (false: every handshake is a full one)")
	var subAddrs string
	if mode == "run" || mode == "sub" {
		fs.StringVar(&subAddrs, "sub-addrs", "", "subscribers connect to these host:port addresses, comma-separated, round-robin (other nodes of a cluster) instead of --url's")
	}
	if mode == "run" || mode == "pub" {
		fs.Uint64Var(&cfg.SeqStart, "seq-start", 1, "first sequence number of each publisher (continue the streams of an earlier run)")
	}
	if mode == "sub" {
		fs.StringVar(&cfg.SeqFile, "seq-file", "", "carry the subscribers' sequence state across runs: loaded first if it exists, written at the end (same client ids)")
		fs.Int64Var(&cfg.Expect, "expect", 0, "distinct messages expected over all streams (with --seq-file, counting the earlier runs'): end once they arrived; lost is what is missing")
	}
	fs.StringVar(&locals, "local-addrs", "", "source addresses, comma-separated or ranges (127.0.0.2-127.0.0.9), used round-robin")
	fs.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	fs.BoolVar(&quiet, "quiet", false, "no live line every second")
	fs.BoolVar(&cfg.Phases, "phases", false, `print "phase: connected" once every client is connected and "phase: closing" before they close, on stderr`)
	if err := cliflag.Parse(fs, args, stderr, nil); err != nil {
		return nil, false, err
	}
	if fs.NArg() > 0 {
		return nil, false, fmt.Errorf("bench %s: unexpected argument %q", mode, fs.Arg(0))
	}
	if cfg.Version, err = parseVersion(protocol); err != nil {
		return nil, false, err
	}
	if qos < 0 || qos > 2 || subQoS > 2 {
		return nil, false, fmt.Errorf("bench %s: qos must be 0, 1 or 2", mode)
	}
	if subQoS < 0 {
		subQoS = qos
	}
	cfg.QoS, cfg.SubQoS, cfg.SessionExpiry = byte(qos), byte(subQoS), uint32(sessionExpiry)
	cfg.Clients, cfg.Live = clients, !quiet
	cfg.ClientID, cfg.Username, cfg.Password = ParseTemplate(clientID), ParseTemplate(user), ParseTemplate(pass)
	cfg.Topic, cfg.SubTopic = ParseTemplate(topic), ParseTemplate(subTopic)
	if mode == "sub" {
		cfg.SubTopic = cfg.Topic
	}
	ips, err := ParseLocalAddrs(locals)
	if err != nil {
		return nil, false, err
	}
	topt.NoResume = !*resume
	if host != "" || port != 0 {
		url = overrideHostPort(url, host, port)
	}
	if cfg.Target, err = ParseTarget(url, topt, ips); err != nil {
		return nil, false, err
	}
	for _, a := range strings.Split(subAddrs, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, false, fmt.Errorf("bench %s: --sub-addrs: %q is not host:port", mode, a)
		}
		cfg.Target.SubAddrs = append(cfg.Target.SubAddrs, a)
	}
	cfg.Defaults()
	return cfg, asJSON, cfg.validate()
}

func parseVersion(s string) (packet.Version, error) {
	switch s {
	case "3.1", "3":
		return packet.V31, nil
	case "3.1.1", "4":
		return packet.V311, nil
	case "5", "5.0":
		return packet.V5, nil
	}
	return 0, fmt.Errorf("protocol %q: want 3.1, 3.1.1 or 5", s)
}

// overrideHostPort replaces the host and/or port of a broker URL.
func overrideHostPort(url, host string, port int) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		scheme, rest = "tcp", url
	}
	hostport, path, _ := strings.Cut(rest, "/")
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		h, p = hostport, ""
	}
	if host != "" {
		h = host
	}
	if port != 0 {
		p = strconv.Itoa(port)
	}
	if p != "" {
		hostport = net.JoinHostPort(h, p)
	} else {
		hostport = h
	}
	if path != "" {
		return scheme + "://" + hostport + "/" + path
	}
	return scheme + "://" + hostport
}
