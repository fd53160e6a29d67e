"""The Python half of ``make bench`` (driven by bench/run.sh).

Measures, per key, shardkit's single ``Sharder.lookup`` and batch
``Sharder.lookup_many`` for every algorithm at 10 to 10,000 nodes; beside
them, on the same keys and in the same process, uhashring's
``HashRing(nodes, hash_fn="ketama").get_node`` against shardkit's
``ketama:uhashring`` (checking that both place every key alike), and the
floor any Python sharding pays, ``hash(key) % n`` in a plain loop; and the
throughput of one 1M-key ``lookup_many``. Writes JSON for bench/report.py.

Keys are the SplitMix64 stream of bench/rust/src/main.rs (20 lowercase
letters), so placement checksums can be compared with Rust's.

Usage: python bench/python/bench.py [--quick] --out PATH
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import shardkit
import uhashring.ring_ketama as ring_ketama  # type: ignore[import-untyped]
from uhashring import HashRing

SIZES = (10, 100, 1_000, 10_000)
KEY_LEN = 20
KEYS = 1 << 14
CHECK_KEYS = 4096
BATCH_KEYS = 1_000_000
KEY_SEED = 0x5EED0001
MASK64 = (1 << 64) - 1


def splitmix(state: int) -> Iterator[int]:
    """SplitMix64, as in the Rust, C and Go benchmarks."""
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        yield z ^ (z >> 31)


def make_keys(n: int) -> list[bytes]:
    """The Rust bench's make_keys: byte j of a key is 'a' + (byte j%8 of the
    key's (j/8)-th draw) % 26."""
    rng = splitmix(KEY_SEED)
    keys = []
    for _ in range(n):
        k = bytearray(KEY_LEN)
        r = 0
        for j in range(KEY_LEN):
            if j % 8 == 0:
                r = next(rng)
            k[j] = ord("a") + ((r >> (8 * (j % 8))) & 0xFF) % 26
        keys.append(bytes(k))
    return keys


class Timer:
    """Median seconds per item of ``run()``, which handles ``items`` items;
    passes are calibrated to about ``rep_s`` per repetition."""

    def __init__(self, rep_s: float, reps: int) -> None:
        self.rep_s = rep_s
        self.reps = reps

    def ns_per_item(self, run: Callable[[], object], items: int) -> float:
        passes = 1
        while True:
            t = time.perf_counter()
            for _ in range(passes):
                run()
            e = time.perf_counter() - t
            if e >= self.rep_s / 10:
                passes = max(1, round(passes * self.rep_s / e))
                break
            passes *= 4
        samples = []
        for _ in range(self.reps):
            t = time.perf_counter()
            for _ in range(passes):
                run()
            samples.append((time.perf_counter() - t) / (passes * items) * 1e9)
        return statistics.median(samples)


def node_names(n: int) -> list[str]:
    return [f"node-{i}" for i in range(n)]


def single_loop(lookup: Callable[[Any], object], keys: list[Any]) -> Callable[[], object]:
    def run() -> object:
        r = None
        for k in keys:
            r = lookup(k)
        return r

    return run


def floor_loop(keys: list[str], n: int) -> Callable[[], object]:
    def run() -> object:
        r = 0
        for k in keys:
            r = hash(k) % n
        return r

    return run


@contextmanager
def one_sort_ring_build() -> Iterator[None]:
    """uhashring builds its ring with ``bisect.insort`` per point, which is
    quadratic: 160 points per node take minutes at 1,000 nodes and hours at
    10,000. Inside this block insort appends, and the caller sorts the list
    once, which yields the identical ring (same sorted points, same dict);
    lookups then run uhashring's own, unmodified code."""
    original = ring_ketama.insort
    ring_ketama.insort = lambda a, x: a.append(x)
    try:
        yield
    finally:
        ring_ketama.insort = original


def build_uhashring(names: list[str]) -> tuple[HashRing, bool]:
    """The ring, and whether it was built with the one-sort shortcut."""
    if len(names) < 1000:
        return HashRing(nodes=names, hash_fn="ketama"), False
    with one_sort_ring_build():
        ring = HashRing(nodes=names, hash_fn="ketama")
    ring.runtime._keys.sort()
    return ring, True


