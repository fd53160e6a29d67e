#!/usr/bin/env python3
"""shardkit inside real nginx, through lua/resty/shardkit.lua.

Run by tests/nginx/run.sh (which builds libshardkit.so and the shardkit CLI
and passes their paths in SHARDKIT_LIB and SHARDKIT_CLI). Starts one nginx
(Debian's, with libnginx-mod-http-lua) from nginx.conf.in in a temporary
prefix, on free 127.0.0.1 ports: four backends that answer with their own
port, a front with native `hash $request_uri consistent` upstreams, and a
front whose upstream is picked by shardkit.balance in balancer_by_lua_block.
Then sends the same distinct URIs through both and checks:

  1. ketama:nginx through Lua == native nginx, for every URI;
  2. every algorithm through Lua == `shardkit route` for the same keys;
  3. rebuilding without one server moves only that server's URIs (native
     nginx and Lua, ketama:nginx and rendezvous);
  4. with a dead server in the list, its URIs are retried once on
     lookup_n's second node (set_more_tries), as native nginx retries them;
  5. ring:lookup and ring:lookup_n == `shardkit route` (--replicas), rings
     are freed (ffi.gc), and every documented way of finding the library
     works;
  6. a bad algorithm or upstream string is a clear error (log and 400
     response) and nginx keeps serving.

Exits non-zero naming every failed check. Only loopback traffic; every wait
is bounded.
"""

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
MODULES = "/usr/share/nginx/modules"  # Debian: -> /usr/lib/nginx/modules
LIB = os.environ["SHARDKIT_LIB"]
CLI = os.environ["SHARDKIT_CLI"]
URI_COUNT = int(os.environ.get("SHARDKIT_NGINX_URIS", "2000"))
START_TIMEOUT_S = 15
# Rebuilt from a list without one server, these move only that server's keys
# (maglev and bounded move a few others; jump and memento place by position
# in the list, so a server gone from the middle moves many).
REMOVAL_ALGORITHMS = ["ketama:nginx", "rendezvous"]

failures = []


def check(ok, what):
    """Records a check; prints failures as they happen."""
    if not ok:
        failures.append(what)
        print(f"FAILED: {what}", file=sys.stderr)
    return ok


def free_ports(n):
    """n distinct loopback ports nothing listens on (all bound at once)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_uris(n):
    """n distinct request URIs of the shapes real traffic has."""
    shapes = [
        "/item/{i}",
        "/user/{i}/profile?tab=posts&page={p}",
        "/static/{h}.css",
        "/search?q=caf%C3%A9+{i}&lang=fr",
        "/api/v2/orders/{i}/lines/{p}",
    ]
    out = []
    for i in range(n):
        shape = shapes[i % len(shapes)]
        out.append(shape.format(i=i, p=i % 7, h=f"{i * 2654435761 % 2**32:08x}"))
    assert len(set(out)) == n
    return out


def cli_route(source_args, keys, replicas=1):
    """`shardkit route` for keys on stdin: one list of node names per key."""
    args = [CLI, "route", *source_args]
    if replicas > 1:
        args += ["--replicas", str(replicas)]
    proc = subprocess.run(args, input="\n".join(keys) + "\n", capture_output=True,
                          text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [r[0] for r in rows] == keys, "shardkit route answered other keys"
    return [r[1:] for r in rows]


def cli_algorithms():
    """The algorithm names `shardkit route --help` lists (core's
    ALGORITHM_NAMES), so a new algorithm is tested without editing this."""
    out = subprocess.run([CLI, "route", "--help"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    m = re.search(r"\(default: [^)]*\): ([a-z0-9:, ]+);", " ".join(out.split()))
    if not m:
        raise RuntimeError(f"cannot find the algorithm list in `shardkit route --help`:\n{out}")
    return [a.strip() for a in m.group(1).split(",")]


class Client:
    """One keep-alive HTTP/1.1 connection per port."""

    def __init__(self):
        self.conns = {}

    def get(self, port, path, headers=None):
        for attempt in range(2):  # one reconnect if nginx closed an idle connection
            conn = self.conns.get(port)
            if conn is None:
                conn = self.conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", path, headers=headers or {})
                resp = conn.getresponse()
                return resp.status, dict(resp.getheaders()), resp.read().decode()
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                del self.conns[port]
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        for c in self.conns.values():
            c.close()


def rss_kib(pid):
    """A process's resident memory, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def backend_of(body):
    return f"127.0.0.1:{body.strip()}"


