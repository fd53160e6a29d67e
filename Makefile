# shardkit: `make demo` and `make test` work on a fresh Debian machine; they
# install what they need (Debian packages when root, a venv, Go modules).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
TOOLS := $(ROOT)/.tools
CBINDGEN_VERSION := 0.29.4
CBINDGEN := $(TOOLS)/bin/cbindgen
CARGO ?= cargo
GO ?= go
export CARGO_TERM_COLOR := never
export GOFLAGS := -mod=mod

# Every Debian package whose files the build, the demo or the tests use. apt
# runs with --no-install-recommends, so what a package only recommends or
# suggests is named here too:
# - etcd-server: the real etcd the lease tests start; etcd-client: etcdctl,
#   which the fault tests and tests/c/run.sh use (etcd-server only suggests it);
# - protobuf-compiler: protoc, for etcd-client's build; libprotobuf-dev: the
#   well-known .proto files it imports (protobuf-compiler only recommends it);
# - nutcracker, memcached, nginx: the real peers of the compatibility tests;
# - valgrind, gcc, g++, make, pkg-config: the C tests (g++ for the C++ caller);
# - procps: /bin/kill, with which the process-fault tests signal contenders;
# - redis-server: the Redis backends of the ambassador's RESP tests;
#   redis-tools: redis-cli and redis-benchmark (redis-server depends on it,
#   named because the tests and the bench call it directly);
# - libmemcached-tools: memcaslap, the bench's memcache load (`make bench`);
# - libnginx-mod-http-lua, lua-resty-core: nginx's Lua module and its
#   resty.core / ngx.balancer, which tests/nginx loads with lua/resty/shardkit.lua;
#   libnginx-mod-http-ndk (the module nginx loads before it) and
#   lua-resty-lrucache (which resty.core requires) are their dependencies,
#   named because the test loads their files directly;
# - wrk, haproxy: the HTTP bench's load generator and its HAProxy peer
#   (`make bench`, bench/http.sh).
# scripts/check-deps.sh checks each command and file these provide.
DEBIAN_PACKAGES := etcd-server etcd-client protobuf-compiler libprotobuf-dev \
                   nutcracker memcached nginx valgrind gcc g++ make pkg-config procps \
                   redis-server redis-tools libmemcached-tools \
                   libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core lua-resty-lrucache \
                   wrk haproxy

.PHONY: all deps debs check-deps venv cbindgen build header check-header lint test test-rust \
        test-c test-nginx test-python test-go test-compat demo bench soak clean

all: build

## ---- dependencies -------------------------------------------------------

# Installs what is missing, then checks that every promised command and file
# is there, naming the package of any that is not.
deps: debs venv cbindgen
	@bash scripts/check-deps.sh

check-deps:
	@bash scripts/check-deps.sh

# Install Debian packages that are missing (only possible as root).
debs:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (run as root or install them)"; exit 1; fi; \
	fi

venv: $(VENV)/.ok
$(VENV)/.ok: python/requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r python/requirements-dev.txt
	touch $@

cbindgen: $(CBINDGEN)
$(CBINDGEN):
	$(CARGO) install --quiet --locked --root $(TOOLS) cbindgen --version $(CBINDGEN_VERSION)

## ---- build ----------------------------------------------------------------

build:
	$(CARGO) build --workspace

header: $(CBINDGEN)
	$(CBINDGEN) --config ffi/cbindgen.toml --crate shardkit-ffi --output include/shardkit.h ffi

check-header: $(CBINDGEN)
	@tmp=$$(mktemp); $(CBINDGEN) --config ffi/cbindgen.toml --crate shardkit-ffi --output $$tmp ffi; \
	if ! diff -u include/shardkit.h $$tmp; then echo "include/shardkit.h is stale: run 'make header'"; rm -f $$tmp; exit 1; fi; rm -f $$tmp

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## ---- tests ----------------------------------------------------------------

test: deps lint check-header test-rust test-c test-nginx test-python test-go test-compat
	@echo "make test: all suites passed"

test-rust:
	$(CARGO) test --workspace --exclude shardkit-python

test-c:
	bash tests/c/run.sh

# lua/resty/shardkit.lua inside a real nginx (libnginx-mod-http-lua).
test-nginx:
	bash tests/nginx/run.sh

test-python: venv
	bash python/run_tests.sh

test-go:
	bash go/run_tests.sh

test-compat: venv
	bash tests/compat/run.sh

## ---- demo and bench -------------------------------------------------------

demo: deps
	bash tests/demo.sh

bench: deps
	bash bench/run.sh

# The full lost-update checker (make test runs a shorter pass of the same).
SOAK_SECS ?= 90
soak: deps
	SHARDKIT_SOAK_SECS=$(SOAK_SECS) $(CARGO) test -p shardkit --test lease_faults -- --nocapture lost_update

clean:
	$(CARGO) clean
	rm -rf tests/c/build bench/build
