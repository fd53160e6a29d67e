"""Writes bench/results/pipeline.md and .json from bench/build/pipeline/.
Judges the issue's goals; never fails on them."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

GOAL_RUST_BATCHED = 10_000_000
GOAL_P99_MS = 5.0


def load(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def why(build: Path, name: str) -> str:
    e = build / f"{name}.error"
    return e.read_text().strip() if e.exists() else "did not run"


def spread(rounds) -> str:
    """'N rounds, MIN–MAX M' for a list of [events/s, CPU ns] rounds."""
    if not rounds:
        return "1 round"
    rates = sorted(r[0] for r in rounds)
    return f"{len(rates)} rounds, {rates[0] / 1e6:.1f}–{rates[-1] / 1e6:.1f}M"


def main() -> None:
    a = argparse.ArgumentParser()
    a.add_argument("--build", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--commit", default="?")
    args = a.parse_args()
    b = Path(args.build)
    sk, py = load(b / "shardkit.json"), load(b / "redis_py.json")
    pyh = load(b / "python.json")
    sysalloc = load(b / "system_alloc.json")
    dq, cel = load(b / "dramatiq.json"), load(b / "celery.json")
    ver = (b / "redis-version.txt").read_text().split()[2] if (b / "redis-version.txt").exists() else "?"
    md: list[str] = []
    w = md.append
    w("# Pipeline benchmarks")
    w("")
    w("Written by `bash bench/pipeline.sh` (→ bench/pipeline/report.py); do not edit by hand.")
    w("")
    w(f"- **Machine:** {os.cpu_count()} CPUs; load average at start {(b / 'loadavg-start.txt').read_text().split()[0]}, "
      f"at end {(b / 'loadavg-end.txt').read_text().split()[0] if (b / 'loadavg-end.txt').exists() else '?'}. "
      "Every process (publisher, stage, redis-server) shares these CPUs.")
    w(f"- **shardkit:** release build of {args.commit}; redis-server {ver}, no persistence, on 127.0.0.1.")
    w("")
    w("## Targets")
    w("")
    w("| Target | Goal | Measured | Status |")
    w("|---|---|---|---|")
    if sk:
        rb = sk["memory_batched_events_per_s"]
        w(f"| Rust in-process stage, batched (mimalloc) | ≥ {GOAL_RUST_BATCHED:,} events/s | {rb:,.0f} events/s "
          f"(median of {spread(sk.get('memory_batched_rounds'))}) | "
          f"{'met' if rb >= GOAL_RUST_BATCHED else '**not met**'} |")
        if sysalloc:
            rs = sysalloc["memory_batched_events_per_s"]
            # Not a goal of its own: what a program keeping glibc's malloc
            # would see (the `shardkit` binary ships with mimalloc).
            w(f"| for reference: the same stage with the system allocator (glibc) | – | {rs:,.0f} events/s "
              f"(median of {spread(sysalloc.get('memory_batched_rounds'))}) | "
              f"{'would meet' if rs >= GOAL_RUST_BATCHED else 'would not meet'} the goal |")
        lat = sk.get("redis_latency_ms_p50_p99_count_at_10k_per_s")
        if lat:
            runs = sk.get("redis_latency_runs") or [lat]
            each = ", ".join(f"{r[1]:.2f}" for r in runs)
            w(f"| Redis Streams, p99 latency at 10k events/s (paced every ms; the median of {len(runs)} runs of 5 s, "
              f"whose p99s were {each} ms) | ≤ {GOAL_P99_MS} ms | {lat[1]:.2f} ms (p50 {lat[0]:.2f}) | "
              f"{'met' if lat[1] <= GOAL_P99_MS else '**not met**'} |")
        if dq and sk.get("redis_batched_events_per_s"):
            r = sk["redis_batched_events_per_s"] / dq["events_per_s"]
            w(f"| Redis Streams throughput vs Dramatiq on the same redis-server | ≥ 20× | {r:.1f}× | "
              f"{'met' if r >= 20 else '**not met**'} |")
        elif sk.get("redis_batched_events_per_s"):
            w(f"| Redis Streams throughput vs Dramatiq | ≥ 20× | {why(b, 'dramatiq')} | not run |")
        if pyh:
            pb = pyh["batched_events_per_s"]
            w(f"| Python handlers, batched | ≥ 500,000 events/s | {pb:,.0f} events/s | "
              f"{'met' if pb >= 500_000 else '**not met**'} |")
        else:
            w(f"| Python handlers, batched | ≥ 500,000 events/s | {why(b, 'python')} | not run |")
    else:
        w(f"| all | – | {why(b, 'shardkit')} | not run |")
    w("")
    w("## Figures")
    w("")
    w("| what | shardkit | peer, same run | ratio |")
    w("|---|---|---|---|")
    if sk:
        fu, fb = sk["crossbeam_ns_per_msg_unbatched"], sk["crossbeam_ns_per_msg_batched"]
        s1, sb = sk["memory_single_events_per_s"], sk["memory_batched_events_per_s"]
        cpu = lambda k: (f", {sk[k]:,.0f} ns of CPU per event over {sk.get('threads', '?')} threads"
                         if sk.get(k) else "")
        w(f"| in process, one handler call per event (ordered, 10,000 keys) | {s1:,.0f} events/s ({1e9 / s1:,.0f} ns/event"
          f"{cpu('memory_single_cpu_ns_per_event')}) "
          f"| crossbeam channel, one message per send: {fu:.1f} ns/msg | {1e9 / s1 / fu:.0f}× the floor |")
        w(f"| in process, batch handler (up to 1,000 per call) | {sb:,.0f} events/s ({1e9 / sb:,.0f} ns/event"
          f"{cpu('memory_batched_cpu_ns_per_event')}) "
          f"| crossbeam channel, 1,000 per send: {fb:.2f} ns/msg | {1e9 / sb / fb:.0f}× the floor |")
        if sysalloc:
            rs = sysalloc["memory_batched_events_per_s"]
            w(f"| in process, batch handler, system allocator (glibc malloc) | {rs:,.0f} events/s ({1e9 / rs:,.0f} ns/event, "
              f"{sysalloc['cpu_ns_per_event']:,.0f} ns of CPU per event) | the same stage with mimalloc: {sb:,.0f} events/s "
              f"| {rs / sb:.2f}× |")
        if pyh:
            w(f"| Python handler, in process, batches of up to 1,000 (GIL once per batch) | {pyh['batched_events_per_s']:,.0f} events/s "
              f"| the same stage with a Rust batch handler: {sb:,.0f} events/s | "
              f"{pyh['batched_events_per_s'] / sb:.2f}× |")
            # A Python stage receives and acknowledges in batches even with
            # a one-event function (the GIL is taken once per batch, the
            # function called per event): its peer is the Rust batch stage,
            # not the Rust stage with a call (and a lane) per event.
            w(f"| Python handler, in process, one event per call (the stage batches inside: GIL once per batch) "
              f"| {pyh['single_events_per_s']:,.0f} events/s "
              f"| the same batched stage with a Rust batch handler: {sb:,.0f} events/s "
              f"| {pyh['single_events_per_s'] / sb:.2f}× |")
        if sk.get("redis_batched_events_per_s"):
            rr = sk["redis_batched_events_per_s"]
            peer = f"{py['events_per_s']:,.0f} events/s (redis-py {py['redis_py']})" if py else why(b, "redis_py")
            ratio = f"{rr / py['events_per_s']:.2f}×" if py else "–"
            w(f"| Redis Streams, batch handler, end to end (XREADGROUP, handler, XACK) | {rr:,.0f} events/s "
              f"| redis-py XREADGROUP/XACK loop, no-op handler: {peer} | {ratio} |")
        for name, peer in (("Dramatiq", dq), ("Celery", cel)):
            if peer and sk.get("redis_batched_events_per_s") and peer.get("events_per_s"):
                rr = sk["redis_batched_events_per_s"]
                ver = peer.get("dramatiq") or peer.get("celery")
                w(f"| Redis Streams end to end vs {name} (no-op handlers, messages enqueued first, 8 worker threads) "
                  f"| {rr:,.0f} events/s | {name} {ver}: {peer['events_per_s']:,.0f} messages/s | {rr / peer['events_per_s']:.0f}× |")
            elif not peer:
                w(f"| Redis Streams end to end vs {name} | – | {why(b, name.lower())} | – |")
    w("")
    w("What a stage does per event that the channel floor does not. One call per event: a lane per key")
    w("(per-key order), the transport's pending list and acknowledgement, the visibility bookkeeping, and the")
    w("handler call through tower. Batched: one receive, one handler call and one acknowledgement per batch;")
    w("per event a key check (by the key hash stored at publication), a pending slot, its id (two integers) in")
    w("the acknowledgement, and freeing the event once every group has it. The events here are published before")
    w("the stage starts, so they are out of the CPU cache when the stage reaches them. An event is one allocation")
    w("of 200 bytes whose first line holds its reference counts and a summary of its attributes (whether any")
    w("part owns memory, a bit per extension name): of an event with short attributes and at most one extension")
    w("the stage reads that line alone (to share it, to answer that it has no redrive mark, to free it), and the")
    w("transport reads a batch's lines first so that their misses overlap. The channel floor moves integers")
    w("already in cache. Each in-process figure is the median of several rounds (fastest and slowest shown):")
    w("this machine is shared, and its speed drifts within minutes.")
    w("")
    w("Allocators: the Rust figures are from a build with mimalloc as the process's allocator (what the")
    w("`shardkit` binary uses); the system-allocator row is the same stage built with glibc's malloc. A stage")
    w("frees each event on a worker thread, not the publisher's that made it: glibc takes the publisher's arena")
    w("lock for every such free and coalesces chunks under it; mimalloc hands the block back to its page")
    w("without a lock. The Python figures use the system allocator.")
    Path(args.out + ".md").write_text("\n".join(md) + "\n")
    Path(args.out + ".json").write_text(
        json.dumps({"shardkit": sk, "system_alloc": sysalloc, "redis_py": py, "python": pyh, "dramatiq": dq, "celery": cel}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
