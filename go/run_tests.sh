#!/usr/bin/env bash
# Builds the C library, then vets and tests the Go package under the race
# detector, and once more with cgocheck2 (full checking of the cgo pointer
# rules) where the toolchain supports that experiment.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

(cd "$root" && cargo build -p shardkit-ffi)

cd "$here"
export CGO_ENABLED=1

# The default build links ../target/debug/libshardkit.a. When cargo built
# into another CARGO_TARGET_DIR, link that library instead, through the
# shardkit_system tag and a directory holding only the static library (so
# the linker cannot pick the shared one).
tags=()
target="$(cd "$root" && realpath -m "${CARGO_TARGET_DIR:-target}")"
if [ "$target" != "$(realpath -m "$root/target")" ]; then
  libdir="$(mktemp -d)"
  trap 'rm -rf "$libdir"' EXIT
  ln -s "$target/debug/libshardkit.a" "$libdir/libshardkit.a"
  export CGO_LDFLAGS="-L$libdir ${CGO_LDFLAGS:-}"
  tags=(-tags shardkit_system)
fi

go vet ${tags[@]+"${tags[@]}"} ./...
go test ${tags[@]+"${tags[@]}"} -race -count=1 ./...

# An unknown GOEXPERIMENT makes `go env` fail, which tells us whether this
# toolchain has cgocheck2.
if GOEXPERIMENT=cgocheck2 go env GOEXPERIMENT >/dev/null 2>&1; then
  GOEXPERIMENT=cgocheck2 go test ${tags[@]+"${tags[@]}"} -count=1 ./...
else
  echo "go/run_tests.sh: this Go toolchain has no cgocheck2 experiment; skipped that run"
fi
