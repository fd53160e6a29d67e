#!/usr/bin/env bash
# Compatibility suite: shardkit against the real peers it claims to match.
#
#   core/tests/compat_nutcracker.rs  real nutcracker (twemproxy) + memcached
#   core/tests/compat_nginx.rs       real nginx, hash $request_uri consistent
#   core/tests/proxy_memcache.rs     shardkit proxy beside real nutcracker, over
#                                    real memcached (placement, byte-identical
#                                    text and meta replies, failover, reload)
#   core/tests/proxy_redis.rs        shardkit proxy over real redis-server
#   core/tests/pipeline_conformance.rs  the pipeline conformance suite on Redis Streams
#
# Each test starts its own servers on loopback with free ports in a temporary
# directory and stops them afterwards. A missing binary is a failure, never a
# skip: `make deps` (as root) installs the Debian packages.
#
# Extra arguments go to the test harness, e.g. `tests/compat/run.sh sweep`.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
for pair in nutcracker:nutcracker memcached:memcached nginx:nginx redis-server:redis-server; do
  bin=${pair%%:*}
  if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ] && [ ! -x "/usr/bin/$bin" ]; then
    missing+=("${pair#*:}")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/compat: FAIL: missing ${missing[*]}; install with: apt-get install ${missing[*]} (or make deps as root)" >&2
  exit 1
fi

start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test -p shardkit --test compat_nutcracker --test compat_nginx \
  --test proxy_memcache --test proxy_redis --test pipeline_conformance -- --include-ignored --nocapture "$@" 2>&1 \
  | tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
  echo "tests/compat: FAIL (see above)" >&2
  exit "$status"
fi
# With no filter given, an empty run means the suite was not built as
# expected: never report that as a pass.
if [ $# -eq 0 ] && grep -q '^running 0 tests' "$log"; then
  echo "tests/compat: FAIL: a compatibility test binary ran no tests" >&2
  exit 1
fi
echo "tests/compat: passed in $(( $(date +%s) - start ))s"
