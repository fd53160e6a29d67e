#!/usr/bin/env bash
# `make bench`: builds the release pieces, runs the Rust, C, Go and Python
# benchmarks (each writes its raw figures under bench/build/), then merges
# them into bench/results/sharding.md and bench/results/sharding.json.
#
# Benchmarks measure and report; they never fail on a time. This script fails
# only when a part cannot be built or run, and even then it writes the report
# from the parts that did run, naming the ones that did not.
#
#   BENCH_QUICK=1 bash bench/run.sh   # short repetitions, for a smoke run
#   BENCH_SKIP="lease scatter proxy pipeline http" bash bench/run.sh   # only the sharding report
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/bench/build"
venv="${VENV:-$root/.venv}"
py="$venv/bin/python"
cargo="${CARGO:-cargo}"
export CARGO_TERM_COLOR=never
quick=()
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then quick=(--quick); fi

mkdir -p "$build" "$root/bench/results"
rm -f "$build"/*.json "$build"/*.jsonl "$build"/*.txt "$build"/*.error "$build"/*.log \
  "$build/bench-c"
cat /proc/loadavg >"$build/loadavg-start.txt"
read -r load1 _ </proc/loadavg
echo "bench: load average $load1 on $(nproc) CPUs at the start; the figures are only as quiet as the machine"
date -u +%Y-%m-%dT%H:%M:%SZ >"$build/started.txt"

failed=()
# Whether the named part succeeded (or has not failed yet).
ok() {
  local f
  for f in "${failed[@]}"; do [[ "$f" == "$1" ]] && return 1; done
  return 0
}

# Runs one part; on failure records why (the last lines of its log) and goes
# on. Parts run in an `if`, where bash ignores `set -e`: each function passes
# its failures on explicitly.
part() {
  local name="$1"
  shift
  echo "== bench: $name"
  local t0=$SECONDS
  if "$@" 2> >(tee "$build/$name.log" >&2); then
    echo "== bench: $name done in $((SECONDS - t0)) s"
  else
    echo "== bench: $name FAILED (see bench/build/$name.log)" >&2
    tail -n 20 "$build/$name.log" >"$build/$name.error" || true
    failed+=("$name")
  fi
}

# ---- builds ------------------------------------------------------------------

build_rust() {
  # Its own workspace and target directory: see bench/rust/Cargo.toml.
  CARGO_TARGET_DIR="$build/target" "$cargo" build --release \
    --manifest-path "$root/bench/rust/Cargo.toml"
}

build_ffi() {
  (cd "$root" && "$cargo" build --release -p shardkit-ffi)
}

header_dir() {
  # The committed header; if a checkout lacks it, generate one for the bench
  # only, leaving include/ alone.
  if [[ -f "$root/include/shardkit.h" ]]; then
    echo "$root/include"
  else
    mkdir -p "$build/include"
    "$root/.tools/bin/cbindgen" --config "$root/ffi/cbindgen.toml" --crate shardkit-ffi \
      --output "$build/include/shardkit.h" "$root/ffi" >&2
    echo "$build/include"
  fi
}

build_c() {
  local inc
  inc="$(header_dir)" || return
  gcc -std=c11 -O2 -Wall -Wextra -Werror -pedantic -I"$inc" \
    "$root/bench/c/bench.c" "$root/target/release/libshardkit.a" \
    -lpthread -ldl -lm -o "$build/bench-c"
}

build_python() {
  (cd "$root/python" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
    "$venv/bin/maturin" develop --release --quiet)
}

# ---- measurements ------------------------------------------------------------

run_rust() {
  "$build/target/release/shardkit-bench" "${quick[@]}" --out "$build/rust.json"
}

run_c() {
  local algs
  algs="$("$build/target/release/shardkit-bench" --list-algorithms)" || return
  # shellcheck disable=SC2086 # one algorithm per word
  "$build/bench-c" "${quick[@]}" $algs >"$build/c.jsonl"
}

run_go() {
  local algs benchtime=50ms count=3
  algs="$("$build/target/release/shardkit-bench" --list-algorithms | paste -sd, -)" || return
  if [[ ${#quick[@]} -gt 0 ]]; then benchtime=10ms count=1; fi
  # Go's build cache does not see changes to a C library named in #cgo
  # LDFLAGS; a harmless -L naming the library's digest makes it relink when
  # the library changes.
  local stamp
  stamp="$(sha256sum "$root/target/release/libshardkit.a" | cut -c1-16)" || return
  mkdir -p "$build/libstamp-$stamp"
  (cd "$root/bench/go" &&
    CGO_ENABLED=1 CGO_LDFLAGS="-L$build/libstamp-$stamp" GOFLAGS=-mod=mod \
      SHARDKIT_BENCH_ALGORITHMS="$algs" SHARDKIT_BENCH_CHECKS="$build/go-checks.json" \
      go test -tags shardkit_release -run '^TestChecksums$' -bench . \
      -benchtime="$benchtime" -count="$count" -timeout 20m . >"$build/go-bench.txt")
}

run_python() {
  "$py" "$root/bench/python/bench.py" "${quick[@]}" --out "$build/python.json"
}

part build-rust build_rust
ok build-rust && part rust run_rust

part build-ffi build_ffi
if ok build-ffi && ok build-rust; then
  part build-c build_c
  ok build-c && part c run_c
  part go run_go
fi

part build-python build_python
ok build-python && part python run_python
skipped() { [[ " ${BENCH_SKIP:-} " == *" $1 "* ]]; }
skipped lease || part lease bash "$root/bench/lease.sh" # its own report: bench/results/lease.md
skipped scatter || part scatter bash "$root/bench/scatter.sh" # its own report: bench/results/scatter.md
skipped proxy || part proxy bash "$root/bench/proxy.sh" # its own report: bench/results/proxy.md
skipped pipeline || part pipeline bash "$root/bench/pipeline.sh" # its own report: bench/results/pipeline.md
skipped http || part http bash "$root/bench/http.sh" # its own report: bench/results/http.md

cat /proc/loadavg >"$build/loadavg-end.txt"
"$py" "$root/bench/report.py" --build "$build" --out "$root/bench/results/sharding"

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "bench: these parts failed: ${failed[*]} (the report names them)" >&2
  exit 1
fi
echo "bench: wrote bench/results/sharding.md and bench/results/sharding.json"
