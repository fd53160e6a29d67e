#!/usr/bin/env bash
# C tests of the C ABI (`make test-c`): build libshardkit.a, compile the tests
# against include/shardkit.h with strict warnings, out of tree in
# tests/c/build, and run them three ways: plain, under ASan+UBSan, and under
# valgrind with leak checking. Also compiles and runs a C++ caller. Any
# failure exits non-zero.
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
gcc "${CFLAGS[@]}" "$HERE/test_shardkit.c" "${LIBS[@]}" -o "$BUILD/test_shardkit"
gcc "${CFLAGS[@]}" -fsanitize=address,undefined -fno-sanitize-recover=undefined \
  -fno-omit-frame-pointer "$HERE/test_shardkit.c" "${LIBS[@]}" -o "$BUILD/test_shardkit_asan"
g++ -std=c++11 -Wall -Wextra -Werror -pedantic -g -Iinclude "$HERE/cpp_compat.cpp" "${LIBS[@]}" \
  -o "$BUILD/cpp_compat"

step "C++ caller"
"$BUILD/cpp_compat"

step "plain"
"$BUILD/test_shardkit" "$VECTORS"

step "ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$BUILD/test_shardkit_asan" "$VECTORS"

step "valgrind"
valgrind --quiet --leak-check=full \
  --show-leak-kinds=definite,indirect,possible \
  --errors-for-leak-kinds=definite,indirect,possible \
  --error-exitcode=1 --suppressions="$HERE/valgrind.supp" \
  "$BUILD/test_shardkit" "$VECTORS"

echo
echo "tests/c: plain, ASan+UBSan, valgrind and C++ all passed"
