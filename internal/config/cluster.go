package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Cluster is the node's place in a Culex cluster (docs/cluster.md). With
// neither Listen nor NATSURL set the node is alone and starts no NATS.
type Cluster struct {
	// Name is the cluster's name: nodes of different names never join.
	Name string `yaml:"name"`
	// NodeName names this node, unique in the cluster (empty: the host name).
	NodeName string `yaml:"node_name"`
	// Role is core (holds the cluster's state in JetStream; three by
	// default, an odd number) or replicant (holds connections only).
	Role string `yaml:"role"`
	// Listen is host:port of the cluster (NATS route) port, 4248 by
	// convention; empty with an empty NATSURL: no cluster.
	Listen string `yaml:"listen"`
	// Peers are the cores' cluster ports (host:port), or one DNS name
	// (host:port) that resolves to every core, as a Kubernetes headless
	// service does; every A/AAAA record is used. Set by the file,
	// --cluster.peers (repeatable or comma-separated) and
	// CULEX_CLUSTER_PEERS (comma-separated).
	Peers []string `yaml:"peers"`
	// LinkListen is host:port of the link port, where other nodes send
	// the messages they forward to this one and take their
	// acknowledgements (docs/cluster.md); "off": through NATS instead.
	// Empty: cluster.listen's host and a free port, announced to the other
	// nodes. With nats_url it must be set to an address the other nodes
	// reach, or the messages go through NATS.
	LinkListen string `yaml:"link_listen"`
	// NATSURL joins an external NATS cluster (nats://host:4222, comma-separated
	// URLs) instead of embedding a NATS server.
	NATSURL string `yaml:"nats_url"`
	// Secret authenticates the nodes to each other on the cluster port
	// (also CULEX_CLUSTER_SECRET); required unless TLS verifies peers.
	Secret string `yaml:"secret" secret:"true"`
	// TLS encrypts the cluster port and, with CAFile, verifies every peer's
	// certificate against the cluster CA (both directions).
	TLS ClusterTLS `yaml:"tls"`
	// StoreDir holds a core's JetStream state (empty: data_dir/cluster).
	StoreDir string `yaml:"store_dir"`
	// Sync is how JetStream writes reach the disk: always (fsync before
	// every acknowledgement) or a duration (group commit at that interval).
	Sync string `yaml:"sync"`
	// AckTimeout bounds how long a QoS 1/2 publish waits for the nodes
	// with matching subscribers to accept it; past it the publish fails
	// (v5: PUBACK/PUBREC 0x80; 3.1.1: no acknowledgement, the client
	// sends it again).
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// MaxPending bounds the bytes of forwarded messages a node holds for
	// one other node before its link (or NATS) has taken them; from an
	// eighth of it, clients whose QoS 0 messages go to that node are held
	// back; past it QoS 0 messages for that node are dropped and QoS 1/2
	// ones fail (v5: PUBACK/PUBREC 0x80). It also bounds what a node
	// received and has not routed yet: per link, and for all senders
	// together through NATS.
	MaxPending int `yaml:"max_pending_bytes"`
	// NodeTimeout is how long a node may stay silent (no heartbeat) before
	// the others consider it gone: its subscriptions are dropped and
	// publishes stop waiting for it.
	NodeTimeout time.Duration `yaml:"node_timeout"`
	// ReadyTimeout is how long `culex serve` waits for the cluster at start
	// before it logs what it is still waiting for (it keeps waiting; the
	// node serves MQTT meanwhile, and readiness says not ready).
	ReadyTimeout time.Duration `yaml:"ready_timeout"`
	// Draining (drain.go): clients moved away per second, and the server
	// reference v5 clients are sent to.
	DrainRate            int    `yaml:"drain_rate"`
	DrainServerReference string `yaml:"drain_server_reference"`
	// Sessions bounds the log of the persistent sessions' messages
	// (sessions.go).
	Sessions ClusterSessions `yaml:"sessions"`
}

// ClusterTLS is the TLS of the cluster port.
type ClusterTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile is the cluster CA: peers must present a certificate it signed.
	CAFile string `yaml:"ca_file"`
}

// DefaultClusterPort is the cluster (NATS route) port by convention.
const DefaultClusterPort = 4248

// DefaultLinkPort is the link port by convention, where it is fixed.
const DefaultLinkPort = 4249

func defaultCluster() Cluster {
	return Cluster{
		Name:         "culex",
		Role:         "core",
		Peers:        []string{},
		Sync:         "always",
		AckTimeout:   15 * time.Second,
		MaxPending:   64 << 20,
		NodeTimeout:  5 * time.Second,
		ReadyTimeout: 30 * time.Second,
		DrainRate:    defaultDrainRate,
		Sessions:     defaultClusterSessions(),
	}
}

// Enabled reports whether the node is part of a cluster.
func (c *Cluster) Enabled() bool { return c.Listen != "" || c.NATSURL != "" }

// Node is the node's name: NodeName, or the host name.
func (c *Cluster) Node() string {
	if c.NodeName != "" {
		return c.NodeName
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "culex"
	}
	return h
}

// LinkAddress is the address the node's link port listens on, and
// whether it has one (LinkListen).
func (c *Cluster) LinkAddress() (string, bool) {
	switch {
	case c.LinkListen == "off":
		return "", false
	case c.LinkListen != "":
		return c.LinkListen, true
	case c.Listen == "" || c.Secret == "" && c.TLS.CAFile == "":
		return "", false // an external NATS: no address the others reach is known
	}
	host, _, _ := net.SplitHostPort(c.Listen)
	return net.JoinHostPort(host, "0"), true
}

