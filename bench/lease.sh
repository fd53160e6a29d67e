#!/usr/bin/env bash
# The lease benchmark: shardkit's locks beside etcd's Go concurrency.Mutex
# and python-etcd3's Lock, all against one real etcd started here (loopback,
# free ports, a temporary directory), in one run. Writes
# bench/results/lease.md and bench/results/lease.json; raw figures go to
# bench/build/lease/.
#
#   1. uncontended acquire + release: shardkit from Rust, C and Python (on
#      etcd and on the embedded store), Go Mutex, python-etcd3; and, as the
#      floor under those, one plain read and one plain write per client;
#   2. crash failover at TTL 2 s and 10 s (kill -9 the holder process);
#   3. graceful hand-off to a queued waiter;
#   4. keys and leases left after a fault run.
#
# Benchmarks measure and report; they never fail on a time. This script fails
# only when a part cannot be built or run, and even then it writes the report
# from the parts that did run, naming the ones that did not.
#
#   BENCH_QUICK=1 bash bench/lease.sh   # few iterations, for a smoke run
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/bench/build/lease"
here="$root/bench/lease"
venv="${VENV:-$root/.venv}"
py="$venv/bin/python"
cargo="${CARGO:-cargo}"
target="${CARGO_TARGET_DIR:-$root/target}"
etcd_bin="${SHARDKIT_ETCD_BIN:-/usr/bin/etcd}"
export ETCDCTL="${ETCDCTL:-/usr/bin/etcdctl}"
export CARGO_TERM_COLOR=never

quick=0 iters=2000 warmup=200 rounds=4 handoffs=40 hrounds=2 failover_runs="2:3,10:2"
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
  quick=1 iters=200 warmup=20 rounds=2 handoffs=8 hrounds=2 failover_runs="2:1,10:1"
fi

