"""Memory per idle client connection of a proxy: opens N TCP connections to
it, sends one `get` on each and reads the reply (so the proxy has allocated
whatever a served connection keeps), then leaves them idle and reads the
proxy's VmRSS from /proc/PID/status. Before: after a warm-up connection has
been served and closed; after: with all N open and idle (read after a short
settle, twice, the larger taken). (after - before) / N is the figure. Then
they are closed and a second batch of N is opened the same way: whether the
first batch's memory is reused or kept.

    python idle.py --addr 127.0.0.1:22121 --pid PID --conns 2000 --key idle:0 --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from harness import Conn, vm_rss_kib


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--key", default="idle:0")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.conns + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.conns + 256), hard))
    key = a.key.encode()
    # Warm the proxy's backend connection and allocator first.
    for _ in range(3):
        c = Conn(a.addr)
        c.get(key)
        c.close()
    time.sleep(0.5)
    before = vm_rss_kib(a.pid)
    conns = []
    t0 = time.monotonic()
    for _ in range(a.conns):
        c = Conn(a.addr)
        c.get(key)
        conns.append(c)
    opened_s = time.monotonic() - t0
    time.sleep(0.5)
    after = max(vm_rss_kib(a.pid), 0)
    time.sleep(0.5)
    after = max(after, vm_rss_kib(a.pid))
    # Every connection still answers (none was dropped while idle).
    for c in conns[:: max(1, a.conns // 50)]:
        c.get(key)
    for c in conns:
        c.close()
    time.sleep(0.5)
    closed = vm_rss_kib(a.pid)
    # A second batch, the same way: growth again means the first batch's
    # memory was not reused (kept per connection even after it closed).
    conns = []
    for _ in range(a.conns):
        c = Conn(a.addr)
        c.get(key)
        conns.append(c)
    time.sleep(0.5)
    again = vm_rss_kib(a.pid)
    for c in conns:
        c.close()
    time.sleep(0.5)
    closed2 = vm_rss_kib(a.pid)
    per = (after - before) / a.conns
    print(f"idle {a.addr}: VmRSS {before} KiB -> {after} KiB with {a.conns} idle connections: {per:.2f} KiB each; {closed} KiB after closing them; "
          f"{again} KiB with a second batch open, {closed2} KiB after closing it")
    json.dump({"addr": a.addr, "conns": a.conns, "rss_before_kib": before, "rss_after_kib": after,
               "rss_after_close_kib": closed, "rss_second_batch_kib": again, "rss_after_second_close_kib": closed2,
               "second_batch_kib_per_conn": (again - closed) / a.conns, "kib_per_conn": per, "open_s": opened_s},
              open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
