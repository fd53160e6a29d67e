"""Helpers shared by the proxy bench's Python tools (stdlib only): free
loopback ports, waiting for listeners, a blocking memcache text client with
pipelining, memcached's `stats`, and a process's VmRSS.

Used as a command by bench/proxy.sh too:

    python harness.py ports N              # N free loopback ports
    python harness.py wait ADDR... [--timeout S]
    python harness.py fill ADDR --keys N --prefix P [--size B]
    python harness.py check ADDR --prefix P --keys N   # reads back what fill wrote
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

VALUE_BYTE = b"x"  # values never contain b"END\r\n", so replies can be counted by it


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def connect(addr: str, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(split_addr(addr), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def wait_listening(addrs: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for addr in addrs:
        while True:
            try:
                connect(addr, timeout=1.0).close()
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise SystemExit(f"nothing listens on {addr} after {timeout} s: {e}") from e
                time.sleep(0.05)


class Conn:
    """One blocking memcache text connection."""

    def __init__(self, addr: str, timeout: float = 10.0) -> None:
        self.addr = addr
        self.sock = connect(addr, timeout)
        self.buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise ConnectionError(f"{self.addr} closed the connection")
        self.buf += chunk

    def line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return out
            self._fill()

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def get_reply(self) -> bytes | None:
        """Reads one single-key `get` reply: the value, or None for a miss."""
        value = None
        while True:
            ln = self.line()
            if ln == b"END":
                return value
            if ln.startswith(b"VALUE "):
                n = int(ln.rsplit(b" ", 1)[1])
                value = self.exact(n + 2)[:-2]
            else:
                raise ValueError(f"{self.addr}: unexpected reply line {ln[:120]!r}")

    def get(self, key: bytes) -> bytes | None:
        self.sock.sendall(b"get " + key + b"\r\n")
        return self.get_reply()

    def count_gets(self, n: int) -> tuple[int, int]:
        """Reads the replies to n pipelined single-key gets whose values are
        VALUE_BYTE runs; returns (hits, misses)."""
        ends = 0
        start = 0
        while True:
            ends = self.buf.count(b"END\r\n", start)
            if ends >= n:
                break
            if b"ERROR" in self.buf:
                raise ValueError(f"{self.addr}: error reply: {bytes(self.buf[-200:])!r}")
            self._fill()
        if ends > n:
            raise ValueError(f"{self.addr}: more replies than requests")
        hits = self.buf.count(b"VALUE ")
        self.buf.clear()
        return hits, n - hits

    def set_many(self, items: list[tuple[bytes, bytes]]) -> None:
        """Pipelined sets; raises unless every one is STORED."""
        out = bytearray()
        for k, v in items:
            out += b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v)
        self.sock.sendall(out)
        for _ in items:
            ln = self.line()
            if ln != b"STORED":
                raise ValueError(f"{self.addr}: set answered {ln[:120]!r}")

    def stats(self) -> dict[str, str]:
        self.sock.sendall(b"stats\r\n")
        out = {}
        while True:
            ln = self.line()
            if ln == b"END":
                return out
            parts = ln.decode().split(" ", 2)
            if parts[0] != "STAT" or len(parts) < 3:
                raise ValueError(f"{self.addr}: stats answered {ln[:120]!r}")
            out[parts[1]] = parts[2]


def stats(addr: str) -> dict[str, str]:
    c = Conn(addr)
    try:
        return c.stats()
    finally:
        c.close()


def fill(addr: str, keys: list[bytes], size: int, batch: int = 500) -> None:
    c = Conn(addr)
    try:
        value = VALUE_BYTE * size
        for i in range(0, len(keys), batch):
            c.set_many([(k, value) for k in keys[i : i + batch]])
    finally:
        c.close()


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ports")
    p.add_argument("n", type=int)
    p = sub.add_parser("wait")
    p.add_argument("addrs", nargs="+")
    p.add_argument("--timeout", type=float, default=20.0)
    p = sub.add_parser("fill")
    p.add_argument("addr")
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--size", type=int, default=32)
    p = sub.add_parser("check")
    p.add_argument("addr")
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--size", type=int, default=32)
    a = ap.parse_args()
    if a.cmd == "ports":
        print(*free_ports(a.n))
    elif a.cmd == "wait":
        wait_listening(a.addrs, a.timeout)
    elif a.cmd == "fill":
        fill(a.addr, [b"%s%d" % (a.prefix.encode(), i) for i in range(a.keys)], a.size)
    elif a.cmd == "check":
        c = Conn(a.addr)
        want = VALUE_BYTE * a.size
        bad = 0
        for i in range(a.keys):
            got = c.get(b"%s%d" % (a.prefix.encode(), i))
            if got != want:
                bad += 1
                if bad <= 3:
                    print(f"key {a.prefix}{i}: got {got!r:.60}", file=sys.stderr)
        c.close()
        if bad:
            raise SystemExit(f"{bad} of {a.keys} keys read back wrong through {a.addr}")


if __name__ == "__main__":
    main()
