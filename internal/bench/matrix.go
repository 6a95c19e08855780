package bench

import "fmt"

// Workload is one cell of the compare matrix: a topology, QoS, payload
// size and load, or (Idle > 0) a count of idle connections.
type Workload struct {
	Name     string
	Pubs     int
	Subs     int
	Topic    string
	SubTopic string
	QoS      int
	Size     int
	Rate     float64  // total publish msg/s; 0: maximum
	Idle     int      // idle connections (conn mode) instead of traffic
	TLS      *tlsCase // a TLS workload (TLSMatrix)
	Takeover int      // client ids taken over across nodes (compare --cluster)
	// Persistent clients (clean start 0, an hour's session expiry): QoS
	// 1/2 messages for them are stored before they are acknowledged.
	Persistent bool
	// Reconnect persistent sessions on one node, which is SIGKILLed
	// (compare --cluster, reconnect.go).
	Reconnect int
	// AtOnce: the Reconnect clients come back as soon as their node dies,
	// not once it is seen dead.
	AtOnce bool
}

type topology struct {
	name            string
	pubs, subs      int
	topic, subTopic string
	fanout          int // deliveries per publish
}

var topologies = []topology{
	{"fan-in 10:1", 10, 1, "bench/%i", "bench/#", 1},
	{"pairs 10:10", 10, 10, "bench/%i", "bench/%i", 1},
	{"fan-out 1:10", 1, 10, "bench/fan", "bench/fan", 10},
	{"fan-out 1:1000", 1, 1000, "bench/fan", "bench/fan", 1000},
}

// fixedDelivered is the delivery rate of the fixed-load workloads: the
// publish rate is fixedDelivered / fan-out, so every topology delivers
// 10k msg/s and latencies compare at the same work.
const fixedDelivered = 10000

// Matrix returns the named matrix: "full" (4 topologies x QoS 0/1/2 x
// 64 B/1 KiB x max/10k, then idle connections) or "quick" (a smoke test).
func Matrix(name string, idle int) ([]Workload, error) {
	var ws []Workload
	add := func(t topology, qos, size int, fixed bool) {
		w := Workload{Pubs: t.pubs, Subs: t.subs, Topic: t.topic, SubTopic: t.subTopic, QoS: qos, Size: size}
		load := "max"
		if fixed {
			w.Rate = float64(fixedDelivered) / float64(t.fanout)
			load = "10k/s"
		}
		w.Name = fmt.Sprintf("%s qos%d %s %s", t.name, qos, sizeName(size), load)
		ws = append(ws, w)
	}
	switch name {
	case "full":
		for _, t := range topologies {
			for _, fixed := range []bool{false, true} {
				for qos := 0; qos <= 2; qos++ {
					for _, size := range []int{64, 1024} {
						add(t, qos, size, fixed)
					}
				}
			}
		}
	case "quick":
		add(topologies[1], 0, 64, false)
		add(topologies[0], 1, 64, true)
		add(topologies[2], 1, 1024, false)
		add(topologies[3], 0, 64, true)
	default:
		return nil, fmt.Errorf("unknown matrix %q (full, quick)", name)
	}
	if idle > 0 {
		ws = append(ws, Workload{Name: fmt.Sprintf("idle %d connections", idle), Idle: idle})
	}
	return ws, nil
}

func sizeName(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}

// benchArgs is the `culex bench` command line of w against port.
func (w Workload) benchArgs(port int, duration, drain string, locals string) []string {
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	if w.Idle > 0 {
		args := []string{"conn", "--url", url, "--clients", fmt.Sprint(w.Idle), "--duration", duration,
			"--conn-concurrency", "200", "--timeout", "30s", "--json", "--quiet", "--phases"}
		if locals != "" {
			args = append(args, "--local-addrs", locals)
		}
		return args
	}
	args := []string{"run", "--url", url, "--pubs", fmt.Sprint(w.Pubs), "--subs", fmt.Sprint(w.Subs),
		"--topic", w.Topic, "--sub-topic", w.SubTopic, "--qos", fmt.Sprint(w.QoS), "--size", fmt.Sprint(w.Size),
		"--duration", duration, "--drain", drain, "--json", "--quiet", "--phases"}
	if w.Rate > 0 {
		args = append(args, "--rate", fmt.Sprint(w.Rate))
	}
	if w.Persistent {
		args = append(args, "--clean=false", "--session-expiry", "3600")
	}
	if w.Subs > 200 && locals != "" {
		args = append(args, "--local-addrs", locals)
	}
	return args
}
