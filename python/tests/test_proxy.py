"""shardkit.Proxy: the cache proxy embedded in a Python process, in front of
real memcached servers (three shards, plus a fourth that stands alone as the
reference). A real meta-protocol client, meta-memcache, must see through the
proxy exactly what it sees from one memcached: values, misses, leases,
stale-while-revalidate, touch, counters, multi-gets."""

from __future__ import annotations

import gc
import json
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from meta_memcache import (
    CacheClient,
    Key,
    LeasePolicy,
    RecachePolicy,
    RequestFlags,
    ServerAddress,
    SetMode,
    StalePolicy,
    Success,
    connection_pool_factory_builder,
)

import shardkit

from conftest import MemcachedServer


def pool_yaml(servers: list[MemcachedServer], *, listen: str = "127.0.0.1:0", name: str = "cache", extra: str = "") -> str:
    lines = [
        f"{name}:",
        f"  listen: {listen}",
        # md5 spreads these short, similar keys evenly; nutcracker's
        # fnv1a_64 ketama puts most of them on one server (shardkit places
        # them as nutcracker does).
        "  hash: md5",
        "  distribution: ketama",
        "  timeout: 2000",
    ]
    lines += [f"  {line}" for line in extra.splitlines() if line]
    lines.append("  servers:")
    lines += [f"   - {s.address}:1" for s in servers]
    return "\n".join(lines) + "\n"


def host_port(addr: str) -> tuple[str, int]:
    host, port = addr.rsplit(":", 1)
    return host, int(port)


class Text:
    """A raw memcache text-protocol connection."""

    def __init__(self, addr: str) -> None:
        self.sock = socket.create_connection(host_port(addr), timeout=5)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; had {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; had {self.buf!r}")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def call(self, request: bytes) -> bytes:
        """Sends `request`, returns the one-line reply."""
        self.sock.sendall(request)
        return self.line()

    def set(self, key: bytes, value: bytes, flags: int = 0) -> bytes:
        return self.call(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(value), value))

    def get(self, *keys: bytes) -> dict[bytes, bytes]:
        """`get k1 k2 ...`: the values found."""
        self.sock.sendall(b"get " + b" ".join(keys) + b"\r\n")
        found: dict[bytes, bytes] = {}
        while True:
            line = self.line()
            if line == b"END":
                return found
            parts = line.split()
            assert parts[0] == b"VALUE", line
            found[parts[1]] = self.exact(int(parts[3]) + 2)[:-2]


@pytest.fixture(scope="module")
def reference() -> Iterator[MemcachedServer]:
    """A memcached on its own: what a client should see through the proxy."""
    server = MemcachedServer()
    yield server
    server.stop()


@pytest.fixture
def proxy(memcached: list[MemcachedServer]) -> Iterator[shardkit.Proxy]:
    with shardkit.Proxy(pool_yaml(memcached)) as p:
        yield p


def flush(servers: list[MemcachedServer]) -> None:
    for s in servers:
        conn = Text(s.address)
        assert conn.call(b"flush_all\r\n") == b"OK"
        conn.close()


def meta_client(addr: str) -> CacheClient:
    host, port = host_port(addr)
    client = CacheClient.cache_client_from_servers(
        servers=[ServerAddress(host=host, port=port)],
        connection_pool_factory_fn=connection_pool_factory_builder(
            initial_pool_size=1, max_pool_size=1, connection_timeout=5, recv_timeout=5
        ),
        raise_on_server_error=True,
    )
    assert isinstance(client, CacheClient)
    return client


# --- configuration and lifecycle ------------------------------------------------


