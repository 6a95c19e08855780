package store_test

import (
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/culexmq/culex/internal/store"
)

// TestBoltOpensFileWithoutBodies: a file written before the Bodies bucket
// existed opens with its data intact and gets the bucket.
func TestBoltOpensFileWithoutBodies(t *testing.T) {
	dir := t.TempDir()
	db, err := bbolt.Open(filepath.Join(dir, store.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range []store.Bucket{store.Sessions, store.Messages, store.Retained, store.Wills} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(store.Messages)).Put([]byte(store.MessageKey("a", 1)), []byte("old"))
	})
	if err == nil {
		err = db.Close()
	}
	if err != nil {
		t.Fatal(err)
	}

	st, err := store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	done := make(chan error, 1)
	st.Apply([]store.Op{{Kind: store.Put, Bucket: store.Bodies, Key: store.BodyKey(1), Value: []byte("body")}}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatalf("put into Bodies: %v", err)
	}
	got := map[store.Bucket]string{}
	for _, b := range []store.Bucket{store.Messages, store.Bodies} {
		err := st.Scan(b, "", func(_ string, v []byte) error { got[b] = string(v); return nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	if got[store.Messages] != "old" || got[store.Bodies] != "body" {
		t.Fatalf("after reopening: %v, want the old record and the new body", got)
	}
}
