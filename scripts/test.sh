#!/usr/bin/env bash
# Runs every Culex test on a fresh Debian machine with Go installed: installs
# the real peers the integration tests talk to, then the race-enabled,
# shuffled test suite, then every benchmark once so none rot.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive: mosquitto (the comparison broker),
# mosquitto_pub/mosquitto_sub (real clients), kcat (a Kafka client we did
# not write), haproxy (a load balancer sending PROXY headers), stdbuf
# (coreutils, to line-buffer mosquitto_sub), prometheus (the server and
# promtool, which scrape and lint /metrics), chromium and firefox-esr
# (headless, for the dashboard's browser tests), nats-server (the peer of
# the cluster bench: `culex bench compare --cluster`). A test whose tool is
# missing skips, but fails where CI=true.
# For the deployment checks: systemd (systemd-analyze verifies the unit),
# podman and runc (build and run the container image where base images can
# be pulled; busybox-static: the stand-in build image where none can).
# For the fault suite (test/fault): iproute2 (ip netns, veth links) and
# iptables (partitions); it runs as root.
pkgs=(mosquitto mosquitto-clients kcat haproxy coreutils prometheus chromium firefox-esr systemd podman runc busybox-static nats-server iproute2 iptables)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	echo "installing ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian packages enable a system mosquitto on 1883 and a system
# prometheus on 9090; tests start their own.
for svc in mosquitto prometheus; do
	if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
		systemctl stop "$svc" || true
	fi
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# The power-loss tests (internal/faultfs) mount FUSE file systems as root,
# without fusermount; /dev/fuse comes with the fuse kernel module. Where it
# is missing they fail.
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true

go vet ./...
# Linux is the target, but the binary builds everywhere Go does.
for os in darwin windows; do GOOS=$os go vet ./...; done
go test -race -shuffle=on -timeout 20m ./...
# The allocation tests build without the race detector only (it allocates
# on its own): files tagged !race.
go test -shuffle=on -timeout 5m -run 'Allocs|Bytes' $(grep -rl --include='*_test.go' '^//go:build !race' . | xargs -n1 dirname | sort -u)
log=$(mktemp)
if ! go test -run '^$' -bench . -benchtime 1x -timeout 10m ./... >"$log" 2>&1; then
	cat "$log"
	exit 1
fi
echo "benchmarks: each ran once (-benchtime 1x)"

# The deployment files (deploy/): their checks are a Go module of their own
# so that the Helm SDK, the Kubernetes API types, compose-go and BuildKit
# never enter the broker's go.mod. They run no goroutines of ours, so no
# -race (it would only rebuild the Helm SDK instrumented).
(cd deploy/check && go vet ./... && go test -shuffle=on -timeout 15m ./...)
