package psession

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/culexmq/culex/internal/broker"
)

// TestBacklogStormSharesInfo: 64 sessions read their backlogs at once, as
// in a reconnect storm. Each gets its own messages, nothing dropped, and
// the reads send fewer stream info requests to the log's leader than
// there are reads (they used to send two each: one before, one after).
func TestBacklogStormSharesInfo(t *testing.T) {
	nd := startCluster(t, 1, nil)[0]
	s := nd.s
	const sessions = 64
	var last uint64
	for i := range sessions {
		last = mustStore(t, s, msg(fmt.Sprintf("storm/%d", i), fmt.Sprint(i)))
	}
	infos, err := nd.nc.SubscribeSync("$JS.API.STREAM.INFO." + s.LogStream())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, sessions)
	for i := range sessions {
		wg.Go(func() {
			var got []string
			dropped, err := s.Backlog(context.Background(), fmt.Sprint("c", i), []string{fmt.Sprintf("storm/%d", i)}, 0, last,
				func(seq uint64, _ string, m *broker.Message) error {
					got = append(got, m.Topic+"="+string(m.Payload))
					return nil
				})
			if want := fmt.Sprintf("storm/%d=%d", i, i); err == nil && (dropped != 0 || len(got) != 1 || got[0] != want) {
				err = fmt.Errorf("got %q, dropped %d; want [%s]", got, dropped, want)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("session %d: %v", i, err)
		}
	}
	if err := nd.nc.Flush(); err != nil { // every request's copy has come
		t.Fatal(err)
	}
	n, _, _ := infos.Pending()
	t.Logf("%d backlog reads sent %d stream info requests", sessions, n)
	if n > sessions {
		t.Errorf("%d backlog reads sent %d stream info requests, want at most %d", sessions, n, sessions)
	}
}
