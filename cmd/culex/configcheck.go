package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/culexmq/culex/internal/config"
)

const configUsage = `Usage:
  culex config check [--print] [FILE] [serve flags]

Loads the configuration exactly as culex serve would (defaults, FILE or
CULEX_CONFIG, CULEX_* variables, flags), validates it and exits 0 when it
is valid; otherwise prints the error naming the key and exits 1. Nothing is
opened or started. --print writes the effective configuration as YAML, with
passwords and secrets redacted.
`

// configCmd runs `culex config SUBCOMMAND`.
func configCmd(args []string) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(os.Stderr, configUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		os.Exit(2)
	}
	return configCheck(args[1:], os.Environ(), os.Stdout)
}

// configCheck validates the configuration given by args and environ and
// reports it on out.
func configCheck(args, environ []string, out io.Writer) error {
	print := false
	if len(args) > 0 && (args[0] == "--print" || args[0] == "-print") {
		print, args = true, args[1:]
	}
	file := "(defaults and environment)"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file = args[0]
		args = append([]string{"-c", args[0]}, args[1:]...)
	}
	cfg, err := config.Parse("culex config check", args, environ, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if !print {
		fmt.Fprintf(out, "%s: valid\n", file)
		return nil
	}
	var doc yaml.Node
	if err := doc.Encode(config.Redacted(cfg)); err != nil {
		return err
	}
	enc := yaml.NewEncoder(out)
	enc.SetIndent(2)
	defer enc.Close()
	return enc.Encode(&doc)
}
