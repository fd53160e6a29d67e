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
go vet ./...
go test -race -count=1 ./...

# An unknown GOEXPERIMENT makes `go env` fail, which tells us whether this
# toolchain has cgocheck2.
if GOEXPERIMENT=cgocheck2 go env GOEXPERIMENT >/dev/null 2>&1; then
  GOEXPERIMENT=cgocheck2 go test -count=1 ./...
else
  echo "go/run_tests.sh: this Go toolchain has no cgocheck2 experiment; skipped that run"
fi
