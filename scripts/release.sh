#!/usr/bin/env bash
# Builds the release binaries: static (CGO_ENABLED=0) culex for linux/amd64
# and linux/arm64 (gateways and edge boxes are often ARM), with the version
# and commit injected, and a SHA256SUMS file beside them.
#
#   ./scripts/release.sh                  # into dist/, version from git
#   VERSION=v0.2.0 ./scripts/release.sh
#   DIST=/tmp/out PLATFORMS="linux/arm64" ./scripts/release.sh
#
# Check a download with: sha256sum --check --ignore-missing SHA256SUMS
set -euo pipefail
cd "$(dirname "$0")/.."

version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
dist=${DIST:-dist}
platforms=${PLATFORMS:-linux/amd64 linux/arm64}

mkdir -p "$dist"
files=()
for p in $platforms; do
	os=${p%/*}
	arch=${p#*/}
	name="culex-$version-$os-$arch"
	echo "building $name"
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X main.version=$version+$commit" -o "$dist/$name" ./cmd/culex
	files+=("$name")
done
(cd "$dist" && sha256sum "${files[@]}" >SHA256SUMS)
echo "$dist/SHA256SUMS:"
cat "$dist/SHA256SUMS"