def test_bad_config_raises_config_error_naming_the_key(memcached: list[MemcachedServer]) -> None:
    typo = pool_yaml(memcached, extra="hsah_tag: '{}'")
    with pytest.raises(shardkit.ConfigError) as e:
        shardkit.Proxy(typo)
    assert isinstance(e.value, ValueError)
    assert "hsah_tag" in str(e.value) and "line 6" in str(e.value), str(e.value)

    bad_value = pool_yaml(memcached, extra="replicas: lots")
    with pytest.raises(shardkit.ConfigError, match="replicas"):
        shardkit.Proxy(bad_value)

    with pytest.raises(shardkit.ConfigError):
        shardkit.Proxy("cache: [not, a, pool]\n")


def test_address_in_use_is_an_io_error(memcached: list[MemcachedServer]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(shardkit.ShardkitIOError, match=str(port)):
            shardkit.Proxy(pool_yaml(memcached, listen=f"127.0.0.1:{port}"))


def test_start_on_port_zero(memcached: list[MemcachedServer]) -> None:
    # Two pools may not both say 127.0.0.1:0 (core refuses the same listen
    # text twice), so the second one takes another loopback address.
    yaml = pool_yaml(memcached) + pool_yaml(memcached[:1], name="other", listen="127.0.0.2:0")
    with shardkit.Proxy(yaml) as p:
        listening = p.listening()
        assert set(listening) == {"cache", "other"}
        for name, addr in listening.items():
            host, port = host_port(addr)
            assert host == {"cache": "127.0.0.1", "other": "127.0.0.2"}[name] and port != 0
            assert p.address(name) == addr
        assert p.stats_addr is None and p.metrics_addr is None
        assert not p.stopped
        assert repr(p).startswith("Proxy({")

        with pytest.raises(shardkit.NotFoundError) as e:
            p.address("nope")
        assert isinstance(e.value, KeyError)
        assert str(e.value) == 'no pool named "nope"; pools: "cache", "other"'


def test_stop_is_idempotent_and_later_calls_raise(memcached: list[MemcachedServer]) -> None:
    p = shardkit.Proxy(pool_yaml(memcached))
    addr = p.address("cache")
    p.stop()
    assert p.stopped
    p.stop()
    for call in (
        lambda: p.address("cache"),
        p.listening,
        p.metrics,
        p.stats,
        lambda: p.reload(pool_yaml(memcached)),
    ):
        with pytest.raises(shardkit.InvalidArgumentError, match="the proxy is stopped"):
            call()
    assert repr(p) == "Proxy(<stopped>)"
    # Nothing listens there any more.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(host_port(addr), timeout=2).close()


def test_with_block_stops_and_keeps_the_blocks_exception(memcached: list[MemcachedServer]) -> None:
    with pytest.raises(ZeroDivisionError):
        with shardkit.Proxy(pool_yaml(memcached)) as p:
            addr = p.address("cache")
            1 / 0
    assert p.stopped
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(host_port(addr), timeout=2).close()


def test_stop_while_other_threads_call(memcached: list[MemcachedServer]) -> None:
    p = shardkit.Proxy(pool_yaml(memcached))
    addr = p.address("cache")
    seen: list[list[str]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    go = threading.Barrier(5)

    def caller(out: list[str]) -> None:
        go.wait()
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                try:
                    assert p.address("cache") == addr
                    assert 'pool="cache"' in p.metrics()
                    out.append("ok")
                except shardkit.InvalidArgumentError:
                    out.append("stopped")
                    return
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(out,)) for out in seen]
    for t in threads:
        t.start()
    go.wait()
    time.sleep(0.05)
    p.stop()
    for t in threads:
        t.join(30)
    assert not errors, errors
    # Every caller was answered until the stop and refused after it.
    assert all(out and out[-1] == "stopped" for out in seen), [out[-3:] for out in seen]


def test_dropped_proxy_closes_its_listener(memcached: list[MemcachedServer]) -> None:
    p = shardkit.Proxy(pool_yaml(memcached))
    addr = p.address("cache")
    del p
    gc.collect()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(host_port(addr), timeout=2).close()


# --- traffic ------------------------------------------------------------------------


