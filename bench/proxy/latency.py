"""Closed-loop `get` latency through each target: one connection, one
request in flight, every request timed (time.perf_counter_ns from sending to
the whole reply parsed). The targets take turns in rounds, so a change in the
machine's load falls on all of them; each round opens a fresh connection and
warms it up first. Keys `PREFIX0` .. `PREFIX{keys-1}` must already hold
`x` * size (harness.py fill); a miss or a wrong value fails the run.

    python latency.py --target direct=127.0.0.1:11211 --target nutcracker=... \
        --requests 20000 --rounds 4 --keys 1000 --prefix lat: --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import time

from harness import VALUE_BYTE, Conn


def pct(sorted_ns: list[int], p: float) -> float:
    """The p-th percentile (nearest rank), in µs."""
    i = min(len(sorted_ns) - 1, max(0, int(round(p / 100 * len(sorted_ns) + 0.5)) - 1))
    return sorted_ns[i] / 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", action="append", required=True, help="NAME=HOST:PORT")
    ap.add_argument("--requests", type=int, default=20000, help="timed requests per target, all rounds")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=500, help="untimed requests per round")
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--prefix", default="lat:")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    targets = [t.split("=", 1) for t in a.target]
    want = VALUE_BYTE * a.size
    keys = [b"%s%d" % (a.prefix.encode(), i) for i in range(a.keys)]
    samples: dict[str, list[int]] = {name: [] for name, _ in targets}
    round_p50: dict[str, list[float]] = {name: [] for name, _ in targets}
    per_round = max(1, a.requests // a.rounds)
    clock = time.perf_counter_ns
    for r in range(a.rounds):
        for name, addr in targets:
            c = Conn(addr)
            for i in range(a.warmup):
                c.get(keys[i % a.keys])
            out: list[int] = []
            sock = c.sock
            for i in range(per_round):
                k = keys[(i * 7919 + r) % a.keys]
                t0 = clock()
                sock.sendall(b"get " + k + b"\r\n")
                v = c.get_reply()
                out.append(clock() - t0)
                if v != want:
                    raise SystemExit(f"{name} ({addr}): get {k.decode()} answered {v!r:.80} (want {a.size} x)")
            c.close()
            samples[name] += out
            round_p50[name].append(pct(sorted(out), 50))
    res = {}
    for name, addr in targets:
        s = sorted(samples[name])
        res[name] = {
            "addr": addr,
            "n": len(s),
            "p50_us": pct(s, 50),
            "p90_us": pct(s, 90),
            "p99_us": pct(s, 99),
            "p999_us": pct(s, 99.9),
            "mean_us": sum(s) / len(s) / 1000,
            "max_us": s[-1] / 1000,
            "p50_us_per_round": round_p50[name],
        }
        print(f"latency {name}: p50 {res[name]['p50_us']:.1f} µs, p99 {res[name]['p99_us']:.1f} µs over {len(s)} gets")
    json.dump(
        {"requests_per_target": per_round * a.rounds, "rounds": a.rounds, "warmup_per_round": a.warmup,
         "keys": a.keys, "value_bytes": a.size, "targets": res},
        open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
