"""Shared fixtures and helpers for the shardkit Python tests: the
hypothesis profile, an etcd member on free loopback ports (the `etcd`
fixture, or an `EtcdServer` a test starts and stops itself), memcached
servers on free loopback ports (`MemcachedServer`, the `memcached` fixture)
for the proxy tests, and HTTP leaves for scatter tests (`Leaves`, the
`leaves` fixture). Tests import the classes
with `from conftest import ...`; pytest puts this folder on sys.path."""

from __future__ import annotations

import functools
import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import HealthCheck, settings

import shardkit

# CI runs on 2 shared cores: bounded example counts, no per-example deadline
# (tests use a debug build of the extension).
settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("SHARDKIT_HYPOTHESIS_EXAMPLES", "50")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")

# Algorithms under which adding a node moves keys only onto it (equal
# weights). ketama:twemproxy is left out on purpose: it scales each server's
# points by a float share of the total, so adding a server can change the
# others' point counts, exactly as nutcracker does (e.g. 24 -> 25 servers).
# maglev and bounded loads only approximate minimal disruption.
ADD_MOVES_ONLY_TO_NEW = ("ketama:nginx", "ketama:uhashring", "jump", "jumpback", "rendezvous", "memento")


@functools.lru_cache(maxsize=None)
def supports_weights(algorithm: str) -> bool:
    """Whether `algorithm` accepts a weight other than 1 (jump-like ones don't)."""
    try:
        shardkit.Sharder({"a": 2, "b": 1}, algorithm)
    except shardkit.InvalidArgumentError:
        return False
    return True


# --- etcd ------------------------------------------------------------------------

ETCD = os.environ.get("SHARDKIT_ETCD", "/usr/bin/etcd")


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdServer:
    """One etcd member on free loopback ports with its data in `tmp`.
    `stop()` then `start()` brings the same member back (same ports, same
    data), for tests of a store outage."""

    def __init__(self, tmp: Path) -> None:
        if shutil.which(ETCD) is None:
            pytest.skip(f"etcd not installed at {ETCD} (make installs it)")
        self.tmp = tmp
        client, peer = free_ports(2)
        self.endpoint = f"127.0.0.1:{client}"
        self.client_url, self.peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    def start(self) -> None:
        """Starts the member and waits (bounded) until it grants leases."""
        self.log = open(self.tmp / "etcd.log", "ab")
        # fmt: off
        self.proc = subprocess.Popen(
            [
                ETCD,
                "--name", "py",
                "--data-dir", str(self.tmp / "data"),
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", f"py={self.peer_url}",
                "--heartbeat-interval", "50",
                "--election-timeout", "500",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        # fmt: on
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                log = (self.tmp / "etcd.log").read_text()[-2000:]
                raise RuntimeError(f"etcd exited with {self.proc.returncode}: {log}")
            try:
                # A lease grant succeeds only once the member has a leader.
                shardkit.Coordinator.connect(self.endpoint, timeout=1).session(ttl=10).close()
                return
            except shardkit.ShardkitError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stops the member (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One etcd member for the module; yields its client endpoint."""
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    server.start()
    try:
        yield server.endpoint
    finally:
        server.stop()


# --- memcached ---------------------------------------------------------------------

MEMCACHED = os.environ.get("SHARDKIT_MEMCACHED", "/usr/bin/memcached")


class MemcachedServer:
    """One memcached on a free loopback port (TCP only, 64 MiB), as the
    Makefile's packages install it. A missing binary fails the test: the
    proxy has no stand-in."""

    def __init__(self) -> None:
        if shutil.which(MEMCACHED) is None:
            pytest.fail(f"memcached not installed at {MEMCACHED} ('make deps' installs it)")
        (self.port,) = free_ports(1)
        self.address = f"127.0.0.1:{self.port}"
        args = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64", "-t", "2"]
        if os.geteuid() == 0:
            args += ["-u", "root"]  # memcached refuses to run as root otherwise
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"memcached exited with {self.proc.returncode}: {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"version\r\n")
                    if s.recv(64).startswith(b"VERSION "):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"memcached on {self.address} did not answer within 10 s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None


@pytest.fixture(scope="module")
def memcached() -> Iterator[list[MemcachedServer]]:
    """Three memcached servers for the module."""
    servers: list[MemcachedServer] = []
    try:
        for _ in range(3):
            servers.append(MemcachedServer())
        yield servers
    finally:
        for s in servers:
            s.stop()


# --- HTTP leaves -----------------------------------------------------------------

SLOW = 2.0  # seconds the /slow leaf sleeps: far past every deadline used


class Leaves:
    """One HTTP server with a route per leaf behaviour."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.dropped = threading.Event()
        leaves = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: with Nagle on, the
            # body waits for the client's delayed ACK (40 ms a call).
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                path = self.path
                with leaves.lock:
                    n = leaves.calls.get(path, 0)
                    leaves.calls[path] = n + 1
                if path.startswith("/echo/"):
                    leaf = path.rsplit("/", 1)[1]
                    self.reply(200, json.dumps({"leaf": leaf, "got": json.loads(body)}))
                elif path == "/malformed":
                    self.reply(200, '{"hits": [1, 2')
                elif path == "/status500":
                    self.reply(500, "index corrupt")
                elif path == "/status404":
                    self.reply(404, "no such index")
                elif path == "/slow":
                    leaves.stop.wait(SLOW)
                    self.reply(200, '"late"')
                elif path == "/hang":
                    # Never answers; notes when the client closes the connection.
                    deadline = time.monotonic() + SLOW
                    while time.monotonic() < deadline and not leaves.stop.is_set():
                        readable, _, _ = select.select([self.connection], [], [], 0.01)
                        if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                            leaves.dropped.set()
                            self.close_connection = True
                            return
                    self.reply(200, '"late"')
                elif path.startswith("/sometimes/"):
                    # Every 25th call (4%) is slow: the tail hedging cuts.
                    delay = 0.2 if n % 25 == 12 else 0.0
                    if delay:
                        leaves.stop.wait(delay)
                    self.reply(200, json.dumps(path))
                else:
                    self.reply(404, "no route")

            def reply(self, status: int, text: str) -> None:
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client dropped the call: that is the point

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def leaves() -> Iterator[Leaves]:
    srv = Leaves()
    yield srv
    srv.close()
