"""A process that forks after using shardkit (gunicorn or celery prefork,
multiprocessing's fork start method): in the child, pure computation works,
new coordinators and sessions work (the runtime starts again there), and the
parent's coordinator, session, lock, observer, shard owner and HTTP scatter
raise a ShardkitError at once instead of waiting on the parent's threads.

Each child runs under a deadline and is killed if it overruns, which fails
the test; a hang never hangs the suite."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import shardkit

from conftest import Leaves

# A child gets this long; a debug build starts a runtime in well under a second.
CHILD_DEADLINE = 60.0
# What "at once" means for a refused call (the waits asked for are 30 s).
PROMPT = 2.0

# Python 3.12+ warns that forking a multi-threaded process may deadlock the
# child: that is what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


@dataclass
class Parent:
    """What the parent made and used before forking."""

    sharder: shardkit.Sharder
    keys: list[bytes]
    expected: list[str]
    coord: shardkit.Coordinator
    session: shardkit.Session
    lock: shardkit.Lock
    observer: shardkit.Observer
    owner: shardkit.ShardOwner
    scatter: shardkit.Scatter
    url: str


@pytest.fixture(scope="module")
def parent() -> Iterator[Parent]:
    server = Leaves()
    url = server.url("/echo/0")

    sharder = shardkit.Sharder({"a": 1, "b": 2, "c": 1}, "maglev")
    # Past the parallel threshold: the batch ran on the parent's rayon pool.
    keys = [b"key-%d" % i for i in range(shardkit.PARALLEL_BATCH_THRESHOLD + 100)]
    expected = sharder.lookup_many(keys)

    coord = shardkit.Coordinator.embedded()
    session = coord.session(ttl=30)
    lock = session.lock("jobs")
    lock.acquire(timeout=5)
    election = session.election("leader")
    election.campaign(b"me", timeout=5)
    observer = coord.observe("leader")
    assert observer.wait(timeout=5) is not None
    owner = session.own_shards("group", "worker", ["s0"])
    assert owner.next_event(timeout=5) is not None  # gained s0

    scatter = shardkit.Scatter([url])
    assert scatter.gather({"q": 1}, timeout=5).answers == [(0, {"leaf": "0", "got": {"q": 1}})]

    async def use_async() -> None:
        # pyo3-async-runtimes is initialised in the parent too.
        other = session.lock("async-jobs")
        await other.acquire_async(timeout=5)
        await other.release_async()
        await scatter.gather_async({"q": 2}, timeout=5)

    asyncio.run(use_async())
    yield Parent(sharder, keys, expected, coord, session, lock, observer, owner, scatter, url)
    owner.close()
    session.close()
    server.close()


def run_forked(child: Callable[[], None]) -> None:
    """Runs `child` in a child made by os.fork(); fails with the child's
    traceback if it raised, and kills it (and fails) past the deadline."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            child()
        except BaseException:
            code = 1
            os.write(w, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(w)
    deadline = time.monotonic() + CHILD_DEADLINE
    status = None
    while status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        elif time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            pytest.fail(f"forked child did not finish within {CHILD_DEADLINE} s (hung): killed")
        else:
            time.sleep(0.02)
    with os.fdopen(r, "rb") as f:
        report = f.read().decode(errors="replace")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child failed:\n{report}"


def refused(what: str, call: Callable[[], object]) -> None:
    """`call` must raise the fork error at once."""
    started = time.monotonic()
    try:
        call()
    except shardkit.ShardkitError as e:
        took = time.monotonic() - started
        assert isinstance(e, shardkit.InvalidArgumentError), f"{what}: {type(e).__name__}: {e}"
        assert "before fork()" in str(e) and f"(pid {os.getpid()})" in str(e), f"{what}: {e}"
        assert took < PROMPT, f"{what}: raised after {took:.1f} s"
        return
    raise AssertionError(f"{what}: did not raise in a forked child")


def parents_objects_refuse(p: Parent) -> None:
    refused("Coordinator.session", lambda: p.coord.session(ttl=10))
    refused("Coordinator.leader", lambda: p.coord.leader("leader"))
    refused("Coordinator.lock", lambda: p.coord.lock("jobs", timeout=30).__enter__())
    refused("ScopedLock.acquire", lambda: p.coord.lock("other").acquire(timeout=30))
    refused("ScopedLock.try_acquire", p.coord.lock("other").try_acquire)
    refused("Session.check", p.session.check)
    refused("Session.lock().acquire", lambda: p.session.lock("other").acquire(timeout=30))
    refused("Lock.put", lambda: p.lock.put(b"k", b"v"))
    refused("Lock.release", p.lock.release)
    refused("Observer.wait", lambda: p.observer.wait(timeout=30))
    refused("ShardOwner.next_event", lambda: p.owner.next_event(timeout=30))
    refused("ShardOwner.close", p.owner.close)
    refused("Session.close", p.session.close)
    refused("Scatter.gather", lambda: p.scatter.gather({"q": 3}, timeout=30))

    def run(coro: Callable[[], Any]) -> Callable[[], object]:
        return lambda: asyncio.run(coro())

    async def acquire() -> None:
        await p.session.lock("other").acquire_async(timeout=30)

    async def acquire_scoped() -> None:
        await p.coord.lock("other").acquire_async(timeout=30)

    async def lost() -> None:
        await p.session.lost()

    async def session() -> None:
        await p.coord.session_async(ttl=10)

    async def wait() -> None:
        await p.observer.wait_async(timeout=30)

    async def gather() -> None:
        await p.scatter.gather_async({"q": 4}, timeout=30)

    refused("Lock.acquire_async", run(acquire))
    refused("ScopedLock.acquire_async", run(acquire_scoped))
    refused("Session.lost", run(lost))
    refused("Coordinator.session_async", run(session))
    refused("Observer.wait_async", run(wait))
    refused("Scatter.gather_async", run(gather))


def new_objects_work(p: Parent) -> None:
    assert p.sharder.lookup(b"user:42") in ("a", "b", "c")
    # The parallel batch needs a pool of the child's own.
    assert p.sharder.lookup_many(p.keys) == p.expected
    assert shardkit.top_k([[(2.0, 1)] * 50_000] * 4, 1) == [(2.0, 0, 1)]

    coord = shardkit.Coordinator.embedded()
    with coord.session(ttl=10) as session:
        lock = session.lock("jobs")  # the name the parent holds, in another store
        token = lock.acquire(timeout=5)
        assert int(token) > 0
        lock.release()
    with coord.lock("jobs", timeout=5) as token:
        assert int(token) > 0

    async def use_async() -> None:
        session = await coord.session_async(ttl=10)
        async with session:
            lock = session.lock("jobs")
            await lock.acquire_async(timeout=5)
            await lock.release_async()
        async with coord.lock("jobs", timeout=5):
            pass

    asyncio.run(use_async())
    # Callable leaves run on the child's runtime.
    assert shardkit.Scatter([lambda q: q * 2]).gather(21, timeout=5).answers == [(0, 42)]


def make_doomed(p: Parent) -> tuple[list[object], shardkit.Session]:
    """Objects whose only references are the returned list, for a child to
    drop: a coordinator, a session holding a lock, a held scoped lock (whose
    drop revokes its lease in the background), an observer with a step in
    flight, a shard owner, an HTTP scatter with a warm connection."""
    coord = shardkit.Coordinator.embedded()
    session = coord.session(ttl=30)
    lock = session.lock("jobs")
    lock.acquire(timeout=5)
    scoped = coord.lock("scoped-jobs", ttl=30)
    scoped.acquire(timeout=5)
    observer = coord.observe("nobody")
    assert observer.wait(timeout=5) is None
    with pytest.raises(shardkit.ShardkitTimeoutError):
        observer.wait(timeout=0.05)  # leaves its step running
    owner = session.own_shards("group", "worker", ["s0"])
    scatter = shardkit.Scatter([p.url])
    scatter.gather({"q": 0}, timeout=5)
    return [coord, session, lock, scoped, observer, owner, scatter], session


def child_checks(p: Parent, doomed: list[object]) -> None:
    parents_objects_refuse(p)
    new_objects_work(p)
    # Dropping the parent's objects in the child must not wait on the
    # parent's runtime (nor abort its tasks) either.
    doomed.clear()
    gc.collect()
    new_objects_work(p)


def test_os_fork_child_works_or_refuses(parent: Parent) -> None:
    doomed, session = make_doomed(parent)
    try:
        run_forked(lambda: child_checks(parent, doomed))
    finally:
        session.close()
    # The parent is untouched: its lock is still held, its session alive.
    assert parent.lock.token is not None
    parent.session.check()
    assert parent.scatter.gather({"q": 5}, timeout=5).answers == [(0, {"leaf": "0", "got": {"q": 5}})]


def test_grandchild_starts_its_own_runtime_too(parent: Parent) -> None:
    doomed, session = make_doomed(parent)

    def child() -> None:
        # The child makes a runtime of its own, then forks again.
        new_objects_work(parent)
        run_forked(lambda: child_checks(parent, doomed))

    try:
        run_forked(child)
    finally:
        session.close()


# multiprocessing pickles the function by name: the parent's objects reach
# the worker as module state, copied by the fork.
_PARENT: Parent | None = None


def _pool_task(which: str) -> str:
    """Runs in a pool worker; returns "" or what went wrong."""
    assert _PARENT is not None
    try:
        if which == "refuse":
            parents_objects_refuse(_PARENT)
        else:
            new_objects_work(_PARENT)
    except BaseException:
        return traceback.format_exc()
    return ""


def test_multiprocessing_fork_pool(parent: Parent) -> None:
    global _PARENT
    _PARENT = parent
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(2)
    try:
        results = [pool.apply_async(_pool_task, (w,)) for w in ("refuse", "work", "work")]
        for r in results:
            try:
                report = r.get(timeout=CHILD_DEADLINE)
            except multiprocessing.TimeoutError:
                pytest.fail(f"pool worker did not finish within {CHILD_DEADLINE} s (hung)")
            assert report == "", report
    finally:
        pool.terminate()  # kills a hung worker too
        pool.join()
        _PARENT = None


def test_etcd_coordinator_in_a_forked_child(etcd: str) -> None:
    coord = shardkit.Coordinator.connect(etcd)
    session = coord.session(ttl=10)
    lock = session.lock("fork-jobs")
    lock.acquire(timeout=5)

    def child() -> None:
        refused("etcd Coordinator.session", lambda: coord.session(ttl=10))
        refused("etcd Lock.release", lock.release)
        fresh = shardkit.Coordinator.connect(etcd)
        with fresh.session(ttl=10) as s:
            # The parent still holds the lock, through its own connection.
            assert s.lock("fork-jobs").try_acquire() is None
            other = s.lock("fork-other")
            other.acquire(timeout=5)
            other.release()

        async def use_async() -> None:
            c = await shardkit.Coordinator.connect_async(etcd)
            async with await c.session_async(ttl=10) as s:
                other = s.lock("fork-other")
                await other.acquire_async(timeout=5)
                await other.release_async()

        asyncio.run(use_async())

    try:
        run_forked(child)
        lock.release()
    finally:
        session.close()
