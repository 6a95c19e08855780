package broker

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/culexmq/culex/internal/store"
)

// BenchmarkRoutePersistent measures one routing pass of a QoS 1 message to
// subs connected persistent sessions: the pass waits until its records are
// durable (as a publisher's PUBACK does), then every session acknowledges
// its copy. On Bolt it reports per message the key and value bytes the
// store committed (store-B/msg), what the process wrote to disk
// (disk-B/msg, /proc/self/io write_bytes: whole pages) and the commits; on
// Memory, without a disk, ns/op is the broker's own cost.
func BenchmarkRoutePersistent(b *testing.B) {
	for _, kind := range []string{"bolt", "memory"} {
		for _, size := range []int{64, 1024} {
			for _, n := range []int{1, 10, 100} {
				b.Run(fmt.Sprintf("store=%s/size=%d/subs=%d", kind, size, n), func(b *testing.B) {
					benchRoutePersistent(b, kind, size, n)
				})
			}
		}
	}
}

func benchRoutePersistent(b *testing.B, kind string, size, n int) {
	var st store.Store
	if kind == "bolt" {
		bs, err := store.OpenBolt(b.TempDir(), store.BoltOptions{})
		if err != nil {
			b.Fatal(err)
		}
		st = bs
	} else {
		st = store.NewMemory()
	}
	defer st.Close()
	cfg := testConfig()
	cfg.MaxInflight = 0
	br, err := New(Options{Config: cfg, Store: st})
	if err != nil {
		b.Fatal(err)
	}
	var ss []*session
	var cs []*conn
	for i := 0; i < n; i++ {
		s, c := fakeSession(br, "s"+strconv.Itoa(i), 5)
		s.expiry, s.persistent = 3600, true
		br.subs.Subscribe("bench/+/x", s, subOpts{QoS: 1})
		ss, cs = append(ss, s), append(cs, c)
	}
	done := make(chan error, 1)
	before, disk := boltStats(st), writeBytes()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := &Message{Topic: "bench/a/x", Payload: make([]byte, size), QoS: 1}
		w := newStoreWait(func(err error) { done <- err })
		br.route(m, w)
		w.done(nil)
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		for j, s := range ss {
			s.onPuback(cs[j], s.nextPID)
		}
	}
	if err := st.Sync(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if kind == "bolt" {
		after := boltStats(st)
		b.ReportMetric(float64(after.Bytes-before.Bytes)/float64(b.N), "store-B/msg")
		b.ReportMetric(float64(writeBytes()-disk)/float64(b.N), "disk-B/msg")
		b.ReportMetric(float64(after.Commits-before.Commits)/float64(b.N), "commits/msg")
	}
	br.wg.Wait()
}

// boltStats are st's commit counters if it is a Bolt store.
func boltStats(st store.Store) store.Stats {
	if bs, ok := st.(*store.Bolt); ok {
		return bs.Stats()
	}
	return store.Stats{}
}

// writeBytes is what the process has caused to be written to storage.
func writeBytes() int64 {
	io, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	_, v, _ := bytes.Cut(io, []byte("write_bytes: "))
	v, _, _ = bytes.Cut(v, []byte("\n"))
	n, _ := strconv.ParseInt(string(v), 10, 64)
	return n
}
