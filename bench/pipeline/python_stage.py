"""Python handlers through a shardkit stage, in process: events/s with a
batch handler (the GIL taken once per batch) and with a one-event handler,
both doing nothing. Prints JSON.

Usage: python_stage.py EVENTS
"""

import json
import sys
import time

import shardkit

n = int(sys.argv[1])


def run(batch: int | None) -> float:
    p = shardkit.Pipeline("memory", partitions=8, capacity=n)
    done = [0]

    if batch:

        @p.stage("t", name="b", batch=batch, concurrency=1024, linger=0.001)
        def handle_batch(events: list[shardkit.Event]) -> list[None]:
            done[0] += len(events)
            return [None] * len(events)

    else:

        @p.stage("t", name="one", concurrency=1024)
        def handle_one(event: shardkit.Event) -> None:
            done[0] += 1

    events = [shardkit.Event(f"e{i}", "/bench", "bench.event", key=f"k{i % 10000}") for i in range(n)]
    for i in range(0, n, 1000):
        p.publish("t", events[i : i + 1000])
    t0 = time.perf_counter()
    p.start()
    while done[0] < n:
        time.sleep(0.001)
    secs = time.perf_counter() - t0
    p.stop(drain=5.0)
    return n / secs


print(json.dumps({"events": n, "batched_events_per_s": run(1000), "single_events_per_s": run(None)}))
