"""Hot keys: a Zipf(s) read load through one proxy, and how it falls on the
backends. `keys` keys (named as key_names says) are written through the proxy first
(so each sits where that proxy places it); then `gets` single-key gets, key
ranks drawn from Zipf(s) with a fixed seed (rank 0 the hottest), go out over
`conns` connections in pipelined batches of `batch`. Each backend's load is
its `cmd_get` delta from memcached's `stats` around the read phase; the
figure is the busiest backend's load over the mean (1.0 = perfectly even),
for the whole run and for its second half alone.

    python hotkeys.py --target 127.0.0.1:22121 --backends A,B,... --keys 100000 \
        --gets 200000 --s 1.1 --seed 1 --out FILE.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import threading
import time

from harness import Conn, fill, stats


def mix64(x: int) -> int:
    """SplitMix64's finaliser: a fixed, well-spread 64-bit name for each rank."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def key_names(prefix: bytes, n: int) -> list[bytes]:
    """Rank r's key is PREFIX + 16 hex digits of mix64(r). Not PREFIX + r:
    nutcracker's fnv1a_64 keeps the low 32 bits of FNV-1a, whose last step
    multiplies by a prime whose low bits are 0x1b3, so names that differ only in
    their last one or two characters (zipf:0 .. zipf:9) land within a few
    thousand of each other on the 2^32 ketama ring, nearly always on one
    server. Sequential names would put whole runs of ranks on one backend for
    both proxies (shardkit places keys as nutcracker does); spread names
    measure the skew of the load, not of the names."""
    return [b"%s%016x" % (prefix, mix64(i)) for i in range(n)]


def zipf_ranks(keys: int, s: float, n: int, seed: int) -> tuple[list[int], float]:
    weights = [1.0 / (k + 1) ** s for k in range(keys)]
    total = sum(weights)
    cum = list(itertools.accumulate(weights))
    return random.Random(seed).choices(range(keys), cum_weights=cum, k=n), weights[0] / total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--backends", required=True, help="comma-separated HOST:PORT of every backend")
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--gets", type=int, default=200000)
    ap.add_argument("--s", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--prefix", default="zipf:")
    ap.add_argument("--names", choices=["mixed", "sequential"], default="mixed",
                    help="mixed: PREFIX + hex(mix64(rank)) (see key_names); sequential: PREFIX + rank")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    backends = a.backends.split(",")
    if a.names == "mixed":
        keys = key_names(a.prefix.encode(), a.keys)
    else:
        keys = [b"%s%d" % (a.prefix.encode(), i) for i in range(a.keys)]
    t0 = time.monotonic()
    fill(a.target, keys, a.size)
    fill_s = time.monotonic() - t0
    ranks, top_share = zipf_ranks(a.keys, a.s, a.gets, a.seed)
    reqs = [b"get " + k + b"\r\n" for k in keys]
    before = [int(stats(b)["cmd_get"]) for b in backends]
    results: list[tuple[int, int] | BaseException] = [(0, 0)] * a.conns

    def worker(j: int, ranks: list[int]) -> None:
        try:
            c = Conn(a.target)
            mine = ranks[j :: a.conns]
            hits = misses = 0
            for i in range(0, len(mine), a.batch):
                chunk = mine[i : i + a.batch]
                c.sock.sendall(b"".join([reqs[r] for r in chunk]))
                h, m = c.count_gets(len(chunk))
                hits += h
                misses += m
            c.close()
            results[j] = (hits, misses)
        except BaseException as e:  # reported below
            results[j] = e

    # Two halves back to back, the backends' counters read between them: the
    # whole run is the figure; the second half shows the steady state, after
    # whatever the proxy needed to notice the hot keys.
    half = len(ranks) // 2
    phases = [ranks[:half], ranks[half:]]
    elapsed = 0.0
    hits = misses = 0
    marks = [before]
    for phase in phases:
        results[:] = [(0, 0)] * a.conns
        threads = [threading.Thread(target=worker, args=(j, phase)) for j in range(a.conns)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed += time.monotonic() - t0
        for r in results:
            if isinstance(r, BaseException):
                raise SystemExit(f"load through {a.target} failed: {r!r}")
        hits += sum(r[0] for r in results)  # type: ignore[index]
        misses += sum(r[1] for r in results)  # type: ignore[index]
        marks.append([int(stats(b)["cmd_get"]) for b in backends])
    load = [x - y for x, y in zip(marks[-1], marks[0])]
    load2 = [x - y for x, y in zip(marks[2], marks[1])]
    mean = sum(load) / len(load)
    peak = max(load)
    mean2 = sum(load2) / len(load2)
    res = {
        "target": a.target, "names": a.names, "prefix": a.prefix, "keys": a.keys, "gets": a.gets, "s": a.s, "seed": a.seed, "conns": a.conns,
        "batch": a.batch, "fill_s": fill_s, "elapsed_s": elapsed, "gets_per_s": a.gets / elapsed,
        "hits": hits, "misses": misses, "hottest_key_share": top_share,
        "hottest_key_reads_per_200ms": a.gets * top_share / elapsed * 0.2,
        "backend_gets": load, "backend_total": sum(load), "peak_over_mean": peak / mean if mean else None,
        "second_half": {"backend_gets": load2, "backend_total": sum(load2),
                        "peak_over_mean": max(load2) / mean2 if mean2 else None},
    }
    print(f"hotkeys {a.target}: {a.gets} gets in {elapsed:.2f} s ({a.gets / elapsed:,.0f}/s), {misses} misses; "
          f"backend gets {load}: peak/mean {res['peak_over_mean']:.2f} "
          f"(second half: {res['second_half']['peak_over_mean']:.2f})")
    json.dump(res, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