def check_shortcut() -> bool:
    """Proves on a 100-node ring that the shortcut builds uhashring's ring."""
    names = node_names(100)
    slow = HashRing(nodes=names, hash_fn="ketama")
    with one_sort_ring_build():
        fast = HashRing(nodes=names, hash_fn="ketama")
    fast.runtime._keys.sort()
    return bool(slow.runtime._keys == fast.runtime._keys and slow.runtime._ring == fast.runtime._ring)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short repetitions (a smoke run)")
    ap.add_argument("--out", required=True, help="where to write the JSON")
    args = ap.parse_args()
    timer = Timer(0.005, 3) if args.quick else Timer(0.03, 7)

    keys = make_keys(KEYS)
    strs = [k.decode("ascii") for k in keys]
    started = time.perf_counter()
    doc: dict[str, Any] = {
        "quick": args.quick,
        "python": sys.version.split()[0],
        "shardkit": shardkit.__version__,
        "keys_cycled": KEYS,
        "batch_size": KEYS,
        "parallel_batch_threshold": shardkit.PARALLEL_BATCH_THRESHOLD,
        "lookups": [],
        "uhashring": [],
        "floor": [],
        "throughput": [],
    }

    for alg in shardkit.ALGORITHMS:
        for n in SIZES:
            s = shardkit.Sharder(node_names(n), alg)
            single = timer.ns_per_item(single_loop(s.lookup, keys), KEYS)
            batch = timer.ns_per_item(lambda: s.lookup_many(keys), KEYS)
            check = sum(s.lookup_many_slots(keys[:CHECK_KEYS]))
            print(f"python: {alg:>16} n={n:<6} single {single:7.1f} ns  batch {batch:6.1f} ns/key", file=sys.stderr)
            doc["lookups"].append(
                {"algorithm": alg, "nodes": n, "ns_single": single, "ns_batch": batch, "check_key": check}
            )

    doc["uhashring_shortcut_verified"] = check_shortcut()
    for n in SIZES:
        names = node_names(n)
        t = time.perf_counter()
        ring, shortcut = build_uhashring(names)
        ring_build_s = time.perf_counter() - t
        s = shardkit.Sharder(names, "ketama:uhashring")
        agree = sum(1 for k in strs if ring.get_node(k) == s.lookup(k))
        peer = timer.ns_per_item(single_loop(ring.get_node, strs), KEYS)
        single = timer.ns_per_item(single_loop(s.lookup, strs), KEYS)
        batch = timer.ns_per_item(lambda: s.lookup_many(strs), KEYS)
        print(
            f"python: uhashring n={n:<6} get_node {peer:7.1f} ns  shardkit single {single:6.1f} ns  "
            f"batch {batch:6.1f} ns/key  agree {agree}/{KEYS}",
            file=sys.stderr,
        )
        doc["uhashring"].append(
            {
                "nodes": n,
                "ns_uhashring": peer,
                "ns_single": single,
                "ns_batch": batch,
                "agree": agree,
                "keys": KEYS,
                "ring_build_s": ring_build_s,
                "one_sort_build": shortcut,
            }
        )
        floor = timer.ns_per_item(floor_loop(strs, n), KEYS)
        doc["floor"].append({"nodes": n, "ns": floor})

    # Random binary keys: regenerating the SplitMix stream in Python would
    # take longer than the measurement, and the batch API takes any bytes.
    blob = random.Random(5).randbytes(KEY_LEN * BATCH_KEYS)
    big = [blob[i : i + KEY_LEN] for i in range(0, len(blob), KEY_LEN)]
    for alg in ("maglev", "jump", "ketama:uhashring"):
        s = shardkit.Sharder(node_names(100), alg)
        reps = 3 if args.quick else 7
        for method in ("lookup_many", "lookup_many_slots"):
            f = getattr(s, method)
            f(big)  # warm-up
            samples = []
            for _ in range(reps):
                t = time.perf_counter()
                f(big)
                samples.append(time.perf_counter() - t)
            sec = statistics.median(samples)
            print(f"python: 1M-key {method} {alg}: {BATCH_KEYS / sec / 1e6:.2f} M keys/s", file=sys.stderr)
            doc["throughput"].append(
                {"algorithm": alg, "nodes": 100, "method": method, "keys": BATCH_KEYS, "seconds": sec,
                 "keys_per_s": BATCH_KEYS / sec}
            )
    doc["seconds"] = time.perf_counter() - started
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