def route_all(client, port, uris, ring=None, tries=None, key_string=False):
    """The backend each URI reached through `port` (None: not a 200), and
    how many peers the Lua balancer set for it. `key_string`: the balancer
    gets ngx.var.request_uri as its key, instead of reading it in place."""
    headers = {"X-Key-String": "1"} if key_string else {}
    if ring:
        headers["X-Ring"] = ring
    if tries:
        headers["X-Tries"] = str(tries)
    placed, tried, errors = [], [], []
    for uri in uris:
        status, hdrs, body = client.get(port, uri, headers)
        if status == 200:
            placed.append(backend_of(body))
        else:
            placed.append(None)
            errors.append(f"{uri}: {status} {body.strip()[:200]}")
        # nginx drops a header whose value is empty: no failures.
        tried.append((int(hdrs.get("X-Shardkit-Tried", "0")),
                      hdrs.get("X-Shardkit-Failures", "")))
    check(not errors, f"{ring or 'native'} via :{port}: {len(errors)} non-200 answers, "
          f"first: {errors[:3]}")
    return placed, tried


def mismatches(a, b):
    return [i for i, (x, y) in enumerate(zip(a, b)) if x != y]


def render(prefix, ports, rings):
    """nginx.conf from the template: every @NAME@ filled."""
    b = ports["backends"]

    def servers(entries):
        return "\n".join(f"        server {e};" for e in entries)

    def lua_str(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    ring_table = "{\n" + "".join(
        f"            {{ name = {lua_str(r['name'])}, list = {lua_str(r['list'])}, "
        f"algorithm = {lua_str(r['algorithm'])} }},\n" for r in rings) + "        }"
    with open(os.path.join(HERE, "nginx.conf.in")) as f:
        conf = f.read()
    fills = {
        # As root, nginx would drop its workers to an account that may not
        # read the checkout (the module, the library) or the temporary prefix.
        "USER": "user root;\n" if os.geteuid() == 0 else "",
        "MODULES": MODULES,
        "PREFIX": prefix,
        "REPO": ROOT,
        "BACKEND_LISTEN": "\n".join(f"        listen 127.0.0.1:{p};" for p in b),
        "NATIVE_SERVERS": servers(ports["weighted_entries"]),
        "NATIVE_REMOVED_SERVERS": servers(ports["removed_entries"]),
        "NATIVE_DEAD_SERVERS": servers(ports["dead_entries"]),
        "NATIVE_PORT": str(ports["native"]),
        "LUA_PORT": str(ports["lua"]),
        "RINGS": ring_table,
    }
    for k, v in fills.items():
        conf = conf.replace(f"@{k}@", v)
    left = re.findall(r"@[A-Z_]+@", conf)
    if left:
        raise RuntimeError(f"nginx.conf.in has unfilled placeholders: {left}")
    return conf


def wait_listening(port, proc, log):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}; its log:\n{read(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on {port} in {START_TIMEOUT_S}s; log:\n{read(log)}")


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError as e:
        return f"({e})"


def main():
    uris = make_uris(URI_COUNT)
    algorithms = cli_algorithms()
    check(len(algorithms) >= 8 and "ketama:nginx" in algorithms,
          f"algorithm list from `shardkit route --help`: {algorithms}")

    # Four backends, a port nothing listens on, and the two fronts.
    *backends, dead, native_port, lua_port = free_ports(7)
    addr = [f"127.0.0.1:{p}" for p in backends]
    weights = [2, 1, 1, 3]
    weighted_entries = [f"{a} weight={w}" if w > 1 else a for a, w in zip(addr, weights)]
    weighted = ", ".join(weighted_entries)
    unweighted = ", ".join(addr)
    removed_node = addr[1]
    removed_entries = [e for e in weighted_entries if e.split()[0] != removed_node]
    dead_node = f"127.0.0.1:{dead}"
    dead_entries = weighted_entries + [dead_node]
    nodes_weighted = ",".join(f"{a}={w}" for a, w in zip(addr, weights))
    nodes_unweighted = ",".join(addr)

    # What `shardkit route` says, per algorithm; an algorithm without weights
    # refuses the weighted list and gets the same servers unweighted.
    expected, lists = {}, {}
    for alg in algorithms:
        try:
            expected[alg] = [r[0] for r in cli_route(
                ["--nodes", nodes_weighted, "--algorithm", alg], uris)]
            lists[alg] = weighted
        except RuntimeError as e:
            if "does not support weights" not in str(e):
                raise
            expected[alg] = [r[0] for r in cli_route(
                ["--nodes", nodes_unweighted, "--algorithm", alg], uris)]
            lists[alg] = unweighted
    cli_nginx = [r[0] for r in cli_route(["--nginx", weighted], uris)]
    check(cli_nginx == expected["ketama:nginx"],
          "shardkit route --nginx == --nodes --algorithm ketama:nginx")

    rings = [{"name": alg, "list": lists[alg], "algorithm": alg} for alg in algorithms]
    rings += [{"name": f"removed:{alg}", "list": ", ".join(removed_entries), "algorithm": alg}
              for alg in REMOVAL_ALGORITHMS]
    rings.append({"name": "dead", "list": ", ".join(dead_entries), "algorithm": "ketama:nginx"})
    # Built wrong on purpose: logged at start, and requests for them fail cleanly.
    rings.append({"name": "bad-algorithm", "list": weighted, "algorithm": "ketama:nope"})
    rings.append({"name": "bad-weight", "list": f"{addr[0]} weight=0, {addr[1]}",
                  "algorithm": "maglev"})

    prefix = tempfile.mkdtemp(prefix="shardkit-nginx.")
    log = os.path.join(prefix, "error.log")
    proc = None
    client = Client()
    started = time.monotonic()
    try:
        os.makedirs(os.path.join(prefix, "tmp"))
        conf_path = os.path.join(prefix, "nginx.conf")
        with open(conf_path, "w") as f:
            f.write(render(prefix, {
                "backends": backends, "native": native_port, "lua": lua_port,
                "weighted_entries": weighted_entries, "removed_entries": removed_entries,
                "dead_entries": dead_entries,
            }, rings))
        env = dict(os.environ, SHARDKIT_LIB=LIB)
        proc = subprocess.Popen([NGINX, "-p", prefix, "-c", conf_path, "-e", log], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for p in [*backends, native_port, lua_port]:
            wait_listening(p, proc, log)
        run_checks(client, uris, algorithms, expected, lua_port, native_port, addr,
                   removed_node, dead_node, weighted, nodes_weighted, log)
        check(proc.poll() is None, "nginx is still running after every check")
        log_text = read(log)
        check("exited on signal" not in log_text and "[alert]" not in log_text,
              "no nginx worker crashed or raised an alert")
    except Exception as e:  # report, then stop nginx and keep its prefix
        check(False, f"{type(e).__name__}: {e}")
    finally:
        client.close()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if failures:
            print(f"nginx prefix kept for inspection: {prefix}; error log, last lines:",
                  file=sys.stderr)
            print("\n".join(read(log).splitlines()[-40:]), file=sys.stderr)
        else:
            shutil.rmtree(prefix, ignore_errors=True)

    print(f"tests/nginx: {len(uris)} URIs per check, {time.monotonic() - started:.1f}s "
          f"with nginx up")
    if failures:
        print(f"tests/nginx: {len(failures)} check(s) FAILED", file=sys.stderr)
        return 1
    print("tests/nginx: all checks passed")
    return 0


def run_checks(client, uris, algorithms, expected, lua_port, native_port, addr,
               removed_node, dead_node, weighted, nodes_weighted, log):
    n = len(uris)

    # 0. The library the workers loaded is the one we built.
    status, _, body = client.get(lua_port, "/_info")
    version, _, path = body.strip().partition("\t")
    check(status == 200 and path == LIB, f"workers loaded {path!r}, want SHARDKIT_LIB={LIB!r}")
    print(f"libshardkit {version} loaded from {path}")

    # 1. ketama:nginx through Lua == nginx's own `hash $request_uri consistent`.
    native, _ = route_all(client, native_port, uris)
    lua = {}
    lua["ketama:nginx"], tried = route_all(client, lua_port, uris, "ketama:nginx")
    bad = mismatches(native, lua["ketama:nginx"])
    check(not bad, f"ketama:nginx: Lua and native nginx disagree on {len(bad)} URIs, e.g. "
          f"{[(uris[i], native[i], lua['ketama:nginx'][i]) for i in bad[:3]]}")
    as_string, _ = route_all(client, lua_port, uris, "ketama:nginx", key_string=True)
    bad = mismatches(native, as_string)
    check(not bad, f"ketama:nginx: the URI as a Lua string places {len(bad)} URIs elsewhere, e.g. "
          f"{[(uris[i], native[i], as_string[i]) for i in bad[:3]]}")
    # Served by its first node, a request keeps no retry state at all.
    check(all(t == (0, "") for t in tried), "one attempt per URI when every server is up")
    share = {a: native.count(a) / n for a in addr}
    print(f"1. ketama:nginx: Lua balancer (URI read in place, and as a string) == native `hash $request_uri consistent` on "
          f"{n - len(bad)}/{n} URIs ({len(bad)} mismatches); shares "
          + ", ".join(f"{a.split(':')[1]}={s:.1%}" for a, s in share.items()))

    # 2. Every algorithm through Lua == `shardkit route`.
    for alg in algorithms:
        if alg not in lua:
            lua[alg], _ = route_all(client, lua_port, uris, alg)
        bad = mismatches(expected[alg], lua[alg])
        check(not bad, f"{alg}: Lua and `shardkit route` disagree on {len(bad)} URIs, e.g. "
              f"{[(uris[i], expected[alg][i], lua[alg][i]) for i in bad[:3]]}")
        print(f"2. {alg:<17} Lua balancer == shardkit route on {n - len(bad)}/{n} URIs "
              f"({len(bad)} mismatches)")

    # 3. Removing a server moves only its URIs.
    before_after = [("native", native, route_all(client, native_port, uris, "removed")[0])]
    for alg in REMOVAL_ALGORITHMS:
        before_after.append((f"Lua {alg}", lua[alg],
                             route_all(client, lua_port, uris, f"removed:{alg}")[0]))
    for what, before, after in before_after:
        own = [i for i in range(n) if before[i] == removed_node]
        others_moved = [i for i in range(n) if before[i] != removed_node and after[i] != before[i]]
        on_removed = [i for i in range(n) if after[i] == removed_node]
        check(not others_moved and not on_removed and own,
              f"{what}: removing {removed_node}: {len(others_moved)} URIs of other servers "
              f"moved, {len(on_removed)} still sent to it, {len(own)} were on it")
        print(f"3. {what}: without {removed_node}, {len(own)}/{n} URIs moved "
              f"({len(own) / n:.1%}, the server's share), {len(others_moved)} others moved")
    check(before_after[0][2] == before_after[1][2],
          "after the removal, native nginx and Lua ketama:nginx still agree")

    # 4. A dead server: its URIs go to lookup_n's second node on the retry.
    replicas = cli_route(["--nginx", f"{weighted}, {dead_node}"], uris, replicas=2)
    want = [r[1] if r[0] == dead_node else r[0] for r in replicas]
    # get_last_failure() reports the refused connection as "failed" (502).
    # A request its first node served keeps no state (ngx.ctx.shardkit nil).
    want_tries = [(2, f"{dead_node} failed 502") if r[0] == dead_node else (0, "")
                  for r in replicas]
    got, tried = route_all(client, lua_port, uris, "dead", tries=3)
    bad = mismatches(want, got)
    bad_tries = mismatches(want_tries, tried)
    check(not bad, f"dead server: {len(bad)} URIs not on lookup_n's next node, e.g. "
          f"{[(uris[i], want[i], got[i]) for i in bad[:3]]}")
    check(not bad_tries, f"dead server: {len(bad_tries)} URIs with an unexpected number of "
          f"attempts, e.g. {[(uris[i], want_tries[i], tried[i]) for i in bad_tries[:3]]}")
    native_dead, _ = route_all(client, native_port, uris, "dead")
    bad_native = mismatches(native_dead, got)
    check(not bad_native, f"dead server: native nginx and Lua disagree on {len(bad_native)} URIs")
    print(f"4. dead {dead_node}: {sum(t[0] == 2 for t in want_tries)} of its URIs retried "
          f"on the next node "
          f"({len(bad)} mismatches with shardkit route --replicas 2, {len(bad_native)} with "
          f"native nginx)")

    # 5. ring:lookup and ring:lookup_n == shardkit route (--replicas 3).
    sample = uris[:100]
    want3 = cli_route(["--nodes", nodes_weighted, "--algorithm", "maglev"], sample, replicas=3)
    bad = 0
    for uri, w in zip(sample, want3):
        for params, want in [({"n": 3}, w), ({}, w[:1])]:
            q = urllib.parse.urlencode({"ring": "maglev", "key": uri, **params})
            status, _, body = client.get(lua_port, f"/_lookup?{q}")
            bad += status != 200 or body.rstrip("\n").split("\t") != want
    check(bad == 0, f"ring:lookup / lookup_n(key, 3) differ from shardkit route on {bad} calls")
    print(f"5. ring:lookup and ring:lookup_n(key, 3) == shardkit route (--replicas 3) on "
          f"{2 * len(sample) - bad}/{2 * len(sample)} calls")
    for n_bad in (0, 9):
        q = urllib.parse.urlencode({"ring": "maglev", "key": "/x", "n": n_bad})
        status, _, body = client.get(lua_port, f"/_lookup?{q}")
        check(status == 400 and str(n_bad) in body,
              f"lookup_n(key, {n_bad}) on 4 nodes: want 400 naming it, got {status} {body!r}")

    # Rings are freed by the garbage collector (ffi.gc): building and dropping
    # 150 rings of 256 KiB (in requests of 50, each well inside the client's
    # timeout) leaves the worker's memory where it was.
    status, _, body = client.get(lua_port, "/_churn?count=30")
    pid = body.strip()
    rss_before = rss_kib(pid)
    statuses = [client.get(lua_port, "/_churn?count=50")[0] for _ in range(3)]
    grown = rss_kib(pid) - rss_before
    check(status == 200 and statuses == [200] * 3 and grown < 12 * 1024,
          f"150 dropped rings grew the worker by {grown} KiB (about 38 MiB if none were "
          f"freed); answers {status} {statuses}")
    print(f"   150 rings built and dropped: worker RSS grew {grown / 1024:.1f} MiB "
          f"(about 38 MiB if leaked)")

    # Every way of finding the library, in a fresh copy of the module.
    lib_dir = os.path.dirname(LIB)
    checkout = [p for p in (f"{ROOT}/target/release/libshardkit.so",
                            f"{ROOT}/target/debug/libshardkit.so") if os.path.exists(p)]
    ways = [
        ("shardkit.load(path)", {"path": LIB}, 200, LIB),
        ("$SHARDKIT_LIB", {"env": LIB}, 200, LIB),
        ("package.cpath", {"cpath": f"{lib_dir}/?.so"}, 200, f"{lib_dir}/libshardkit.so"),
        ("the checkout's target/", {}, *((200, checkout[0]) if checkout else (400, "tried"))),
        ("a bad path", {"path": "/nonexistent/libshardkit.so"}, 400,
         "/nonexistent/libshardkit.so"),
    ]
    for what, params, want_status, want in ways:
        status, _, body = client.get(lua_port, "/_load?" + urllib.parse.urlencode(params))
        ok = status == want_status and (body.strip() == want if status == 200 else want in body)
        check(ok, f"library via {what}: want {want_status} {want!r}, got {status} {body.strip()!r}")
    print(f"   library found by {', '.join(w[0] for w in ways[:4])}; a bad path is named")

    # 6. Bad input: a clear error naming the value; nginx keeps serving.
    log_text = read(log)
    for ring, needle in [("bad-algorithm", 'unknown ketama mode "nope"'),
                         ("bad-weight", 'weight=0": weight must be an integer')]:
        check(re.search(rf"shardkit ring {ring}: .*{re.escape(needle)}", log_text),
              f"error log names the bad value of ring {ring} ({needle!r})")
    cases = [
        ({"list": weighted, "algorithm": "jump hash"}, 'unknown sharding algorithm "jump hash"'),
        ({"list": weighted, "algorithm": "maglev:100"}, "prime between 2 and 16777259, got 100"),
        ({"list": f"{addr[0]} wieght=2, {addr[1]}"}, '"wieght=2"'),
        ({"list": f"{addr[0]} weight=two"}, 'got "two"'),
        ({"list": weighted, "algorithm": "jump"}, "jump does not support weights"),
        ({"list": f"{addr[0]}, {addr[0]}"}, "listed more than once"),
        ({"list": " ; "}, "has no servers"),
        ({}, "the upstream list must be a string, got nil"),
    ]
    for params, needle in cases:
        q = urllib.parse.urlencode(params)
        status, _, body = client.get(lua_port, f"/_ring?{q}")
        check(status == 400 and needle in body,
              f"/_ring?{q}: want 400 naming {needle!r}, got {status} {body.strip()!r}")
        check(needle in read(log), f"error log has {needle!r}")
    status, _, body = client.get(lua_port, "/_ring?" + urllib.parse.urlencode(
        {"list": weighted, "algorithm": "rendezvous"}))
    check(status == 200 and body.strip() == ",".join(addr), f"/_ring good list: {status} {body!r}")
    status, _, _ = client.get(lua_port, "/item/1", {"X-Ring": "bad-algorithm"})
    # balancer_by_lua answers any ngx.exit(5xx) with 500.
    check(status == 500, f"a request for a ring that failed to build: want 500, got {status}")
    check("shardkit.balance: no ring" in read(log),
          "error log explains the 502 (shardkit.balance: no ring)")
    status, _, body = client.get(lua_port, "/_balance_outside")
    check(status == 500 and body.startswith("shardkit.balance: get_last_failure: "),
          f"balance outside balancer_by_lua: want 500 naming get_last_failure, got {status} {body.strip()!r}")
    _, _, no_request = client.get(lua_port, "/_balance_no_request")
    check(no_request.strip() == "shardkit.balance: no request (call it from balancer_by_lua*)",
          f"balance with no request (init_by_lua): want the error naming why, got {no_request.strip()!r}")
    after, _ = route_all(client, lua_port, uris[:200], "ketama:nginx")
    check(after == lua["ketama:nginx"][:200], "after the errors nginx still serves, unchanged")
    print(f"6. {len(cases) + 2} bad rings answered 400 (or 500) naming the bad value, balance outside "
          f"balancer_by_lua named why ({body.strip()!r}; with no request: {no_request.strip()!r}), all "
          f"logged; nginx kept serving ({len(after)} more URIs placed as before)")


if __name__ == "__main__":
    sys.exit(main())
