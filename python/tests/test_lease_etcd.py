"""Ownership election from Python against a real etcd (/usr/bin/etcd), started
on free loopback ports in a temporary directory for this module and stopped
afterwards (conftest's `etcd` fixture): locks, contention across two
coordinators, elections, and an observer riding out an etcd outage."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

import shardkit
from conftest import EtcdServer

# etcd refuses TTLs below its minimum (about 2 s with default timings).
TTL = 10


def test_connects_to_etcd(etcd: str) -> None:
    coord = shardkit.Coordinator(etcd, timeout=2)
    assert not coord.is_embedded and etcd in coord.description
    assert shardkit.Coordinator.connect(f"http://{etcd}").description == coord.description


def test_lock_unlock(etcd: str) -> None:
    coord = shardkit.Coordinator.connect(etcd)
    with coord.session(ttl=TTL) as s:
        assert s.ttl == TTL
        lock = s.lock("py-jobs")
        tokens = []
        for _ in range(3):
            t = lock.acquire(timeout=5)
            assert lock.put("py-jobs/state", "held") > t.revision
            tokens.append(t)
            lock.release()
        assert tokens == sorted(tokens) and len(set(tokens)) == 3
        with coord.lock("py-jobs", ttl=TTL) as t:
            assert t > tokens[-1]
        assert coord.lease_ttl(t.lease) is None  # revoked on exit


def test_contention_across_coordinators(etcd: str) -> None:
    c1, c2 = shardkit.Coordinator.connect(etcd), shardkit.Coordinator.connect(etcd)
    s1, s2 = c1.session(ttl=TTL), c2.session(ttl=TTL)
    first = s1.lock("py-shared")
    t1 = first.acquire(timeout=5)
    waiter = s2.lock("py-shared")
    with pytest.raises(shardkit.ShardkitTimeoutError):
        waiter.acquire(timeout=0.3)
    got: list[shardkit.FencingToken] = []
    th = threading.Thread(target=lambda: got.append(waiter.acquire(timeout=10)))
    th.start()
    time.sleep(0.2)
    assert not got
    first.release()
    th.join(10)
    assert got and got[0] > t1
    # A stale holder is fenced by the store itself.
    with pytest.raises(shardkit.FencedError):
        s1.guarded_put(t1, b"py-shared/state", b"stale")
    assert s2.guarded_put(got[0], b"py-shared/state", b"fresh") > 0
    waiter.release()
    s1.close()
    s2.close()


def test_election_across_coordinators(etcd: str) -> None:
    c1, c2 = shardkit.Coordinator.connect(etcd), shardkit.Coordinator.connect(etcd)
    s1, s2 = c1.session(ttl=TTL), c2.session(ttl=TTL)
    obs = c2.observe("py-svc")
    assert obs.wait(timeout=5) is None
    e1, e2 = s1.election("py-svc"), s2.election("py-svc")
    t1 = e1.campaign("one", timeout=5)
    seen = obs.wait(timeout=5)
    assert seen is not None and seen.value == b"one" and seen.revision == t1.revision
    got: list[shardkit.FencingToken] = []
    th = threading.Thread(target=lambda: got.append(e2.campaign("two", timeout=10)))
    th.start()
    time.sleep(0.2)
    c1.revoke(s1.lease_id)  # the leader's lease ends: the other takes over
    th.join(10)
    assert got and got[0] > t1
    seen = obs.wait(timeout=5)
    if seen is None:  # the lease ended before e2 had queued
        seen = obs.wait(timeout=5)
    assert seen is not None and seen.value == b"two" and c1.leader("py-svc") == seen
    e2.resign()
    assert obs.wait(timeout=5) is None
    s2.close()


def test_async_against_etcd(etcd: str) -> None:
    async def main() -> None:
        coord = await shardkit.Coordinator.connect_async(etcd)
        async with await coord.session_async(ttl=TTL) as s:
            a, b = s.lock("py-aio"), s.lock("py-aio")
            ta = await a.acquire_async(timeout=5)
            task = asyncio.ensure_future(b.acquire_async())
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await a.release_async()
            c = s.lock("py-aio")
            tc = None
            for _ in range(50):  # the cancelled waiter's key goes in the background
                tc = await c.try_acquire_async()
                if tc is not None:
                    break
                await asyncio.sleep(0.05)
            assert tc is not None and tc > ta
            await c.release_async()

    asyncio.run(main())


def test_observer_reports_an_etcd_outage_after_report_after(tmp_path: Path) -> None:
    # An etcd of its own: the module's stays up for the other tests.
    server = EtcdServer(tmp_path)
    server.start()
    try:
        coord = shardkit.Coordinator.connect(server.endpoint, timeout=1)
        obs = coord.observe("py-outage", retry_min=0.05, retry_max=0.2, report_after=0.5)
        assert obs.wait(timeout=5) is None
        server.stop()
        t0 = time.monotonic()
        with pytest.raises(shardkit.ShardkitError) as e:
            obs.wait(timeout=20)
        took = time.monotonic() - t0
        # The store's own error, reported once failures lasted report_after
        # (not the wait's timeout, which names no store failure).
        assert "py-outage" in str(e.value) and "kept failing" in str(e.value), str(e.value)
        assert 0.5 <= took < 10, f"reported after {took:.2f} s"

        # The store comes back: the next call gets the state it then has,
        # and the observer follows changes again.
        server.start()
        assert obs.wait(timeout=20) is None
        with coord.session(ttl=TTL) as s:
            s.election("py-outage").campaign("back", timeout=5)
            seen = obs.wait(timeout=5)
            assert seen is not None and seen.value == b"back"
    finally:
        server.stop()
