// Package metrics serves a node's Prometheus metrics. Its Collector reads
// the counters the broker, listeners, auth, Kafka bridge and store keep
// anyway, at scrape time: nothing is counted twice on a message's path.
// Names follow Prometheus conventions (culex_ prefix, _total counters,
// base units in the name); labels are bounded (listener, protocol, QoS,
// reason, route), never a client id or a topic. docs/operations.md lists
// every metric.
package metrics

import (
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/bridge/kafka"
	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/listener"
	"github.com/culexmq/culex/internal/store"
)

// Sources are what a scrape reads. Nil fields are left out of the output.
type Sources struct {
	Broker *broker.Broker
	// Listeners by their configured URL (the listener label, as in
	// broker.ClientInfo.Listener).
	Listeners map[string]*listener.Listener
	Auth      *auth.Service
	Kafka     *kafka.Bridge
	// Store is the durable store's counters (nil for a memory store).
	Store interface{ Stats() store.Stats }
	// Version labels culex_build_info.
	Version string
}

// Collector is a prometheus.Collector over a node's Sources. It also
// counts accepted connections by listener and protocol (a
// broker.ConnectHook, at connect rate): add it to broker.Options.Hooks.
type Collector struct {
	src atomic.Pointer[Sources]

	// mu guards connects.
	mu       sync.Mutex
	connects map[connKey]uint64
}

type connKey struct{ listener, protocol string }

var (
	_ prometheus.Collector = (*Collector)(nil)
	_ broker.ConnectHook   = (*Collector)(nil)
)

// New returns a Collector with no sources yet; call Use once the node's
// parts exist.
func New() *Collector { return &Collector{connects: map[connKey]uint64{}} }

// Use sets what scrapes read; safe while scrapes run.
func (c *Collector) Use(s Sources) { c.src.Store(&s) }

// OnConnect counts an accepted connection (broker.ConnectHook).
func (c *Collector) OnConnect(ci *broker.ClientInfo, _ bool) {
	k := connKey{ci.Listener, ci.Version.String()}
	c.mu.Lock()
	c.connects[k]++
	c.mu.Unlock()
}

// Registry returns a registry holding c and the Go runtime and process
// collectors; the node's other parts (the cluster) register theirs in it.
func Registry(c *Collector) *prometheus.Registry {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in the Prometheus text format; a collector that
// fails leaves the others served.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range all {
		ch <- d
	}
}

// Collect reads every source once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	src := c.src.Load()
	if src == nil {
		return
	}
	e := emitter{ch}
	e.gauge(buildInfo, 1, src.Version)
	c.collectConnects(e)
	if src.Broker != nil {
		collectBroker(e, src.Broker)
	}
	for _, name := range sortedKeys(src.Listeners) {
		e.counter(untrustedPeers, float64(src.Listeners[name].Stats().UntrustedPeers), name)
	}
	if src.Auth != nil {
		collectAuth(e, src.Auth)
	}
	if src.Kafka != nil {
		collectKafka(e, src.Kafka)
	}
	if src.Store != nil {
		collectStore(e, src.Store.Stats())
	}
}

func (c *Collector) collectConnects(e emitter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range c.connects {
		e.counter(connectsTotal, float64(n), k.listener, k.protocol)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// emitter sends const metrics; a label mismatch is a programming error
// caught by the tests' scrape.
type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) counter(d *prometheus.Desc, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// all lists every Desc for Describe.
var all []*prometheus.Desc

func desc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc("culex_"+name, help, labels, nil)
	all = append(all, d)
	return d
}

// reasonLabel turns an MQTT reason string ("Bad User Name or Password")
// into a label value (bad_user_name_or_password).
func reasonLabel(s string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), " ", "_")
}

var (
	buildInfo      = desc("build_info", "Always 1; the version label is the running Culex version.", "version")
	connectsTotal  = desc("connects_total", "Connections accepted (CONNACK success) since start, by listener and MQTT protocol version.", "listener", "protocol")
	untrustedPeers = desc("listener_untrusted_peers_total", "Connections to a PROXY protocol listener refused because the peer is not in trusted_proxies.", "listener")
)
