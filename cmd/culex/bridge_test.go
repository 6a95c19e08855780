package main

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/culexmq/culex/internal/config"
)

// TestBridgeGroupInstanceID: `culex bridge` with command routes keeps a
// random instance id in kafka.spool.dir across starts; without a spool
// dir it is the host name plus source.client_id; a given id (or none) is
// kept.
func TestBridgeGroupInstanceID(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	resolve := func(k config.Kafka) string {
		t.Helper()
		k.Commands = []config.KafkaCommand{{Name: "cmds"}}
		k.Source.ClientID = "bridge-a"
		if err := bridgeGroupInstanceID(&k, log); err != nil {
			t.Fatal(err)
		}
		if !k.GroupInstanceIDSet {
			t.Fatal("resolved id not marked given: RunStandalone would replace it")
		}
		return k.GroupInstanceID
	}
	spool := filepath.Join(t.TempDir(), "spool")
	first := resolve(config.Kafka{Spool: config.KafkaSpool{Dir: spool}})
	if again := resolve(config.Kafka{Spool: config.KafkaSpool{Dir: spool}}); first == "" || again != first {
		t.Errorf("spool dir: first start %q, second %q", first, again)
	}
	if id, want := resolve(config.Kafka{}), config.DefaultGroupInstanceID("bridge-a"); id != want {
		t.Errorf("no spool dir: %q, want %q", id, want)
	}
	given := config.Kafka{GroupInstanceID: config.GroupInstanceIDNone, GroupInstanceIDSet: true, Spool: config.KafkaSpool{Dir: t.TempDir()}}
	if id := resolve(given); id != config.GroupInstanceIDNone {
		t.Errorf("given none: %q", id)
	}
}
