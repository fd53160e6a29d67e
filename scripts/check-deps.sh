#!/usr/bin/env bash
# The last step of `make deps` (and so the first of `make test`): checks
# every command and file the build, the demo and the tests use, and names
# the Debian package (or the installer) that provides each missing one.
# The package names here are the ones in the Makefile's DEBIAN_PACKAGES.
set -uo pipefail
cd "$(dirname "$0")/.."

missing=0
fail() {
  printf 'make deps: missing %s; %s\n' "$1" "$2" >&2
  missing=$((missing + 1))
}

# A command, searched on PATH and in the sbin directories (nginx and
# nutcracker live there, outside a non-root PATH).
need_cmd() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] ||
    fail "command '$cmd'" "install Debian package $pkg (make deps does, as root)"
}

need_file() {
  local file=$1 pkg=$2 why=$3
  [ -e "$file" ] || fail "$file ($why)" "install Debian package $pkg (make deps does, as root)"
}

# "A.B[.C]" >= "X.Y[.Z]"
version_at_least() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

# ---- Debian packages (DEBIAN_PACKAGES in the Makefile) ----
need_cmd etcd etcd-server
need_cmd etcdctl etcd-client
need_cmd protoc protobuf-compiler
# etcd-client's build compiles etcd's .proto files, which import protobuf's
# well-known types; protobuf-compiler only recommends the package holding them.
need_file /usr/include/google/protobuf/descriptor.proto libprotobuf-dev \
  "protobuf's well-known types, imported by etcd's .proto files"
need_cmd nutcracker nutcracker
need_cmd memcached memcached
need_cmd nginx nginx
# tests/nginx loads nginx's Lua module (and the NDK module it needs first)
# and lua/resty/shardkit.lua's dependencies from Debian's Lua tree.
need_file /usr/share/nginx/modules/ngx_http_lua_module.so libnginx-mod-http-lua \
  "nginx's Lua module, which runs lua/resty/shardkit.lua in tests/nginx"
need_file /usr/share/nginx/modules/ndk_http_module.so libnginx-mod-http-ndk \
  "the NDK module nginx must load before the Lua module"
need_file /usr/share/lua/5.1/resty/core.lua lua-resty-core \
  "resty.core, which nginx's Lua module loads at start"
need_file /usr/share/lua/5.1/ngx/balancer.lua lua-resty-core \
  "ngx.balancer, which shardkit.balance calls"
need_file /usr/share/lua/5.1/resty/lrucache.lua lua-resty-lrucache \
  "resty.lrucache, which resty.core requires"
need_cmd redis-server redis-server
need_cmd redis-cli redis-tools
need_cmd redis-benchmark redis-tools
need_cmd memcaslap libmemcached-tools
need_cmd wrk wrk
need_cmd haproxy haproxy
need_cmd valgrind valgrind
need_cmd gcc gcc
need_cmd cc gcc
need_cmd g++ g++
need_cmd make make
need_cmd pkg-config pkg-config
# The process-fault tests signal their contenders with /bin/kill.
need_cmd kill procps
[ -x /bin/kill ] || [ -x /usr/bin/kill ] || fail "/bin/kill" "install Debian package procps"

# ---- toolchains a machine must already have (see the README) ----
rust_min=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
if command -v rustc >/dev/null 2>&1 && command -v cargo >/dev/null 2>&1; then
  rust_have=$(rustc --version | awk '{print $2}')
  version_at_least "$rust_have" "$rust_min" ||
    fail "Rust >= $rust_min (found rustc $rust_have)" "update it with rustup update"
else
  fail "Rust (cargo, rustc >= $rust_min)" "install it with rustup (https://rustup.rs)"
fi

go_min=$(sed -n 's/^go \([0-9.]*\)$/\1/p' go/go.mod)
if command -v go >/dev/null 2>&1; then
  go_have=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  version_at_least "$go_have" "$go_min" ||
    fail "Go >= $go_min, go/go.mod's version (found go $go_have)" "install Go from https://go.dev/dl"
else
  fail "Go >= $go_min (go/go.mod's version)" "install Go from https://go.dev/dl"
fi

if command -v python3 >/dev/null 2>&1; then
  py_have=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  version_at_least "$py_have" 3.11 ||
    fail "Python >= 3.11 (found python3 $py_have)" "install CPython 3.11 or newer"
  python3 -c 'import venv, ensurepip' 2>/dev/null ||
    fail "Python's venv with ensurepip (python3 -m venv)" "install Debian package python3-venv"
else
  fail "Python >= 3.11 (python3)" "install CPython 3.11 or newer"
fi

if [ "$missing" -gt 0 ]; then
  echo "make deps: $missing missing piece(s), named above" >&2
  exit 1
fi
echo "make deps: every command and file the build, demo and tests use is present"
