#!/usr/bin/env bash
# The scatter/gather benchmark (issue 4, item 7), in three parts appended to
# one report, bench/results/scatter.md (raw figures in scatter*.json):
#  1. Rust: shardkit's top-k merge, posting-list intersection and union
#     beside itertools and hand-written std peers, and the rayon scaling of
#     the parallel variants, in one release process on the same inputs;
#  2. tail at scale: 16 local HTTP leaves (2 replicas each), 1% of calls
#     slowed 50x, gathered with and without hedging (src/bin/http_tail.rs);
#  3. Python: shardkit's merge and intersection called from CPython against
#     heapq.merge, sets and pure-Python code (python/bench_merge.py), with a
#     release build of the extension in the venv.
# Logs go to bench/build/scatter/.
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

echo "== bench scatter: tail at scale over HTTP leaves"
tail_args=()
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then tail_args=(--queries 300); fi
"$root/bench/build/target/release/http_tail" "${tail_args[@]}" --md "$build/http_tail.md" \
  --json "$results/scatter-http.json" 2>&1 | tee "$build/http_tail.log" ||
  fail "the HTTP tail run failed" "$build/http_tail.log"
{ echo; cat "$build/http_tail.md"; } >>"$results/scatter.md"

venv="${VENV:-$root/.venv}"
if [[ -x "$venv/bin/maturin" ]]; then
  echo "== bench scatter: Python (release build of the extension into $venv)"
  (cd "$root/python" && "$venv/bin/maturin" develop --release --quiet) >"$build/maturin.log" 2>&1 ||
    fail "the release build of the Python extension failed" "$build/maturin.log"
  "$venv/bin/python" "$here/python/bench_merge.py" --out "$build/python.md" \
    2>&1 | tee "$build/python.log" || fail "the Python bench failed" "$build/python.log"
  { echo; cat "$build/python.md"; } >>"$results/scatter.md"
else
  echo "bench scatter: no venv at $venv (run make venv); the Python part is skipped" >&2
  printf '\n## Python\n\nNot run: no venv at %s.\n' "$venv" >>"$results/scatter.md"
fi
echo "== bench scatter: done in $((SECONDS - t0)) s; see bench/results/scatter.md"
