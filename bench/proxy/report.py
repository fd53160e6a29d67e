"""Writes bench/results/proxy.md (for people) and proxy.json (for tools)
from the raw figures bench/proxy.sh left in bench/build/proxy/. It judges the
targets, never fails on them: a missed target is a row saying so, and a part
that did not run is a row saying why.

Usage: python bench/proxy/report.py --build bench/build/proxy --out bench/results/proxy
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

# Goals of the proxy issue, and nutcracker's figures measured before this
# bench existed (for the notes only).
GOAL_TIME_VS_DIRECT = 1.3
GOAL_THROUGHPUT_VS_NUTCRACKER = 1.5
GOAL_HOT_PEAK_OVER_MEAN = 1.3
EARLIER_NUTCRACKER_TIME_VS_DIRECT = 2.28
EARLIER_NUTCRACKER_HOT = 3.3

TARGETS = ["direct", "nutcracker", "shardkit"]


def load(path: Path) -> Any:
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except json.JSONDecodeError:
        return None


def read(path: Path, default: str = "unknown") -> str:
    return path.read_text().strip() if path.exists() else default


def kv(path: Path) -> dict[str, str]:
    out = {}
    for ln in read(path, "").splitlines():
        k, _, v = ln.partition("=")
        out[k] = v
    return out


def num(x: float | None, digits: int | None = None) -> str:
    if x is None:
        return "–"
    if digits is None:
        digits = 0 if abs(x) >= 1000 else 1 if abs(x) >= 100 else 2
    return f"{x:,.{digits}f}"


def ratio(r: float | None, lower_is_better: bool, words: tuple[str, str] | None = None) -> str:
    """`1.09 (1.1× slower)`: r is shardkit / peer; words are (better, worse),
    by default faster / slower for a time, more / less for a throughput."""
    if r is None:
        return "–"
    if words is None:
        words = ("faster", "slower") if lower_is_better else ("more", "less")
    better = r < 1 if lower_is_better else r > 1
    f = max(r, 1 / r) if r > 0 else float("inf")
    word = "par" if f < 1.05 else f"{f:.1f}× {words[0] if better else words[1]}"
    return f"{r:.2f} ({word})"


def short_version(v: str) -> str:
    """`This is nutcracker-0.5.0` → `nutcracker 0.5.0`; redis-server's long line → `redis-server 7.0.15`."""
    m = re.search(r"Redis server v=(\S+)", v)
    if m:
        return f"redis-server {m[1]}"
    m = re.search(r"nutcracker-(\S+)", v)
    if m:
        return f"nutcracker {m[1]}"
    return v


def div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# ---- parsing -----------------------------------------------------------------

# What bench/proxy.sh writes per memcaslap round (.cpu, seconds): the server
# memcaslap talks to (the proxy; memcached itself when direct), the 4
# memcached behind a proxy, and memcaslap.
CPU_FIELDS = ["server_user", "server_sys", "backends_user", "backends_sys", "gen_user", "gen_sys"]

MEMCASLAP_SUMMARY = re.compile(r"^Run time: (?P<t>[\d.]+)s Ops: (?P<ops>\d+) TPS: (?P<tps>\d+)", re.M)


