"""Scatter/gather against real HTTP leaves (a ThreadingHTTPServer on
127.0.0.1), callables and coroutine functions: coverage, deadlines, errors
naming the leaf, hedging, and cancellation of leaf calls that lost."""

from __future__ import annotations

import _thread
import asyncio
import socket
import threading
import time
from typing import Any

import pytest

import shardkit
from conftest import Leaves


@pytest.fixture(scope="module")
def closed_url() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/refused"


# --- HTTP leaves --------------------------------------------------------------


def test_gather_all_answers_in_leaf_order(leaves: Leaves) -> None:
    s = shardkit.Scatter([leaves.url(f"/echo/{i}") for i in range(3)])
    assert len(s) == 3
    request = {"q": "tail", "n": [1, 2.5, None, True], "u": "é"}
    got = s.gather(request, timeout=5)
    assert got.answers == [(i, {"leaf": str(i), "got": request}) for i in range(3)]
    assert got.missing == []
    assert (got.answered, got.total, got.degraded) == (3, 3, False)
    assert "3/3" in repr(got)


def test_best_effort_with_a_slow_leaf_returns_at_the_deadline(leaves: Leaves) -> None:
    urls = [leaves.url("/echo/0"), leaves.url("/slow"), leaves.url("/echo/2")]
    s = shardkit.Scatter(urls)
    t0 = time.monotonic()
    got = s.gather("q", timeout=0.3, coverage="best_effort")
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 1.0, elapsed
    assert [i for i, _ in got.answers] == [0, 2]
    assert (got.answered, got.total, got.degraded) == (2, 3, True)
    [(i, err)] = got.missing
    assert i == 1
    assert isinstance(err, shardkit.ShardkitTimeoutError) and isinstance(err, TimeoutError)
    assert "shard-1" in str(err)


def test_a_cut_off_http_call_is_dropped(leaves: Leaves) -> None:
    s = shardkit.Scatter([leaves.url("/echo/0"), leaves.url("/hang")])
    leaves.dropped.clear()
    got = s.gather("q", timeout=0.2, coverage="best_effort")
    assert got.answered == 1
    # The connection is closed when the gather returns, not when the leaf answers.
    assert leaves.dropped.wait(0.5)


def test_require_all_with_a_slow_leaf_raises_timeout(leaves: Leaves) -> None:
    s = shardkit.Scatter([leaves.url("/echo/0"), leaves.url("/slow")])
    t0 = time.monotonic()
    with pytest.raises(shardkit.ShardkitTimeoutError, match=r"coverage 1/2.*shard-1") as e:
        s.gather("q", timeout=0.2)
    assert time.monotonic() - t0 < 1.0
    assert e.value.code == 12


def test_malformed_json_names_the_url(leaves: Leaves) -> None:
    url = leaves.url("/malformed")
    s = shardkit.Scatter([leaves.url("/echo/0"), url])
    with pytest.raises(shardkit.UnavailableError, match="malformed JSON"):
        s.gather("q", timeout=5)
    got = s.gather("q", timeout=5, coverage="best_effort")
    [(i, err)] = got.missing
    assert i == 1
    assert isinstance(err, shardkit.BadResponseError) and isinstance(err, ConnectionError)
    assert err.code == 17
    assert url in str(err) and "malformed JSON" in str(err)


@pytest.mark.parametrize(("path", "status", "text"), [("/status500", 500, "index corrupt"), ("/status404", 404, "no such index")])
def test_wrong_status_names_url_status_and_body(leaves: Leaves, path: str, status: int, text: str) -> None:
    url = leaves.url(path)
    s = shardkit.Scatter([url])
    with pytest.raises(shardkit.UnavailableError) as e:
        s.gather({}, timeout=5)
    assert url in str(e.value) and str(status) in str(e.value) and text in str(e.value)
    with pytest.raises(shardkit.BadResponseError) as e2:
        s.first({}, timeout=5)
    assert url in str(e2.value) and str(status) in str(e2.value)


