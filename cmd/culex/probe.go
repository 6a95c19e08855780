package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// probe runs `culex probe URL`: an HTTP GET that exits 0 on a 2xx answer,
// for health checks in images that have no curl (the distroless container
// image's HEALTHCHECK probes /readyz with it).
func probe(args []string) error {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "Usage: culex probe URL   (exit 0 when GET URL answers 2xx within 5 s)")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s: %s", args[0], resp.Status, body)
	}
	return nil
}
