package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	loadtest "github.com/culexmq/culex/internal/bench"
)

// bench runs `culex bench ...`. Ctrl-C or SIGTERM ends a run early and still
// prints its summary. The open-file limit is raised first: every connection
// is a file descriptor.
func bench(args []string) error {
	loadtest.RaiseFileLimit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return loadtest.Main(ctx, args, os.Stdout, os.Stderr)
}
