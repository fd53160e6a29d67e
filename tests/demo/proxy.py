"""The cache ambassador demo (`make demo`): three memcached behind
`shardkit proxy` with replicas and hot keys. A client stores keys; one
memcached dies and every key is still read; a hot key shows up in the
metrics and its load is spread off its server.

Usage: python3 tests/demo/proxy.py SHARDKIT_BINARY
Stdlib only. Every server runs on 127.0.0.1 with free ports and is stopped
at the end; every loop is bounded.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


from ports import free_port, wait_port


class Client:
    """A memcache text client on one connection, pipelining."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def set_many(self, items):
        self.s.sendall(b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v) for k, v in items))
        return sum(self.f.readline() == b"STORED\r\n" for _ in items)

    def get_many(self, keys):
        self.s.sendall(b"get " + b" ".join(keys) + b"\r\n")
        found = {}
        while True:
            line = self.f.readline()
            if line == b"END\r\n" or not line:
                return found
            if not line.startswith(b"VALUE "):
                raise SystemExit(f"unexpected reply {line!r}")
            _, key, _, n = line.split()[:4]
            found[key] = self.f.read(int(n) + 2)[:-2]


def cmd_gets(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"stats\r\n")
    data = b""
    while not data.endswith(b"END\r\n"):
        data += s.recv(65536)
    s.close()
    return int(re.search(rb"STAT cmd_get (\d+)", data).group(1))


def main():
    shardkit = sys.argv[1]
    memcached = shutil.which("memcached") or "/usr/bin/memcached"
    tmp = tempfile.mkdtemp(prefix="shardkit-demo-proxy-")
    procs = []
    try:
        ports = [free_port() for _ in range(3)]
        user = ["-u", "root"] if os.geteuid() == 0 else []
        mcs = [subprocess.Popen([memcached, "-l", "127.0.0.1", "-p", str(p), "-U", "0", "-t", "1"] + user)
               for p in ports]
        procs += mcs
        for p, m in zip(ports, mcs):
            wait_port(p, "memcached", m)
        listen, metrics = free_port(), free_port()
        conf = os.path.join(tmp, "proxy.yml")
        with open(conf, "w") as f:
            f.write(f"""cache:
  listen: 127.0.0.1:{listen}
  hash: fnv1a_64
  distribution: ketama
  timeout: 500
  auto_eject_hosts: true
  server_failure_limit: 1
  server_retry_timeout: 30000
  replicas: 2
  hot_keys: true
  hot_key_ttl: 200
  servers:
""" + "".join(f"   - 127.0.0.1:{p}:1 cache-{i}\n" for i, p in enumerate(ports)))
        print(open(conf).read())
        proxy = subprocess.Popen([shardkit, "proxy", "--config", conf, "--threads", "2",
                                  "--metrics-addr", f"127.0.0.1:{metrics}"])
        procs.append(proxy)
        wait_port(listen, "shardkit proxy", proxy)

        c = Client(listen)
        items = [(b"user:%d" % i, b"profile-%d" % i) for i in range(1000)]
        stored = c.set_many(items)
        print(f"stored {stored} of {len(items)} keys through the proxy (each on 2 of 3 servers)")

        print(f"killing memcached cache-1 (port {ports[1]})")
        mcs[1].send_signal(signal.SIGKILL)
        mcs[1].wait()
        found = {}
        for i in range(0, len(items), 100):
            found.update(c.get_many([k for k, _ in items[i:i + 100]]))
        good = sum(found.get(k) == v for k, v in items)
        print(f"read back {good} of {len(items)} keys with one server dead")
        if good != len(items):
            sys.exit("demo: keys were lost")

        before = [cmd_gets(p) for p in (ports[0], ports[2])]
        hot = b"user:7"
        for _ in range(200):
            c.s.sendall(b"get user:7\r\n" * 50)
            for _ in range(50):
                c.f.readline(); c.f.readline(); c.f.readline()
        after = [cmd_gets(p) for p in (ports[0], ports[2])]
        served = sum(a - b for a, b in zip(after, before))
        print(f"10000 gets of the hot key {hot.decode()}: the live servers saw {served}; "
              f"the proxy's hot-key copy answered the rest")
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith(("shardkit_proxy_hot_key_requests", "shardkit_proxy_hot_key_hits_total",
                                "shardkit_proxy_backend_requests_total", "shardkit_proxy_backend_ejected")):
                print("  " + line)
        if 'key="user:7"' not in text:
            sys.exit("demo: the hot key is not in the metrics")
        if served > 2000:
            sys.exit(f"demo: the hot key's load was not spread ({served} backend gets)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
