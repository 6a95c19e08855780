package store_test

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/culexmq/culex/internal/store"
	"github.com/culexmq/culex/internal/store/storetest"
)

// TestBoltAcknowledgesOnlySyncedWrites checks every done callback of a Bolt
// store, from concurrent appliers so that commits are shared: when it
// reports success, the value is in the file and no page of the file is
// still waiting for the device. With bbolt's NoSync, or callbacks called
// before the commit, it fails; reading the data back after a kill -9 of the
// writer cannot tell, since the page cache outlives the process.
func TestBoltAcknowledgesOnlySyncedWrites(t *testing.T) {
	dir := t.TempDir()
	storetest.RequireTracking(t, dir)
	b, err := store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := storetest.Wrap(t, b, b.Path())

	const appliers, each = 4, 25
	var wg sync.WaitGroup
	for a := range appliers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("sync-%d-%03d", a, i)
				value := bytes.Repeat([]byte(key+";"), 40)
				errc := make(chan error, 1)
				s.Apply([]store.Op{{Kind: store.Put, Bucket: store.Messages, Key: key, Value: value}}, func(err error) {
					if err == nil {
						err = inFile(b.Path(), value)
					}
					errc <- err
				})
				if err := <-errc; err != nil {
					t.Errorf("apply %s: %v", key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := s.Durable(); got != appliers*each {
		t.Errorf("%d applies acknowledged synced, want %d", got, appliers*each)
	}
}

// inFile reports whether value has been written to the file at path, as
// bbolt stores values unencoded in its leaf pages.
func inFile(path string, value []byte) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.Contains(data, value) {
		return fmt.Errorf("acknowledged before the value was written to %s", path)
	}
	return nil
}
