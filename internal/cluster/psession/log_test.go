package psession

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
)

// TestBacklogFilters: Backlog returns, in order, exactly the messages of
// its range that match the session's filters ('+', '#' with its parent
// level, overlapping filters once each; a shared filter none: a group's
// messages are its members' StoreFor ones) or were stored for it (and say
// so), and never a '$' topic to a filter starting with a
// wildcard [MQTT-4.7.2-1].
func TestBacklogFilters(t *testing.T) {
	s := startCluster(t, 1, nil)[0].s
	topics := []string{"a", "a/b", "a/b/c", "x/b", "x/y/b", "$SYS/a", "s/1", "z.with dots", "a/b"}
	var seqs []uint64
	for i, tp := range topics {
		seqs = append(seqs, mustStore(t, s, msg(tp, strings.Repeat("p", i+1))))
	}
	if !slices.IsSorted(seqs) {
		t.Fatalf("sequences %v not in store order", seqs)
	}
	forMe := mustStore(t, s, msg("elsewhere", "stored before StoreFor"))
	mine, err := storeFor(t, s, "me", msg("private/t", "mine"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storeFor(t, s, "other", msg("private/t", "other's")); err != nil {
		t.Fatal(err)
	}
	last := mustStore(t, s, msg("a/b", "after"))
	_ = forMe

	cases := []struct {
		filters []string
		want    []string // topics in order
	}{
		{[]string{"a/#"}, []string{"a", "a/b", "a/b/c", "a/b", "me:private/t", "a/b"}},
		{[]string{"+/b"}, []string{"a/b", "x/b", "a/b", "me:private/t", "a/b"}},
		{[]string{"a/#", "a/b", "+/b"}, []string{"a", "a/b", "a/b/c", "x/b", "a/b", "me:private/t", "a/b"}},
		{[]string{"#"}, append(slices.Delete(slices.Clone(topics), 5, 6), "elsewhere", "me:private/t", "a/b")},
		{[]string{"$SYS/#"}, []string{"$SYS/a", "me:private/t"}},
		{[]string{"$share/g/s/+"}, []string{"me:private/t"}},
		{[]string{"$share/g/s/+", "s/#"}, []string{"s/1", "me:private/t"}},
		{[]string{"z.with dots"}, []string{"z.with dots", "me:private/t"}},
		{[]string{"+/+/b", "x/#"}, []string{"x/b", "x/y/b", "me:private/t"}},
		{nil, []string{"me:private/t"}},
	}
	for _, c := range cases {
		got, dropped := backlog(t, s, "me", c.filters, 0, last)
		var gotTopics []string
		for _, g := range got {
			gotTopics = append(gotTopics, g[:strings.LastIndexByte(g, '=')])
		}
		if !slices.Equal(gotTopics, c.want) || dropped != 0 {
			t.Errorf("filters %q: got %q (dropped %d), want %q", c.filters, got, dropped, c.want)
		}
	}
	// The range bounds: (from, to].
	got, _ := backlog(t, s, "me", []string{"a/b"}, seqs[1], seqs[8])
	if want := []string{"a/b=ppppppppp@" + itoa(seqs[8])}; !slices.Equal(got, want) {
		t.Errorf("range (%d, %d]: got %q, want %q", seqs[1], seqs[8], got, want)
	}
	got, _ = backlog(t, s, "me", []string{"#"}, mine-1, mine)
	if want := []string{"me:private/t=mine@" + itoa(mine)}; !slices.Equal(got, want) {
		t.Errorf("StoreFor: got %q, want %q", got, want)
	}
	// Get by sequence.
	m, err := s.Get(context.Background(), seqs[2])
	if err != nil || m.Topic != "a/b/c" || string(m.Payload) != "ppp" || m.QoS != 1 || m.Origin != "pub" {
		t.Errorf("Get(%d) = %+v, %v", seqs[2], m, err)
	}
	if _, err := s.Get(context.Background(), last+100); !errors.Is(err, broker.ErrMessageGone) {
		t.Errorf("Get past the end: %v, want ErrMessageGone", err)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestStoreForIsolation: a StoreFor message reaches its session only, in
// Backlog and through Deliver (with its client id), and Store's messages
// come through Deliver with none.
func TestStoreForIsolation(t *testing.T) {
	s := startCluster(t, 1, nil)[0].s
	type got struct {
		seq uint64
		id  string
		m   *broker.Message
	}
	ch := make(chan got, 16)
	s.Deliver(func(seq uint64, id string, m *broker.Message) { ch <- got{seq, id, m} })
	a, err := storeFor(t, s, "alice", msg("t", "for alice"))
	if err != nil {
		t.Fatal(err)
	}
	b := mustStore(t, s, msg("t", "for all"))
	for _, w := range []got{{a, "alice", nil}, {b, "", nil}} {
		select {
		case g := <-ch:
			if g.seq != w.seq || g.id != w.id {
				t.Errorf("Deliver got seq %d id %q, want %d %q", g.seq, g.id, w.seq, w.id)
			}
		case <-time.After(testWait):
			t.Fatal("Deliver did not call fn")
		}
	}
	if got, _ := backlog(t, s, "bob", []string{"x"}, 0, b); len(got) != 0 {
		t.Errorf("bob's backlog has %q", got)
	}
	if got, _ := backlog(t, s, "alice", []string{"t"}, 0, b); !slices.Equal(got, []string{"alice:t=for alice@" + itoa(a), "t=for all@" + itoa(b)}) {
		t.Errorf("alice's backlog has %q", got)
	}
}

// TestLongBacklog: a backlog longer than what is read message by message
// at the leader goes on with a consumer: every message once, in order,
// with overlapping filters ("big/#" and "+/t" both match big/t).
func TestLongBacklog(t *testing.T) {
	s := startCluster(t, 1, nil)[0].s
	n := 2*backlogGets + 100
	var want []string
	var last uint64
	for i := range n {
		tp := "big/t"
		if i%3 == 0 {
			tp = "other/t"
		}
		if i%5 == 0 {
			tp = "nobody/x"
		}
		last = mustStore(t, s, msg(tp, strconv.Itoa(i)))
		if tp != "nobody/x" {
			want = append(want, tp+"="+strconv.Itoa(i)+"@"+itoa(last))
		}
	}
	got, dropped := backlog(t, s, "c", []string{"big/#", "+/t"}, 0, last)
	if !slices.Equal(got, want) || dropped != 0 {
		t.Fatalf("long backlog: %d messages (dropped %d), want %d (first difference at %d)", len(got), dropped, len(want), firstDiff(got, want))
	}
	// From the middle, past the messages read one by one.
	got, _ = backlog(t, s, "c", []string{"big/#", "+/t"}, last-50, last)
	var tail []string
	for _, w := range want {
		if seq, _ := strconv.ParseUint(w[strings.LastIndexByte(w, '@')+1:], 10, 64); seq > last-50 {
			tail = append(tail, w)
		}
	}
	if !slices.Equal(got, tail) {
		t.Fatalf("backlog of the last 50: %d messages, want %d", len(got), len(tail))
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
