#!/usr/bin/env bash
# shardkit inside real nginx (`make test-nginx`): builds libshardkit.so and
# the shardkit CLI, then runs tests/nginx/nginx_test.py, which starts
# Debian's nginx with libnginx-mod-http-lua on free loopback ports in a
# temporary directory, loads lua/resty/shardkit.lua, and checks placement
# through its balancer against native nginx and `shardkit route` (see the
# script's docstring for the list). Set SHARDKIT_NGINX_URIS to change how
# many URIs each check sends (default 2000).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

for f in /usr/sbin/nginx /usr/share/nginx/modules/ngx_http_lua_module.so \
         /usr/share/nginx/modules/ndk_http_module.so /usr/share/lua/5.1/resty/core.lua \
         /usr/share/lua/5.1/ngx/balancer.lua; do
  [[ -e $f ]] || {
    echo "tests/nginx: $f is missing: run make deps (Debian packages nginx," \
         "libnginx-mod-http-lua, libnginx-mod-http-ndk, lua-resty-core)"
    exit 1
  }
done

printf '\n== cargo build -p shardkit-ffi -p shardkit-cli\n'
cargo build -p shardkit-ffi -p shardkit-cli

printf '\n== nginx + lua/resty/shardkit.lua\n'
SHARDKIT_LIB=$TARGET_DIR/debug/libshardkit.so \
SHARDKIT_CLI=$TARGET_DIR/debug/shardkit \
  exec python3 tests/nginx/nginx_test.py
