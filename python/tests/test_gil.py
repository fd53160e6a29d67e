"""lookup_many releases the GIL: another Python thread keeps running while a
large batch is placed. Checked against a control call that holds the GIL
(list.sort of ints), so the measurement itself is shown to tell the two apart.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable

import shardkit

# Thread switches happen at most every switch interval; progress is only
# counted well inside the call, away from its edges.
MARGIN = 0.02


def ticks_during(call: Callable[[], object]) -> tuple[int, float]:
    """Runs `call` while a Python thread spins; returns how many of that thread's
    iterations fell inside the call (minus MARGIN at each end), and the call's
    duration."""
    stamps: list[float] = []
    stop = threading.Event()
    started = threading.Event()

    def spin() -> None:
        clock = time.perf_counter
        append = stamps.append
        started.set()
        while not stop.is_set():
            append(clock())

    t = threading.Thread(target=spin)
    t.start()
    started.wait()
    try:
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    inside = sum(1 for s in stamps if t0 + MARGIN < s < t1 - MARGIN)
    return inside, t1 - t0


def test_lookup_many_releases_the_gil() -> None:
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        s = shardkit.Sharder([f"node-{i}" for i in range(64)], "ketama:nginx")
        keys = [b"user:%d" % i for i in range(200_000)]
        # Make the batch long enough to measure on a slow (debug) build.
        n = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                s.lookup_many(keys)
            if time.perf_counter() - t0 > 0.3:
                break
            n *= 2
        batch = keys * n

        ours, ours_s = ticks_during(lambda: s.lookup_many(batch))

        ints = [random.random() for _ in range(len(batch) // 2)]
        control, control_s = ticks_during(lambda: sorted(ints))
    finally:
        sys.setswitchinterval(old)

    assert ours_s > 4 * MARGIN, "batch too short to measure"
    # The spinning thread manages millions of iterations a second; with the
    # GIL free for most of the call it must log far more than a handful.
    assert ours >= 1000, f"only {ours} iterations of another thread ran during a {ours_s:.3f}s lookup_many"
    if control_s > 4 * MARGIN:
        assert control < ours / 10, f"control (GIL held) let {control} iterations run in {control_s:.3f}s"
