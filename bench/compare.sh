#!/bin/sh
# compare.sh: build culex and run the Culex vs Mosquitto benchmark matrix,
# writing docs/benchmarks.md. Arguments go to `culex bench compare`:
#
#   bench/compare.sh                  # full matrix, 10 s per workload (~30 min)
#   bench/compare.sh --quick          # smoke test (~1 min)
#   bench/compare.sh --tls            # TLS: handshakes/s, idle TLS/WSS memory, reconnect storm (~9 min)
#   bench/compare.sh --culex-cmd mosquitto --quick   # check the harness without Culex
#   bench/compare.sh --only 'fan-out 1:10 ' --brokers culex
#
# Needs /usr/sbin/mosquitto (Debian package mosquitto). Loopback only.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(mktemp -d)/culex
trap 'rm -rf "$(dirname "$bin")"' EXIT
(cd "$root" && go build -o "$bin" ./cmd/culex)
# Every connection is a file descriptor, on both sides; the brokers inherit this.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$root"
"$bin" bench compare "$@"
