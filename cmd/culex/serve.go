package main

import "errors"

func serve(args []string) error { return errors.New("serve: not wired yet") }
