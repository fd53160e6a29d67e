"""Ownership election from Python on the embedded store: locks and fencing
tokens, contention (threads and asyncio), interruption and cancellation,
elections and observers, lost sessions, guarded writes, the fence gate, shard
ownership and bad input. Every wait is bounded."""

from __future__ import annotations

import _thread
import asyncio
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import shardkit

# A session TTL long enough that nothing expires during a test unless the
# test revokes it.
LONG_TTL = 30


def eventually(check: Callable[[], bool], within: float = 5.0, what: str = "condition") -> None:
    """Polls `check` until it holds (bounded)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {within} s")
        time.sleep(0.02)


@pytest.fixture
def coord() -> shardkit.Coordinator:
    return shardkit.Coordinator.embedded()


@pytest.fixture
def session(coord: shardkit.Coordinator) -> Iterator[shardkit.Session]:
    with coord.session(ttl=LONG_TTL) as s:
        yield s


def free_now(session: shardkit.Session, name: str, within: float = 2.0) -> shardkit.FencingToken:
    """Takes lock `name` through a fresh handle, retrying briefly: proves no
    stale waiter key sits in front of it. Returns the token (released)."""
    probe = session.lock(name)
    got: list[shardkit.FencingToken] = []

    def take() -> bool:
        t = probe.try_acquire()
        if t is not None:
            got.append(t)
        return t is not None

    eventually(take, within, f"lock {name!r} free")
    probe.release()
    return got[0]


# --- errors -----------------------------------------------------------------

NEW_CLASSES = {
    "ShardkitTimeoutError": (TimeoutError, 12),
    "SessionLostError": (RuntimeError, 13),
    "CancelledError": (RuntimeError, 14),
    "FencedError": (RuntimeError, 15),
    "CompactedError": (LookupError, 16),
    "BadResponseError": (ConnectionError, 17),
}


@pytest.mark.parametrize("name", sorted(NEW_CLASSES))
def test_error_classes(name: str) -> None:
    cls = getattr(shardkit, name)
    builtin, code = NEW_CLASSES[name]
    assert issubclass(cls, shardkit.ShardkitError) and issubclass(cls, builtin)
    assert cls.code == code
    assert cls.__module__ == "shardkit" and cls.__doc__
    assert name in shardkit.__all__


# --- locks and tokens ---------------------------------------------------------


def test_tokens_rise(session: shardkit.Session) -> None:
    lock = session.lock("jobs")
    assert lock.name == "jobs" and lock.token is None
    tokens = []
    for _ in range(5):
        t = lock.acquire()
        assert lock.token == t
        tokens.append(t)
        lock.release()
        assert lock.token is None
    assert [int(t) for t in tokens] == sorted({int(t) for t in tokens})
    assert tokens == sorted(tokens) and tokens[0] < tokens[-1] and tokens[-1] >= tokens[0]
    t = tokens[0]
    assert t.kind == "lock" and t.name == "jobs" and t.lease == session.lease_id
    assert t.value == t.revision == int(t) > 0
    assert str(t) == f"lock:jobs@{t.revision}/{session.lease_id:016x}"
    assert t.key.startswith(b"shardkit/lock/jobs/")
    assert t == t and t != tokens[1] and len({t, t, tokens[1]}) == 2
    assert t != int(t)  # a token is not its number; int(t) is


def test_try_acquire_and_misuse(session: shardkit.Session) -> None:
    a, b = session.lock("one"), session.lock("one")  # two handles exclude each other
    ta = a.try_acquire()
    assert ta is not None
    assert b.try_acquire() is None
    with pytest.raises(shardkit.InvalidArgumentError, match="already held"):
        a.acquire()
    with pytest.raises(shardkit.InvalidArgumentError, match="not held"):
        b.release()
    a.release()
    tb = b.try_acquire()
    assert tb is not None and tb > ta
    b.release()


def test_contention_between_threads(coord: shardkit.Coordinator) -> None:
    """A second thread waits until the first releases; both threads (and this
    one) run Python meanwhile, so the waits release the GIL."""
    s1, s2 = coord.session(ttl=LONG_TTL), coord.session(ttl=LONG_TTL)
    log: list[tuple[str, float]] = []
    holding = threading.Event()
    tokens: dict[str, shardkit.FencingToken] = {}

    def first() -> None:
        with s1.lock("shared") as t:
            tokens["first"] = t
            log.append(("first got", time.monotonic()))
            holding.set()
            spins = 0
            end = time.monotonic() + 0.4
            while time.monotonic() < end:  # Python work while the other waits
                spins += 1
            log.append(("first releases", time.monotonic()))
        assert spins > 1000

    def second() -> None:
        holding.wait(5)
        lock = s2.lock("shared")
        t = lock.acquire(timeout=10)
        tokens["second"] = t
        log.append(("second got", time.monotonic()))
        lock.release()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for th in threads:
        th.start()
    ticks = 0
    while any(th.is_alive() for th in threads):
        ticks += 1
        time.sleep(0.001)
    for th in threads:
        th.join()
    assert [e for e, _ in log] == ["first got", "first releases", "second got"]
    assert tokens["second"] > tokens["first"]
    assert ticks > 50  # the main thread kept running throughout
    s1.close()
    s2.close()


def test_acquire_timeout_leaves_no_key(session: shardkit.Session) -> None:
    holder = session.lock("busy")
    holder.acquire()
    waiter = session.lock("busy")
    t0 = time.monotonic()
    with pytest.raises(shardkit.ShardkitTimeoutError, match="not acquired within 300 ms") as info:
        waiter.acquire(timeout=0.3)
    elapsed = time.monotonic() - t0
    assert 0.25 < elapsed < 1.5
    assert isinstance(info.value, TimeoutError)
    assert waiter.token is None
    holder.release()
    # A third contender gets it at once: the timed-out waiter's key is gone.
    third = session.lock("busy")
    assert third.try_acquire() is not None
    third.release()
    # And the timed-out handle can try again.
    assert waiter.acquire(timeout=1) is not None
    waiter.release()


def test_ctrl_c_interrupts_a_blocking_acquire(session: shardkit.Session) -> None:
    holder = session.lock("ctrlc")
    holder.acquire()
    waiter = session.lock("ctrlc")
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            waiter.acquire()
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 2.0
    assert waiter.token is None
    holder.release()
    # The interrupted waiter's key was deleted before the exception came.
    third = session.lock("ctrlc")
    assert third.try_acquire() is not None
    third.release()


def test_ctrl_c_interrupts_a_campaign(session: shardkit.Session) -> None:
    leader = session.election("ctrlc-el")
    leader.campaign(b"a")
    other = session.election("ctrlc-el")
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            other.campaign(b"b")
    finally:
        timer.cancel()
    leader.resign()
    assert session.election("ctrlc-el").leader() is None  # no candidacy left behind


# --- asyncio ------------------------------------------------------------------


def test_asyncio_contention_and_cancel(session: shardkit.Session) -> None:
    async def main() -> None:
        a, b, c = (session.lock("aio") for _ in range(3))
        order: list[str] = []
        ta = await a.acquire_async()
        order.append("a")

        async def take_b() -> shardkit.FencingToken:
            t = await b.acquire_async(timeout=10)
            order.append("b")
            return t

        task_b = asyncio.ensure_future(take_b())
        await asyncio.sleep(0.2)
        assert not task_b.done()

        # A third waiter, cancelled while it waits, withdraws its key.
        task_c = asyncio.ensure_future(c.acquire_async())
        await asyncio.sleep(0.2)
        task_c.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task_c
        assert c.token is None

        await a.release_async()
        tb = await asyncio.wait_for(task_b, 5)
        assert order == ["a", "b"] and tb > ta
        await b.release_async()

    asyncio.run(main())
    # c's key was deleted (in the background, after the cancel): a new
    # contender gets the lock.
    free_now(session, "aio")


def test_async_timeout_and_try(session: shardkit.Session) -> None:
    async def main() -> None:
        a, b = session.lock("aio2"), session.lock("aio2")
        assert await a.try_acquire_async() is not None
        assert await b.try_acquire_async() is None
        with pytest.raises(shardkit.ShardkitTimeoutError):
            await b.acquire_async(timeout=0.2)
        rev = await a.put_async(b"aio2/state", "x")
        assert rev > 0
        await a.release_async()

    asyncio.run(main())
    free_now(session, "aio2")


# --- context managers ---------------------------------------------------------


def test_context_managers_sync(coord: shardkit.Coordinator) -> None:
    with coord.session(ttl=LONG_TTL) as s:
        lock = s.lock("cm")
        with lock as t:
            assert lock.token == t and t.kind == "lock"
            assert s.lock("cm").try_acquire() is None
        assert lock.token is None
        scoped = coord.lock("cm", ttl=5)
        with scoped as t2:
            assert t2 > t and scoped.token == t2 and t2.lease != s.lease_id
            with pytest.raises(shardkit.InvalidArgumentError, match="already entered"):
                scoped.__enter__()
        assert scoped.token is None
        # The scoped lock's lease was revoked on exit.
        assert coord.lease_ttl(t2.lease) is None
        # An exception in the block propagates; the lock is released anyway.
        with pytest.raises(ZeroDivisionError):
            with s.lock("cm"):
                1 / 0
        assert free_now(s, "cm") is not None
    assert s.is_closed and not s.is_lost
    with pytest.raises(shardkit.SessionLostError, match="closed"):
        s.check()


def test_scoped_lock_timeout(coord: shardkit.Coordinator) -> None:
    with coord.lock("st") as t:
        t0 = time.monotonic()
        with pytest.raises(shardkit.ShardkitTimeoutError):
            with coord.lock("st", timeout=0.2):
                pass
        assert time.monotonic() - t0 < 1.5
    with coord.lock("st", timeout=1) as t2:
        assert t2 > t


def test_context_managers_async(coord: shardkit.Coordinator) -> None:
    async def main() -> None:
        async with await coord.session_async(ttl=LONG_TTL) as s:
            lock = s.lock("acm")
            async with lock as t:
                assert lock.token == t
            assert lock.token is None
            async with coord.lock("acm", ttl=5) as t2:
                assert t2 > t
            async with coord.lock("acm", timeout=1) as t3:
                assert t3 > t2
        assert s.is_closed

    asyncio.run(main())


# --- elections ------------------------------------------------------------------


def test_election_and_observer(coord: shardkit.Coordinator) -> None:
    s1, s2 = coord.session(ttl=LONG_TTL), coord.session(ttl=LONG_TTL)
    obs = coord.observe("svc")
    assert obs.name == "svc"
    assert obs.wait(timeout=1) is None  # the first state: nobody leads
    with pytest.raises(shardkit.ShardkitTimeoutError):
        obs.wait(timeout=0.1)  # no change

    e1, e2 = s1.election("svc"), s2.election("svc")
    t1 = e1.campaign(b"host-1:80")
    assert e1.token == t1 and t1.kind == "leader"
    seen = obs.wait(timeout=2)
    assert seen is not None and seen.value == b"host-1:80" and seen.revision == t1.revision
    assert seen.lease == s1.lease_id and seen.name == "svc" and seen == coord.leader("svc")

    with pytest.raises(shardkit.ShardkitTimeoutError):
        e2.campaign("host-2:80", timeout=0.2)

    e1.proclaim("host-1:81")
    seen = next(obs)
    assert seen is not None and seen.value == b"host-1:81"

    got: list[shardkit.FencingToken] = []
    th = threading.Thread(target=lambda: got.append(e2.campaign("host-2:80", timeout=10)))
    th.start()
    time.sleep(0.1)
    e1.resign()
    th.join(10)
    assert got and got[0] > t1
    seen = obs.wait(timeout=2)
    if seen is None:  # e1 resigned before e2 had queued: a moment with no leader
        seen = obs.wait(timeout=2)
    assert seen is not None and seen.value == b"host-2:80" and seen.lease == s2.lease_id
    assert e2.leader() == seen and e1.leader() == seen

    with pytest.raises(shardkit.FencedError):
        e1.proclaim("stale")
    with pytest.raises(shardkit.InvalidArgumentError):
        e1.resign()
    e2.resign()
    assert obs.wait(timeout=2) is None
    assert coord.leader("svc") is None
    s1.close()
    s2.close()


def test_election_async_and_async_observer(coord: shardkit.Coordinator) -> None:
    async def main() -> None:
        s = await coord.session_async(ttl=LONG_TTL)
        e = s.election("aobs")
        obs = coord.observe("aobs")
        states: list[bytes | None] = []

        async def follow() -> None:
            async for leader in obs:
                states.append(None if leader is None else leader.value)
                if len(states) == 4:
                    return

        async def seen(n: int) -> None:
            # Each change is made only after the last was observed, so none
            # is folded into the next.
            for _ in range(250):
                if len(states) >= n:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"observer saw {states}, expected {n} states")

        follower = asyncio.ensure_future(follow())
        await seen(1)
        await e.campaign_async("a")
        await seen(2)
        await e.proclaim_async(b"b")
        await seen(3)
        assert (await e.leader_async()) == (await coord.leader_async("aobs"))
        await e.resign_async()
        await asyncio.wait_for(follower, 5)
        assert states == [None, b"a", b"b", None]
        with pytest.raises(shardkit.ShardkitTimeoutError):
            await obs.wait_async(timeout=0.1)
        await s.close_async()

    asyncio.run(main())


def test_observer_cancelled_wait_loses_no_change(coord: shardkit.Coordinator) -> None:
    """A wait that times out leaves its read in flight; the next wait gets it."""
    obs = coord.observe("keep")
    assert obs.wait(timeout=1) is None
    s = coord.session(ttl=LONG_TTL)
    for _ in range(3):
        with pytest.raises(shardkit.ShardkitTimeoutError):
            obs.wait(timeout=0.05)
    e = s.election("keep")
    e.campaign("x")
    seen = obs.wait(timeout=2)
    assert seen is not None and seen.value == b"x"
    s.close()


def test_observer_follow_policy_is_checked(coord: shardkit.Coordinator) -> None:
    # A policy of one's own follows as the default does (the embedded store
    # never fails; test_lease_etcd.py stops a real etcd).
    obs = coord.observe("policy", retry_min=0.01, retry_max=0.1, report_after=0)
    assert obs.wait(timeout=1) is None
    for bad, says in (
        ({"retry_min": 0}, "retry_min"),
        ({"retry_min": 2.0, "retry_max": 1.0}, "retry_max"),
        ({"retry_min": -1}, "retry_min -1"),
        ({"retry_max": float("nan")}, "retry_max nan"),
        ({"report_after": float("inf")}, "report_after inf"),
    ):
        with pytest.raises(shardkit.InvalidArgumentError, match=says) as e:
            coord.observe("policy", **bad)
        assert isinstance(e.value, ValueError)
    with pytest.raises(TypeError):
        coord.observe("policy", 0.1)  # type: ignore[misc]


# --- lost sessions and guarded writes -----------------------------------------------


def test_on_lost_fires_once_on_revoke(coord: shardkit.Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    s = coord.session(ttl=2)
    calls: list[tuple[BaseException, str]] = []
    s.on_lost(lambda e: calls.append((e, threading.current_thread().name)))

    def broken(e: BaseException) -> None:
        raise RuntimeError("callback bug")

    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    s.on_lost(broken)
    coord.revoke(s.lease_id)
    eventually(lambda: s.is_lost, 3, "session lost")
    eventually(lambda: len(calls) == 1 and len(unraisable) == 1, 2, "callbacks ran")
    time.sleep(0.5)
    assert len(calls) == 1  # exactly once
    err, thread = calls[0]
    assert isinstance(err, shardkit.SessionLostError) and "expired" in str(err)
    assert thread != threading.main_thread().name
    assert isinstance(unraisable[0].exc_value, RuntimeError)
    assert s.remaining == 0.0
    with pytest.raises(shardkit.SessionLostError):
        s.check()
    # Registered after the loss: runs at once, once.
    late: list[BaseException] = []
    s.on_lost(late.append)
    assert len(late) == 1 and isinstance(late[0], shardkit.SessionLostError)
    with pytest.raises(TypeError, match="callable"):
        s.on_lost(42)  # type: ignore[arg-type]


def test_lost_awaitable(coord: shardkit.Coordinator) -> None:
    async def main() -> None:
        s = await coord.session_async(ttl=2)
        waiter = asyncio.ensure_future(s.lost())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await coord.revoke_async(s.lease_id)
        err = await asyncio.wait_for(waiter, 3)
        assert isinstance(err, shardkit.SessionLostError)
        # A closed session is never "lost": the awaitable stays pending.
        s2 = await coord.session_async(ttl=2)
        pending = asyncio.ensure_future(s2.lost())
        await s2.close_async()
        await asyncio.sleep(0.2)
        assert not pending.done()
        pending.cancel()

    asyncio.run(main())


def test_guarded_put_after_loss(coord: shardkit.Coordinator) -> None:
    # Long TTL: the session has not noticed the revoke yet, so the store
    # itself refuses the write (the holder's key is gone): FencedError.
    s = coord.session(ttl=LONG_TTL)
    lock = s.lock("guard")
    t = lock.acquire()
    # The session's first keepalive goes out right after the grant; once it
    # is answered the next is TTL/3 = 10 s away, far beyond this test.
    time.sleep(0.3)
    assert s.guarded_put(t, b"guard/state", b"1") > t.revision
    assert lock.put("guard/state", "2") > 0
    assert lock.put_with(t, b"guard/state", bytearray(b"3")) > 0
    coord.revoke(s.lease_id)
    with pytest.raises(shardkit.FencedError, match="no longer current"):
        s.guarded_put(t, b"guard/state", b"stale")
    with pytest.raises(shardkit.FencedError):
        lock.put("guard/state", "stale")
    with pytest.raises(shardkit.FencedError, match="no longer held"):
        lock.release()

    # Short TTL: once the session knows it is lost, it refuses before asking.
    s2 = coord.session(ttl=2)
    lock2 = s2.lock("guard2")
    t2 = lock2.acquire()
    coord.revoke(s2.lease_id)
    eventually(lambda: s2.is_lost, 3, "session lost")
    with pytest.raises(shardkit.SessionLostError):
        s2.guarded_put(t2, b"guard2/state", b"stale")
    with pytest.raises(shardkit.SessionLostError):
        lock2.put(b"guard2/state", b"stale")

    async def main() -> None:
        with pytest.raises(shardkit.SessionLostError):
            await s2.guarded_put_async(t2, b"k", b"v")

    asyncio.run(main())


def test_resume(coord: shardkit.Coordinator) -> None:
    s = coord.session(ttl=LONG_TTL)
    again = coord.resume(s.lease_id)
    assert again.lease_id == s.lease_id and again.ttl == LONG_TTL
    granted = coord.lease_ttl(s.lease_id)
    assert granted is not None and granted[0] == LONG_TTL
    again.close()
    assert coord.lease_ttl(s.lease_id) is None
    with pytest.raises(shardkit.NotFoundError, match=f"{s.lease_id:x}"):
        coord.resume(s.lease_id)


# --- fence gate -----------------------------------------------------------------


def test_fence_gate(session: shardkit.Session) -> None:
    lock = session.lock("db")
    t1 = lock.acquire()
    lock.release()
    t2 = lock.acquire()
    lock.release()
    gate = shardkit.FenceGate("db")
    assert gate.name == "db" and gate.kind == "lock" and gate.newest(b"row") == 0
    gate.admit(b"row", t2)
    gate.admit("row", int(t2))  # the same token again is fine
    with pytest.raises(shardkit.FencedError, match=f"token {t1.revision} rejected"):
        gate.admit(b"row", t1)
    with pytest.raises(shardkit.FencedError):
        gate.admit(b"row", t1.value)
    assert gate.newest("row") == t2.revision
    gate.admit(b"other-row", t1)  # per resource
    other = session.lock("not-db").acquire()
    with pytest.raises(shardkit.InvalidArgumentError, match="not for lock"):
        gate.admit(b"row", other)
    with pytest.raises(shardkit.InvalidArgumentError, match="token 0"):
        gate.admit(b"row", 0)
    with pytest.raises(TypeError, match="FencingToken or an int"):
        gate.admit(b"row", "12")  # type: ignore[arg-type]
    with pytest.raises(shardkit.InvalidArgumentError, match='"queue"'):
        shardkit.FenceGate("db", kind="queue")  # type: ignore[arg-type]
    with pytest.raises(shardkit.InvalidArgumentError, match="empty"):
        shardkit.FenceGate("")
    leader_gate = shardkit.FenceGate("db", kind="leader")
    with pytest.raises(shardkit.InvalidArgumentError):
        leader_gate.admit(b"row", t2)


# --- shard ownership --------------------------------------------------------------


SHARDS = [f"s{i:02}" for i in range(12)]


def owned_sets(owners: list[shardkit.ShardOwner]) -> list[set[str]]:
    return [set(o.owned) for o in owners]


def covers_disjointly(owners: list[shardkit.ShardOwner]) -> bool:
    sets = owned_sets(owners)
    return sum(len(s) for s in sets) == len(SHARDS) and set().union(*sets) == set(SHARDS)


def test_shard_owners(coord: shardkit.Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    # The third session's short TTL makes it notice the revoke below soon.
    sessions = [coord.session(ttl=ttl) for ttl in (LONG_TTL, LONG_TTL, 3)]
    callback_events: list[tuple[str, str, str]] = []

    def on_change(ev: shardkit.OwnershipEvent) -> None:
        callback_events.append((ev.kind, ev.shard, threading.current_thread().name))
        if ev.kind == "gained" and ev.shard == "s00":
            raise ValueError("handler bug")  # reported, never fatal

    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    owners = [
        sessions[0].own_shards("grp", "w0", SHARDS),
        sessions[1].own_shards("grp", "w1", SHARDS, on_change=on_change),
        sessions[2].own_shards("grp", "w2", SHARDS),
    ]
    eventually(lambda: covers_disjointly(owners) and all(owned_sets(owners)), 10, "3 workers cover")
    assert owners[0].group == "grp" and owners[0].worker == "w0" and not owners[0].stopped
    for name, tok in owners[2].owned.items():
        assert tok.kind == "shard" and tok.name == name and tok.lease == sessions[2].lease_id
    # w0 reports through its queue.
    first = owners[0].next_event(timeout=2)
    assert first is not None and first.kind == "gained" and first.token is not None
    assert first.reason is None
    # w1 reports through the callback, on a runtime thread.
    assert callback_events and all(t != threading.main_thread().name for _, _, t in callback_events)
    with pytest.raises(shardkit.InvalidArgumentError, match="on_change"):
        owners[1].next_event(timeout=0.1)

    moved = set(owners[0].owned)
    owners[0].close()
    eventually(lambda: covers_disjointly(owners[1:]), 10, "2 workers cover")
    assert owners[0].stopped and owners[0].error is None and owners[0].owned == {}
    events = [first]
    while (ev := owners[0].next_event(timeout=2)) is not None:
        events.append(ev)
    # Replaying the events (joins first, then the close) ends with nothing held.
    held: set[str] = set()
    for e in events:
        if e.kind == "gained":
            assert e.shard not in held
            held.add(e.shard)
        else:
            held.remove(e.shard)
    assert held == set()
    assert {e.shard for e in events if e.reason == "worker closed"} == moved
    assert moved <= set(owners[1].owned) | set(owners[2].owned)
    if any(s == "s00" for k, s, _ in callback_events if k == "gained"):
        assert unraisable and isinstance(unraisable[0].exc_value, ValueError)

    # A lost session stops its owner, with the reason.
    coord.revoke(sessions[2].lease_id)
    eventually(lambda: owners[2].stopped, 5, "owner stopped")
    assert isinstance(owners[2].error, shardkit.SessionLostError)
    assert list(owners[2]) and owners[2].next_event(timeout=1) is None  # drained, ended
    eventually(lambda: set(owners[1].owned) == set(SHARDS), 10, "last worker owns all")
    owners[1].close()
    for s in sessions:
        s.close()


def test_shard_owner_async(coord: shardkit.Coordinator) -> None:
    async def main() -> None:
        s = await coord.session_async(ttl=LONG_TTL)
        async with await s.own_shards_async("agrp", "solo", ["a", "b"]) as owner:
            gained = set()
            async for ev in owner:
                assert ev.kind == "gained"
                gained.add(ev.shard)
                if gained == {"a", "b"}:
                    break
            with pytest.raises(shardkit.ShardkitTimeoutError):
                await owner.next_event_async(timeout=0.1)
        assert owner.stopped
        rest = [ev async for ev in owner]
        assert {e.shard for e in rest} == {"a", "b"} and all(e.kind == "lost" for e in rest)
        await s.close_async()

    asyncio.run(main())


# --- bad input ----------------------------------------------------------------------


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("ttl", [0, -1])
def test_bad_ttl(coord: shardkit.Coordinator, ttl: int) -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match=f"ttl {ttl}:"):
        coord.session(ttl=ttl)
    with pytest.raises(shardkit.InvalidArgumentError, match=f"ttl {ttl}:"):
        coord.lock("x", ttl=ttl)


def test_bad_session_options(coord: shardkit.Coordinator) -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match="margin"):
        coord.session(ttl=2, margin=5.0)
    with pytest.raises(shardkit.InvalidArgumentError, match="rpc_timeout 0"):
        coord.session(ttl=2, rpc_timeout=0)
    with pytest.raises(shardkit.InvalidArgumentError, match="rpc_timeout -1"):
        coord.session(ttl=2, rpc_timeout=-1)
    with pytest.raises(shardkit.InvalidArgumentError, match="timeout nan"):
        coord.lock("x", timeout=float("nan"))


def test_bad_names(session: shardkit.Session) -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match="lock name is empty"):
        session.lock("")
    with pytest.raises(shardkit.InvalidArgumentError, match="election name is empty"):
        session.election("")
    with pytest.raises(shardkit.InvalidArgumentError, match="control characters"):
        session.lock("a\nb")
    with pytest.raises(shardkit.InvalidArgumentError, match="election name is empty"):
        shardkit.Coordinator.embedded().observe("")
    with pytest.raises(shardkit.InvalidArgumentError, match="timeout -1"):
        session.lock("x").acquire(timeout=-1)
    with pytest.raises(TypeError):
        session.lock("x").put(42, b"v")  # type: ignore[arg-type]


def test_bad_shard_input(coord: shardkit.Coordinator, session: shardkit.Session) -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match="shard list is empty"):
        session.own_shards("g", "w", [])
    with pytest.raises(shardkit.DuplicateNodeError, match='"a"'):
        session.own_shards("g", "w", ["a", "a"])
    with pytest.raises(shardkit.InvalidArgumentError, match="'/'"):
        session.own_shards("g", "w/1", ["a"])
    with pytest.raises(TypeError, match="callable"):
        session.own_shards("g", "w", ["a"], on_change=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        session.own_shards("g", "w", "ab")
    with session.own_shards("g", "w", ["a"]), coord.session(ttl=LONG_TTL) as other:
        with pytest.raises(shardkit.DuplicateNodeError, match='worker "w" is already live'):
            other.own_shards("g", "w", ["a"])


@pytest.mark.parametrize(
    ("endpoints", "needle"),
    [
        ("localhost", "no port"),
        ("localhost:0", "invalid port"),
        ("https://127.0.0.1:2379", "TLS"),
        ("", "names no endpoint"),
        (" , ", "names no endpoint"),
    ],
)
def test_bad_endpoints(endpoints: str, needle: str) -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match=needle):
        shardkit.Coordinator.connect(endpoints)
    with pytest.raises(shardkit.InvalidArgumentError, match=needle):
        shardkit.Coordinator(endpoints)


def test_unreachable_endpoint_fails_within_timeout() -> None:
    port = unused_port()
    t0 = time.monotonic()
    with pytest.raises(shardkit.UnavailableError, match=f"127.0.0.1:{port}"):
        shardkit.Coordinator.connect(f"127.0.0.1:{port}", timeout=1.0)
    assert time.monotonic() - t0 < 2.0

    async def main() -> None:
        with pytest.raises(shardkit.UnavailableError):
            await shardkit.Coordinator.connect_async(f"127.0.0.1:{port}", timeout=0.5)

    asyncio.run(main())
    with pytest.raises(shardkit.InvalidArgumentError, match="timeout -2"):
        shardkit.Coordinator.connect(f"127.0.0.1:{port}", timeout=-2)


def test_env_selects_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHARDKIT_ENDPOINTS", raising=False)
    assert shardkit.Coordinator().is_embedded
    monkeypatch.setenv("SHARDKIT_ENDPOINTS", "   ")
    assert shardkit.Coordinator().is_embedded
    monkeypatch.setenv("SHARDKIT_ENDPOINTS", "nonsense")
    with pytest.raises(shardkit.InvalidArgumentError, match='"nonsense"'):
        shardkit.Coordinator()


def test_token_of_another_lock_or_session(coord: shardkit.Coordinator) -> None:
    s1, s2 = coord.session(ttl=LONG_TTL), coord.session(ttl=LONG_TTL)
    a, b = s1.lock("a"), s1.lock("b")
    ta = a.acquire()
    b.acquire()
    with pytest.raises(shardkit.InvalidArgumentError, match='not for lock "b"'):
        b.put_with(ta, b"k", b"v")
    with pytest.raises(shardkit.InvalidArgumentError, match="belongs to lease"):
        s2.guarded_put(ta, b"k", b"v")
    s1.close()
    s2.close()


def test_blocking_call_from_a_runtime_thread_is_an_error(coord: shardkit.Coordinator) -> None:
    """A callback runs on a runtime thread; a blocking call there raises
    instead of deadlocking."""
    s = coord.session(ttl=2)
    errors: list[BaseException] = []

    def on_lost(_: BaseException) -> None:
        try:
            coord.session(ttl=2)
        except shardkit.ShardkitError as e:
            errors.append(e)

    s.on_lost(on_lost)
    coord.revoke(s.lease_id)
    eventually(lambda: bool(errors), 3, "callback ran")
    assert isinstance(errors[0], shardkit.InvalidArgumentError) and "async" in str(errors[0])
