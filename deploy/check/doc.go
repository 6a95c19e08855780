// Package check holds the tests of Culex's deployment files: the Helm chart,
// the Compose stack, the Dockerfile and the Strimzi manifests. It is its own
// Go module so that the Helm SDK, the Kubernetes API types, compose-go and
// BuildKit never enter the broker's go.mod.
package check
