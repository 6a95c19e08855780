// Package culex holds what the whole module shares at its root: the
// annotated example configuration, culex.example.yaml, whose comments are
// also the descriptions `culex serve -h` prints for every flag (one source
// for both; internal/config parses it).
package culex

import _ "embed"

// ExampleConfig is culex.example.yaml: every key with its default value
// and its description in the comment above it.
//
//go:embed culex.example.yaml
var ExampleConfig []byte
