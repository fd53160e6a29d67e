"""Dramatiq on the same redis-server: N messages to a no-op actor enqueued
first, then a worker (in this process, 8 threads) is timed until it has
processed them all. Prints JSON.

Usage: dramatiq_bench.py REDIS_PORT MESSAGES
"""

import json
import sys
import threading
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

port, n = int(sys.argv[1]), int(sys.argv[2])
# Dramatiq's default middleware, less Prometheus (an exporter is not part
# of the work being measured, and it is broken when imported this way).
middleware = [m() for m in dramatiq.middleware.default_middleware if m.__name__ != "Prometheus"]
broker = RedisBroker(host="127.0.0.1", port=port, namespace="bench-dramatiq", middleware=middleware)
broker.flush_all()
dramatiq.set_broker(broker)
done = 0
lock = threading.Lock()
finished = threading.Event()


@dramatiq.actor(max_retries=0, queue_name="bench")
def handle(n_: int) -> None:
    global done
    with lock:
        done += 1
        if done == n:
            finished.set()


for i in range(n):
    handle.send(i)
t0 = time.perf_counter()
worker = dramatiq.Worker(broker, worker_threads=8)
worker.start()
finished.wait(timeout=600)
secs = time.perf_counter() - t0
worker.stop()
print(json.dumps({"events": n, "events_per_s": done / secs, "dramatiq": dramatiq.__version__}))
