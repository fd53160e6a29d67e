#!/usr/bin/env bash
# The proxy benchmark: `shardkit proxy` beside nutcracker (twemproxy) and
# beside the cache servers with no proxy at all, every figure from one run
# against real servers started here (memcached, redis-server, nutcracker and
# the release `shardkit` binary, all on 127.0.0.1 with free ports, in a
# temporary directory, stopped at the end). Writes bench/results/proxy.md and
# bench/results/proxy.json; raw figures go to bench/build/proxy/.
#
#   1. memcaslap 9:1 get/set: one memcached directly, nutcracker over 4
#      memcached, shardkit (--threads 2) over the same 4;
#   2. redis-benchmark GET and SET, -P 1 and -P 16: one redis-server
#      directly, nutcracker and shardkit over the same 2 redis-servers;
#   3. closed-loop memcache `get` latency, p50 / p99, through each
#      (proxy/latency.py);
#   4. proxy memory per idle client connection (VmRSS, 2,000 connections;
#      proxy/idle.py);
#   5. hot keys: a Zipf(1.1) read load through each proxy to 8 memcached, and
#      the busiest backend's share (proxy/hotkeys.py), with well-mixed key
#      names (the figure) and with sequential ones (`seq:N`, which nutcracker's
#      fnv1a_64 clusters).
# The loads take turns in rounds (direct, nutcracker, shardkit, again), so a
# change in the machine's load falls on all of them.
#
# Benchmarks measure and report; they never fail on a time. This script fails
# only when a part cannot be built or run (a server that does not start, a
# wrong reply, a load that hangs), and even then it writes the report from the
# parts that did run, naming the ones that did not and why.
#
#   BENCH_QUICK=1 bash bench/proxy.sh   # small counts, a smoke run (about 30 s after the build)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/bench/build/proxy"
here="$root/bench/proxy"
venv="${VENV:-$root/.venv}"
py="$venv/bin/python"
[[ -x "$py" ]] || py="$(command -v python3)"
cargo="${CARGO:-cargo}"
# The bench's own target directory, so a build here never waits on (or
# invalidates) the developers' target/.
target="$root/bench/build/target"
shardkit_bin="$target/release/shardkit"
memcached_bin="${MEMCACHED:-/usr/bin/memcached}"
nutcracker_bin="${NUTCRACKER:-/usr/sbin/nutcracker}"
redis_bin="${REDIS_SERVER:-/usr/bin/redis-server}"
memcaslap_bin="${MEMCASLAP:-/usr/bin/memcaslap}"
redis_bench_bin="${REDIS_BENCHMARK:-/usr/bin/redis-benchmark}"
export CARGO_TERM_COLOR=never

quick=0
mc_ops=200000 mc_conc=32 mc_threads=2 rounds=3
rb_n=100000 rb_conc=50 rb_keys=100000
lat_n=20000 lat_rounds=10 idle_conns=2000
zipf_keys=100000 zipf_gets=200000 zipf_s=1.1 zipf_seed=42
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
  quick=1 mc_ops=20000 rounds=1 rb_n=10000 lat_n=2000 lat_rounds=2 idle_conns=500 zipf_keys=20000 zipf_gets=40000
fi
proxy_threads=2
hot_ttl_ms=200
# Wall-clock cap on any one load (a proxy that hangs fails its part instead
# of the bench hanging); the loads themselves are fixed counts.
cap=300