def test_text_protocol_through_the_proxy(proxy: shardkit.Proxy, memcached: list[MemcachedServer]) -> None:
    flush(memcached)
    conn = Text(proxy.address("cache"))
    try:
        keys = [b"text:%d" % i for i in range(60)]
        for i, k in enumerate(keys):
            assert conn.set(k, b"value-%d" % i, flags=i) == b"STORED"
        for i, k in enumerate(keys):
            assert conn.get(k) == {k: b"value-%d" % i}
        # One multi-key get spans the shards: the proxy splits and reassembles it.
        assert conn.get(*keys) == {k: b"value-%d" % i for i, k in enumerate(keys)}
        assert conn.get(b"text:missing") == {}
        assert conn.call(b"delete text:0\r\n") == b"DELETED"
        assert conn.call(b"delete text:0\r\n") == b"NOT_FOUND"
        assert conn.call(b"incr text:1 1\r\n").startswith(b"CLIENT_ERROR")
        assert conn.set(b"text:n", b"41") == b"STORED"
        assert conn.call(b"incr text:n 1\r\n") == b"42"
        assert conn.get(b"text:2") == {b"text:2": b"value-2"}
    finally:
        conn.close()

    # The keys are spread over all three servers, each key on exactly one.
    held = []
    for s in memcached:
        direct = Text(s.address)
        held.append(set(direct.get(*keys[1:])))
        direct.close()
    assert all(held), [len(h) for h in held]
    assert sum(len(h) for h in held) == len(keys) - 1
    assert set().union(*held) == set(keys[1:])


def exchange(addr: str, request: bytes, replies: int) -> bytes:
    """Sends `request` on a new connection and reads `replies` lines (and
    the data blocks of VALUE/VA lines)."""
    conn = Text(addr)
    try:
        conn.sock.sendall(request)
        out = b""
        for _ in range(replies):
            line = conn.line()
            out += line + b"\r\n"
            parts = line.split()
            if parts and parts[0] in (b"VALUE", b"VA"):
                n = int(parts[3] if parts[0] == b"VALUE" else parts[1])
                out += conn.exact(n + 2)
        return out
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("request_", "replies"),
    [
        # A key over 250 bytes: the command is refused and its data line is
        # read as a command of its own, as memcached does.
        (b"set " + b"k" * 300 + b" 0 0 1\r\nx\r\nget bad:a\r\n", 3),
        (b"get " + b"k" * 300 + b"\r\nget bad:a\r\n", 2),
        # A data block longer than announced.
        (b"set bad:a 0 0 1\r\nxyz\r\nget bad:a\r\n", 3),
        (b"bogus\r\nget bad:a\r\n", 2),
        (b"mg " + b"k" * 300 + b" v\r\nmn\r\n", 2),
        (b"ms bad:m 2 T0\r\nhi\r\nmg bad:m v f t\r\nmn\r\n", 3),
        (b"ms bad:m 2 I\r\nhi\r\nmg bad:m s v q\r\nmg bad:none v q\r\nmn\r\n", 3),
    ],
    ids=["long-key-set", "long-key-get", "bad-chunk", "unknown-command", "long-key-mg", "ms-mg", "quiet-mg"],
)
def test_bad_and_odd_input_is_answered_as_memcached_does(
    proxy: shardkit.Proxy, memcached: list[MemcachedServer], reference: MemcachedServer, request_: bytes, replies: int
) -> None:
    flush(memcached + [reference])
    assert exchange(proxy.address("cache"), request_, replies) == exchange(reference.address, request_, replies)


# --- a real meta-protocol client ------------------------------------------------


