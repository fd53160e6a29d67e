"""Writes bench/results/http.md and http.json from the wrk outputs of
bench/http.sh (bench/build/http/NAME.roundN.txt)."""

import json
import pathlib
import re
import statistics
import sys

build, results, secs, conns = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4]

UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse(text):
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:(.*)", text)
    total = re.search(r"(\d+) requests in", text)
    cpu = re.search(r"^cpu_ticks (\d+) hz (\d+)", text, re.M)
    if not rps or not p99:
        return None
    return {
        # The target's own CPU time per request (all its threads or
        # workers, kernel included): steadier than req/s on a shared
        # machine, where what the target gets of the CPUs varies.
        "cpu_us": (int(cpu.group(1)) / int(cpu.group(2)) * 1e6 / int(total.group(1))) if cpu and total and int(total.group(1)) else None,
        "rps": float(rps.group(1)),
        "p99_ms": float(p99.group(1)) * UNIT[p99.group(2)],
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


runs = {}
rounds_of = {}
for f in sorted(build.glob("*.round*.txt")):
    name, n = f.name.split(".round")
    r = parse(f.read_text())
    if r:
        runs.setdefault(name, []).append(r)
        rounds_of.setdefault(name, {})[int(n.split(".")[0])] = r
summary = {
    name: {
        "rps": statistics.median(r["rps"] for r in rs),
        "p99_ms": statistics.median(r["p99_ms"] for r in rs),
        "non_2xx": sum(r["non_2xx"] for r in rs),
        "cpu_us": statistics.median([r["cpu_us"] for r in rs if r["cpu_us"] is not None] or [0]) or None,
        "rounds": len(rs),
    }
    for name, rs in runs.items()
}
errors = {f.stem: f.read_text().strip() for f in build.glob("*.error")}
load = [(build / f"loadavg-{w}.txt").read_text().split()[0] for w in ("start", "end")]


def ratio(a, b, key="rps"):
    """The median over rounds of a's figure over b's in the same round
    (loads seconds apart), or None when they share no round."""
    ra, rb = rounds_of.get(a, {}), rounds_of.get(b, {})
    per = [ra[n][key] / rb[n][key] for n in sorted(ra) if n in rb and rb[n][key]]
    return statistics.median(per) if per else None


def per_round(a, b, key="rps"):
    ra, rb = rounds_of.get(a, {}), rounds_of.get(b, {})
    return [ra[n][key] / rb[n][key] for n in sorted(ra) if n in rb and rb[n][key]]


goals = []
for w in (1, 2):
    pair = (f"shardkit-{w}", f"nginx-hash-{w}")
    r = ratio(*pair)
    goals.append((f"shardkit http-proxy req/s vs nginx hash, {w} worker(s)", "≥ 1.0×", r, r is not None and r >= 1.0, "×", per_round(*pair)))
    p = ratio(*pair, "p99_ms")
    goals.append((f"shardkit http-proxy p99 vs nginx hash, {w} worker(s)", "≤ 1.0×", p, p is not None and p <= 1.0, "×", per_round(*pair, "p99_ms")))
    lua_pair = (f"nginx-lua-{w}", f"nginx-hash-{w}")
    lua = ratio(*lua_pair)
    cost = None if lua is None else 1 - lua
    goals.append((f"Lua balancer's cost in nginx req/s, {w} worker(s)", "≤ 10%", None if cost is None else cost * 100, cost is not None and cost <= 0.10, "%",
                  [(1 - x) * 100 for x in per_round(*lua_pair)]))

# Not goals: how much of the Lua balancer's cost is ngx_lua's own (a
# balancer_by_lua taking the backends in turn, no placement) and how much
# is shardkit's.
floors = []
for w in (1, 2):
    f = ratio(f"nginx-luafloor-{w}", f"nginx-hash-{w}")
    lua = ratio(f"nginx-lua-{w}", f"nginx-hash-{w}")
    if f is not None and lua is not None:
        floors.append((w, (1 - f) * 100, (1 - lua) * 100))

lines = [
    "# HTTP sharding benchmarks",
    "",
    "Written by `bash bench/http.sh` (→ bench/http/report.py); do not edit by hand.",
    "",
    f"- **Machine:** 2 CPUs shared by wrk (2 threads, {conns} connections, {secs} s per run), the proxy and the 4 backends (one nginx worker answering `return 200`); load average at start {load[0]}, at end {load[1]}.",
    "- **Load:** every request a URI of its own (`/item/T/N?v=M`), so each is placed afresh.",
    "- **Peers:** nginx `hash $request_uri consistent` with upstream keepalive; HAProxy `balance uri` + `hash-type consistent`; nginx with shardkit's Lua balancer (`lua/resty/shardkit.lua`, LuaJIT FFI, `ketama:nginx`).",
    "- **Method:** targets take turns in short rounds, forward then backward (A B B A), compared pairs side by side. This machine is shared and its speed drifts by up to 2× within a minute, so a target's figures from different rounds are far apart; each goal is the median over rounds of the two targets' ratio in the same round (loads seconds apart), and every round's ratio is shown. The figures table gives each target's median over its rounds.",
    "",
    "## Targets",
    "",
    "| Target | Goal | Measured (median of rounds) | Each round | Status |",
    "|---|---|---|---|---|",
]
for what, goal, v, met, unit, each in goals:
    fmt = (lambda x: f"{x:.2f}") if unit == "×" else (lambda x: f"{x:.1f}")
    shown = "not measured" if v is None else (f"{v:.2f}×" if unit == "×" else f"{v:.1f}%")
    lines.append(f"| {what} | {goal} | {shown} | {' '.join(fmt(x) for x in each) or '–'} | {'met' if met else '**not met**'} |")
if floors:
    lines += ["", "Beside it, a Lua balancer with no placement at all (`balancer_by_lua` taking the backends in turn, "
              "same rounds), as a share of native hash's req/s: what any Lua balancer can reach. It spreads requests "
              "evenly, where native hash follows its ketama shares (uneven over 4 backends), so it may come out "
              "ahead of native hash.", ""]
    for w, floor, cost in floors:
        lines.append(f"- {w} worker(s): placement-free Lua balancer {100 - floor:.1f}%, "
                     f"shardkit's Lua balancer {100 - cost:.1f}%.")
lines += ["", "## Figures", "", "CPU per request: the target's own CPU time (every thread or worker, kernel included) over the requests wrk completed, median of rounds.", "", "| through | workers | req/s | p99 | CPU per request | non-2xx |", "|---|---|---|---|---|---|"]
label = {"shardkit": "shardkit http-proxy", "nginx-hash": "nginx hash $request_uri consistent", "haproxy": "HAProxy balance uri, consistent", "nginx-lua": "nginx + shardkit Lua balancer", "nginx-luafloor": "nginx + a placement-free Lua balancer (backends in turn)"}
for name in ["shardkit-1", "nginx-hash-1", "haproxy-1", "nginx-lua-1", "nginx-luafloor-1", "shardkit-2", "nginx-hash-2", "haproxy-2", "nginx-lua-2", "nginx-luafloor-2"]:
    if name in summary:
        s = summary[name]
        kind, w = name.rsplit("-", 1)
        cpu = "—" if s["cpu_us"] is None else f"{s['cpu_us']:.1f} µs"
        lines.append(f"| {label[kind]} | {w} | {s['rps']:,.0f} | {s['p99_ms']:.2f} ms | {cpu} | {s['non_2xx']} |")
for name, why in errors.items():
    lines.append(f"\n**{name} did not run:** {why}")
lines.append("")
(results / "http.md").write_text("\n".join(lines))
(results / "http.json").write_text(json.dumps({"summary": summary, "rounds": rounds_of, "goals": [g[:4] + (g[5],) for g in goals], "errors": errors, "load": load}, indent=1))
print("\n".join(lines))
