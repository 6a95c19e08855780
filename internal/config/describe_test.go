package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestEveryKeyDescribed: every key that is a flag has a description in
// culex.example.yaml, and every key the example describes is a key of
// Config: -h and the example file say the same things.
func TestEveryKeyDescribed(t *testing.T) {
	d := Descriptions()
	c := Default()
	for _, f := range fields(&c) {
		if strings.TrimSpace(d[f.path]) == "" {
			t.Errorf("key %s has no description in culex.example.yaml (a comment above it)", f.path)
		}
	}
	known := map[string]bool{}
	for _, k := range keys(reflect.TypeOf(Config{}), "") {
		known[k] = true
	}
	for k := range d {
		if !known[k] {
			t.Errorf("culex.example.yaml describes %q, which is not a config key", k)
		}
	}
}

// TestDescribe: comments above a key, a trailing comment, a commented-out
// key, a comment shared by the keys below it up to a blank line, and
// sections.
func TestDescribe(t *testing.T) {
	got := describe(`# Top key.
top: 1

# A section.
sec:
  # Shared by a and b.
  a: 1
  b: 2

  c: 3  # trailing
  # Left out by default.
  # d: x
  #   - name: example   # not a key
  e: 4
`)
	want := map[string]string{
		"top": "Top key.", "sec": "A section.", "sec.a": "Shared by a and b.", "sec.b": "Shared by a and b.",
		"sec.c": "trailing", "sec.d": "Left out by default.", "sec.e": "- name: example # not a key",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("describe:\n got %q\nwant %q", got, want)
	}
}
