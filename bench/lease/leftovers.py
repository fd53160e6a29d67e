"""Keys and leases left behind by a fault run.

    python leftovers.py --endpoints URL --cli target/release/shardkit \
        [--go bench/build/lease/lease-bench-go] [--ttl 2] --out FILE

Per implementation, three locks, each with one holder and three queued
waiters. Then: one waiter per lock is kill -9'd, one gives up by its own
timeout (1 s), one is cancelled (SIGINT); then two holders are kill -9'd and
the third ends gracefully (SIGTERM). Keys under the run's lock prefix and
the leases the run created (`etcdctl lease list`, less the ones that existed
before) are counted after each stage and once more TTL + 1 s after the last
process ended: that last count is the target (0).

shardkit runs as its CLI (`shardkit lock`, CMD `sleep`); the Go peer as
lease-bench-go hold / wait (concurrency.Mutex; INT/TERM cancel its context,
then it unlocks and closes its session).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from harness import Proc, keys, kill_pid, leases, wait_keys

LOCKS = 3
WAIT_TIMEOUT_S = 1


def run(args: argparse.Namespace, impl: str) -> dict:
    ep, ttl = args.endpoints, args.ttl
    tag = f"bench-fault-{impl}-{int(time.time() * 1000) % 10**8}"
    root = f"shardkit/lock/{tag}" if impl == "shardkit" else f"bench/golock/{tag}"
    baseline = leases(ep)

    def holder(name: str) -> Proc:
        if impl == "shardkit":
            argv = [args.cli, "lock", name, "--endpoints", ep, "--ttl", str(ttl), "--",
                    "sh", "-c", "echo $$; exec sleep 1000"]
        else:
            argv = [args.go, "hold", "--endpoints", ep, "--ttl", str(ttl), "--name", name]
        return Proc(argv, f"{impl} holder {name}")

    def waiter(name: str, timeout: float | None) -> Proc:
        if impl == "shardkit":
            argv = [args.cli, "lock", name, "--endpoints", ep, "--ttl", str(ttl)]
            argv += ["--timeout", str(timeout)] if timeout else []
            argv += ["--", "true"]
        else:
            argv = [args.go, "wait", "--endpoints", ep, "--ttl", str(ttl), "--name", name]
            argv += ["--timeout", str(timeout)] if timeout else []
        return Proc(argv, f"{impl} waiter {name}")

    def count() -> dict:
        return {"keys": len(keys(ep, root)), "leases": len(leases(ep) - baseline)}

    procs: list[Proc] = []
    orphans: list[int] = []
    stages: dict[str, dict] = {}
    exits: dict[str, list[int]] = {"timed_out": [], "cancelled": [], "graceful_holder": []}
    try:
        holders: list[Proc] = []
        killed: list[Proc] = []
        timed: list[Proc] = []
        cancelled: list[Proc] = []
        for i in range(LOCKS):
            name = f"{tag}-{i}"
            h = holder(name)
            procs.append(h)
            _, first = h.line(timeout=20)
            if impl == "shardkit":
                orphans.append(int(first))  # CMD, in its own process group
            holders.append(h)
            # The timed waiter goes last: its 1 s runs from its start.
            for lst, timeout in ((killed, None), (cancelled, None), (timed, WAIT_TIMEOUT_S)):
                w = waiter(name, timeout)
                procs.append(w)
                lst.append(w)
            wait_keys(ep, f"{root}-{i}/", 4)
        stages["all queued"] = count()
        for w in killed:
            w.signal(signal.SIGKILL)
        for w in cancelled:
            w.signal(signal.SIGINT)
        for w in cancelled:
            exits["cancelled"].append(w.wait(timeout=10))
        for w in timed:
            exits["timed_out"].append(w.wait(timeout=10))
        for w in killed:
            w.wait(timeout=10)
        stages["waiters faulted"] = count()
        for h in holders[:-1]:
            h.signal(signal.SIGKILL)
            h.wait(timeout=10)
        holders[-1].signal(signal.SIGTERM)
        exits["graceful_holder"].append(holders[-1].wait(timeout=10))
        stages["holders ended"] = count()
        time.sleep(ttl + 1)
        stages["TTL + 1 s later"] = count()
    finally:
        for pid in orphans:
            kill_pid(pid)
        for p in procs:
            p.stop()
    final = stages.get("TTL + 1 s later", {})
    return {
        "impl": impl, "ttl": ttl, "locks": LOCKS, "stages": stages, "exits": exits,
        "killed_processes": LOCKS + LOCKS - 1,  # every kill -9'd waiter and holder
        "left_keys": final.get("keys"), "left_leases": final.get("leases"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoints", required=True)
    p.add_argument("--cli", required=True)
    p.add_argument("--go")
    p.add_argument("--ttl", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    rows, errors = [], []
    for impl in ["shardkit"] + (["go"] if args.go else []):
        try:
            row = run(args, impl)
            rows.append(row)
            print(f"leftovers {impl}: {row['stages']}", file=sys.stderr)
        except Exception as e:  # reported; the other implementation still runs
            errors.append(f"{impl}: {e}")
            print(f"leftovers {impl} FAILED: {e}", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump({"runs": rows, "errors": errors}, f)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
