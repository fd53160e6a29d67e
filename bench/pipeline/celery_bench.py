"""Celery on the same redis-server: N tasks of a no-op enqueued first, then
a worker (a child process, threads pool, concurrency 8) is timed until it
has run them all (each task INCRs a counter). Prints JSON.

Usage: celery_bench.py REDIS_PORT TASKS
"""

import json
import os
import subprocess
import sys
import time

import redis
from celery import Celery

# The worker process imports this module with celery's own arguments: it
# finds the port in the environment.
port = int(os.environ.get("CELERY_BENCH_PORT") or sys.argv[1])
url = f"redis://127.0.0.1:{port}/3"
app = Celery("celery_bench", broker=url)
app.conf.task_ignore_result = True
app.conf.worker_prefetch_multiplier = 64


@app.task(name="bench.handle")
def handle(i: int) -> None:
    redis.Redis(host="127.0.0.1", port=port, db=4).incr("celery-done")


if __name__ == "__main__":
    n = int(sys.argv[2])
    r = redis.Redis(host="127.0.0.1", port=port, db=4)
    r.delete("celery-done")
    redis.Redis(host="127.0.0.1", port=port, db=3).flushdb()
    for i in range(n):
        handle.delay(i)
    here = os.path.dirname(os.path.abspath(__file__))
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_bench", "worker", "--pool=threads",
         "--concurrency=8", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=here, env={**os.environ, "CELERY_BENCH_PORT": str(port)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # Timed from the first task done, so the worker's start-up (a second or
    # two of imports) is not counted against it.
    deadline = time.perf_counter() + 600
    while int(r.get("celery-done") or 0) < 1 and time.perf_counter() < deadline:
        time.sleep(0.001)
    t0 = time.perf_counter()
    first = int(r.get("celery-done") or 0)
    while int(r.get("celery-done") or 0) < n and time.perf_counter() < deadline:
        time.sleep(0.01)
    secs = time.perf_counter() - t0
    done = int(r.get("celery-done") or 0) - first
    worker.terminate()
    worker.wait(timeout=30)
    import celery as _c
    print(json.dumps({"events": n, "events_per_s": done / secs if secs > 0 else None, "celery": _c.__version__}))
