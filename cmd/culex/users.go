package main

import "errors"

func users(args []string) error { return errors.New("users: not wired yet") }
