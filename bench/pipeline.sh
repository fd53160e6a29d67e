#!/usr/bin/env bash
# The pipeline benchmark: a stage's events per second in process (one call
# per event, and batch handlers) beside a crossbeam channel's floor, and on
# a real redis-server beside a hand-rolled redis-py consumer-group loop, with
# end-to-end p50/p99 latency at 10k events/s. Writes bench/results/pipeline.md
# and .json; raw figures in bench/build/pipeline/.
#
# redis-py, Dramatiq and Celery come from PyPI into a venv of the
# benchmark's own (bench/build/pipeline-venv); nothing else uses them.
#
#   BENCH_QUICK=1 bash bench/pipeline.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/bench/build/pipeline"
target="$root/bench/build/target"
cargo="${CARGO:-cargo}"
py="${PYTHON:-python3}"
quick=() n=400000
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then quick=(--quick) n=50000; fi
mkdir -p "$build" "$root/bench/results"
rm -f "$build"/*.json "$build"/*.error
cat /proc/loadavg >"$build/loadavg-start.txt"

CARGO_TARGET_DIR="$target" "$cargo" build --release --bin pipeline --bin pipeline_system_alloc \
  --manifest-path "$root/bench/rust/Cargo.toml"

tmp="$(mktemp -d -t shardkit-pipeline-bench.XXXXXX)"
port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null || true; wait $redis_pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done

echo "bench pipeline: shardkit stages (in process and on redis-server :$port)"
"$target/release/pipeline" "${quick[@]}" --redis "redis://127.0.0.1:$port/" >"$build/shardkit.json" \
  || echo "the shardkit pipeline bench failed" >"$build/shardkit.error"
echo "bench pipeline: the batched stage again, with the system allocator"
"$target/release/pipeline_system_alloc" --only batched --events "$n" >"$build/system_alloc.json" \
  || echo "the system-allocator run failed" >"$build/system_alloc.error"

echo "bench pipeline: Python handlers (release build of the extension into the repo's venv)"
repo_venv="${VENV:-$root/.venv}"
if (cd "$root/python" && "$repo_venv/bin/maturin" develop --release --quiet) >"$build/maturin.log" 2>&1; then
  "$repo_venv/bin/python" "$root/bench/pipeline/python_stage.py" "$((n / 4))" >"$build/python.json" \
    || echo "the Python stage bench failed" >"$build/python.error"
else
  echo "maturin develop --release failed (see bench/build/pipeline/maturin.log)" >"$build/python.error"
fi

echo "bench pipeline: redis-py consumer-group loop, Dramatiq and Celery"
venv="$root/bench/build/pipeline-venv"
if [[ ! -x "$venv/bin/python" ]]; then "$py" -m venv "$venv"; fi
if "$venv/bin/python" -m pip install --quiet "redis==5.2.1" "dramatiq[redis]==1.17.1" "celery[redis]==5.4.0" \
  "kombu==5.4.2" "packaging==24.2" >"$build/pip.log" 2>&1; then
  "$venv/bin/python" "$root/bench/pipeline/redis_py_loop.py" "$port" "$((n / 4))" >"$build/redis_py.json" \
    || echo "the redis-py loop failed" >"$build/redis_py.error"
  echo "bench pipeline: Dramatiq and Celery (no-op handlers, same redis-server)"
  "$venv/bin/python" "$root/bench/pipeline/dramatiq_bench.py" "$port" "$((n / 40))" >"$build/dramatiq.json" 2>"$build/dramatiq.log" \
    || echo "the Dramatiq bench failed (see bench/build/pipeline/dramatiq.log)" >"$build/dramatiq.error"
  (cd "$root/bench/pipeline" && "$venv/bin/python" celery_bench.py "$port" "$((n / 40))") >"$build/celery.json" 2>"$build/celery.log" \
    || echo "the Celery bench failed (see bench/build/pipeline/celery.log)" >"$build/celery.error"
else
  echo "pip could not install redis-py (see bench/build/pipeline/pip.log)" >"$build/redis_py.error"
fi
redis-server --version >"$build/redis-version.txt"
cat /proc/loadavg >"$build/loadavg-end.txt"
"$py" "$root/bench/pipeline/report.py" --build "$build" --out "$root/bench/results/pipeline" \
  --commit "$(git -C "$root" rev-parse --short HEAD)"
echo "bench pipeline: wrote bench/results/pipeline.md"
