package main

import (
	"context"
	"errors"
	"flag"
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
	cfg, err := config.Parse("culex bridge", args, os.Environ(), os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
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