// IsCore reports whether the node holds cluster state.
func (c *Cluster) IsCore() bool { return c.Role != "replicant" }

// Store is the directory of the node's JetStream state.
func (c *Cluster) Store(dataDir string) string {
	if c.StoreDir != "" {
		return c.StoreDir
	}
	if dataDir == "" {
		return ""
	}
	return filepath.Join(dataDir, "cluster")
}

// SyncInterval is Sync as a duration: 0 for always.
func (c *Cluster) SyncInterval() (time.Duration, error) {
	if c.Sync == "always" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.Sync)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not always nor a positive duration (examples: always, 10ms)", c.Sync)
	}
	return d, nil
}

// Warnings lists settings that work but are risky, for the start-up log.
func (c *Cluster) Warnings() []string {
	var out []string
	if c.Listen != "" && c.IsCore() && len(c.Peers) > 0 {
		// Peers list the other cores, or all of them (this one included);
		// a DNS name (one peer without a port of its own) is not counted.
		n := len(c.Peers)
		if !c.peersIncludeSelf() {
			n++
		}
		if n%2 == 0 && len(c.Peers) > 1 {
			out = append(out, fmt.Sprintf("cluster.peers: %d cores in all, an even number: losing half of them leaves no majority for the cluster's state; use an odd number of cores", n))
		}
	}
	return out
}

func (c *Cluster) peersIncludeSelf() bool {
	for _, p := range c.Peers {
		if p == c.Listen {
			return true
		}
	}
	return false
}

func (c *Cluster) validate(bad func(key, format string, args ...any)) {
	if c.Name == "" || strings.ContainsAny(c.Name, " .*>\t") {
		bad("cluster.name", "%q must be non-empty without spaces, '.', '*' or '>'", c.Name)
	}
	if strings.ContainsAny(c.NodeName, " .*>\t") {
		bad("cluster.node_name", "%q must not contain spaces, '.', '*' or '>'", c.NodeName)
	}
	switch c.Role {
	case "core", "replicant":
	default:
		bad("cluster.role", "%q is not core or replicant", c.Role)
	}
	if _, err := c.SyncInterval(); err != nil {
		bad("cluster.sync", "%v", err)
	}
	if c.AckTimeout <= 0 {
		bad("cluster.ack_timeout", "must be positive")
	}
	if c.MaxPending <= 0 {
		bad("cluster.max_pending_bytes", "must be positive (default %d, 64 MiB)", 64<<20)
	}
	if c.NodeTimeout <= 0 {
		bad("cluster.node_timeout", "must be positive")
	} else if c.NodeTimeout >= c.AckTimeout {
		bad("cluster.node_timeout", "%v must be shorter than cluster.ack_timeout (%v): publishes to a dead node's subscribers would fail instead of going on without it", c.NodeTimeout, c.AckTimeout)
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad("cluster.listen", "%q is not host:port (example: 0.0.0.0:%d)", c.Listen, DefaultClusterPort)
		}
	}
	if l := c.LinkListen; l != "" && l != "off" {
		host, _, err := net.SplitHostPort(l)
		switch {
		case err != nil:
			bad("cluster.link_listen", "%q is not host:port or off (example: 0.0.0.0:%d)", l, DefaultLinkPort)
		case c.Secret == "" && c.TLS.CAFile == "":
			bad("cluster.link_listen", "needs cluster.secret or cluster.tls with a ca_file: the link port never accepts an unauthenticated peer")
		case c.NATSURL != "" && (host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified()):
			bad("cluster.link_listen", "%q: with cluster.nats_url, give the address the other nodes reach this one at (example: 10.0.0.5:%d)", l, DefaultLinkPort)
		}
	}
	for i, p := range c.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			bad(fmt.Sprintf("cluster.peers[%d]", i), "%q is not host:port (example: core-0.culex:%d)", p, DefaultClusterPort)
		}
	}
	if c.Listen != "" && c.NATSURL != "" {
		bad("cluster.nats_url", "set together with cluster.listen: a node either embeds NATS (listen, peers) or joins an external NATS (nats_url)")
	}
	t := &c.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("cluster.tls.cert_file", "cluster.tls.cert_file and cluster.tls.key_file go together")
	}
	if t.CAFile != "" && t.CertFile == "" {
		bad("cluster.tls.ca_file", "needs cluster.tls.cert_file and cluster.tls.key_file: peers verify this node too")
	}
	if t.CertFile != "" && t.CAFile == "" {
		bad("cluster.tls.ca_file", "required with cluster.tls.cert_file: the cluster port verifies every peer against the cluster CA")
	}
	if c.Listen != "" && c.Secret == "" && t.CAFile == "" {
		bad("cluster.secret", "required with cluster.listen (or cluster.tls with a ca_file): the cluster port never accepts an unauthenticated peer")
	}
	c.validateDrain(bad) // drain.go
	c.Sessions.validate(bad)
	if c.Listen == "" && c.NATSURL == "" && len(c.Peers) > 0 {
		bad("cluster.listen", "required with cluster.peers: the node's own cluster port (example: 0.0.0.0:%d)", DefaultClusterPort)
	}
}

// splitList splits comma- or space-separated values, dropping empty ones.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}
