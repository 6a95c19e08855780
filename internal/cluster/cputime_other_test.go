//go:build !unix

package cluster

// cpuTime is not measured here: the benchmarks report 0 CPU per message.
func cpuTime() int64 { return 0 }