def test_connection_refused_is_unavailable(leaves: Leaves, closed_url: str) -> None:
    s = shardkit.Scatter([leaves.url("/echo/0"), closed_url])
    got = s.gather([1], timeout=5, coverage=1)
    [(i, err)] = got.missing
    assert i == 1 and isinstance(err, shardkit.UnavailableError)
    assert closed_url in str(err)
    with pytest.raises(shardkit.UnavailableError):
        s.gather([1], timeout=5)


def test_a_leaf_fails_over_to_its_other_replica(leaves: Leaves, closed_url: str) -> None:
    s = shardkit.Scatter([[closed_url, leaves.url("/echo/0")]])
    for _ in range(5):
        assert s.first("x", timeout=5) == {"leaf": "0", "got": "x"}


def test_k_of_n(leaves: Leaves) -> None:
    urls = [leaves.url("/echo/0"), leaves.url("/status500"), leaves.url("/echo/2"), leaves.url("/malformed")]
    s = shardkit.Scatter(urls)
    got = s.gather(7, timeout=5, coverage=2)
    assert [i for i, _ in got.answers] == [0, 2]
    assert [i for i, _ in got.missing] == [1, 3]
    assert all(isinstance(e, shardkit.BadResponseError) for _, e in got.missing)
    with pytest.raises(shardkit.UnavailableError, match="at least 3 of 4"):
        s.gather(7, timeout=5, coverage=3)
    with pytest.raises(shardkit.InvalidArgumentError, match="5"):
        s.gather(7, timeout=5, coverage=5)
    for bad in (0, -1, "most", True, 1.5):
        with pytest.raises(shardkit.InvalidArgumentError, match="coverage"):
            s.gather(7, timeout=5, coverage=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("coverage", "answers"),
    [("all", 3), ("best-effort", 2), ("best_effort", 2), ("2", 2), ("2/3", 2), (2, 2), (" 2 / 3 ", 2)],
)
def test_every_coverage_spelling_is_accepted(leaves: Leaves, coverage: str | int, answers: int) -> None:
    # One leaf of three fails: only "all" asks for more than two answers.
    s = shardkit.Scatter([leaves.url("/echo/0"), leaves.url("/echo/1"), leaves.url("/status500")])
    if answers == 3:
        with pytest.raises(shardkit.UnavailableError, match="require all 3"):
            s.gather(7, timeout=5, coverage=coverage)
        s = shardkit.Scatter([leaves.url(f"/echo/{i}") for i in range(3)])
    got = s.gather(7, timeout=5, coverage=coverage)
    assert len(got.answers) == answers


@pytest.mark.parametrize(
    ("coverage", "says"),
    [
        ("most", 'coverage "most": expected all, best-effort, K or K/N'),
        ("", 'coverage "": expected all, best-effort, K or K/N'),
        ("All", 'coverage "All": expected all, best-effort, K or K/N'),
        ("0", "coverage 0: K must be between 1 and the 3 leaves"),
        ("4", "coverage 4: K must be between 1 and the 3 leaves"),
        ("2/4", 'coverage "2/4": N is 4 but the scatter has 3 leaves'),
        (-1, 'coverage "-1": expected all, best-effort, K or K/N'),
        (0, "coverage 0: K must be between 1 and the 3 leaves"),
        (4, "coverage 4: K must be between 1 and the 3 leaves"),
        (2**70, 'coverage "1180591620717411303424": expected all'),
    ],
)
def test_each_bad_coverage_is_refused_naming_the_value(leaves: Leaves, coverage: str | int, says: str) -> None:
    s = shardkit.Scatter([leaves.url(f"/echo/{i}") for i in range(3)])
    sent = sum(leaves.calls.values())
    for call in (s.gather, s.gather_async):
        with pytest.raises(shardkit.InvalidArgumentError) as e:
            call(7, timeout=5, coverage=coverage)
        assert isinstance(e.value, ValueError)
        assert str(e.value).startswith(says), str(e.value)
    # Refused before anything was sent.
    assert sum(leaves.calls.values()) == sent


