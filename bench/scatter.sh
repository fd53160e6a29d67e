#!/usr/bin/env bash
# The scatter/gather merge benchmark (issue 4, item 7), Rust side: shardkit's
# top-k merge, posting-list intersection and union beside itertools and
# hand-written std peers, and the rayon scaling of the parallel variants, all
# in one release process on the same inputs. Writes bench/results/scatter.md
# and bench/results/scatter.json; the build log goes to bench/build/scatter/.
#
# Benchmarks measure and report; they never fail on a time. This script fails
# only when the bench cannot be built or run, or a peer disagrees with
# shardkit (then the report says so instead of printing figures).
#
#   BENCH_QUICK=1 bash bench/scatter.sh       # few samples, a smoke run
#   BENCH_THREADS=1,2,4 bash bench/scatter.sh # rayon thread counts to try
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/bench/build/scatter"
here="$root/bench/scatter"
results="$root/bench/results"
cargo="${CARGO:-cargo}"
threads="${BENCH_THREADS:-1,2}"
export CARGO_TERM_COLOR=never

reps=31 quick=()
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
  reps=3 quick=(--quick)
fi

mkdir -p "$build" "$results"
read -r load1 _ </proc/loadavg
echo "bench scatter: load average $load1 on $(nproc) CPUs at the start; the figures are only as quiet as the machine"

# Writes a report that names the failure, so a stale table is never taken
# for this run's.
fail() {
  {
    echo "# Scatter/gather merge benchmark (Rust)"
    echo
    echo "The run of $(date -u +%Y-%m-%dT%H:%M:%SZ) FAILED: $1. Last lines of its log:"
    echo
    echo '```'
    tail -n 20 "$2"
    echo '```'
  } >"$results/scatter.md"
  rm -f "$results/scatter.json"
  echo "bench scatter: $1 (see ${2#"$root"/})" >&2
  exit 1
}

echo "== bench scatter: build (release, bench/build/target)"
# Its own workspace, sharing bench/rust's target directory.
CARGO_TARGET_DIR="$root/bench/build/target" "$cargo" build --release \
  --manifest-path "$here/rust/Cargo.toml" >"$build/build.log" 2>&1 ||
  fail "the build failed" "$build/build.log"

echo "== bench scatter: run ($reps samples per figure, threads $threads)"
t0=$SECONDS
"$root/bench/build/target/release/shardkit-scatter-bench" --reps "$reps" \
  --threads "$threads" "${quick[@]}" \
  --date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --rustc "$(rustc --version)" \
  --json "$results/scatter.json" --md "$results/scatter.md" 2>&1 | tee "$build/run.log" ||
  fail "the bench run failed" "$build/run.log"
echo "== bench scatter: done in $((SECONDS - t0)) s; see bench/results/scatter.md"
