#!/usr/bin/env bash
# The HTTP sharding benchmark: wrk through `shardkit http-proxy`, through
# nginx's own `hash $request_uri consistent` (1 and 2 workers), through
# HAProxy (`balance uri`, `hash-type consistent`; 1 and 2 threads), and
# through nginx with shardkit's Lua balancer (lua/resty/shardkit.lua, when
# the nginx Lua module is installed), all in front of the same 4 backends
# (one nginx answering `return 200`), every one on 127.0.0.1 with free
# ports, in a temporary directory, stopped at the end. Each request has a
# URI of its own (bench/http/uris.lua), so placement is exercised, not one
# cached answer. Targets take turns in short rounds, forward in odd rounds
# and backward in even ones (A B B A), and are compared round by round: this
# machine is shared and its speed drifts by up to 2x within a minute, so
# each comparison is between loads seconds apart, and a drift in one
# direction falls on both sides alike. Writes bench/results/http.md and
# bench/results/http.json; raw figures go to bench/build/http/.
#
# Benchmarks measure and report; they never fail on a time.
#
#   BENCH_QUICK=1 bash bench/http.sh   # 3 s loads, one round
#   BENCH_ONLY="shardkit-2 nginx-hash-2" bash bench/http.sh
#                                      # those targets alone, raw figures
#                                      # only (no report written)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/bench/build/http"
here="$root/bench/http"
target="$root/bench/build/target"
cargo="${CARGO:-cargo}"
py="${PYTHON:-python3}"
secs=${BENCH_SECS:-4} rounds=${BENCH_ROUNDS:-8} conns=64
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then secs=3 rounds=1; fi
mkdir -p "$build" "$root/bench/results"
rm -f "$build"/*.txt "$build"/*.error
cat /proc/loadavg >"$build/loadavg-start.txt"

CARGO_TARGET_DIR="$target" "$cargo" build --release -p shardkit-cli -p shardkit-ffi \
  --manifest-path "$root/Cargo.toml"
shardkit="$target/release/shardkit"

tmp="$(mktemp -d -t shardkit-http-bench.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
# Sets p to a free port, never one handed out before in this run (a port
# is free again once its probe socket closes, and the kernel may offer it
# twice). Not in a subshell, so that the run remembers it.
used_ports=" "
next_port() {
  while :; do
    p="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    [[ "$used_ports" == *" $p "* ]] || break
  done
  used_ports+="$p "
}
wait_port() {
  for _ in $(seq 200); do
    (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  tail -n 5 "$tmp"/*/out.log "$tmp"/*/logs/error.log "$tmp"/*.log >&2 2>/dev/null || true
  return 1
}
# nginx in the foreground with its own prefix; $1: name, $2: workers, $3: http block body.
nginx_run() {
  local dir="$tmp/$1"
  mkdir -p "$dir/logs" "$dir/tmp"
  local user=""
  [[ "$(id -u)" == 0 ]] && user="user root;"
  cat >"$dir/nginx.conf" <<CONF
$user
${4:-}
worker_processes $2;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp;
  fastcgi_temp_path $dir/tmp; uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  keepalive_requests 1000000;
$3
}
CONF
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" -g "daemon off;" >"$dir/out.log" 2>&1 &
  pids+=($!)
}

backends=()
be_conf=""
for _ in 1 2 3 4; do
  next_port
  backends+=("127.0.0.1:$p")
  be_conf+="  server { listen 127.0.0.1:$p; location / { return 200 \"$p\"; } }"$'\n'
done
list="$(IFS=,; echo "${backends[*]}")"
nginx_run backends 1 "$be_conf"
for b in "${backends[@]}"; do wait_port "${b#*:}"; done

upstream="  upstream shards {\n    hash \$request_uri consistent;\n"
for b in "${backends[@]}"; do upstream+="    server $b;\n"; done
upstream+="    keepalive 64;\n  }\n"
proxy_loc='location / { proxy_pass http://shards; proxy_http_version 1.1; proxy_set_header Connection ""; }'

declare -A target_port target_pid
# CPU time (clock ticks, user + system) of a process and its children (an
# nginx master's workers): what a target spends, whatever wrk gets of the
# CPUs, which a shared machine varies from run to run.
cpu_ticks() {
  local t=0 p f
  for p in "$1" $(pgrep -P "$1" || true); do
    read -r -a f <"/proc/$p/stat" 2>/dev/null || continue
    t=$((t + f[13] + f[14]))
  done
  echo "$t"
}
for w in 1 2; do
  next_port
  nginx_run "nginx$w" "$w" "$(printf "$upstream")  server { listen 127.0.0.1:$p reuseport; $proxy_loc }"
  target_port["nginx-hash-$w"]=$p
  target_pid["nginx-hash-$w"]=${pids[-1]}
done

for t in 1 2; do
  next_port
  cat >"$tmp/haproxy$t.cfg" <<CONF
global
  nbthread $t
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend f
  bind 127.0.0.1:$p
  default_backend shards
backend shards
  balance uri
  hash-type consistent
$(for i in "${!backends[@]}"; do echo "  server s$i ${backends[$i]}"; done)
CONF
  haproxy -f "$tmp/haproxy$t.cfg" -db >"$tmp/haproxy$t.log" 2>&1 &
  pids+=($!)
  target_port["haproxy-$t"]=$p
  target_pid["haproxy-$t"]=$!
done

for t in 1 2; do
  next_port
  "$shardkit" http-proxy --listen "127.0.0.1:$p" --upstream "$list" --threads "$t" \
    >"$tmp/shardkit$t.log" 2>&1 &
  pids+=($!)
  target_port["shardkit-$t"]=$p
  target_pid["shardkit-$t"]=$!
done

# nginx with the shardkit Lua balancer, when the Lua module is there.
lua_mod=/usr/share/nginx/modules/ngx_http_lua_module.so
if [[ -f "$lua_mod" && -f "$root/lua/resty/shardkit.lua" ]]; then
  so="$target/release/libshardkit.so"
  for w in 1 2; do
    next_port
    lua_http="  lua_package_path \"$root/lua/?.lua;/usr/share/lua/5.1/?.lua;;\";
  init_worker_by_lua_block {
    local shardkit = require \"resty.shardkit\"
    ring = assert(shardkit.new(\"$list\", { lib = \"$so\" }))
  }
  upstream lua_shards {
    server 0.0.0.1;
    balancer_by_lua_block { require(\"resty.shardkit\").balance(ring, nil, 2) }
    keepalive 64;
  }
  server { listen 127.0.0.1:$p reuseport; location / { proxy_pass http://lua_shards; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
    nginx_run "lua$w" "$w" "$lua_http" "load_module /usr/share/nginx/modules/ndk_http_module.so; load_module $lua_mod;"
    target_port["nginx-lua-$w"]=$p
    target_pid["nginx-lua-$w"]=${pids[-1]}
    # The floor of any Lua balancer: balancer_by_lua taking the backends in
    # turn (the same 4 as everyone, so the same connections), no placement
    # at all. What shardkit's balancer adds is the difference.
    next_port
    ports_lua="$(IFS=,; echo "${backends[*]//127.0.0.1:/}")"
    floor_http="  init_worker_by_lua_block { floor_ports = { $ports_lua }; floor_next = 0 }
  upstream lua_floor {
    server 0.0.0.1;
    balancer_by_lua_block {
      floor_next = floor_next % #floor_ports + 1
      require(\"ngx.balancer\").set_current_peer(\"127.0.0.1\", floor_ports[floor_next])
    }
    keepalive 64;
  }
  server { listen 127.0.0.1:$p reuseport; location / { proxy_pass http://lua_floor; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
    nginx_run "luafloor$w" "$w" "$floor_http" "load_module /usr/share/nginx/modules/ndk_http_module.so; load_module $lua_mod;"
    target_port["nginx-luafloor-$w"]=$p
    target_pid["nginx-luafloor-$w"]=${pids[-1]}
  done
fi

for name in "${!target_port[@]}"; do wait_port "${target_port[$name]}"; done
# Every target answers, from a backend, before any load.
for name in "${!target_port[@]}"; do
  out="$("$py" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:${target_port[$name]}/check/$name" 2>&1)" || true
  if ! [[ "$out" =~ ^[0-9]+$ ]]; then
    echo "$name does not proxy: $out" | tee "$build/$name.error"
    unset "target_port[$name]"
  fi
done

# Compared pairs side by side: shardkit and nginx hash, nginx hash and the
# Lua balancer.
order=(haproxy-1 shardkit-1 nginx-hash-1 nginx-lua-1 nginx-luafloor-1
       haproxy-2 shardkit-2 nginx-hash-2 nginx-lua-2 nginx-luafloor-2)
if [[ -n "${BENCH_ONLY:-}" ]]; then read -ra order <<<"$BENCH_ONLY"; fi
backward=()
for ((i = ${#order[@]} - 1; i >= 0; i--)); do backward+=("${order[i]}"); done
for r in $(seq "$rounds"); do
  turn=("${order[@]}")
  if ((r % 2 == 0)); then turn=("${backward[@]}"); fi
  for name in "${turn[@]}"; do
    [[ -n "${target_port[$name]:-}" ]] || continue
    echo "bench http: round $r: $name"
    cpu0="$(cpu_ticks "${target_pid[$name]:-0}")"
    # Two wrk threads: the load generator shares the 2 CPUs too.
    wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$here/uris.lua" \
      "http://127.0.0.1:${target_port[$name]}" >"$build/$name.round$r.txt" 2>&1 || true
    echo "cpu_ticks $(( $(cpu_ticks "${target_pid[$name]:-0}") - cpu0 )) hz $(getconf CLK_TCK)" >>"$build/$name.round$r.txt"
  done
done
cat /proc/loadavg >"$build/loadavg-end.txt"
if [[ -n "${BENCH_ONLY:-}" ]]; then
  grep -H "Requests/sec\| 99%\|requests in\|cpu_ticks" "$build"/*.round*.txt
  exit 0
fi
"$py" "$here/report.py" "$build" "$root/bench/results" "$secs" "$conns"