def test_bad_arguments(leaves: Leaves) -> None:
    s = shardkit.Scatter([leaves.url("/echo/0")])
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(shardkit.InvalidArgumentError, match="timeout") as e:
            s.gather("q", timeout=bad)
        assert isinstance(e.value, ValueError)
        with pytest.raises(shardkit.InvalidArgumentError, match="timeout"):
            s.first("q", timeout=bad)
    with pytest.raises(TypeError, match="not JSON serializable"):
        s.gather({1, 2}, timeout=1)
    with pytest.raises(ValueError):
        s.gather(float("nan"), timeout=1)


def test_bad_leaves() -> None:
    with pytest.raises(shardkit.EmptyNodeSetError) as e:
        shardkit.Scatter([])
    assert e.value.code == 2
    for url in ("127.0.0.1:80/x", "https://127.0.0.1/x", "http:///x", "not a url"):
        with pytest.raises(shardkit.InvalidArgumentError) as e2:
            shardkit.Scatter(["http://127.0.0.1:1/ok", url])
        assert isinstance(e2.value, ValueError) and url in str(e2.value)
    with pytest.raises(shardkit.InvalidArgumentError, match="no replicas"):
        shardkit.Scatter([[]])
    with pytest.raises(TypeError, match="leaf 1.*int"):
        shardkit.Scatter(["http://127.0.0.1:1/ok", 42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list"):
        shardkit.Scatter("http://127.0.0.1:1/ok")
    with pytest.raises(shardkit.InvalidArgumentError, match="percentile"):
        shardkit.Scatter(["http://127.0.0.1:1/ok"], hedge=True, hedge_percentile=1.5)


def test_first_needs_exactly_one_leaf(leaves: Leaves) -> None:
    s = shardkit.Scatter([leaves.url("/echo/0"), leaves.url("/echo/1")])
    with pytest.raises(shardkit.InvalidArgumentError, match="exactly one leaf"):
        s.first("q", timeout=1)
    one = shardkit.Scatter([[leaves.url("/echo/0"), leaves.url("/echo/1")]])
    assert one.first("q", timeout=5)["got"] == "q"
    with pytest.raises(shardkit.ShardkitTimeoutError):
        shardkit.Scatter([leaves.url("/slow")]).first("q", timeout=0.1)


def test_metrics_count_calls_errors_and_timeouts(leaves: Leaves) -> None:
    s = shardkit.Scatter([leaves.url("/echo/0"), leaves.url("/status500"), leaves.url("/slow")])
    assert s.metrics()[0]["p50"] is None
    for _ in range(3):
        s.gather("q", timeout=0.15, coverage="best_effort")
    m = s.metrics()
    assert [x["name"] for x in m] == [
        f"shard-0 ({leaves.url('/echo/0')})",
        f"shard-1 ({leaves.url('/status500')})",
        f"shard-2 ({leaves.url('/slow')})",
    ]
    assert [x["calls"] for x in m] == [3, 3, 3]
    assert [x["errors"] for x in m] == [0, 3, 0]
    assert [x["timeouts"] for x in m] == [0, 0, 3]
    assert m[0]["samples"] == 3
    p50, p99 = m[0]["p50"], m[0]["p99"]
    assert p50 is not None and p99 is not None and 0 < p50 <= p99 < 0.15
    assert m[0]["replicas"][0]["calls"] == 3 and m[0]["replicas"][0]["outstanding"] == 0
    assert m[2]["replicas"][0]["outstanding"] == 0, "timed-out calls were dropped"


def test_ctrl_c_interrupts_a_blocking_gather_and_drops_its_calls(leaves: Leaves) -> None:
    s = shardkit.Scatter([leaves.url("/slow"), leaves.url("/slow")])
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            s.gather("q", timeout=30)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 1.5
    assert [r["outstanding"] for m in s.metrics() for r in m["replicas"]] == [0, 0]


# --- hedging --------------------------------------------------------------------


def p99_of(s: shardkit.Scatter, calls: int) -> tuple[float, int]:
    lat = []
    for _ in range(calls):
        t0 = time.monotonic()
        s.first({}, timeout=5)
        lat.append(time.monotonic() - t0)
    lat.sort()
    return lat[int(0.99 * len(lat)) - 1], sum(1 for x in lat if x >= 0.2)


def test_hedging_cuts_the_tail(leaves: Leaves) -> None:
    # Two replicas, each slow (200 ms) on every 25th call, fast (~1 ms)
    # otherwise. Unhedged, 4% of calls take 200 ms, so p99 does; hedged
    # after p90, the second copy answers fast.
    def replicas(tag: str) -> list[str]:
        return [leaves.url(f"/sometimes/{tag}-a"), leaves.url(f"/sometimes/{tag}-b")]

    plain = shardkit.Scatter([replicas("plain")])
    hedged = shardkit.Scatter([replicas("hedged")], hedge=True, hedge_percentile=0.9, hedge_budget=0.2)
    p99_plain, slow_plain = p99_of(plain, 200)
    p99_hedged, slow_hedged = p99_of(hedged, 200)
    assert slow_plain >= 6, slow_plain
    assert p99_plain >= 0.2
    assert p99_hedged < 0.1, (p99_hedged, slow_hedged)
    assert slow_hedged <= 2
    m = hedged.metrics()[0]
    assert m["hedges_sent"] >= 5 and m["hedges_won"] >= 5, m
    assert plain.metrics()[0]["hedges_sent"] == 0


def test_tied_requests_take_the_faster_copy(leaves: Leaves) -> None:
    s = shardkit.Scatter([[leaves.url("/slow"), leaves.url("/echo/0")]], tied=True)
    t0 = time.monotonic()
    for _ in range(3):
        assert s.first(1, timeout=1)["got"] == 1
    assert time.monotonic() - t0 < 1.0
    assert s.metrics()[0]["hedges_sent"] == 3


# --- callables and coroutines ---------------------------------------------------


def test_callable_leaves_get_the_object_as_is() -> None:
    seen = []

    class Query:
        pass

    def shard(i: int) -> Any:
        def answer(q: Any) -> Any:
            seen.append(q)
            return (i, q)

        return answer

    q = Query()
    s = shardkit.Scatter([shard(0), shard(1)])
    got = s.gather(q, timeout=5)
    assert got.answers == [(0, (0, q)), (1, (1, q))]
    assert all(x is q for x in seen) and len(seen) == 2


def test_a_raising_callable_is_missing_with_its_exception_as_cause() -> None:
    def bad(q: Any) -> Any:
        raise KeyError("no shard for " + q)

    s = shardkit.Scatter([lambda q: q, bad])
    got = s.gather("x", timeout=5, coverage="best_effort")
    assert got.answers == [(0, "x")]
    [(i, err)] = got.missing
    assert i == 1 and isinstance(err, shardkit.BadResponseError)
    assert "leaf 1 callable" in str(err) and "bad" in str(err) and "KeyError" in str(err)
    assert isinstance(err.__cause__, KeyError) and "no shard for x" in str(err.__cause__)
    with pytest.raises(shardkit.UnavailableError, match="KeyError"):
        s.gather("x", timeout=5)
    only = shardkit.Scatter([bad])
    with pytest.raises(shardkit.BadResponseError) as e:
        only.first("y", timeout=5)
    assert isinstance(e.value.__cause__, KeyError)


def test_a_slow_callable_is_cut_off_and_its_result_discarded() -> None:
    finished = threading.Event()

    def slow(q: Any) -> Any:
        time.sleep(0.3)
        finished.set()
        return "late"

    s = shardkit.Scatter([lambda q: "fast", slow])
    t0 = time.monotonic()
    got = s.gather(None, timeout=0.1, coverage="best_effort")
    assert time.monotonic() - t0 < 0.25
    assert got.answers == [(0, "fast")] and got.missing[0][0] == 1
    assert finished.wait(2), "a running callable finishes; only its result is dropped"


def test_mixed_leaves(leaves: Leaves) -> None:
    s = shardkit.Scatter([leaves.url("/echo/0"), lambda q: {"callable": q}])
    got = s.gather({"k": 1}, timeout=5)
    assert got.answers == [(0, {"leaf": "0", "got": {"k": 1}}), (1, {"callable": {"k": 1}})]


def test_blocking_gather_refuses_coroutine_leaves() -> None:
    async def leaf(q: Any) -> Any:
        return q

    s = shardkit.Scatter([leaf])
    with pytest.raises(shardkit.InvalidArgumentError, match="gather_async"):
        s.gather(1, timeout=1)
    with pytest.raises(shardkit.InvalidArgumentError, match="first_async"):
        s.first(1, timeout=1)


def test_gather_async_http_and_coroutines(leaves: Leaves) -> None:
    async def leaf(q: Any) -> Any:
        await asyncio.sleep(0.01)
        return {"coro": q}

    async def main() -> tuple[shardkit.Gathered, Any]:
        s = shardkit.Scatter([leaves.url("/echo/0"), leaf, lambda q: q * 2])
        got = await s.gather_async(21, timeout=5)
        first = await shardkit.Scatter([leaf]).first_async(3, timeout=5)
        return got, first

    got, first = asyncio.run(main())
    assert got.answers == [(0, {"leaf": "0", "got": 21}), (1, {"coro": 21}), (2, 42)]
    assert first == {"coro": 3}


def test_losing_coroutines_are_cancelled_before_gather_returns() -> None:
    events: list[str] = []

    async def slow(q: Any) -> Any:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            events.append("finally")
        return "late"

    async def fast(q: Any) -> Any:
        return "fast"

    async def main() -> shardkit.Gathered:
        s = shardkit.Scatter([fast, slow])
        got = await s.gather_async(None, timeout=0.2, coverage="best_effort")
        events.append("returned")
        return got

    t0 = time.monotonic()
    got = asyncio.run(main())
    assert time.monotonic() - t0 < 1.0
    assert got.answers == [(0, "fast")]
    assert isinstance(got.missing[0][1], shardkit.ShardkitTimeoutError)
    assert events == ["cancelled", "finally", "returned"]


def test_cancelling_gather_async_cancels_leaf_coroutines(leaves: Leaves) -> None:
    events: list[str] = []

    async def main() -> None:
        running = asyncio.Event()

        async def leaf(q: Any) -> Any:
            running.set()
            try:
                await asyncio.sleep(10)
            finally:
                events.append("leaf finally")

        s = shardkit.Scatter([leaf, leaves.url("/slow")])
        task = asyncio.ensure_future(s.gather_async("q", timeout=30))
        await asyncio.wait_for(running.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The cancel travels to the runtime and back to this loop.
        for _ in range(100):
            if events:
                break
            await asyncio.sleep(0.01)
        # Checked inside the loop: asyncio.run would cancel a leftover task.
        assert events == ["leaf finally"]

    t0 = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - t0 < 2.0


def test_a_raising_coroutine_is_chained() -> None:
    async def bad(q: Any) -> Any:
        raise ValueError(f"bad query {q!r}")

    async def main() -> shardkit.Gathered:
        return await shardkit.Scatter([bad, lambda q: 1]).gather_async("z", timeout=5, coverage=1)

    got = asyncio.run(main())
    [(i, err)] = got.missing
    assert i == 0 and isinstance(err, shardkit.BadResponseError)
    assert isinstance(err.__cause__, ValueError) and "bad query 'z'" in str(err.__cause__)