mkdir -p "$build" "$root/bench/results"
rm -f "$build"/*.json "$build"/*.error "$build"/*.log "$build"/*.txt "$build"/*.csv "$build"/*.err "$build"/*.wall
cat /proc/loadavg >"$build/loadavg-start.txt"
nproc >"$build/nproc.txt"
read -r load1 _ </proc/loadavg
echo "bench proxy: load average $load1 on $(nproc) CPUs at the start; the figures are only as quiet as the machine"
date -u +%Y-%m-%dT%H:%M:%SZ >"$build/started.txt"

failed=() passed=()
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
  echo "== bench proxy: $name"
  local t0=$SECONDS
  if "$@" 2> >(tee -a "$build/$name.log" >&2); then
    echo "== bench proxy: $name done in $((SECONDS - t0)) s"
    passed+=("$name")
  else
    echo "== bench proxy: $name FAILED (see bench/build/proxy/$name.log)" >&2
    sleep 0.2 # the tee above flushes
    tail -n 20 "$build/$name.log" >"$build/$name.error" || true
    failed+=("$name")
  fi
}

# Runs part NAME (function FN with the remaining arguments) unless NAME
# failed already (in an earlier round) or a part it needs (DEPS, comma
# separated) has not passed. SPEC: NAME:DEPS:FN.
turn() {
  local name deps fn d
  IFS=: read -r name deps fn <<<"$1"
  shift
  ok "$name" || return 0
  for d in ${deps//,/ }; do
    if [[ " ${passed[*]} " != *" $d "* ]]; then
      if [[ ! -f "$build/$name.error" ]]; then
        local why="did not run"
        if [[ -f "$build/$d.error" ]]; then
          why="$(grep -v '^[[:space:]]*$' "$build/$d.error" | tail -n 1)"
          if [[ "$why" == "not run: "* ]]; then why="did not run: ${why#not run: }"; else why="failed: $why"; fi
        fi
        echo "not run: it needs part '$d', which $why" >"$build/$name.error"
        failed+=("$name")
      fi
      return 0
    fi
  done
  part "$name" "$fn" "$@"
}

# ---- servers -----------------------------------------------------------------

tmp="" pids=() started=()
stop_all() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  if [[ -n "$tmp" ]]; then rm -rf "$tmp"; fi
}
trap stop_all EXIT
tmp="$(mktemp -d -t shardkit-proxy-bench.XXXXXX)"

# Free loopback ports: memcached m0 (direct) and m1..m8, redis r0 (direct),
# r1 and r2, and the proxies' listeners.
read -r -a ports <<<"$("$py" "$here/harness.py" ports 22)"
port_m=("${ports[@]:0:9}")     # m0 .. m8
port_r=("${ports[@]:9:3}")     # r0 .. r2
nc_mc4=${ports[12]} nc_hot=${ports[13]} nc_redis=${ports[14]} nc_stats=${ports[15]} nc_rstats=${ports[16]}
sk_mc4=${ports[17]} sk_hot=${ports[18]} sk_plain=${ports[19]} sk_redis=${ports[20]}
direct_mc="127.0.0.1:${port_m[0]}" direct_redis="127.0.0.1:${port_r[0]}"
mc4_backends=() hot_backends=()
for i in 1 2 3 4; do mc4_backends+=("127.0.0.1:${port_m[$i]}"); done
for i in 1 2 3 4 5 6 7 8; do hot_backends+=("127.0.0.1:${port_m[$i]}"); done
declare -A pid_of=()

# Starts NAME in the background (log in the temp dir) and waits for ADDRS to
# accept connections.
launch() { # NAME "ADDR ..." CMD...
  local name="$1" addrs="$2"
  shift 2
  "$@" >"$tmp/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  pid_of[$name]=$pid
  # shellcheck disable=SC2086 # one address per word
  if ! "$py" "$here/harness.py" wait $addrs --timeout 20; then
    echo "$name did not start listening on $addrs; its log:" >&2
    tail -n 20 "$tmp/$name.log" >&2
    return 1
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "$name exited at start; its log:" >&2
    tail -n 20 "$tmp/$name.log" >&2
    return 1
  fi
  echo "$name: pid $pid on $addrs"
  started+=("$name")
}

start_backends() {
  local i
  for i in "${!port_m[@]}"; do
    launch "memcached-m$i" "127.0.0.1:${port_m[$i]}" \
      "$memcached_bin" -u "$(id -un)" -l 127.0.0.1 -p "${port_m[$i]}" -U 0 -m 256 || return
  done
  for i in "${!port_r[@]}"; do
    launch "redis-r$i" "127.0.0.1:${port_r[$i]}" \
      "$redis_bin" --bind 127.0.0.1 --port "${port_r[$i]}" --save "" --appendonly no \
      --dir "$tmp" --dbfilename "r$i.rdb" || return
  done

}

# nutcracker's YAML, written once for each proxy: the same pools and keys;
# shardkit's files add only its own hot-key keys on the pools named hot*.
pool() { # NAME PORT BACKEND... (REDIS=true for a redis pool, EXTRA=lines)
  local name="$1" port="$2" b
  shift 2
  printf '%s:\n  listen: 127.0.0.1:%s\n  hash: fnv1a_64\n  distribution: ketama\n' "$name" "$port"
  if [[ "${REDIS:-false}" == true ]]; then printf '  redis: true\n'; fi
  if [[ -n "${EXTRA:-}" ]]; then printf '%s\n' "$EXTRA"; fi
  printf '  servers:\n'
  for b in "$@"; do printf '   - %s:1\n' "$b"; done
}

redis_backends=("127.0.0.1:${port_r[1]}" "127.0.0.1:${port_r[2]}")

start_nutcracker_mc() {
  { pool mc4 "$nc_mc4" "${mc4_backends[@]}"; pool hot8 "$nc_hot" "${hot_backends[@]}"; } >"$tmp/nutcracker-mc.yml"
  cp "$tmp/nutcracker-mc.yml" "$build/nutcracker-mc.yml.txt"
  launch nutcracker-mc "127.0.0.1:$nc_mc4 127.0.0.1:$nc_hot" \
    "$nutcracker_bin" -c "$tmp/nutcracker-mc.yml" -a 127.0.0.1 -s "$nc_stats" -v 4
}

start_nutcracker_redis() {
  REDIS=true pool redis2 "$nc_redis" "${redis_backends[@]}" >"$tmp/nutcracker-redis.yml"
  launch nutcracker-redis "127.0.0.1:$nc_redis" \
    "$nutcracker_bin" -c "$tmp/nutcracker-redis.yml" -a 127.0.0.1 -s "$nc_rstats" -v 4
}

start_shardkit_mc() {
  {
    pool mc4 "$sk_mc4" "${mc4_backends[@]}"
    EXTRA="  hot_keys: true
  hot_key_ttl: $hot_ttl_ms" pool hot8 "$sk_hot" "${hot_backends[@]}"
    pool hot8plain "$sk_plain" "${hot_backends[@]}"
  } >"$tmp/shardkit-mc.yml"
  cp "$tmp/shardkit-mc.yml" "$build/shardkit-mc.yml.txt"
  launch shardkit-mc "127.0.0.1:$sk_mc4 127.0.0.1:$sk_hot 127.0.0.1:$sk_plain" \
    "$shardkit_bin" proxy --config "$tmp/shardkit-mc.yml" --threads "$proxy_threads"
}

start_shardkit_redis() {
  REDIS=true pool redis2 "$sk_redis" "${redis_backends[@]}" >"$tmp/shardkit-redis.yml"
  launch shardkit-redis "127.0.0.1:$sk_redis" \
    "$shardkit_bin" proxy --config "$tmp/shardkit-redis.yml" --threads "$proxy_threads"
}

# Fails (with the end of its log) when a proxy started earlier has died.
declare -A exit_of=()
alive() { # NAME
  local pid="${pid_of[$1]:-}" rc=0
  if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
    if [[ -n "$pid" && -z "${exit_of[$1]:-}" ]]; then
      wait "$pid" 2>/dev/null || rc=$?
      exit_of[$1]="exit status $rc$( ((rc > 128)) && echo " (signal $((rc - 128)))")"
    fi
    echo "$1 (pid ${pid:-none}) is no longer running (${exit_of[$1]:-never started}); the end of its log:" >&2
    tail -n 30 "$tmp/$1.log" >&2 2>/dev/null || true
    return 1
  fi
}

# ---- build -------------------------------------------------------------------

build_release() {
  CARGO_TARGET_DIR="$target" "$cargo" build --release -p shardkit-cli --manifest-path "$root/Cargo.toml"
}

# ---- measurements ------------------------------------------------------------

# CPU seconds (user, system) a process has used so far.
clk_tck=$(getconf CLK_TCK)
proc_cpu() { # PID
  awk -v t="$clk_tck" '{ sub(/^.*\) /, ""); printf "%.2f %.2f\n", $12 / t, $13 / t }' "/proc/$1/stat"
}
# CPU seconds (user, system) of this shell's waited-for children so far
# (`times` runs in this shell: a subshell would have its own).
children_cpu() {
  times >"$tmp/times.txt"
  sed -n 2p "$tmp/times.txt" | awk '{ for (i = 1; i <= 2; i++) { split($i, a, /m|s/); printf "%.2f ", a[1] * 60 + a[2] } print "" }'
}
# The CPU each process of a memcaslap run used: the server memcaslap talks
# to (the proxy, or memcached itself when direct), the 4 memcached behind
# the proxy, and memcaslap: "server_user server_sys backends_user
# backends_sys gen_user gen_sys", seconds.
cpu_snapshot() { # SERVER-NAME
  local i
  proc_cpu "${pid_of[$1]}"
  for i in 1 2 3 4; do proc_cpu "${pid_of[memcached-m$i]}"; done
  children_cpu
}
cpu_used() { # BEFORE-FILE AFTER-FILE DIRECT(0|1)
  paste -d' ' "$1" "$2" | awk -v direct="$3" '
    { du = $3 - $1; ds = $4 - $2 }
    NR == 1 { su = du; ss = ds }
    NR >= 2 && NR <= 5 { bu += du; bs += ds }
    NR == 6 { gu = du; gs = ds }
    END { if (direct) { bu = 0; bs = 0 } printf "%.2f %.2f %.2f %.2f %.2f %.2f\n", su, ss, bu, bs, gu, gs }'
}

# 1. memcaslap: its stdout, the process's wall time (s), and the CPU of
# every process in the run.
memcaslap_run() { # LABEL ADDR PROXY ROUND
  local label="$1" addr="$2" proxy="$3" r="$4" t0 rc=0 server="$3"
  if [[ "$proxy" != - ]]; then alive "$proxy" || return; fi
  [[ "$server" == - ]] && server=memcached-m0
  cpu_snapshot "$server" >"$tmp/cpu-before.txt"
  t0=$EPOCHREALTIME
  timeout "$cap" "$memcaslap_bin" --servers="$addr" --concurrency="$mc_conc" --threads="$mc_threads" \
    --execute_number="$mc_ops" >"$build/memcaslap-$label.r$r.txt" 2>&1 || rc=$?
  echo "$t0 $EPOCHREALTIME" >"$build/memcaslap-$label.r$r.wall"
  cpu_snapshot "$server" >"$tmp/cpu-after.txt"
  cpu_used "$tmp/cpu-before.txt" "$tmp/cpu-after.txt" "$([[ "$proxy" == - ]] && echo 1 || echo 0)" \
    >"$build/memcaslap-$label.r$r.cpu"
  if [[ $rc -ne 0 ]]; then
    echo "memcaslap through $label exited $rc$([[ $rc == 124 ]] && echo " (killed after $cap s: a hang)"); its output:" >&2
    tail -n 20 "$build/memcaslap-$label.r$r.txt" >&2
    return 1
  fi
  if ! grep -q '^Run time: .* Ops: .* TPS: ' "$build/memcaslap-$label.r$r.txt"; then
    echo "memcaslap through $label printed no summary; its output:" >&2
    tail -n 20 "$build/memcaslap-$label.r$r.txt" >&2
    return 1
  fi
  grep -E '^(get_misses|Run time)' "$build/memcaslap-$label.r$r.txt"
}

# 2. redis-benchmark: its CSV.
redis_run() { # LABEL ADDR PROXY ROUND
  local label="$1" addr="$2" proxy="$3" r="$4" p rc
  if [[ "$proxy" != - ]]; then alive "$proxy" || return; fi
  for p in 1 16; do
    rc=0
    timeout "$cap" "$redis_bench_bin" -h "${addr%:*}" -p "${addr##*:}" -t get,set -n "$rb_n" \
      -c "$rb_conc" -r "$rb_keys" -P "$p" --csv >"$build/redis-$label-P$p.r$r.csv" \
      2>"$build/redis-$label-P$p.r$r.err" || rc=$?
    if [[ $rc -ne 0 ]] || [[ "$(grep -cE '^"(GET|SET)",' "$build/redis-$label-P$p.r$r.csv")" != 2 ]]; then
      echo "redis-benchmark -P $p through $label: exit $rc$([[ $rc == 124 ]] && echo " (killed after $cap s: a hang)"); its output:" >&2
      tail -n 10 "$build/redis-$label-P$p.r$r.csv" "$build/redis-$label-P$p.r$r.err" >&2
      return 1
    fi
    grep -E '^"(GET|SET)",' "$build/redis-$label-P$p.r$r.csv" | sed "s/^/$label -P $p: /"
  done
}

# Before timing a Redis proxy: 50 SETs and GETs through it must answer as
# Redis does (redis-benchmark checks no replies).
redis_check() { # ADDR PROXY
  alive "$2" || return
  "$py" - "$1" <<'EOF'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
def cmd(*a, want=b""):
    s.sendall(b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in a))
    got = b""
    while len(got) < len(want) or not got.endswith(b"\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
        if got.startswith(b"-") and got.endswith(b"\r\n"):
            break
    return got
for i in range(50):
    k = b"bench:check:%d" % i
    r = cmd(b"SET", k, b"v%d" % i, want=b"+OK\r\n")
    if r != b"+OK\r\n":
        sys.exit(f"SET {k!r} through {sys.argv[1]} answered {r!r}")
    want = b"$%d\r\nv%d\r\n" % (len(b"v%d" % i), i)
    r = cmd(b"GET", k, want=want)
    if r != want:
        sys.exit(f"GET {k!r} through {sys.argv[1]} answered {r!r}, want {want!r}")
EOF
}

# 3. latency: fill the keys through each target, then the closed loop over
# the targets that are up (the others' rows say why not).
run_latency() {
  local t addr targets=() proxy
  for t in "direct=$direct_mc=-" "nutcracker=127.0.0.1:$nc_mc4=nutcracker-mc" "shardkit=127.0.0.1:$sk_mc4=shardkit-mc"; do
    proxy="${t##*=}" t="${t%=*}" addr="${t#*=}"
    if [[ "$proxy" != - ]] && ! { [[ " ${passed[*]} " == *" $proxy "* ]] && alive "$proxy" 2>/dev/null; }; then
      echo "not run: $proxy is not running" >"$build/latency-${t%%=*}.error"
      failed+=("latency-${t%%=*}")
      continue
    fi
    "$py" "$here/harness.py" fill "$addr" --keys 1000 --prefix lat: || return
    targets+=(--target "$t")
  done
  timeout "$cap" "$py" "$here/latency.py" "${targets[@]}" --requests "$lat_n" --rounds "$lat_rounds" \
    --keys 1000 --prefix lat: --out "$build/latency.json"
}

# 4. idle connections. Both proxies first write the key through themselves.
run_idle() { # PROXY ADDR
  alive "$1" || return
  "$py" "$here/harness.py" fill "$2" --keys 1 --prefix idle: || return
  timeout "$cap" "$py" "$here/idle.py" --addr "$2" --pid "${pid_of[$1]}" --conns "$idle_conns" \
    --key idle:0 --out "$build/idle-$1.json"
}

# 5. hot keys; NAMES mixed (the figure) or sequential (see hotkeys.py).
run_hot() { # LABEL ADDR PROXY NAMES
  alive "$3" || return
  local prefix=zipf: out="$build/hotkeys-$1.json"
  if [[ "$4" == sequential ]]; then prefix=seq: out="$build/hotkeys-seq-$1.json"; fi
  timeout "$cap" "$py" "$here/hotkeys.py" --target "$2" --backends "$(
    IFS=,
    echo "${hot_backends[*]}"
  )" --keys "$zipf_keys" --gets "$zipf_gets" --s "$zipf_s" --seed "$zipf_seed" \
    --names "$4" --prefix "$prefix" --out "$out"
}

versions() {
  {
    echo "memcached=$("$memcached_bin" -V 2>&1 | head -n1)"
    echo "nutcracker=$("$nutcracker_bin" -V 2>&1 | head -n1)"
    echo "redis=$("$redis_bin" --version 2>&1 | head -n1)"
    echo "redis-benchmark=$("$redis_bench_bin" --version 2>&1 | head -n1)"
    echo "memcaslap=$("$memcaslap_bin" --version 2>&1 | head -n1) (libmemcached-tools $(dpkg-query -W -f='${Version}' libmemcached-tools 2>/dev/null || echo unknown))"
    local dirty=""
    if [[ -n "$(git -C "$root" status --porcelain -- core cli 2>/dev/null)" ]]; then
      dirty=" + uncommitted changes under core/ or cli/"
    fi
    echo "shardkit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
    echo "rustc=$(rustc --version 2>/dev/null || echo unknown)"
    echo "python=$("$py" --version 2>&1)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel=$(uname -sr)"
  } >"$build/versions.txt"
}

"$py" -c 'import json, sys; a = sys.argv[1:]; json.dump({"quick": a[0] == "1", "memcaslap_ops": int(a[1]),
  "memcaslap_concurrency": int(a[2]), "memcaslap_threads": int(a[3]), "rounds": int(a[4]),
  "redis_requests": int(a[5]), "redis_clients": int(a[6]), "redis_keyspace": int(a[7]),
  "latency_requests": int(a[8]), "idle_conns": int(a[9]), "zipf_keys": int(a[10]), "zipf_gets": int(a[11]),
  "zipf_s": float(a[12]), "zipf_seed": int(a[13]), "proxy_threads": int(a[14]), "hot_key_ttl_ms": int(a[15])},
  open(a[16], "w"))' "$quick" "$mc_ops" "$mc_conc" "$mc_threads" "$rounds" "$rb_n" "$rb_conc" "$rb_keys" \
  "$lat_n" "$idle_conns" "$zipf_keys" "$zipf_gets" "$zipf_s" "$zipf_seed" "$proxy_threads" "$hot_ttl_ms" \
  "$build/settings.json"
versions

part build build_release
part backends start_backends
if ok backends; then
  part nutcracker-mc start_nutcracker_mc
  part nutcracker-redis start_nutcracker_redis
  if ok build; then
    part shardkit-mc start_shardkit_mc
    part shardkit-redis start_shardkit_redis
  else
    for p in shardkit-mc shardkit-redis; do
      echo "not run: the release build failed (see bench/build/proxy/build.log)" >"$build/$p.error"
      failed+=("$p")
    done
  fi
fi

# Idle memory first, while the proxies are fresh.
turn idle-nutcracker:nutcracker-mc:run_idle nutcracker-mc "127.0.0.1:$nc_mc4"
turn idle-shardkit:shardkit-mc:run_idle shardkit-mc "127.0.0.1:$sk_mc4"

# memcaslap's own start-up (it builds its keys and values before the load
# starts): a run of 64 requests, whose CPU the report takes off each round's.
memcaslap_startup() {
  # Not $(children_cpu): a command substitution is a subshell, with
  # children of its own.
  children_cpu >"$tmp/startup-before.txt"
  timeout "$cap" "$memcaslap_bin" --servers="$direct_mc" --concurrency="$mc_conc" --threads="$mc_threads" \
    --execute_number=64 >"$build/memcaslap-startup.txt" 2>&1 || return
  children_cpu >"$tmp/startup-after.txt"
  paste -d' ' "$tmp/startup-before.txt" "$tmp/startup-after.txt" |
    awk '{ printf "%.2f %.2f\n", $3 - $1, $4 - $2 }' >"$build/memcaslap-startup.cpu"
}
turn memcaslap-startup:backends:memcaslap_startup

for ((r = 1; r <= rounds; r++)); do
  echo "== bench proxy: memcaslap round $r of $rounds"
  turn memcaslap-direct:backends:memcaslap_run direct "$direct_mc" - "$r"
  turn memcaslap-nutcracker:nutcracker-mc:memcaslap_run nutcracker "127.0.0.1:$nc_mc4" nutcracker-mc "$r"
  turn memcaslap-shardkit:shardkit-mc:memcaslap_run shardkit "127.0.0.1:$sk_mc4" shardkit-mc "$r"
done

turn latency:backends:run_latency

turn hotkeys-nutcracker:nutcracker-mc:run_hot nutcracker "127.0.0.1:$nc_hot" nutcracker-mc mixed
turn hotkeys-shardkit:shardkit-mc:run_hot shardkit "127.0.0.1:$sk_hot" shardkit-mc mixed
turn hotkeys-shardkit-plain:shardkit-mc:run_hot shardkit-plain "127.0.0.1:$sk_plain" shardkit-mc mixed
turn hotkeys-seq-nutcracker:nutcracker-mc:run_hot nutcracker "127.0.0.1:$nc_hot" nutcracker-mc sequential
turn hotkeys-seq-shardkit:shardkit-mc:run_hot shardkit "127.0.0.1:$sk_hot" shardkit-mc sequential

turn redis-check-nutcracker:nutcracker-redis:redis_check "127.0.0.1:$nc_redis" nutcracker-redis
turn redis-check-shardkit:shardkit-redis:redis_check "127.0.0.1:$sk_redis" shardkit-redis
for ((r = 1; r <= rounds; r++)); do
  echo "== bench proxy: redis-benchmark round $r of $rounds"
  turn redis-direct:backends:redis_run direct "$direct_redis" - "$r"
  turn redis-nutcracker:nutcracker-redis,redis-check-nutcracker:redis_run nutcracker "127.0.0.1:$nc_redis" nutcracker-redis "$r"
  turn redis-shardkit:shardkit-redis,redis-check-shardkit:redis_run shardkit "127.0.0.1:$sk_redis" shardkit-redis "$r"
done

# A proxy that died during the run is named even if its last part passed.
for p in nutcracker-mc nutcracker-redis shardkit-mc shardkit-redis; do
  if [[ " ${started[*]} " == *" $p "* ]] && ! alive "$p" 2>"$build/$p-exit.error"; then
    failed+=("$p-exit")
  else
    rm -f "$build/$p-exit.error"
  fi
done
for p in shardkit-mc shardkit-redis nutcracker-mc nutcracker-redis; do
  if [[ -f "$tmp/$p.log" ]]; then cp "$tmp/$p.log" "$build/$p-output.txt"; fi
done

stop_all
cat /proc/loadavg >"$build/loadavg-end.txt"
printf '%s\n' "${failed[@]}" >"$build/failed.txt"
"$py" "$here/report.py" --build "$build" --out "$root/bench/results/proxy"

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "bench proxy: these parts failed: ${failed[*]} (the report names them)" >&2
  exit 1
fi
echo "bench proxy: wrote bench/results/proxy.md and bench/results/proxy.json"