mkdir -p "$build" "$root/bench/results"
rm -f "$build"/*.json "$build"/*.error "$build"/*.log "$build"/*.txt
cat /proc/loadavg >"$build/loadavg-start.txt"
read -r load1 _ </proc/loadavg
echo "bench lease: load average $load1 on $(nproc) CPUs at the start; the figures are only as quiet as the machine"
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
  echo "== bench lease: $name"
  local t0=$SECONDS
  if "$@" 2> >(tee "$build/$name.log" >&2); then
    echo "== bench lease: $name done in $((SECONDS - t0)) s"
  else
    echo "== bench lease: $name FAILED (see bench/build/lease/$name.log)" >&2
    tail -n 20 "$build/$name.log" >"$build/$name.error" || true
    failed+=("$name")
  fi
}

# ---- etcd --------------------------------------------------------------------

etcd_dir="" etcd_pid="" ep=""
stop_etcd() {
  if [[ -n "$etcd_pid" ]]; then
    kill "$etcd_pid" 2>/dev/null || true
    wait "$etcd_pid" 2>/dev/null || true
  fi
  if [[ -n "$etcd_dir" ]]; then rm -rf "$etcd_dir"; fi
}
trap stop_etcd EXIT

start_etcd() {
  etcd_dir="$(mktemp -d -t shardkit-lease-bench.XXXXXX)" || return
  local ports client peer
  # Two free loopback ports (etcd binds them right after; a clash makes
  # this part fail with etcd's log, not hang).
  ports="$("$py" -c 'import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')" || return
  read -r client peer <<<"$ports"
  ep="http://127.0.0.1:$client"
  "$etcd_bin" --name bench --data-dir "$etcd_dir/data" \
    --listen-client-urls "$ep" --advertise-client-urls "$ep" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "bench=http://127.0.0.1:$peer" >"$etcd_dir/etcd.log" 2>&1 &
  etcd_pid=$!
  local i
  for ((i = 0; i < 300; i++)); do
    if "$ETCDCTL" --endpoints "$ep" endpoint health >/dev/null 2>&1; then
      "$etcd_bin" --version | head -n 1 | sed 's/^etcd Version: /etcd /' >"$build/etcd-version.txt"
      stat -f -c %T "$etcd_dir" >"$build/etcd-fs.txt"
      echo "etcd $ep (pid $etcd_pid, data in $etcd_dir)"
      return 0
    fi
    if ! kill -0 "$etcd_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "etcd did not become healthy; its log:" >&2
  tail -n 20 "$etcd_dir/etcd.log" >&2
  return 1
}
export ETCDCTL_API=3

# ---- builds ------------------------------------------------------------------

build_release() {
  (cd "$root" && "$cargo" build --release -p shardkit-cli -p shardkit-ffi)
}

build_rust() {
  # Its own workspace, sharing bench/rust's target directory.
  CARGO_TARGET_DIR="$root/bench/build/target" "$cargo" build --release \
    --manifest-path "$here/rust/Cargo.toml"
}

build_c() {
  gcc -std=c11 -O2 -Wall -Wextra -Werror -pedantic -I"$root/include" \
    "$here/c/lease.c" "$target/release/libshardkit.a" \
    -lpthread -ldl -lm -o "$build/lease-bench-c"
}

build_go() {
  (cd "$here/go" && GOFLAGS=-mod=mod go build -o "$build/lease-bench-go" .)
}

build_python() {
  (cd "$root/python" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
    "$venv/bin/maturin" develop --release --quiet)
}

# python-etcd3 in a throwaway venv, kept between runs. Its generated protobuf
# code predates protobuf 4: when the import fails for that, retry with the
# pure-Python protobuf and say so in the report; when it cannot be installed
# or imported at all, the report says why in its row.
etcd3_env=()
etcd3_failed() { # WHY: records the reason for the report, fails the part
  "$py" -c 'import json, sys; json.dump({"installed": False, "error": sys.argv[1]}, open(sys.argv[2], "w"))' \
    "$1" "$build/etcd3-setup.json"
  echo "$1" >&2
  return 1
}
setup_etcd3() {
  local v="$build/etcd3-venv" err why="" plain=1
  if ! "$v/bin/pip" show --quiet etcd3 >/dev/null 2>&1; then
    rm -rf "$v"
    "$py" -m venv "$v" || return
    if ! err="$("$v/bin/pip" install --quiet --disable-pip-version-check etcd3 2>&1)"; then
      echo "$err" >&2
      etcd3_failed "pip install etcd3: $(grep -m1 -i 'error' <<<"$err" || tail -n1 <<<"$err")"
      return
    fi
  fi
  if ! err="$("$v/bin/python" -c 'import etcd3' 2>&1)"; then
    plain=0
    why="$(grep -m1 -E '^[A-Za-z_.]*(Error|Exception)' <<<"$err" || tail -n1 <<<"$err")"
    echo "import etcd3 failed as installed ($why); retrying with PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python" >&2
    etcd3_env=(env PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python)
    if ! err="$("${etcd3_env[@]}" "$v/bin/python" -c 'import etcd3' 2>&1)"; then
      echo "$err" >&2
      etcd3_failed "import etcd3: $why; with pure-Python protobuf: $(tail -n1 <<<"$err")"
      return
    fi
  fi
  "${etcd3_env[@]}" "$v/bin/python" - "$plain" "$why" "$build/etcd3-setup.json" <<'EOF'
import json, sys
from importlib.metadata import version
plain, why, out = sys.argv[1] == "1", sys.argv[2], sys.argv[3]
json.dump({
    "installed": True, "etcd3": version("etcd3"), "grpcio": version("grpcio"), "protobuf": version("protobuf"),
    "protobuf_python": not plain, "plain_import_error": why or None,
}, open(out, "w"))
EOF
}

# ---- measurements ------------------------------------------------------------

# The machine is shared, so its load drifts: the latency and hand-off runs
# are split into rounds in which the clients take turns, and the report
# pools each client's rounds. Every round is a fresh process with its own
# warm-up.
rust_bench="$root/bench/build/target/release/shardkit-lease-bench"
lat_args=(--iters "$((iters / rounds))" --warmup "$((warmup / rounds))")

lat_rust() { "$rust_bench" latency --endpoints "$ep" "${lat_args[@]}" --out "$build/latency-rust-etcd.r$1.json"; }
lat_rust_emb() { "$rust_bench" latency --embedded "${lat_args[@]}" --out "$build/latency-rust-embedded.r$1.json"; }
lat_c() { "$build/lease-bench-c" --endpoints "$ep" "${lat_args[@]}" >"$build/latency-c-etcd.r$1.json"; }
lat_c_emb() { "$build/lease-bench-c" --embedded "${lat_args[@]}" >"$build/latency-c-embedded.r$1.json"; }
lat_py() {
  "$py" "$here/python/latency.py" shardkit --endpoints "$ep" "${lat_args[@]}" --out "$build/latency-python-etcd.r$1.json"
}
lat_py_emb() {
  "$py" "$here/python/latency.py" shardkit --embedded "${lat_args[@]}" --out "$build/latency-python-embedded.r$1.json"
}
lat_go() { "$build/lease-bench-go" latency --endpoints "$ep" "${lat_args[@]}" --out "$build/latency-go.r$1.json"; }
rtt_rust() { "$rust_bench" rtt --endpoints "$ep" "${lat_args[@]}" --out "$build/rtt-rust.r$1.json"; }
rtt_go() { "$build/lease-bench-go" rtt --endpoints "$ep" "${lat_args[@]}" --out "$build/rtt-go.r$1.json"; }
lat_etcd3() {
  "${etcd3_env[@]}" "$build/etcd3-venv/bin/python" "$here/python/latency.py" etcd3 --endpoints "$ep" \
    "${lat_args[@]}" --out "$build/latency-etcd3.r$1.json"
}

handoff_rust() { # ROUND
  local s
  for s in 200 20; do
    "$rust_bench" handoff --endpoints "$ep" --iters "$((handoffs / hrounds))" --warmup 2 --settle-ms "$s" \
      --out "$build/handoff-rust-settle$s.r$1.json" || return
  done
}
handoff_go() { # ROUND
  local s
  for s in 200 20; do
    "$build/lease-bench-go" handoff --endpoints "$ep" --iters "$((handoffs / hrounds))" --warmup 2 --settle-ms "$s" \
      --out "$build/handoff-go-settle$s.r$1.json" || return
  done
}

go_peer() { if ok build-go; then echo --go "$build/lease-bench-go"; fi; }

run_leftovers() {
  # shellcheck disable=SC2046 # --go PATH or nothing
  (cd "$here" && "$py" leftovers.py --endpoints "$ep" --cli "$target/release/shardkit" $(go_peer) \
    --ttl 2 --out "$build/leftovers.json")
}

run_failover() {
  # shellcheck disable=SC2046 # --go PATH or nothing
  (cd "$here" && "$py" failover.py --endpoints "$ep" --cli "$target/release/shardkit" \
    --stamp "$rust_bench" $(go_peer) --runs "$failover_runs" --out "$build/failover.json")
}

# Runs part NAME (function FN with the round number) when the build it needs
# succeeded and NAME has not failed in an earlier round. SPEC: NAME:BUILD:FN.
turn() {
  local name dep fn
  IFS=: read -r name dep fn <<<"$1"
  if ok "$dep" && ok "$name"; then part "$name" "$fn" "$2"; fi
}

part build-release build_release
part build-rust build_rust
part build-go build_go
ok build-release && part build-c build_c
part build-python build_python
part setup-etcd3 setup_etcd3
part etcd start_etcd

# Leases grow and fall with the other parts; the fault run counts only the
# ones it made, but it goes first so the store is quiet around it.
if ok etcd; then
  go_version="$(grep -m1 'go.etcd.io/etcd/client/v3 ' "$here/go/go.mod" | awk '{print $2}')"
  "$py" -c 'import json, sys; a = sys.argv[1:]; json.dump({"quick": a[0] == "1", "iters": int(a[1]), "warmup": int(a[2]),
    "rounds": int(a[3]), "handoffs": int(a[4]), "handoff_rounds": int(a[5]), "failover_runs": a[6],
    "etcd_version": open(a[7]).read().strip(), "etcd_fs": open(a[8]).read().strip(),
    "go_client": "go.etcd.io/etcd/client/v3 " + a[9]}, open(a[10], "w"))' \
    "$quick" "$iters" "$warmup" "$rounds" "$handoffs" "$hrounds" "$failover_runs" \
    "$build/etcd-version.txt" "$build/etcd-fs.txt" "$go_version" "$build/settings.json"
  ok build-release && part leftovers run_leftovers
  ok build-release && ok build-rust && part failover run_failover
  for ((r = 1; r <= rounds; r++)); do
    echo "== bench lease: latency round $r of $rounds"
    for spec in latency-rust:build-rust:lat_rust latency-c:build-c:lat_c latency-python:build-python:lat_py \
      latency-go:build-go:lat_go latency-etcd3:setup-etcd3:lat_etcd3 rtt-rust:build-rust:rtt_rust rtt-go:build-go:rtt_go; do
      turn "$spec" "$r"
    done
  done
  for ((r = 1; r <= hrounds; r++)); do
    echo "== bench lease: hand-off round $r of $hrounds"
    turn handoff-rust:build-rust:handoff_rust "$r"
    turn handoff-go:build-go:handoff_go "$r"
  done
fi
for ((r = 1; r <= rounds; r++)); do
  for spec in latency-rust-embedded:build-rust:lat_rust_emb latency-c-embedded:build-c:lat_c_emb \
    latency-python-embedded:build-python:lat_py_emb; do
    turn "$spec" "$r"
  done
done

stop_etcd
etcd_pid="" etcd_dir=""
cat /proc/loadavg >"$build/loadavg-end.txt"
"$py" "$here/report.py" --build "$build" --out "$root/bench/results/lease"

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "bench lease: these parts failed: ${failed[*]} (the report names them)" >&2
  exit 1
fi
echo "bench lease: wrote bench/results/lease.md and bench/results/lease.json"
