"""Python-level lookup figures: single lookup vs uhashring on the same ring,
and batch throughput. Not a test (no pass/fail on time); run it against a
release build:

    maturin build --release -o /tmp/wheels && pip install /tmp/wheels/shardkit-*.whl
    python python/tools/bench_lookup.py [--nodes 100] [--batch 1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import shardkit


def best_of(repeat: int, fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def cpu_best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Single-threaded loops are timed in thread CPU time, so that other
    processes on a busy machine do not inflate them."""
    return best_of(repeat, fn, time.thread_time)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--batch", type=int, default=1_000_000)
    ap.add_argument("--single", type=int, default=200_000, help="keys for the single-lookup loops")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    names = [f"10.0.{i // 250}.{i % 250}:11211" for i in range(args.nodes)]
    str_keys = [f"user:{i}" for i in range(args.single)]
    byte_keys = [k.encode() for k in str_keys]
    print(f"shardkit {shardkit.__version__} from {shardkit.__file__}; Python {sys.version.split()[0]}")

    ring = None
    try:
        from uhashring import HashRing

        ring = HashRing(names, hash_fn="ketama")
    except ImportError:
        print("uhashring not installed: no peer figure")

    ours = shardkit.Sharder(names, "ketama:uhashring")
    lookup = ours.lookup
    default = shardkit.Sharder(names)
    t_default = cpu_best_of(args.repeat, lambda: [default.lookup(k) for k in byte_keys]) / len(byte_keys)
    t_ours_str = cpu_best_of(args.repeat, lambda: [lookup(k) for k in str_keys]) / len(str_keys)
    t_ours_bytes = cpu_best_of(args.repeat, lambda: [lookup(k) for k in byte_keys]) / len(byte_keys)
    t_loop = cpu_best_of(args.repeat, lambda: [k for k in str_keys]) / len(str_keys)
    print(f"single lookup, ketama:uhashring, {args.nodes} nodes:")
    print(f"  shardkit lookup(str)   {t_ours_str * 1e9:8.1f} ns   (list-comprehension overhead ~{t_loop * 1e9:.0f} ns)")
    print(f"  shardkit lookup(bytes) {t_ours_bytes * 1e9:8.1f} ns")
    if ring is not None:
        get_node = ring.get_node
        n = min(len(str_keys), 50_000)
        t_peer = cpu_best_of(max(1, args.repeat // 2), lambda: [get_node(k) for k in str_keys[:n]]) / n
        print(f"  uhashring get_node     {t_peer * 1e9:8.1f} ns   -> shardkit is {t_peer / t_ours_str:.1f}x faster (str keys)")
        print(
            f"  shardkit {default.algorithm} (default) lookup(bytes) {t_default * 1e9:.1f} ns"
            f" -> {t_peer / t_default:.1f}x uhashring's get_node"
        )

    batch = [b"user:%d" % i for i in range(args.batch)]
    for algorithm in shardkit.ALGORITHMS:
        s = shardkit.Sharder(names, algorithm)
        t = best_of(args.repeat, lambda: s.lookup_many(batch))
        ts = best_of(args.repeat, lambda: s.lookup_many_slots(batch))
        print(
            f"lookup_many {algorithm:<18} {args.batch:>9,} bytes keys: {args.batch / t / 1e6:6.1f} M keys/s"
            f"  (slots: {args.batch / ts / 1e6:6.1f} M keys/s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
