"""ScopedLock (`Coordinator.lock(...)`) used without `with`: acquire,
try_acquire and release, blocking and async, on the embedded store. Each hold
has a lease of its own, revoked by the release; misuse raises and changes
nothing; a wait that times out, is interrupted or is cancelled leaves nothing
behind and the object can be acquired again. Every wait is bounded."""

from __future__ import annotations

import _thread
import asyncio
import threading
import time

import pytest

import shardkit

LONG_TTL = 30


@pytest.fixture
def coord() -> shardkit.Coordinator:
    return shardkit.Coordinator.embedded()


def free(coord: shardkit.Coordinator, name: str) -> bool:
    """Whether lock `name` can be taken at once by a fresh contender (so no
    hold or stale waiter sits in front of it); the probe gives it back."""
    with coord.session(ttl=LONG_TTL) as s:
        probe = s.lock(name)
        took = probe.try_acquire() is not None
        if took:
            probe.release()
        return took


def test_two_scoped_locks_exclude_each_other(coord: shardkit.Coordinator) -> None:
    a, b = coord.lock("sl", ttl=LONG_TTL), coord.lock("sl", ttl=LONG_TTL)
    assert a.token is None and a.session is None and a.name == "sl"
    t1 = a.acquire(timeout=5)
    assert a.token == t1 and t1.kind == "lock"
    session = a.session
    assert session is not None and session.lease_id == t1.lease and session.ttl == LONG_TTL
    assert b.try_acquire() is None
    assert b.token is None and b.session is None
    with pytest.raises(shardkit.ShardkitTimeoutError):
        b.acquire(timeout=0.2)

    # A waiter in another thread gets the lock once it is released.
    got: list[shardkit.FencingToken] = []
    th = threading.Thread(target=lambda: got.append(b.acquire(timeout=10)))
    th.start()
    time.sleep(0.2)
    assert not got
    a.release()
    th.join(10)
    assert got and got[0] > t1 and got[0].lease != t1.lease
    assert a.token is None and a.session is None
    # The release revoked the hold's lease.
    assert coord.lease_ttl(t1.lease) is None
    b.release()
    assert coord.lease_ttl(got[0].lease) is None

    # Reusable: a new hold, a new lease, a larger token.
    t3 = a.try_acquire()
    assert t3 is not None and t3 > got[0] and t3.lease not in (t1.lease, got[0].lease)
    a.release()
    assert free(coord, "sl")


def test_a_timed_out_acquire_leaves_nothing_and_the_object_is_reusable(coord: shardkit.Coordinator) -> None:
    holder = coord.lock("busy", ttl=LONG_TTL)
    holder.acquire(timeout=5)
    waiter = coord.lock("busy", ttl=LONG_TTL)
    t0 = time.monotonic()
    with pytest.raises(shardkit.ShardkitTimeoutError):
        waiter.acquire(timeout=0.2)
    assert time.monotonic() - t0 < 2.0
    assert waiter.token is None and waiter.session is None
    holder.release()
    # The waiter's key went with its lease, before acquire raised.
    assert free(coord, "busy")
    t = waiter.acquire(timeout=5)
    assert waiter.token == t
    waiter.release()


def test_misuse_raises_naming_the_lock_and_changes_nothing(coord: shardkit.Coordinator) -> None:
    a = coord.lock("dbl", ttl=LONG_TTL)
    with pytest.raises(shardkit.InvalidArgumentError, match='"dbl".*not held') as e:
        a.release()
    assert isinstance(e.value, ValueError)
    t = a.acquire(timeout=5)
    with pytest.raises(shardkit.InvalidArgumentError, match='"dbl".*already held'):
        a.acquire(timeout=1)
    with pytest.raises(shardkit.InvalidArgumentError, match='"dbl".*already held'):
        a.try_acquire()
    with pytest.raises(shardkit.InvalidArgumentError, match='"dbl".*already entered'):
        a.__enter__()
    assert a.token == t, "the hold is untouched"
    a.release()
    with pytest.raises(shardkit.InvalidArgumentError, match='"dbl".*not held'):
        a.release()
    # Bad arguments are refused when the object is made.
    with pytest.raises(shardkit.InvalidArgumentError, match="ttl 0"):
        coord.lock("dbl", ttl=0)
    with pytest.raises(shardkit.InvalidArgumentError, match="timeout"):
        coord.lock("dbl", timeout=-1)
    with pytest.raises(shardkit.InvalidArgumentError):
        coord.lock("")
    with pytest.raises(shardkit.InvalidArgumentError, match="timeout"):
        a.acquire(timeout=float("nan"))


def test_release_after_the_lease_ended_is_fenced_and_leaves_the_object_idle(coord: shardkit.Coordinator) -> None:
    a = coord.lock("gone", ttl=LONG_TTL)
    t = a.acquire(timeout=5)
    coord.revoke(t.lease)  # the hold ends behind the object's back
    with pytest.raises(shardkit.FencedError):
        a.release()
    assert a.token is None and a.session is None
    assert a.acquire(timeout=5) > t
    a.release()


def test_ctrl_c_interrupts_a_blocking_acquire(coord: shardkit.Coordinator) -> None:
    holder = coord.lock("ctrlc", ttl=LONG_TTL)
    holder.acquire(timeout=5)
    waiter = coord.lock("ctrlc", ttl=LONG_TTL)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            waiter.acquire()
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 2.0
    assert waiter.token is None and waiter.session is None
    holder.release()
    # The interrupted waiter's key was deleted before the exception came.
    assert free(coord, "ctrlc")
    waiter.acquire(timeout=5)
    waiter.release()


def test_async_acquire_try_acquire_release(coord: shardkit.Coordinator) -> None:
    async def main() -> None:
        a, b = coord.lock("aio", ttl=LONG_TTL), coord.lock("aio", ttl=LONG_TTL)
        t1 = await a.acquire_async(timeout=5)
        assert a.token == t1
        assert await b.try_acquire_async() is None
        with pytest.raises(shardkit.ShardkitTimeoutError):
            await b.acquire_async(timeout=0.2)
        with pytest.raises(shardkit.InvalidArgumentError, match='"aio".*already held'):
            await a.acquire_async(timeout=1)

        # A cancelled acquire revokes its lease (in the background).
        task = asyncio.ensure_future(b.acquire_async())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert b.token is None and b.session is None
        # The cancel reaches the Rust side from a loop callback: let it run
        # before the release, or the release could grant the lock to b's
        # acquire first (which then completes for nobody, held until b is
        # released or dropped).
        await asyncio.sleep(0.05)

        await a.release_async()
        assert coord.lease_ttl(t1.lease) is None
        with pytest.raises(shardkit.InvalidArgumentError, match='"aio".*not held'):
            await a.release_async()
        t2 = None
        for _ in range(50):  # the cancelled waiter's key goes in the background
            t2 = await b.try_acquire_async()
            if t2 is not None:
                break
            await asyncio.sleep(0.05)
        assert t2 is not None and t2 > t1
        await b.release_async()
        # And `async with` on the same objects still works.
        async with a as t3:
            assert t3 > t2 and a.token == t3
        assert a.token is None and coord.lease_ttl(t3.lease) is None

    asyncio.run(main())


def test_dropping_a_held_scoped_lock_frees_it_without_waiting_for_the_ttl(coord: shardkit.Coordinator) -> None:
    a = coord.lock("dropped", ttl=LONG_TTL)
    t = a.acquire(timeout=5)
    del a
    # The TTL is 30 s: only the background revoke frees it this soon.
    b = coord.lock("dropped", ttl=LONG_TTL)
    assert b.acquire(timeout=5) > t
    b.release()
