"""The HTTP sharding demo (`make demo`): three backends register in etcd
with `shardkit http-register`; `shardkit http-proxy --group` places each URI
on one of them as nginx's `hash $request_uri consistent` would. One backend
is killed (kill -9, registration and all): it leaves the ring within its
TTL and only its URIs move. Then nginx, through shardkit's Lua balancer
(lua/resty/shardkit.lua), routes the same URIs to the same backends.

Usage: python3 tests/demo/http_proxy.py SHARDKIT_BINARY
Stdlib only. Every server runs on 127.0.0.1 with free ports and is stopped
at the end; every loop is bounded.
"""

import collections
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TTL = 2


from ports import free_port, wait_port


def serve_backend(port):
    """A backend (a process of its own, so kill -9 is real) answering every
    GET with its own address."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go in two writes: without this, Nagle and the
        # proxy's delayed ACKs cost 40 ms a response.
        disable_nagle_algorithm = True

        def do_GET(self):
            body = f"127.0.0.1:{port}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def backend(port):
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--backend", str(port)])
    wait_port(port, f"backend {port}", p)
    return p


def get(port, uri):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{uri}", timeout=5) as r:
        return r.read().decode()


def main():
    shardkit = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="shardkit-http-demo-")
    procs = []
    try:
        client, peer = free_port(), free_port()
        etcd = subprocess.Popen(
            ["etcd", "--data-dir", f"{tmp}/etcd", "--listen-client-urls", f"http://127.0.0.1:{client}",
             "--advertise-client-urls", f"http://127.0.0.1:{client}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"default=http://127.0.0.1:{peer}",
             "--heartbeat-interval", "50", "--election-timeout", "500"],
            stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/etcd.log", "w"))
        procs.append(etcd)
        wait_port(client, "etcd", etcd)
        endpoints = f"127.0.0.1:{client}"

        ports = [free_port() for _ in range(3)]
        servers = [backend(p) for p in ports]
        procs.extend(servers)
        regs = []
        for p in ports:
            r = subprocess.Popen(
                [shardkit, "http-register", "--endpoints", endpoints, "--group", "shop",
                 "--server", f"127.0.0.1:{p}", "--ttl", str(TTL)],
                stderr=subprocess.PIPE, text=True)
            procs.append(r)
            regs.append(r)
            print(r.stderr.readline().strip())

        listen = free_port()
        proxy = subprocess.Popen(
            [shardkit, "http-proxy", "--listen", f"127.0.0.1:{listen}", "--group", "shop",
             "--endpoints", endpoints, "--threads", "2", "--shard-header", "X-Shard"],
            stderr=open(f"{tmp}/proxy.log", "w"))
        procs.append(proxy)
        wait_port(listen, "shardkit http-proxy", proxy)
        uris = [f"/product/{i}?color={i % 7}" for i in range(300)]
        before = {u: get(listen, u) for u in uris}
        spread = collections.Counter(before.values())
        print(f"300 URIs through shardkit http-proxy over 3 registered backends: {dict(spread)}")

        victim = ports[1]
        print(f"kill -9 of backend 127.0.0.1:{victim} and its registration (ttl {TTL} s)")
        os.kill(regs[1].pid, signal.SIGKILL)
        os.kill(servers[1].pid, signal.SIGKILL)
        t0 = time.time()
        deadline = t0 + TTL + 10
        while True:
            after = {u: get(listen, u) for u in uris}
            if all(b != f"127.0.0.1:{victim}" for b in after.values()):
                break
            if time.time() > deadline:
                sys.exit("the killed backend never left the ring")
            time.sleep(0.1)
        left = time.time() - t0
        moved = [u for u in uris if before[u] != after[u]]
        others = [u for u in moved if before[u] != f"127.0.0.1:{victim}"]
        print(f"its URIs moved after {left:.1f} s (refused connections mark it down at once): "
              f"{len(moved)} URIs moved, all of them its own ({len(others)} others moved)")
        if others:
            sys.exit("URIs of live backends moved")
        # Its etcd key goes with its lease: the proxy's group drops it.
        while True:
            with open(f"{tmp}/proxy.log") as f:
                lines = [l for l in f if l.startswith("shardkit http-proxy: group")]
            if lines and f"127.0.0.1:{victim}" not in lines[-1]:
                break
            if time.time() > deadline:
                sys.exit("the killed backend's registration never expired")
            time.sleep(0.1)
        print(f"its registration left the etcd group after {time.time() - t0:.1f} s "
              f"(ttl {TTL} s): {lines[-1].split(': ', 2)[-1].strip()}")

        lua_mod = "/usr/share/nginx/modules/ngx_http_lua_module.so"
        so = os.path.join(ROOT, "target/debug/libshardkit.so")
        if not (os.path.exists(lua_mod) and shutil.which("nginx")):
            print("nginx's Lua module is not installed: skipping the nginx part")
            return
        live = ", ".join(f"127.0.0.1:{p}" for p in (ports[0], ports[2]))
        nport = free_port()
        os.makedirs(f"{tmp}/nginx/logs")
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = f"""{user}load_module /usr/share/nginx/modules/ndk_http_module.so;
load_module {lua_mod};
master_process off;
pid {tmp}/nginx/nginx.pid;
error_log {tmp}/nginx/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx; proxy_temp_path {tmp}/nginx;
  fastcgi_temp_path {tmp}/nginx; uwsgi_temp_path {tmp}/nginx; scgi_temp_path {tmp}/nginx;
  lua_package_path "{ROOT}/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
  init_worker_by_lua_block {{
    ring = assert(require("resty.shardkit").new("{live}", {{ lib = "{so}" }}))
  }}
  upstream shards {{
    server 0.0.0.1;
    balancer_by_lua_block {{ require("resty.shardkit").balance(ring, nil, 2) }}
  }}
  server {{ listen 127.0.0.1:{nport}; location / {{ proxy_pass http://shards; }} }}
}}
"""
        with open(f"{tmp}/nginx/nginx.conf", "w") as f:
            f.write(conf)
        nginx = subprocess.Popen(
            ["nginx", "-p", f"{tmp}/nginx", "-c", f"{tmp}/nginx/nginx.conf", "-e",
             f"{tmp}/nginx/logs/error.log", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/nginx/out.log", "w"))
        procs.append(nginx)
        wait_port(nport, "nginx", nginx)
        via_nginx = {u: get(nport, u) for u in uris}
        same = sum(via_nginx[u] == after[u] for u in uris)
        print(f"nginx + lua/resty/shardkit.lua over the 2 live backends: {same}/{len(uris)} URIs "
              "on the same backend as shardkit http-proxy")
        if same != len(uris):
            sys.exit("nginx's Lua balancer and the proxy disagree")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--backend":
        serve_backend(int(sys.argv[2]))
    else:
        main()
