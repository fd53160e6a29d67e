"""shardkit.Event and shardkit.Pipeline: CloudEvents made and parsed by core,
and stages calling Python handlers (plain, async def, batches) on the
in-process transport, plus one run on a real redis-server when it is
installed: per-key order, replies, retries, dead letters, redrive, drain."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import shardkit
from shardkit import Event, Pipeline

from conftest import free_ports


def wait_for(cond: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def ev(i: int | str, key: str | None = None, **kw: object) -> Event:
    return Event(str(i), "test", "com.example.t", key=key, **kw)  # type: ignore[arg-type]


# --- Event ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, ct",
    [
        ({"a": [1, 2.5, None, True], "b": {"c": "d"}}, None),
        ([1, 2, 3], None),
        (42, None),
        (None, None),
        ("héllo", "text/plain"),
        (b"\x00\xffbin", None),
    ],
)
def test_event_round_trip(data: object, ct: str | None) -> None:
    e = Event(
        "id-1",
        "/orders",
        "com.example.order",
        data=data,
        subject="order-7",
        time="2024-05-01T12:00:00Z",
        key="user-3",
        extensions={"traceparent": "00-abc", "tenant": "acme"},
    )
    assert (e.id, e.source, e.type, e.subject, e.time) == (
        "id-1",
        "/orders",
        "com.example.order",
        "order-7",
        "2024-05-01T12:00:00Z",
    )
    assert e.key == "user-3"
    assert e.datacontenttype == ct
    assert e.data == data
    assert e.extensions == {"traceparent": "00-abc", "tenant": "acme", shardkit.PARTITION_KEY: "user-3"}
    raw = e.to_json()
    assert isinstance(raw, bytes)
    back = Event.from_json(raw)
    assert back == e and not (back != e)
    assert Event.from_json(raw.decode()) == e
    assert back.data == data
    assert "id-1" in repr(e) and "user-3" in repr(e)


def test_event_key_falls_back_to_subject_then_id() -> None:
    assert Event("i", "s", "t").key == "i"
    assert Event("i", "s", "t", subject="sub").key == "sub"
    assert Event("i", "s", "t", subject="sub", key="k").key == "k"
    assert Event("i", "s", "t", data="x", datacontenttype="text/csv").datacontenttype == "text/csv"
    assert Event("i", "s", "t") != Event("j", "s", "t")
    assert Event("i", "s", "t") != "i"
    with pytest.raises(TypeError):
        hash(Event("i", "s", "t"))


@pytest.mark.parametrize(
    "make, named",
    [
        (lambda: Event("", "s", "t"), '"id"'),
        (lambda: Event("i", "", "t"), '"source"'),
        (lambda: Event("i", "s", ""), '"type"'),
        (lambda: Event("i", "s", "t", subject=""), '"subject"'),
        (lambda: Event("i", "s", "t", time="yesterday"), '"yesterday"'),
        (lambda: Event("i", "s", "t", datacontenttype="nonsense"), '"nonsense"'),
        (lambda: Event("i", "s", "t", extensions={"Bad-Name": "v"}), '"Bad-Name"'),
        (lambda: Event("i", "s", "t", extensions={"id": "v"}), '"id"'),
        (lambda: Event("i", "s", "t", extensions={"ok": "a\x01b"}), "U+0001"),
        (lambda: Event("i", "s", "t", key=""), 'key ""'),
        (lambda: Event("i", "s", "t", data=object()), "object"),
        (lambda: Event("i", "s", "t", data=float("nan")), "float"),
        (lambda: Event.from_json(b"{nope"), "not valid JSON"),
        (lambda: Event.from_json('{"specversion": "1.0", "id": "1", "source": "s"}'), '"type"'),
        (lambda: Event.from_json('{"specversion": "0.3", "id": "1", "source": "s", "type": "t"}'), '"0.3"'),
        (lambda: Event.from_json(5), "int"),  # type: ignore[arg-type]
    ],
)
def test_event_validation_names_the_value(make: Callable[[], object], named: str) -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match=re.escape(named)):
        make()


# --- Pipeline: arguments -----------------------------------------------------------


def noop(event: Event) -> None:
    return None


@pytest.mark.parametrize(
    "make, named",
    [
        (lambda: Pipeline("kafka://x"), '"kafka://x"'),
        (lambda: Pipeline(partitions=0), "partitions 0"),
        (lambda: Pipeline(capacity=0), "capacity 0"),
        (lambda: Pipeline().stage("t", max_attempts=0)(noop), "max_attempts 0"),
        (lambda: Pipeline().stage("t", min_backoff=-1), "min_backoff -1"),
        (lambda: Pipeline().stage("t", min_backoff=5, max_backoff=1)(noop), "min_backoff 5000 ms"),
        (lambda: Pipeline().stage("t", reply_topic="t")(noop), 'reply_topic "t"'),
        (lambda: Pipeline().stage("t", concurrency=0), "concurrency 0"),
        (lambda: Pipeline().stage("t", batch=0), "batch 0"),
        (lambda: Pipeline().stage("t", visibility=0.001)(noop), "visibility 1 ms"),
        (lambda: Pipeline().stage("t")(3), "int"),  # type: ignore[type-var]
        (lambda: Pipeline().start(), "no stages"),
        (lambda: Pipeline().publish("t", [1]), "events[0]"),  # type: ignore[list-item]
        (lambda: Pipeline().publish("t", "x"), "str"),  # type: ignore[arg-type]
    ],
)
def test_pipeline_arguments(make: Callable[[], object], named: str) -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match=re.escape(named)):
        make()


def test_duplicate_stage_name_and_unknown_redrive() -> None:
    p = Pipeline()
    p.stage("a")(noop)
    with pytest.raises(shardkit.InvalidArgumentError, match='"noop"'):
        p.stage("b")(noop)
    p.stage("b", name="other")(noop)
    assert p.stages == ["noop", "other"]
    with pytest.raises(shardkit.NotFoundError, match='"nope"'):
        p.redrive("a.dlq", "nope")


# --- Pipeline: stages ----------------------------------------------------------------


def test_sync_stage_per_key_order_and_replies() -> None:
    p = Pipeline(partitions=4)
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()
    threads: set[str] = set()

    @p.stage("orders", reply_topic="invoices", concurrency=8)
    def bill(event: Event) -> Event:
        threads.add(threading.current_thread().name)
        with lock:
            seen.setdefault(event.key, []).append(event.data["seq"])
        return Event(f"inv-{event.id}", "billing", "invoice", key=event.key, data={"of": event.id})

    n_keys, per_key = 10, 20
    events = [ev(f"{k}-{i}", key=f"k{k}", data={"seq": i}) for i in range(per_key) for k in range(n_keys)]
    with p:
        assert p.running
        p.publish("orders", events[:50])
        for e in events[50:]:
            p.publish("orders", e)
        wait_for(lambda: p.stats()["bill"]["handled"] == len(events), what="all handled")
    assert not p.running
    assert seen == {f"k{k}": list(range(per_key)) for k in range(n_keys)}
    replies = p.peek("invoices")
    assert sorted(r.id for r in replies) == sorted(f"inv-{e.id}" for e in events)
    assert all(r.data == {"of": r.id[4:]} for r in replies)
    stats = p.stats()["bill"]
    assert stats["handled"] == stats["emitted"] == len(events)
    assert stats["failures"] == stats["dead_lettered"] == stats["in_flight"] == 0
    assert "MainThread" not in threads


def test_async_stage() -> None:
    p = Pipeline()
    got: list[str] = []
    loops: set[int] = set()

    @p.stage("in", reply_topic="out", concurrency=32)
    async def relay(event: Event) -> list[Event]:
        loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(0.05)
        got.append(event.id)
        return [Event(f"{event.id}-a", "relay", "x"), Event(f"{event.id}-b", "relay", "x")]

    with p:
        started = time.monotonic()
        p.publish("in", [ev(i) for i in range(40)])
        wait_for(lambda: len(got) == 40, what="40 coroutines")
        # 40 sleeps of 50 ms, run concurrently on the loop, not one by one.
        assert time.monotonic() - started < 1.5
    assert len(loops) == 1
    assert sorted(got) == sorted(str(i) for i in range(40))
    assert len(p.peek("out")) == 80
    assert p.stats()["relay"]["emitted"] == 80


def test_batch_stage_sizes_and_failed_item_retried_alone() -> None:
    p = Pipeline()
    sizes: list[int] = []
    calls: list[list[str]] = []
    failed_once: set[str] = set()

    @p.stage("jobs", batch=25, linger=0.05, min_backoff=0.05, concurrency=64)
    def work(events: list[Event]) -> list[Event | BaseException | None]:
        sizes.append(len(events))
        calls.append([e.id for e in events])
        out: list[Event | BaseException | None] = []
        for e in events:
            if e.id == "7" and e.id not in failed_once:
                failed_once.add(e.id)
                out.append(RuntimeError("flaky"))
            else:
                out.append(None)
        return out

    with p:
        p.publish("jobs", [ev(i) for i in range(100)])
        wait_for(lambda: p.stats()["work"]["handled"] == 100, what="100 handled")
    assert max(sizes) > 1
    assert sum(sizes) == 101
    ids = [i for c in calls for i in c]
    assert ids.count("7") == 2 and all(ids.count(str(i)) == 1 for i in range(100) if i != 7)
    retry = [c for c in calls if "7" in c][1]
    assert retry == ["7"]
    assert p.stats()["work"]["failures"] == 1


def test_batch_that_raises_is_bisected_to_its_poison_event() -> None:
    p = Pipeline()

    @p.stage("jobs", batch=16, linger=0.05, max_attempts=2, min_backoff=0.01, max_backoff=0.02)
    def work(events: list[Event]) -> list[None]:
        if any(e.id == "poison" for e in events):
            raise ValueError("cannot handle poison")
        return [None] * len(events)

    with p:
        p.publish("jobs", [ev(i) for i in range(10)] + [ev("poison")] + [ev(i) for i in range(10, 20)])
        wait_for(lambda: len(p.dead_letters("jobs.dlq")) == 1, what="the poison dead-lettered")
        wait_for(lambda: p.stats()["work"]["handled"] == 20, what="the others handled")
    (dead,) = p.dead_letters("jobs.dlq")
    assert dead.id == "poison"
    assert "ValueError: cannot handle poison" in dead.extensions["dlqerror"]


def test_async_batch_stage() -> None:
    p = Pipeline()
    sizes: list[int] = []

    @p.stage("jobs", batch=50, linger=0.05, reply_topic="done")
    async def work(events: list[Event]) -> list[Event]:
        await asyncio.sleep(0.01)
        sizes.append(len(events))
        return [Event(f"done-{e.id}", "w", "done") for e in events]

    with p:
        p.publish("jobs", [ev(i) for i in range(60)])
        wait_for(lambda: p.stats()["work"]["handled"] == 60, what="60 handled")
    assert max(sizes) > 1
    assert len(p.peek("done")) == 60


def test_poison_dead_lettered_permanent_at_once_and_redrive() -> None:
    p = Pipeline()
    attempts: dict[str, int] = {}
    healed = threading.Event()

    @p.stage("orders", max_attempts=3, min_backoff=0.01, max_backoff=0.05)
    def handle(event: Event) -> None:
        attempts[event.id] = attempts.get(event.id, 0) + 1
        if healed.is_set():
            return None
        if event.id == "refused":
            raise shardkit.Permanent("bad order")
        if event.id == "poison":
            raise KeyError("no such customer")
        return None

    with p:
        p.publish("orders", [ev("ok"), ev("poison"), ev("refused")])
        wait_for(lambda: len(p.dead_letters("orders.dlq")) == 2, what="two dead letters")
        dead = {d.id: d for d in p.dead_letters("orders.dlq")}
        assert attempts == {"ok": 1, "poison": 3, "refused": 1}
        poison = dead["poison"].extensions
        assert poison["dlqattempts"] == "3"
        assert poison["dlqreason"] == "failed"
        assert "KeyError: 'no such customer'" in poison["dlqerror"]
        assert poison["dlqtopic"] == "orders" and poison["dlqstage"] == "handle"
        refused = dead["refused"].extensions
        assert refused["dlqattempts"] == "1"
        assert refused["dlqreason"] == "permanent"
        assert "bad order" in refused["dlqerror"]
        stats = p.stats()["handle"]
        assert stats["handled"] == 1 and stats["dead_lettered"] == 2 and stats["failures"] == 4

        healed.set()
        assert p.redrive("orders.dlq", "refused") == 1
        wait_for(lambda: attempts["refused"] == 2, what="refused redriven")
        assert p.redrive("orders.dlq") == 1
        wait_for(lambda: attempts["poison"] == 4, what="poison redriven")
        wait_for(lambda: p.stats()["handle"]["handled"] == 3, what="redriven handled")
    assert p.dead_letters("orders.dlq") == []


def test_bad_handler_results_are_errors_not_crashes() -> None:
    p = Pipeline()

    @p.stage("a", max_attempts=1)
    def wrong_type(event: Event) -> int:
        return 5

    @p.stage("b", max_attempts=1)
    def no_reply_topic(event: Event) -> Event:
        return Event("r", "s", "t")

    @p.stage("c", max_attempts=1, batch=4)
    def short_batch(events: list[Event]) -> list[None]:
        return []

    with p:
        for t in "abc":
            p.publish(t, ev(f"{t}1"))
        wait_for(lambda: all(p.dead_letters(f"{t}.dlq") for t in "abc"), what="three dead letters")
    assert "returned int" in p.dead_letters("a.dlq")[0].extensions["dlqerror"]
    assert "no reply_topic" in p.dead_letters("b.dlq")[0].extensions["dlqerror"]
    assert "0 results for 1 events" in p.dead_letters("c.dlq")[0].extensions["dlqerror"]


def test_filter_skips_and_stage_added_while_running() -> None:
    p = Pipeline()
    got: list[str] = []

    @p.stage("events", filter={"type": "com.example.keep*"})
    def keep(event: Event) -> None:
        got.append(event.id)

    with p:
        p.publish("events", [Event("1", "s", "com.example.keep.a"), Event("2", "s", "com.example.drop")])
        wait_for(lambda: p.stats()["keep"]["skipped"] == 1 and got == ["1"], what="filter")

        late: list[str] = []

        @p.stage("later")
        def added(event: Event) -> None:
            late.append(event.id)

        p.publish("later", ev("x"))
        wait_for(lambda: late == ["x"], what="the stage added while running")


def test_stop_drains_events_in_progress() -> None:
    p = Pipeline()
    done: list[str] = []

    @p.stage("slow", concurrency=4)
    def slow(event: Event) -> None:
        time.sleep(0.3)
        done.append(event.id)

    p.start()
    p.publish("slow", [ev(i) for i in range(4)])
    wait_for(lambda: p.stats()["slow"]["in_flight"] > 0, what="in flight")
    p.stop(drain=10.0)
    assert not p.running
    stats = p.stats()["slow"]
    assert stats["in_flight"] == 0
    assert stats["handled"] == len(done) > 0
    p.stop()  # idempotent
    # What was not received yet is handled by the next run.
    with p:
        wait_for(lambda: len(done) == 4, what="the rest after restart")
    assert p.backlog("slow") == 0


def test_gil_free_while_handlers_run() -> None:
    """A handler thread holding the GIL once per batch does not starve the
    caller: the main thread keeps running Python while events flow."""
    p = Pipeline()

    @p.stage("t", concurrency=64)
    def h(event: Event) -> None:
        return None

    ticks = 0
    with p:
        p.publish("t", [ev(i) for i in range(500)])
        while p.stats()["h"]["handled"] < 500:
            ticks += 1
            time.sleep(0.001)
    assert ticks > 0


# --- Redis Streams -----------------------------------------------------------------------


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed")
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_pipeline(redis_url: str) -> None:
    p = Pipeline(redis_url, partitions=4, prefix=f"t{os.getpid()}:")
    seen: dict[str, list[int]] = {}

    @p.stage("orders", reply_topic="invoices", max_attempts=2, min_backoff=0.01, max_backoff=0.02, lease=1.0)
    def bill(event: Event) -> Event:
        if event.id == "poison":
            raise ValueError("poison")
        seen.setdefault(event.key, []).append(event.data)
        return Event(f"inv-{event.id}", "billing", "invoice", key=event.key)

    events = [ev(f"{k}-{i}", key=f"k{k}", data=i) for i in range(10) for k in range(5)]
    with p:
        p.publish("orders", events + [ev("poison")])
        wait_for(lambda: p.stats()["bill"]["handled"] == 50, what="50 handled on redis")
        wait_for(lambda: len(p.dead_letters("orders.dlq")) == 1, what="dead letter on redis")
    assert seen == {f"k{k}": list(range(10)) for k in range(5)}
    assert len(p.peek("invoices")) == 50
    assert p.dead_letters("orders.dlq")[0].extensions["dlqattempts"] == "2"
    assert p.redrive("orders.dlq") == 1
    assert p.backlog("orders") == 1
