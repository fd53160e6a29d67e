"""Crash failover: a lock holder process is kill -9'd; how long until a
contender process, already queued, holds the lock?

    python failover.py --endpoints URL --cli target/release/shardkit \
        --stamp bench/build/target/release/shardkit-lease-bench \
        --go bench/build/lease/lease-bench-go --runs 2:3,10:2 --out FILE

shardkit: the holder is `shardkit lock NAME --ttl T -- sh -c 'echo $$ ...;
exec sleep 1000'`, the contender `shardkit lock NAME --ttl T --
shardkit-lease-bench stamp` (CMD prints CLOCK_MONOTONIC when it starts, so
the figure includes spawning CMD, about a millisecond). Go peer: etcd's
concurrency.Mutex with a session of the same TTL (lease-bench-go hold /
wait). The driver stamps the kill with the same clock, and an `etcdctl
watch` on the lock prefix shows when the server deleted the holder's key
(its lease expired), splitting the figure into lease expiry and hand-off.

The kill comes at a random point (seeded) of the holder's keepalive cycle:
both libraries renew every TTL/3, so a lease dies between 2/3 TTL and a full
TTL after the kill, plus etcd's expiry check (every 500 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time

from harness import Proc, keys, kill_pid, now_ns, wait_keys


def one(args: argparse.Namespace, impl: str, ttl: int, rep: int, rnd: random.Random) -> dict:
    name = f"bench-failover-{impl}-{ttl}-{rep}-{int(time.time() * 1000) % 10**8}"
    ep = args.endpoints
    if impl == "shardkit":
        prefix = f"shardkit/lock/{name}/"
        hold_argv = [args.cli, "lock", name, "--endpoints", ep, "--ttl", str(ttl), "--",
                     "sh", "-c", 'echo "$$ $SHARDKIT_LEASE_ID"; exec sleep 1000']
        wait_argv = [args.cli, "lock", name, "--endpoints", ep, "--ttl", str(ttl), "--", args.stamp, "stamp"]
    else:
        prefix = f"bench/golock/{name}/"
        hold_argv = [args.go, "hold", "--endpoints", ep, "--ttl", str(ttl), "--name", name]
        wait_argv = [args.go, "wait", "--endpoints", ep, "--ttl", str(ttl), "--name", name]

    procs: list[Proc] = []
    orphan = None
    try:
        watch = Proc(["/usr/bin/etcdctl", "--endpoints", ep, "watch", "--prefix", prefix], "etcdctl watch")
        procs.append(watch)
        time.sleep(0.2)  # let the watch start before the holder's put
        holder = Proc(hold_argv, f"{impl} holder")
        procs.append(holder)
        _, first = holder.line(timeout=20)
        if impl == "shardkit":
            orphan = int(first.split()[0])  # CMD, in its own process group
        holder_key = keys(ep, prefix)[0]
        contender = Proc(wait_argv, f"{impl} contender")
        procs.append(contender)
        wait_keys(ep, prefix, 2)
        time.sleep(0.3 + rnd.uniform(0, ttl / 3))
        t_kill = now_ns()
        holder.signal(signal.SIGKILL)
        _, stamp = contender.line(timeout=ttl + 20)
        t_acq = int(stamp)
        # Is the killed holder's CMD (its own process group) still running
        # now that another process holds the lock?
        cmd_alive = None
        if orphan is not None:
            try:
                os.kill(orphan, 0)
                cmd_alive = True
            except ProcessLookupError:
                cmd_alive = False
        contender.wait(timeout=15)
        # The server-side deletion of the holder's key, as the watch saw it.
        t_del = None
        prev = ""
        while not watch.lines.empty():
            t, line = watch.lines.get()
            if prev == "DELETE" and line == holder_key and t >= t_kill:
                t_del = t
                break
            prev = line
        return {
            "impl": impl, "ttl": ttl, "rep": rep,
            "failover_ms": (t_acq - t_kill) / 1e6,
            "expiry_ms": None if t_del is None else (t_del - t_kill) / 1e6,
            "after_expiry_ms": None if t_del is None else (t_acq - t_del) / 1e6,
            "holder_cmd_alive_at_takeover": cmd_alive,
        }
    finally:
        if orphan is not None:
            kill_pid(orphan)
        for p in procs:
            p.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoints", required=True)
    p.add_argument("--cli", required=True)
    p.add_argument("--stamp", required=True)
    p.add_argument("--go")
    p.add_argument("--runs", default="2:3,10:2", help="TTL:repetitions,...")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    runs = [tuple(int(x) for x in r.split(":")) for r in args.runs.split(",")]
    impls = ["shardkit"] + (["go"] if args.go else [])
    rows, errors = [], []
    for ttl, reps in runs:
        for rep in range(reps):
            for impl in impls:
                rnd = random.Random(ttl * 1000 + rep)  # same phase for both
                try:
                    row = one(args, impl, ttl, rep, rnd)
                    rows.append(row)
                    print(f"failover {impl} ttl={ttl}s rep={rep}: {row['failover_ms']:.0f} ms", file=sys.stderr)
                except Exception as e:  # a failed repetition is reported, the rest go on
                    errors.append(f"{impl} ttl={ttl} rep={rep}: {e}")
                    print(f"failover {impl} ttl={ttl} rep={rep} FAILED: {e}", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump({"runs": rows, "errors": errors}, f)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