def memcaslap(build: Path, label: str) -> dict[str, Any] | None:
    # memcaslap's start-up CPU (user, sys), taken off each round's: it is
    # spent before the load starts.
    startup = [float(x) for x in read(build / "memcaslap-startup.cpu", "").split()]
    rounds = []
    for path in sorted(build.glob(f"memcaslap-{label}.r*.txt"), key=lambda p: int(p.stem.rsplit(".r", 1)[1])):
        text = path.read_text()
        m = MEMCASLAP_SUMMARY.search(text)
        if not m:
            continue
        fields = dict(re.findall(r"^(cmd_get|cmd_set|get_misses): (\d+)$", text, re.M))
        wall = read(path.with_suffix(".wall"), "").split()
        cpu = [float(x) for x in read(path.with_suffix(".cpu"), "").split()]
        ops, tps = int(m["ops"]), int(m["tps"])
        rounds.append({
            "cpu": dict(zip(CPU_FIELDS, cpu[:4] + [max(0.0, cpu[4] - startup[0]), max(0.0, cpu[5] - startup[1])]))
            if len(cpu) == len(CPU_FIELDS) and len(startup) == 2 else None,
            "ops": ops, "tps": tps, "run_time_printed_s": float(m["t"]),
            # memcaslap prints its run time to 0.1 s and TPS to the op: ops / TPS is its run time, exactly.
            "load_s": ops / tps if tps else None,
            "wall_s": float(wall[1]) - float(wall[0]) if len(wall) == 2 else None,
            **{k: int(v) for k, v in fields.items()},
        })
    if not rounds:
        return None
    ops = sum(r["ops"] for r in rounds)
    load_s = sum(r["load_s"] for r in rounds)
    wall_s = sum(r["wall_s"] or 0 for r in rounds)
    cpu = None
    if all(r["cpu"] for r in rounds):
        cpu = {k: sum(r["cpu"][k] for r in rounds) for k in CPU_FIELDS}
    return {
        "cpu_s": cpu,
        "rounds": rounds, "ops": ops, "load_s": load_s, "ops_per_s": ops / load_s, "wall_s": wall_s,
        "ops_per_s_wall": ops / wall_s if wall_s else None,
        "get_misses": sum(r.get("get_misses", 0) for r in rounds),
        "cmd_get": sum(r.get("cmd_get", 0) for r in rounds),
    }


def cpu_section(w: Any, mc: dict[str, Any], nproc: str) -> None:
    """Where the CPU of the memcaslap runs went, and what the two throughput
    goals would leave a proxy of it on this machine."""
    if not all(mc[t] and mc[t]["cpu_s"] for t in TARGETS):
        return
    per = {t: {k: v / mc[t]["ops"] * 1e6 for k, v in mc[t]["cpu_s"].items()} for t in TARGETS}
    w("### Where the CPU goes")
    w("")
    w("CPU time of every process in the memcaslap runs (/proc/PID/stat before and after each run, memcaslap's "
      "own from the shell's `times`, less its start-up as measured by a 64-request run), in µs per request. "
      "Every process shares the same CPUs, so a request's cost is the sum of its row.")
    w("")
    w("| target | server memcaslap talks to: user / sys | the 4 memcached behind it: user / sys | memcaslap: user / sys "
      "| all (µs per request) | CPUs busy during the load |")
    w("|---|---|---|---|---|---|")
    for t in TARGETS:
        c = per[t]
        total = sum(c.values())
        busy = sum(mc[t]["cpu_s"].values()) / mc[t]["load_s"]
        server = "one memcached" if t == "direct" else t
        w(f"| {t} | {server}: {num(c['server_user'], 1)} / {num(c['server_sys'], 1)} "
          f"| {'–' if t == 'direct' else num(c['backends_user'], 1) + ' / ' + num(c['backends_sys'], 1)} "
          f"| {num(c['gen_user'], 1)} / {num(c['gen_sys'], 1)} | {num(total, 1)} | {num(busy, 2)} |")
    w("")
    try:
        cores = int(nproc)
    except ValueError:
        return
    sk, nc = per["shardkit"], per["nutcracker"]
    others = sk["gen_user"] + sk["gen_sys"] + sk["backends_user"] + sk["backends_sys"]
    w("**What the throughput goals leave the proxy.** At a throughput of T requests/s the machine has "
      f"{cores} CPUs / T of CPU time per request, for every process. Take memcaslap's and the 4 memcached's "
      f"cost per request as measured here through shardkit ({num(others, 1)} µs) and the rest is the proxy's "
      "budget:")
    w("")
    w("| goal | throughput it means (ops/s) | CPU per request, all processes (µs) | left for the proxy (µs) "
      "| shardkit's kernel time alone (µs) | nutcracker's kernel time (µs) |")
    w("|---|---|---|---|---|---|")
    for goal, t in ((f"≥ {GOAL_THROUGHPUT_VS_NUTCRACKER}× nutcracker's throughput",
                     GOAL_THROUGHPUT_VS_NUTCRACKER * mc["nutcracker"]["ops_per_s"]),
                    (f"≤ {GOAL_TIME_VS_DIRECT}× direct memcached's time", mc["direct"]["ops_per_s"] / GOAL_TIME_VS_DIRECT)):
        budget = cores / t * 1e6
        w(f"| {goal} | {num(t, 0)} | {num(budget, 1)} | {num(budget - others, 1)} "
          f"| {num(sk['server_sys'], 1)} | {num(nc['server_sys'], 1)} |")
    w("")
    w("A proxy's kernel time is mostly the two socket calls each request costs it on the client side (read the "
      "request, write the reply; the backend side is batched), the same calls one memcached makes to serve the "
      "request outright. Where the budget left is below that, no proxy on this machine can reach the goal: the "
      "CPUs are shared with the load generator and the servers, and the goal asks the proxy to cost less than "
      "the cache server it fronts.")
    w("")


