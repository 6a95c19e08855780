package main

import "errors"

func bridge(args []string) error { return errors.New("bridge: not wired yet") }
