"""A typed use of the ownership-election API: checked by mypy --strict against
the stubs (run_tests.sh) and run by pytest, so it stays executable."""

from __future__ import annotations

import asyncio
from typing import Optional

import shardkit


def sync_usage() -> list[int]:
    coord: shardkit.Coordinator = shardkit.Coordinator.embedded()
    values: list[int] = []
    with coord.lock("jobs", ttl=10, timeout=None) as token:
        fenced: int = int(token)
        values.append(fenced)
    scoped: shardkit.ScopedLock = coord.lock("jobs", ttl=10)
    held: shardkit.FencingToken = scoped.acquire(timeout=1.0)
    hold_session: Optional[shardkit.Session] = scoped.session
    assert hold_session is not None and hold_session.lease_id == held.lease
    scoped.release()
    again: Optional[shardkit.FencingToken] = scoped.try_acquire()
    assert again is not None and again > held
    scoped.release()
    with coord.session(ttl=10, margin=None, rpc_timeout=5.0) as session:
        lease: int = session.lease_id
        left: float = session.remaining
        assert lease != 0 and left > 0 and not session.is_lost
        lock: shardkit.Lock = session.lock("jobs")
        with lock as t:
            rev: int = session.guarded_put(t, b"jobs/state", "running")
            values.append(lock.put("jobs/state", b"done"))
            assert rev > t.revision and lock.token == t
        maybe: Optional[shardkit.FencingToken] = lock.try_acquire()
        assert maybe is not None
        lock.release()
        gate = shardkit.FenceGate("jobs")
        gate.admit(b"table", maybe)
        try:
            gate.admit(b"table", 1)
        except shardkit.FencedError as e:
            code: int = e.code
            values.append(code)
        election: shardkit.Election = session.election("svc")
        lead: shardkit.FencingToken = election.campaign(b"host:80", timeout=1.0)
        leader: Optional[shardkit.Leader] = coord.leader("svc")
        assert leader is not None and leader.value == b"host:80" and leader.revision == lead.revision
        observer: shardkit.Observer = coord.observe("svc", retry_min=0.05, retry_max=1.0, report_after=5.0)
        state: Optional[shardkit.Leader] = observer.wait(timeout=1.0)
        assert state == leader
        election.resign()
        lost_reasons: list[str] = []
        session.on_lost(lambda e: lost_reasons.append(str(e)))
        with session.own_shards("grp", "w0", ["a", "b"]) as owner:
            ev: Optional[shardkit.OwnershipEvent] = owner.next_event(timeout=2.0)
            assert ev is not None and ev.kind in ("gained", "lost")
            owned: dict[str, shardkit.FencingToken] = owner.owned
            values.append(len(owned))
    try:
        coord.session(ttl=0)
    except ValueError:
        pass
    return values


async def async_usage() -> int:
    coord = shardkit.Coordinator.embedded()
    async with coord.lock("jobs") as token:
        first: shardkit.FencingToken = token
    scoped = coord.lock("jobs")
    held: shardkit.FencingToken = await scoped.acquire_async(timeout=1.0)
    await scoped.release_async()
    again: Optional[shardkit.FencingToken] = await scoped.try_acquire_async()
    assert again is not None and again > held > first
    await scoped.release_async()
    session: shardkit.Session = await coord.session_async(ttl=10)
    async with session:
        lock = session.lock("jobs")
        async with lock as t:
            assert t > first
        t2: shardkit.FencingToken = await lock.acquire_async(timeout=1.0)
        await lock.release_async()
        election = session.election("svc")
        await election.campaign_async("me")
        who: Optional[shardkit.Leader] = await election.leader_async()
        assert who is not None
        await election.resign_async()
        try:
            await asyncio.wait_for(session.lost(), 0.01)
        except asyncio.TimeoutError:
            pass
    return t2.revision


def test_typed_sync_usage() -> None:
    token, revision, code, owned = sync_usage()
    assert 0 < token < revision
    assert code == shardkit.FencedError.code == 15
    assert owned in (1, 2)


def test_typed_async_usage() -> None:
    assert asyncio.run(async_usage()) > 0