def scenario(client: CacheClient, other: CacheClient) -> list[Any]:
    """Everything meta-memcache does, recorded; `other` is a second client
    (its own connection) for the lease and recache races. CAS tokens are
    recorded as present or not: their numbers are per server."""
    out: list[Any] = []
    rec = out.append
    keys = [f"meta:{i}" for i in range(150)]

    # Plain set/get of many keys and values of several types.
    for i, k in enumerate(keys):
        value: Any = {"i": i, "s": "x" * (i % 7)} if i % 3 == 0 else (i if i % 3 == 1 else f"v{i}".encode())
        rec(client.set(k, value, ttl=300))
    rec([client.get(k) for k in keys])
    rec(client.get("meta:missing"))
    # Unicode and long keys travel base64-encoded (the meta `b` flag).
    rec(client.set(Key("üñí:🍺"), "beer", ttl=300))
    rec(client.get(Key("üñí:🍺")))
    rec(client.set(Key("long:" + "k" * 300), "long", ttl=300))
    rec(client.get(Key("long:" + "k" * 300)))
    # A multi-get over keys of every shard, hits and misses mixed.
    batch: list[Key | str] = [*keys[::5], "meta:nope1", "meta:nope2", Key("üñí:🍺")]
    got = client.multi_get(batch)
    rec([(k.key, v) for k, v in sorted(got.items(), key=lambda kv: kv[0].key)])

    # Deletes: half the keys, then what is left.
    rec([client.delete(k) for k in keys[::2]])
    rec([client.delete(k) for k in keys[:4]])
    got = client.multi_get(keys[:20])
    rec([(k.key, v) for k, v in sorted(got.items(), key=lambda kv: kv[0].key)])
    rec([client.get(k) for k in keys])

    # Touch: a hit refreshes the TTL, a miss says so; the low-level meta_get
    # shows the TTL, the size and the fetched flag.
    rec(client.touch("meta:5", ttl=1000))
    rec(client.touch("meta:0", ttl=1000))
    raw = client.meta_get(
        Key("meta:5"), flags=RequestFlags(return_ttl=True, return_size=True, return_fetched=True, opaque=b"op5")
    )
    assert isinstance(raw, Success) and raw.flags.ttl is not None
    rec((type(raw).__name__, raw.flags.size, raw.flags.fetched, raw.flags.opaque, 990 <= raw.flags.ttl <= 1000))
    value, cas = client.get_cas("meta:5")
    rec((value, cas is not None))
    rec(client.get("meta:5", touch_ttl=2000))
    raw = client.meta_get(Key("meta:5"), flags=RequestFlags(return_ttl=True))
    assert isinstance(raw, Success) and raw.flags.ttl is not None
    rec((type(raw).__name__, 1990 <= raw.flags.ttl <= 2000))
    rec(type(client.meta_get(Key("meta:0"), flags=RequestFlags(return_ttl=True))).__name__)

    # CAS: a write with the current token wins, a stale token conflicts.
    _, cas = client.get_cas("meta:7")
    rec(cas is not None)
    rec(client.set("meta:7", "cas-1", ttl=300, cas_token=cas))
    rec(client.set("meta:7", "cas-2", ttl=300, cas_token=cas))
    rec(type(client.meta_set(Key("meta:7"), "cas-3", flags=RequestFlags(cache_ttl=300, cas_token=cas))).__name__)
    rec(client.get("meta:7"))
    rec(client.set_cas("meta:7", "cas-4", ttl=300) is not None)
    rec(client.get("meta:7"))

    # Set modes: add refuses an existing key, replace a missing one; append.
    rec(client.set("meta:9", "again", ttl=300, set_mode=SetMode.ADD))
    rec(client.refill("meta:new", "fresh", ttl=300))
    rec(client.refill("meta:new", "stale", ttl=300))
    rec(client.set("meta:absent", "r", ttl=300, set_mode=SetMode.REPLACE))
    rec(client.set("meta:app", b"ab", ttl=300))
    rec(client.set("meta:app", b"cd", ttl=300, set_mode=SetMode.APPEND))
    rec(client.get("meta:app"))

    # Leases on a miss: the first caller wins and refills, a second caller
    # loses and retries until the value is there.
    policy = LeasePolicy(ttl=30, miss_retries=3, miss_retry_wait=0.01, miss_max_retry_wait=0.05)
    won, won_cas = client.get_or_lease_cas("meta:lease", policy)
    rec((won, won_cas is not None))
    waits: list[float] = []

    def refill_while_waiting(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            rec(("lost, refilling", client.set("meta:lease", "leased", ttl=300, cas_token=won_cas)))

    rec(other.get_or_lease("meta:lease", policy, lease_wait_fn=refill_while_waiting))
    rec(len(waits))
    rec(client.get_or_lease("meta:lease", policy))

    # Stale-while-revalidate: an invalidation marks the value stale; one
    # reader wins the recache (a miss), the rest keep the stale value.
    rec(client.set("meta:swr", "old", ttl=300))
    rec(client.invalidate("meta:swr", stale_policy=StalePolicy(mark_stale_on_deletion_ttl=30)))
    rec(client.get("meta:swr"))
    rec(other.get("meta:swr"))
    rec(client.set("meta:swr", "new", ttl=300))
    rec(other.get("meta:swr"))
    # Recache ahead of expiry: a TTL under the recache threshold elects one
    # reader to refresh.
    rec(client.set("meta:recache", "soon", ttl=100))
    rec(client.get("meta:recache", recache_policy=RecachePolicy(ttl=1000)))
    rec(other.get("meta:recache", recache_policy=RecachePolicy(ttl=1000)))

    # Counters (meta arithmetic).
    rec(client.delta_initialize_and_get("meta:ctr", 5, initial_value=10, initial_ttl=300))
    rec(client.delta_and_get("meta:ctr", 5))
    rec(client.delta_and_get("meta:ctr", -3))
    rec(client.delta("meta:ctr", 1))
    rec(client.delta("meta:no-ctr", 1))
    rec(client.get("meta:ctr"))
    return out


def test_meta_memcache_through_the_proxy_matches_one_memcached(
    proxy: shardkit.Proxy, memcached: list[MemcachedServer], reference: MemcachedServer
) -> None:
    flush(memcached + [reference])
    expected = scenario(meta_client(reference.address), meta_client(reference.address))
    addr = proxy.address("cache")
    got = scenario(meta_client(addr), meta_client(addr))
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"step {i}: proxy {g!r} != memcached {e!r}"

    # The proxy spread them: every server holds some of the keys.
    stats = proxy.stats()["cache"]
    for s in memcached:
        server = stats[f"{s.address}:1"]
        assert server["requests"] > 0 and server["responses"] == server["requests"], server
    assert stats["forward_error"] == 0


# --- reload -------------------------------------------------------------------------


def test_reload_keeps_client_connections(memcached: list[MemcachedServer]) -> None:
    flush(memcached)
    with shardkit.Proxy(pool_yaml(memcached)) as p:
        addr = p.address("cache")
        raw = Text(addr)
        meta = meta_client(addr)
        try:
            assert raw.set(b"reload:a", b"1") == b"STORED"
            assert meta.set("reload:b", "2", ttl=300)

            # Same pool and servers, other settings: the listener stays.
            p.reload(pool_yaml(memcached, extra="server_failure_limit: 3"))
            assert p.address("cache") == addr
            assert raw.get(b"reload:a") == {b"reload:a": b"1"}
            assert meta.get("reload:b") == "2"

            # A bad configuration changes nothing.
            with pytest.raises(shardkit.ConfigError, match="hsah"):
                p.reload(pool_yaml(memcached, extra="hsah: md5"))
            assert p.listening() == {"cache": addr}
            assert raw.get(b"reload:a") == {b"reload:a": b"1"}

            # The bound port may be named instead of :0; a new pool starts.
            p.reload(pool_yaml(memcached, listen=addr) + pool_yaml(memcached[:1], name="extra"))
            assert p.address("cache") == addr
            extra = p.address("extra")
            assert extra != addr
            other = Text(extra)
            assert other.set(b"reload:c", b"3") == b"STORED"
            other.close()
            assert raw.get(b"reload:a", b"reload:c")[b"reload:a"] == b"1"

            # Fewer servers: the same connections now route over the two left.
            p.reload(pool_yaml(memcached[:2]))
            assert p.listening() == {"cache": addr}
            assert raw.set(b"reload:d", b"4") == b"STORED"
            assert raw.get(b"reload:d") == {b"reload:d": b"4"}
            assert meta.set("reload:e", "5", ttl=300)
            assert meta.get("reload:e") == "5"
            assert f"{memcached[2].address}:1" not in p.stats()["cache"]
            # The removed pool's listener closes soon after: reload signals
            # it and returns without waiting (stop() waits).
            deadline = time.monotonic() + 5
            while True:
                try:
                    socket.create_connection(host_port(extra), timeout=2).close()
                except ConnectionRefusedError:
                    break
                assert time.monotonic() < deadline, f"the removed pool's {extra} still accepts"
                time.sleep(0.01)
        finally:
            raw.close()


# --- reporting ----------------------------------------------------------------------


def test_metrics_and_stats_name_the_pool(memcached: list[MemcachedServer]) -> None:
    with shardkit.Proxy(pool_yaml(memcached), stats_addr="127.0.0.1:0", metrics_addr="127.0.0.1:0") as p:
        assert p.stats_addr is not None and p.metrics_addr is not None
        conn = Text(p.address("cache"))
        for i in range(10):
            assert conn.set(b"m:%d" % i, b"v") == b"STORED"
        conn.close()

        text = p.metrics()
        requests = [line for line in text.splitlines() if line.startswith('shardkit_proxy_requests_total{pool="cache"}')]
        assert requests and int(float(requests[0].split()[-1])) >= 10, text[:2000]
        for s in memcached:
            assert s.address in text

        # The same text over HTTP, and nutcracker's JSON on the stats port.
        with urllib.request.urlopen(f"http://{p.metrics_addr}/metrics", timeout=5) as r:
            served = r.read().decode()
        assert 'shardkit_proxy_requests_total{pool="cache"}' in served
        with socket.create_connection(host_port(p.stats_addr), timeout=5) as stats_conn:
            chunks = []
            while chunk := stats_conn.recv(65536):
                chunks.append(chunk)
        over_tcp = json.loads(b"".join(chunks))
        stats = p.stats()
        for doc in (stats, over_tcp):
            assert doc["service"] == "nutcracker"
            assert doc["cache"]["client_err"] == 0
            assert {f"{s.address}:1" for s in memcached} <= set(doc["cache"])
        assert sum(stats["cache"][f"{s.address}:1"]["requests"] for s in memcached) >= 10


# --- fork ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_refuses_the_parents_proxy(memcached: list[MemcachedServer]) -> None:
    p = shardkit.Proxy(pool_yaml(memcached))
    addr = p.address("cache")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            t0 = time.monotonic()
            try:
                p.address("cache")
                report = "address() worked in the child"
            except shardkit.InvalidArgumentError as e:
                report = "refused: " + str(e)
            # Dropping it must not wait for the parent's tasks.
            del p
            gc.collect()
            elapsed = time.monotonic() - t0
            os.write(w, f"{report}|{elapsed:.3f}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung")
            time.sleep(0.01)
        report = os.read(r, 4096).decode()
    finally:
        os.close(r)
    assert os.waitstatus_to_exitcode(status) == 0, report
    text, took = report.rsplit("|", 1)
    assert text.startswith("refused: this Proxy was created in process"), text
    assert float(took) < 2.0, report
    # The parent's proxy is untouched.
    conn = Text(addr)
    assert conn.call(b"version\r\n").startswith(b"VERSION")
    conn.close()
    p.stop()