def redis(build: Path, label: str, pipeline: int, test: str) -> dict[str, Any] | None:
    rounds = []
    for path in sorted(build.glob(f"redis-{label}-P{pipeline}.r*.csv")):
        for ln in path.read_text().splitlines():
            cells = [c.strip('"') for c in ln.split(",")]
            if cells[0] == test and len(cells) >= 8:
                rps, avg, _mn, p50, _p95, p99, mx = map(float, cells[1:8])
                rounds.append({"rps": rps, "avg_ms": avg, "p50_ms": p50, "p99_ms": p99, "max_ms": mx})
    if not rounds:
        return None
    # Every round sends the same number of requests: pooled throughput is the
    # harmonic mean of the rounds'; latency percentiles are the rounds' mean.
    return {
        "rounds": rounds,
        "rps": len(rounds) / sum(1 / r["rps"] for r in rounds),
        "p50_ms": statistics.fmean(r["p50_ms"] for r in rounds),
        "p99_ms": statistics.fmean(r["p99_ms"] for r in rounds),
    }


def why_not(build: Path, *parts: str) -> str:
    """The reason the first failed part among PARTS gives, on one line."""
    for p in parts:
        err = build / f"{p}.error"
        if err.exists():
            lines = [ln.strip() for ln in err.read_text().splitlines() if ln.strip()]
            tail = " / ".join(lines[-3:]) if lines else "no output"
            if tail.startswith("not run:"):
                return tail
            return f"not run: part `{p}` failed: {tail.replace('|', '¦')}"
    return "not run"


