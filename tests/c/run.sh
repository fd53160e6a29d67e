#!/usr/bin/env bash
# C tests of the C ABI (`make test-c`): build libshardkit.a, compile the tests
# against include/shardkit.h with strict warnings, out of tree in
# tests/c/build, and run them three ways: plain, under ASan+UBSan, and under
# valgrind with leak checking. Also compiles and runs a C++ caller. Any
# failure exits non-zero.
#
# Every test program includes tests/c/check.h: the one CHECK/CHECK_STATUS/
# CHECK_ERR harness and the helpers they share.
#
# test_lease.c (ownership election) runs against the embedded store in all
# three modes; in the plain run it also runs a short part against a real
# etcd: $SHARDKIT_TEST_ETCD when set, else one started here from
# /usr/bin/etcd on free loopback ports in a temporary directory (stopped on
# exit). Without an etcd binary that part is skipped with a notice.
#
# test_scatter.c (merge ABI and the HTTP scatter client) runs its own HTTP
# leaves on loopback in all three modes.
#
# test_pipeline.c (pipeline stages with C handlers) runs in all three modes
# on the in-process transport.
# test_proxy.c (the embedded cache proxy) runs in all three modes against a
# real memcached started here on a free loopback port.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

HERE=tests/c
BUILD=$HERE/build
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LIB=$TARGET_DIR/debug/libshardkit.a
VECTORS=tests/vectors/placement.tsv

step() { printf '\n== %s\n' "$*"; }

step "cargo build -p shardkit-ffi"
cargo build -p shardkit-ffi

# The version the header macros must carry: Cargo's, resolved through the
# workspace (pkgid ends in "#shardkit-ffi@X.Y.Z" or "#X.Y.Z").
VERSION=$(cargo pkgid -p shardkit-ffi | sed -E 's/.*[#@]//')
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || { echo "cannot read the crate version (got '$VERSION')"; exit 1; }

mkdir -p "$BUILD"
CFLAGS=(-std=c11 -Wall -Wextra -Werror -pedantic -g -O1 -Iinclude
        "-DSHARDKIT_CARGO_VERSION=\"$VERSION\"")
LIBS=("$LIB" -lpthread -ldl -lm)

step "compile (plain, ASan+UBSan, C++)"
for t in test_shardkit test_lease test_scatter test_proxy test_pipeline; do
  gcc "${CFLAGS[@]}" "$HERE/$t.c" "${LIBS[@]}" -o "$BUILD/$t"
  gcc "${CFLAGS[@]}" -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -fno-omit-frame-pointer "$HERE/$t.c" "${LIBS[@]}" -o "$BUILD/${t}_asan"
done
g++ -std=c++11 -Wall -Wextra -Werror -pedantic -g -Iinclude "$HERE/cpp_compat.cpp" "${LIBS[@]}" \
  -o "$BUILD/cpp_compat"

step "C++ caller"
"$BUILD/cpp_compat"

# A single-member etcd for the plain lease run, unless one is given.
ETCD_PID=
ETCD_DIR=
stop_etcd() {
  if [[ -n $ETCD_PID ]]; then
    kill "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
  fi
  if [[ -n $ETCD_DIR ]]; then rm -rf "$ETCD_DIR"; fi
}
MC_PID=
stop_all() {
  stop_etcd
  if [[ -n $MC_PID ]]; then kill "$MC_PID" 2>/dev/null || true; wait "$MC_PID" 2>/dev/null || true; fi
}
trap stop_all EXIT

free_ports() {
  python3 -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))'
}

start_etcd() {
  local client peer i
  read -r client peer < <(free_ports)
  ETCD_DIR=$(mktemp -d /tmp/shardkit-c-etcd.XXXXXX)
  /usr/bin/etcd --name c-test --data-dir "$ETCD_DIR/data" \
    --listen-client-urls "http://127.0.0.1:$client" \
    --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "c-test=http://127.0.0.1:$peer" \
    --initial-cluster-state new >"$ETCD_DIR/etcd.log" 2>&1 &
  ETCD_PID=$!
  for i in $(seq 1 100); do
    if ETCDCTL_API=3 /usr/bin/etcdctl --endpoints="127.0.0.1:$client" \
         --dial-timeout=1s endpoint health >/dev/null 2>&1; then
      SHARDKIT_TEST_ETCD="127.0.0.1:$client"
      return 0
    fi
    if ! kill -0 "$ETCD_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "etcd did not become healthy; its log:"; cat "$ETCD_DIR/etcd.log"
  return 1
}

if [[ -z ${SHARDKIT_TEST_ETCD:-} ]]; then
  if [[ -x /usr/bin/etcd ]]; then
    step "start etcd"
    start_etcd
    echo "etcd at $SHARDKIT_TEST_ETCD"
  else
    echo "note: /usr/bin/etcd not found; the etcd part of test_lease is skipped"
  fi
fi

step "start memcached"
read -r MC_PORT _ < <(free_ports)
MC_USER=()
if [[ $(id -u) == 0 ]]; then MC_USER=(-u root); fi
memcached -l 127.0.0.1 -p "$MC_PORT" -U 0 -t 1 "${MC_USER[@]}" &
MC_PID=$!
export SHARDKIT_TEST_MEMCACHED="127.0.0.1:$MC_PORT"
for i in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$MC_PORT") 2>/dev/null; then break; fi
  sleep 0.05
done
echo "memcached at $SHARDKIT_TEST_MEMCACHED"

step "plain"
"$BUILD/test_shardkit" "$VECTORS"
SHARDKIT_TEST_ETCD=${SHARDKIT_TEST_ETCD:-} "$BUILD/test_lease"
"$BUILD/test_scatter"
"$BUILD/test_proxy"
"$BUILD/test_pipeline"

# Only the plain run talks to etcd; the sanitizer and valgrind runs use the
# embedded store, with time bounds stretched for their slowdown.
step "ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$BUILD/test_shardkit_asan" "$VECTORS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
SHARDKIT_TEST_ETCD= SHARDKIT_TEST_SLOW=3 \
  "$BUILD/test_lease_asan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
SHARDKIT_TEST_SLOW=3 \
  "$BUILD/test_scatter_asan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
SHARDKIT_TEST_SLOW=3 \
  "$BUILD/test_proxy_asan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
SHARDKIT_TEST_SLOW=3 \
  "$BUILD/test_pipeline_asan"

step "valgrind"
VALGRIND=(valgrind --quiet --leak-check=full
  --show-leak-kinds=definite,indirect,possible
  --errors-for-leak-kinds=definite,indirect,possible
  --error-exitcode=1 --suppressions="$HERE/valgrind.supp")
"${VALGRIND[@]}" "$BUILD/test_shardkit" "$VECTORS"
SHARDKIT_TEST_ETCD= SHARDKIT_TEST_SLOW=10 \
  "${VALGRIND[@]}" --suppressions="$HERE/valgrind_lease.supp" "$BUILD/test_lease"
SHARDKIT_TEST_SLOW=10 \
  "${VALGRIND[@]}" --suppressions="$HERE/valgrind_lease.supp" "$BUILD/test_scatter"
SHARDKIT_TEST_SLOW=10 \
  "${VALGRIND[@]}" --suppressions="$HERE/valgrind_lease.supp" "$BUILD/test_proxy"
SHARDKIT_TEST_SLOW=10 \
  "${VALGRIND[@]}" --suppressions="$HERE/valgrind_lease.supp" "$BUILD/test_pipeline"

echo
echo "tests/c: plain, ASan+UBSan, valgrind and C++ all passed"
