package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/culexmq/culex/internal/bridge/kafka"
	"github.com/culexmq/culex/internal/config"
)

// bridge runs `culex bridge -c bridge.yaml`: the standalone MQTT -> Kafka
// connector for any MQTT 5 broker (docs/kafka.md), until SIGTERM or SIGINT.
// It reads the same configuration as serve; only kafka matters here.
func bridge(args []string) error {
	cfg, err := config.Parse("culex bridge", args, os.Environ(), os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel, cfg.LogFormat)
	if err := bridgeGroupInstanceID(&cfg.Kafka, log); err != nil {
		return err
	}
	b, err := kafka.New(cfg.Kafka, log)
	if err != nil {
		return err
	}
	defer b.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = b.Check(cctx)
	cancel()
	if err != nil {
		return err
	}
	log.Info("culex bridge started", "version", version, "mqtt", cfg.Kafka.Source.URL, "kafka", cfg.Kafka.Brokers)
	err = b.RunStandalone(ctx, cfg.Kafka.Source)
	log.Info("culex bridge stopping")
	return err
}

// bridgeGroupInstanceID resolves the static group instance id of the
// bridge's command routes when it was not given: a random one stored in
// kafka.spool.dir (one spool dir per bridge), without one the host name
// plus source.client_id (unique per bridge on a host, but not across a
// host name change).
func bridgeGroupInstanceID(k *config.Kafka, log *slog.Logger) error {
	if len(k.Commands) == 0 || k.GroupInstanceIDSet {
		return nil
	}
	if k.Spool.Dir != "" {
		if _, err := k.ResolveGroupInstanceID(k.Spool.Dir); err != nil {
			return fmt.Errorf("kafka.group_instance_id: %w", err)
		}
	} else {
		k.GroupInstanceID = config.DefaultGroupInstanceID(k.Source.ClientID)
	}
	k.GroupInstanceIDSet = true // resolved: RunStandalone keeps it
	log.Info("kafka commands: static group membership", "group_instance_id", k.GroupInstanceID)
	return nil
}