# ---- the report --------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    b: Path = a.build
    settings = load(b / "settings.json") or {}
    versions = kv(b / "versions.txt")
    failed = [ln for ln in read(b / "failed.txt", "").splitlines() if ln]
    load_start = read(b / "loadavg-start.txt").split()[:3]
    load_end = read(b / "loadavg-end.txt").split()[:3]
    rounds = settings.get("rounds", 1)

    mc = {t: memcaslap(b, t) for t in TARGETS}
    rd = {(t, p, test): redis(b, t, p, test) for t in TARGETS for p in (1, 16) for test in ("GET", "SET")}
    lat = load(b / "latency.json")
    idle = {p: load(b / f"idle-{p}-mc.json") for p in ("nutcracker", "shardkit")}
    hot = {v: load(b / f"hotkeys-{v}.json") for v in ("nutcracker", "shardkit", "shardkit-plain")}
    hot_seq = {v: load(b / f"hotkeys-seq-{v}.json") for v in ("nutcracker", "shardkit")}

    def mcv(t: str, k: str) -> float | None:
        return mc[t][k] if mc[t] else None

    sk_vs_direct_time = div(mcv("shardkit", "load_s"), mcv("direct", "load_s"))
    nc_vs_direct_time = div(mcv("nutcracker", "load_s"), mcv("direct", "load_s"))
    sk_vs_nc_tput = div(mcv("shardkit", "ops_per_s"), mcv("nutcracker", "ops_per_s"))
    hot_sk = hot["shardkit"]["peak_over_mean"] if hot["shardkit"] else None
    hot_nc = hot["nutcracker"]["peak_over_mean"] if hot["nutcracker"] else None

    def status(value: float | None, goal: float, le: bool) -> str:
        if value is None:
            return "not run"
        return "met" if (value <= goal if le else value >= goal) else "**not met**"

    md: list[str] = []
    w = md.append
    w("# Proxy benchmarks")
    w("")
    w("Written by `bash bench/proxy.sh` (→ bench/proxy/report.py); do not edit by hand.")
    w("")
    w(f"- **Machine:** {read(b / 'nproc.txt')} CPUs available (nproc), {versions.get('cpu', 'unknown CPU')}, "
      f"{versions.get('kernel', '')}")
    w(f"- **Load average** (1/5/15 min) at start: {' '.join(load_start)}, at end: {' '.join(load_end)}. "
      "The machine is shared with other work, and every process of this bench (servers, proxies and load "
      "generators) shares its CPUs, so absolute figures move with the machine; **the ratios, measured side by "
      "side in one run, are what carry across machines.**")
    w(f"- **Servers:** {versions.get('memcached', '?')}, {short_version(versions.get('redis', '?'))}, "
      f"{short_version(versions.get('nutcracker', '?'))} (`/usr/sbin/nutcracker`, one thread as always, default 16 KiB mbufs), "
      f"all started here on 127.0.0.1 with free ports and default flags "
      f"(memcached `-m 256 -U 0`; redis without persistence).")
    w(f"- **shardkit:** `shardkit proxy --config FILE --threads {settings.get('proxy_threads', '?')}`, release "
      f"build of this checkout ({versions.get('shardkit', '?')}); {versions.get('rustc', '')}.")
    w(f"- **Load generators:** {versions.get('memcaslap', 'memcaslap')}, {versions.get('redis-benchmark', '?')}, "
      f"and stdlib Python clients in bench/proxy/ ({versions.get('python', '')}).")
    w(f"- **Date:** {read(b / 'started.txt')} (UTC){' — **quick run** (BENCH_QUICK=1): small counts, figures too noisy to quote' if settings.get('quick') else ''}.")
    w("")
    w("Both proxies read the same nutcracker YAML (`hash: fnv1a_64`, `distribution: ketama`, one server "
      "connection per backend, no timeout), so they place every key on the same backend; shardkit's file "
      "adds only `hot_keys: true` and `hot_key_ttl` on the hot-key pool. shardkit's `server_connections` "
      "counts per worker thread (each worker serves its clients with connections of its own), so with "
      f"`--threads {settings.get('proxy_threads', '?')}` it holds that many connections per backend.")
    w("")
    if failed:
        w(f"**Parts that failed or did not run:** {', '.join(f'`{f}`' for f in failed)}; each row below "
          "that depends on one says why.")
        w("")

    w("## Targets")
    w("")
    w("| Target | Goal | Measured | Status | Notes |")
    w("|---|---|---|---|---|")
    w(f"| memcaslap through shardkit: load time / the same load on one memcached directly | ≤ {GOAL_TIME_VS_DIRECT} "
      f"| {num(sk_vs_direct_time, 2) if sk_vs_direct_time else why_not(b, 'memcaslap-shardkit', 'memcaslap-direct')} "
      f"| {status(sk_vs_direct_time, GOAL_TIME_VS_DIRECT, True)} "
      f"| nutcracker: {num(nc_vs_direct_time, 2)} in this run (measured earlier: {EARLIER_NUTCRACKER_TIME_VS_DIRECT}) |")
    w(f"| memcaslap: shardkit throughput / nutcracker throughput | ≥ {GOAL_THROUGHPUT_VS_NUTCRACKER} "
      f"| {num(sk_vs_nc_tput, 2) if sk_vs_nc_tput else why_not(b, 'memcaslap-shardkit', 'memcaslap-nutcracker')} "
      f"| {status(sk_vs_nc_tput, GOAL_THROUGHPUT_VS_NUTCRACKER, False)} "
      f"| {num(mcv('shardkit', 'ops_per_s'), 0)} vs {num(mcv('nutcracker', 'ops_per_s'), 0)} ops/s |")
    w(f"| hot keys, Zipf({settings.get('zipf_s', '?')}) reads over 8 memcached: busiest backend / mean, "
      f"shardkit `hot_keys: true` | ≤ {GOAL_HOT_PEAK_OVER_MEAN} "
      f"| {num(hot_sk, 2) if hot_sk else why_not(b, 'hotkeys-shardkit')} "
      f"| {status(hot_sk, GOAL_HOT_PEAK_OVER_MEAN, True)} "
      f"| nutcracker: {num(hot_nc, 2)} in this run (measured earlier: {EARLIER_NUTCRACKER_HOT}); with sequential "
      f"key names (see §5) shardkit {num(hot_seq['shardkit'] and hot_seq['shardkit']['peak_over_mean'], 2)}, "
      f"nutcracker {num(hot_seq['nutcracker'] and hot_seq['nutcracker']['peak_over_mean'], 2)} |")
    w("")

    # 1. memcaslap
    w("## 1. memcache throughput: memcaslap")
    w("")
    w(f"`memcaslap --servers=ADDR --concurrency={settings.get('memcaslap_concurrency')} "
      f"--threads={settings.get('memcaslap_threads')} --execute_number={settings.get('memcaslap_ops')}` "
      f"(text protocol, its default 9:1 get/set mix and value sizes), {rounds} round(s) per target, the targets "
      "taking turns: one memcached directly; nutcracker over 4 memcached; shardkit over the same 4. "
      "*Load time* is memcaslap's own measured run (ops / its TPS, summed over the rounds); "
      "*process wall* adds its start-up and connection set-up. Ratios use the load time.")
    w("")
    w("| workload | shardkit | peer | peer's figure | shardkit / peer |")
    w("|---|---|---|---|---|")
    for peer, label in (("direct", "one memcached, directly"), ("nutcracker", "nutcracker over the same 4 memcached")):
        if mc["shardkit"] and mc[peer]:
            w(f"| memcaslap 9:1 get/set, {mc['shardkit']['ops']:,} ops: load time (s) | {num(mc['shardkit']['load_s'], 2)} "
              f"| {label} | {num(mc[peer]['load_s'], 2)} | {ratio(mc['shardkit']['load_s'] / mc[peer]['load_s'], True)} |")
            w(f"| memcaslap 9:1 get/set: throughput (ops/s) | {num(mc['shardkit']['ops_per_s'], 0)} "
              f"| {label} | {num(mc[peer]['ops_per_s'], 0)} "
              f"| {ratio(mc['shardkit']['ops_per_s'] / mc[peer]['ops_per_s'], False)} |")
        else:
            w(f"| memcaslap 9:1 get/set | {'–' if mc['shardkit'] else why_not(b, 'memcaslap-shardkit', 'shardkit-mc', 'build')} "
              f"| {label} | {'–' if mc[peer] else why_not(b, 'memcaslap-' + peer, 'nutcracker-mc', 'backends')} | – |")
    if mc["nutcracker"] and mc["direct"]:
        w(f"| (reference) memcaslap: nutcracker load time / direct | – | nutcracker vs one memcached | "
          f"{num(mc['nutcracker']['load_s'], 2)} s vs {num(mc['direct']['load_s'], 2)} s "
          f"| nutcracker / direct = {num(nc_vs_direct_time, 2)} |")
    w("")
    w("| target | rounds | ops | load time (s) | ops/s | process wall (s) | ops/s by wall | get misses |")
    w("|---|---|---|---|---|---|---|---|")
    for t in TARGETS:
        m = mc[t]
        if m:
            w(f"| {t} | {len(m['rounds'])} | {m['ops']:,} | {num(m['load_s'], 2)} | {num(m['ops_per_s'], 0)} "
              f"| {num(m['wall_s'], 2)} | {num(m['ops_per_s_wall'], 0)} | {m['get_misses']:,} |")
        else:
            w(f"| {t} | – | – | – | – | – | – | {why_not(b, 'memcaslap-' + t)} |")
    w("")

    cpu_section(w, mc, read(b / "nproc.txt"))

    # 2. redis-benchmark
    w("## 2. Redis: redis-benchmark")
    w("")
    w(f"`redis-benchmark -t get,set -n {settings.get('redis_requests', 0):,} -c {settings.get('redis_clients')} "
      f"-r {settings.get('redis_keyspace', 0):,} -P 1|16 --csv`, {rounds} round(s) per target taking turns: one "
      "redis-server directly; nutcracker and shardkit each over the same 2 redis-servers (`redis: true`). "
      "Throughput pooled over the rounds (total requests / total time); p50 / p99 (ms, redis-benchmark's "
      "own percentiles) the mean of the rounds'. Before timing, 50 SET/GET pairs through each proxy are "
      "checked for Redis's exact replies (redis-benchmark checks none).")
    w("")
    w("| workload | shardkit rps | nutcracker rps | shardkit / nutcracker | shardkit p50 / p99 ms | nutcracker p50 / p99 ms | redis-server direct rps | direct p50 / p99 ms | shardkit / direct (rps) |")
    w("|---|---|---|---|---|---|---|---|---|")
    for p in (1, 16):
        for test in ("GET", "SET"):
            s, n, d = rd[("shardkit", p, test)], rd[("nutcracker", p, test)], rd[("direct", p, test)]
            cell = lambda x, part: num(x["rps"], 0) if x else why_not(b, f"redis-{part}", f"redis-check-{part}", f"{part}-redis", "backends")  # noqa: E731
            lat_cell = lambda x: f"{x['p50_ms']:.3f} / {x['p99_ms']:.3f}" if x else "–"  # noqa: E731
            w(f"| {test} -P {p} | {cell(s, 'shardkit')} | {cell(n, 'nutcracker')} "
              f"| {ratio(div(s and s['rps'], n and n['rps']), False)} | {lat_cell(s)} | {lat_cell(n)} "
              f"| {num(d['rps'], 0) if d else why_not(b, 'redis-direct')} | {lat_cell(d)} "
              f"| {ratio(div(s and s['rps'], d and d['rps']), False)} |")
    w("")

    # 3. latency
    w("## 3. memcache latency: closed-loop `get`")
    w("")
    if lat:
        t = lat["targets"]
        w(f"One connection, one request in flight, {lat['requests_per_target']:,} timed `get`s per target over "
          f"{lat['rounds']} rounds taking turns (each after {lat['warmup_per_round']} untimed), "
          f"{lat['keys']:,} keys holding {lat['value_bytes']}-byte values, every reply checked; µs from sending "
          "to the whole reply parsed, by a stdlib Python client (bench/proxy/latency.py), whose own cost is in "
          "every figure alike.")
        w("")
        w("| workload | shardkit µs (p50 / p99) | peer | peer µs (p50 / p99) | shardkit / peer (p50) | shardkit / peer (p99) |")
        w("|---|---|---|---|---|---|")
        def lat_cell(name: str) -> str:
            x = t.get(name)
            return f"{num(x['p50_us'], 1)} / {num(x['p99_us'], 1)}" if x else why_not(b, f"latency-{name}")

        for peer, label in (("direct", "one memcached, directly"), ("nutcracker", "nutcracker")):
            s, pr = t.get("shardkit"), t.get(peer)
            w(f"| `get`, 32-byte value | {lat_cell('shardkit')} | {label} | {lat_cell(peer)} "
              f"| {ratio(div(s and s['p50_us'], pr and pr['p50_us']), True)} "
              f"| {ratio(div(s and s['p99_us'], pr and pr['p99_us']), True)} |")
        w("")
        w("| target | p50 | p90 | p99 | p99.9 | mean | max (µs) | p50 of each round |")
        w("|---|---|---|---|---|---|---|---|")
        for name in TARGETS:
            x = t.get(name)
            if not x:
                w(f"| {name} | {why_not(b, f'latency-{name}')} | | | | | | |")
                continue
            w(f"| {name} | {num(x['p50_us'], 1)} | {num(x['p90_us'], 1)} | {num(x['p99_us'], 1)} "
              f"| {num(x['p999_us'], 1)} | {num(x['mean_us'], 1)} | {num(x['max_us'], 0)} "
              f"| {', '.join(num(v, 1) for v in x.get('p50_us_per_round', []))} |")
    else:
        w(why_not(b, "latency") + ".")
    w("")

    # 4. idle memory
    w("## 4. Memory per idle client connection")
    w("")
    n_idle = settings.get("idle_conns", 0)
    w(f"{n_idle:,} TCP connections opened to each proxy's memcache pool, one `get` sent and answered on each "
      "(so whatever a served connection keeps is allocated), then left idle; the proxy's VmRSS "
      "(/proc/PID/status) before (fresh proxy, after a few warm-up requests) and with all of them open. "
      "Measured first, before any other load reached the proxies. Then they are closed and a second batch "
      "opened the same way: growth again would mean memory kept per connection after it closed; none means "
      "the allocator kept the first batch's memory for reuse (RSS seldom shrinks).")
    w("")
    w("| workload | shardkit KiB / connection | peer | peer KiB / connection | shardkit / peer |")
    w("|---|---|---|---|---|")
    s, n = idle["shardkit"], idle["nutcracker"]
    w(f"| {n_idle:,} idle connections, VmRSS growth | {num(s['kib_per_conn'], 2) if s else why_not(b, 'idle-shardkit', 'shardkit-mc', 'build')} "
      f"| nutcracker | {num(n['kib_per_conn'], 2) if n else why_not(b, 'idle-nutcracker', 'nutcracker-mc')} "
      f"| {ratio(div(s and s['kib_per_conn'], n and n['kib_per_conn']), True, ('less', 'more'))} |")
    w("")
    w("| proxy | VmRSS before (KiB) | with the connections open | after closing them | with a second batch open | after closing it | KiB / connection | second batch, KiB / connection |")
    w("|---|---|---|---|---|---|---|---|")
    for name, x in (("shardkit", s), ("nutcracker", n)):
        if x:
            w(f"| {name} | {x['rss_before_kib']:,} | {x['rss_after_kib']:,} | {x['rss_after_close_kib']:,} "
              f"| {x['rss_second_batch_kib']:,} | {x['rss_after_second_close_kib']:,} "
              f"| {num(x['kib_per_conn'], 2)} | {num(x['second_batch_kib_per_conn'], 2)} |")
    w("")
    w("nutcracker reads into 16 KiB mbufs from a free list and returns them after each request, so an idle "
      "connection holds only its `struct conn`.")
    w("")

    # 5. hot keys
    w("## 5. Hot keys: Zipf reads over 8 memcached")
    w("")
    hx = next((h for h in hot.values() if h), None)
    if hx:
        w(f"{hx['keys']:,} keys written through the proxy, then {hx['gets']:,} single-key `get`s, key ranks drawn "
          f"from Zipf(s = {hx['s']}) with seed {hx['seed']} (the same sequence for every proxy), over "
          f"{hx['conns']} connections in pipelined batches of {hx['batch']} (bench/proxy/hotkeys.py). Each "
          "backend's load is its `cmd_get` delta (memcached `stats`) over the read phase; *peak / mean* is the "
          f"busiest backend's over the mean of the 8 (1.00 = even). The hottest key takes "
          f"{100 * hx['hottest_key_share']:.1f}% of the reads. shardkit's `hot_keys: true` pool has "
          f"`hot_key_ttl: {settings.get('hot_key_ttl_ms')}` (ms, the staleness bound); the plain shardkit pool "
          "is the same without hot keys, to show the placement alone.")
        w("")
        w("Key names: rank *r* is `zipf:` + 16 hex digits of a 64-bit mix of *r*, so that the names spread over "
          "the ring the way real, varied keys do. Sequential names (`seq:0`, `seq:1`, ...) do not: "
          "nutcracker's `fnv1a_64` keeps the low 32 bits of FNV-1a, whose last step multiplies by a prime "
          "whose low bits are 0x1b3, so names that differ only in their last one or two characters hash "
          "within a few thousand of each other on the 2³² ketama ring and nearly always share a server. "
          "Whole runs of ranks then sit on one backend, most of them below the hot-key threshold; both "
          "proxies place keys this way, so the second table shows that case too.")
        w("")
    w("| workload | shardkit (`hot_keys: true`) | peer | peer's figure | shardkit / peer |")
    w("|---|---|---|---|---|")
    hs, hn, hp = hot["shardkit"], hot["nutcracker"], hot["shardkit-plain"]
    w(f"| Zipf reads: busiest backend / mean | {num(hs['peak_over_mean'], 2) if hs else why_not(b, 'hotkeys-shardkit')} "
      f"| nutcracker | {num(hn['peak_over_mean'], 2) if hn else why_not(b, 'hotkeys-nutcracker')} "
      f"| {ratio(div(hs and hs['peak_over_mean'], hn and hn['peak_over_mean']), True, ('more even', 'less even'))} |")
    w(f"| Zipf reads, second half only (steady state): busiest backend / mean "
      f"| {num(hs['second_half']['peak_over_mean'], 2) if hs else '–'} | nutcracker "
      f"| {num(hn['second_half']['peak_over_mean'], 2) if hn else '–'} "
      f"| {ratio(div(hs and hs['second_half']['peak_over_mean'], hn and hn['second_half']['peak_over_mean']), True, ('more even', 'less even'))} |")
    w(f"| Zipf reads: gets reaching the backends | {format(hs['backend_total'], ',') if hs else '–'} "
      f"| nutcracker | {format(hn['backend_total'], ',') if hn else '–'} "
      f"| {ratio(div(hs and hs['backend_total'], hn and hn['backend_total']), True, ('fewer', 'more'))} |")
    w(f"| Zipf reads: gets/s through the proxy (Python client, pipelined) | {num(hs['gets_per_s'], 0) if hs else '–'} "
      f"| nutcracker | {num(hn['gets_per_s'], 0) if hn else '–'} "
      f"| {ratio(div(hs and hs['gets_per_s'], hn and hn['gets_per_s']), False)} |")
    w("")
    w("| proxy | peak / mean | second half | gets/s | hottest key's reads per 200 ms | misses | gets reaching each backend |")
    w("|---|---|---|---|---|---|---|")
    for name, h in (("nutcracker", hn), ("shardkit, hot_keys: true", hs), ("shardkit, no hot keys", hp)):
        if h:
            w(f"| {name} | {num(h['peak_over_mean'], 2)} | {num(h['second_half']['peak_over_mean'], 2)} "
              f"| {num(h['gets_per_s'], 0)} "
              f"| {num(h['hottest_key_reads_per_200ms'], 0)} | {h['misses']:,} "
              f"| {', '.join(f'{x:,}' for x in h['backend_gets'])} |")
        else:
            part = {"nutcracker": "hotkeys-nutcracker", "shardkit, hot_keys: true": "hotkeys-shardkit"}.get(
                name, "hotkeys-shardkit-plain")
            w(f"| {name} | {why_not(b, part)} | | | | | |")
    w("")
    w("Sequential key names (`seq:0` .. `seq:N`), the same load otherwise:")
    w("")
    w("| workload | shardkit (`hot_keys: true`) | peer | peer's figure | shardkit / peer | gets reaching each backend, shardkit / nutcracker |")
    w("|---|---|---|---|---|---|")
    qs, qn = hot_seq["shardkit"], hot_seq["nutcracker"]
    w(f"| Zipf reads, sequential names: busiest backend / mean "
      f"| {num(qs['peak_over_mean'], 2) if qs else why_not(b, 'hotkeys-seq-shardkit')} "
      f"| nutcracker | {num(qn['peak_over_mean'], 2) if qn else why_not(b, 'hotkeys-seq-nutcracker')} "
      f"| {ratio(div(qs and qs['peak_over_mean'], qn and qn['peak_over_mean']), True, ('more even', 'less even'))} "
      f"| {', '.join(f'{x:,}' for x in qs['backend_gets']) if qs else '–'} / "
      f"{', '.join(f'{x:,}' for x in qn['backend_gets']) if qn else '–'} |")
    w("")

    # Failures, verbatim.
    errors = sorted(b.glob("*.error"))
    if errors:
        w("## Parts that failed or did not run")
        w("")
        for e in errors:
            w(f"`{e.stem}`:")
            w("")
            w("```")
            w(e.read_text().rstrip()[-3000:])
            w("```")
            w("")

    a.out.with_suffix(".md").write_text("\n".join(md).rstrip() + "\n")
    raw = {
        "settings": settings, "versions": versions, "loadavg_start": load_start, "loadavg_end": load_end,
        "started": read(b / "started.txt"), "nproc": read(b / "nproc.txt"), "failed": failed,
        "memcaslap": mc,
        "redis_benchmark": {f"{t}/P{p}/{test}": v for (t, p, test), v in rd.items()},
        "latency": lat, "idle": idle, "hotkeys": hot, "hotkeys_sequential_names": hot_seq,
        "targets": {
            "shardkit_time_over_direct": sk_vs_direct_time, "nutcracker_time_over_direct": nc_vs_direct_time,
            "shardkit_throughput_over_nutcracker": sk_vs_nc_tput, "hot_peak_over_mean_shardkit": hot_sk,
            "hot_peak_over_mean_nutcracker": hot_nc,
            "hot_peak_over_mean_shardkit_sequential_names": hot_seq["shardkit"] and hot_seq["shardkit"]["peak_over_mean"],
            "hot_peak_over_mean_nutcracker_sequential_names": hot_seq["nutcracker"] and hot_seq["nutcracker"]["peak_over_mean"],
        },
    }
    a.out.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    main()
