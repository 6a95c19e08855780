package main

import "testing"

func TestBenchCommand(t *testing.T) {
	if err := bench([]string{"help"}); err != nil {
		t.Errorf("bench help: %v", err)
	}
	if err := bench([]string{"nope"}); err == nil {
		t.Error("bench nope: no error")
	}
	if err := bench([]string{"pub", "--qos", "7"}); err == nil {
		t.Error("bench pub --qos 7: no error")
	}
}
