package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/culexmq/culex/internal/bench"
)

// bench runs `culex bench ...`: Ctrl-C or SIGTERM ends the run early and
// still prints its summary.
func bench(args []string) error {
	raiseFileLimit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return bench.Main(ctx, args, os.Stdout, os.Stderr)
}

// raiseFileLimit lifts the soft open-file limit to the hard one: every
// connection is a file descriptor.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
