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

	"github.com/culexmq/culex/internal/admin"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/dashboard"
	"github.com/culexmq/culex/internal/server"
)

// serve runs a broker node until SIGTERM or SIGINT, then shuts it down
// gracefully within shutdown_timeout.
func serve(args []string) error {
	cfg, err := config.Parse("culex serve", args, os.Environ(), os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel, cfg.LogFormat)
	server.Version = version
	srv, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	if a := srv.Admin(); a != nil { // the dashboard at / of the admin listener
		a.Mount(admin.Handlers{Dashboard: dashboard.Handler()})
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := srv.Start(); err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	log.Info("culex started", "version", version, "data_dir", cfg.DataDir)
	var s os.Signal
	for s == nil {
		select {
		case <-hup:
			if err := srv.Reload(); err != nil {
				log.Error("reload failed; the previous users and ACL stay in force", "err", err)
			} else {
				log.Info("reloaded users and ACL")
			}
		case s = <-sig:
		}
	}
	log.Info("shutting down", "signal", s.String(), "timeout", cfg.ShutdownTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	go func() { // a second signal cuts the graceful shutdown short
		<-sig
		cancel()
	}()
	// A cluster node moves its clients away first, within three quarters
	// of shutdown_timeout; Shutdown disconnects whoever is left.
	dctx, dcancel := context.WithTimeout(ctx, cfg.ShutdownTimeout*3/4)
	if err := srv.Drain(dctx); err != nil {
		log.Warn("drain cut short by shutdown_timeout: the remaining clients are disconnected at once", "err", err)
	}
	dcancel()
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// newLogger logs to stderr at level, as text or json (log_format; both
// validated by config).
func newLogger(level, format string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
