"""The Python part of bench/lease.sh: uncontended lock acquire + release.

    python latency.py shardkit (--endpoints LIST | --embedded) [--iters N] [--warmup N] [--out FILE]
    python latency.py etcd3 --endpoints HOST:PORT [--iters N] [--warmup N] [--out FILE]

`shardkit`: one Session and one Lock reused (`session.lock(name)`, then
`acquire()` / `release()`), run with the repository's venv. `etcd3`:
python-etcd3's `client.lock(name, ttl)` reused (`acquire()` / `release()`),
run with the throwaway venv bench/lease.sh makes for it; its `acquire()`
grants a fresh lease every time, which is the library's own way.

Each iteration is timed with time.perf_counter_ns(); the raw samples go out
as JSON and bench/lease/report.py summarises them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable


def run(acquire: Callable[[], Any], release: Callable[[], Any], iters: int, warmup: int) -> dict[str, list[int]]:
    clock = time.perf_counter_ns
    both, acq, rel = [], [], []
    for i in range(warmup + iters):
        t0 = clock()
        acquire()
        t1 = clock()
        release()
        t2 = clock()
        if i >= warmup:
            both.append(t2 - t0)
            acq.append(t1 - t0)
            rel.append(t2 - t1)
    return {"acquire_release_ns": both, "acquire_ns": acq, "release_ns": rel}


def bench_shardkit(args: argparse.Namespace) -> dict[str, Any]:
    import shardkit

    coord = shardkit.Coordinator.embedded() if args.embedded else shardkit.Coordinator.connect(args.endpoints)
    session = coord.session(ttl=args.ttl)
    lock = session.lock(args.name)
    samples = run(lock.acquire, lock.release, args.iters, args.warmup)
    session.close()
    return {"impl": "shardkit-python", "backend": "embedded" if args.embedded else "etcd", **samples}


def bench_etcd3(args: argparse.Namespace) -> dict[str, Any]:
    import etcd3  # type: ignore[import-not-found]

    ep = args.endpoints.split(",")[0].removeprefix("http://")
    host, _, port = ep.rpartition(":")
    client = etcd3.client(host=host, port=int(port), timeout=5)
    lock = client.lock(args.name, ttl=args.ttl)
    samples = run(lock.acquire, lock.release, args.iters, args.warmup)
    client.close()
    return {
        "impl": "python-etcd3",
        "backend": "etcd",
        "version": getattr(etcd3, "__version__", "unknown"),
        **samples,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("impl", choices=["shardkit", "etcd3"])
    p.add_argument("--endpoints")
    p.add_argument("--embedded", action="store_true")
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ttl", type=int, default=10)
    p.add_argument("--name", default="bench-latency-python")
    p.add_argument("--out")
    args = p.parse_args()
    if not args.embedded and not args.endpoints:
        p.error("give --endpoints LIST or --embedded")
    if args.embedded and args.impl != "shardkit":
        p.error("--embedded is shardkit's own store; etcd3 needs --endpoints")
    res = bench_shardkit(args) if args.impl == "shardkit" else bench_etcd3(args)
    res.update(iters=args.iters, warmup=args.warmup, ttl=args.ttl, python=sys.version.split()[0])
    text = json.dumps(res)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
