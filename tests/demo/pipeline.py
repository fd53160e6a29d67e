"""`make demo`: the signup pipeline on Redis Streams, with `shardkit
pipeline run`, `shardkit events publish` and `shardkit dlq`.

Three stages fan out from `user.created` (welcome email, newsletter,
analytics), each a function at a URL (a small HTTP server here, one process
per function). The analytics function is killed: its events wait while the
other stages go on. It is restarted: nothing was lost. A signup with a
malformed address is refused by the welcome function (422), sits in the
dead-letter stream, and is redriven once the function is fixed.

Usage: python3 tests/demo/pipeline.py SHARDKIT_BINARY
(and, internally: pipeline.py --function NAME PORT LOG [--lenient])
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def serve_function(name: str, port: int, log: str, lenient: bool) -> None:
    """One function: records each event id it handles; the welcome email
    refuses an address without '@' unless lenient."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            event_id = self.headers.get("ce-id", "?")
            data = json.loads(body or b"{}")
            if name == "welcome" and "@" not in data.get("email", "") and not lenient:
                self.send_response(422)
                self.end_headers()
                self.wfile.write(b"no valid email address")
                return
            with open(log, "a") as f:
                f.write(event_id + "\n")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, what: str) -> None:
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not start on port {port}")


def handled(log: str) -> set[str]:
    try:
        with open(log) as f:
            return {line.strip() for line in f if line.strip()}
    except FileNotFoundError:
        return set()


def wait_for(what: str, cond, limit: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + limit
    while not cond():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--function":
        serve_function(sys.argv[2], int(sys.argv[3]), sys.argv[4], "--lenient" in sys.argv)
        return
    shardkit = sys.argv[1]
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    tmp = tempfile.mkdtemp(prefix="shardkit-demo-pipeline-")
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, args: list[str], **kw: object) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, name + ".log"), "w"), **kw)  # type: ignore[call-overload]
        procs[name] = p
        return p

    def function(name: str, port: int, lenient: bool = False) -> None:
        args = [sys.executable, __file__, "--function", name, str(port), os.path.join(tmp, name + ".handled")]
        start(name, args + (["--lenient"] if lenient else []))
        wait_port(port, f"function {name}")

    try:
        rport = free_port()
        start("redis", [redis_server, "--bind", "127.0.0.1", "--port", str(rport), "--save", "",
                        "--appendonly", "yes", "--appendfsync", "always", "--dir", tmp])
        wait_port(rport, "redis-server")
        ports = {n: free_port() for n in ("welcome", "newsletter", "analytics")}
        for n, p in ports.items():
            function(n, p)
        conf = os.path.join(tmp, "signup.yml")
        stages = "".join(
            f"  - name: {n}\n    topic: users\n    filter: {{type: user.created}}\n"
            f"    function: http://127.0.0.1:{p}/\n    max_attempts: {3 if n == 'welcome' else 1000}\n"
            f"    min_backoff: 50\n    max_backoff: 500\n    visibility: 2000\n    lease: 1000\n"
            for n, p in ports.items()
        )
        with open(conf, "w") as f:
            f.write(f"transport:\n  redis: redis://127.0.0.1:{rport}/\n  partitions: 4\nstages:\n{stages}")
        print(f"pipeline file:\n{open(conf).read()}")
        start("pipeline", [shardkit, "pipeline", "run", "--config", conf])

        def publish(first: int, n: int, extra: str = "") -> None:
            lines = "".join(
                json.dumps({"specversion": "1.0", "id": f"signup-{i}", "source": "/web/signup",
                            "type": "user.created", "partitionkey": f"user{i}",
                            "data": {"email": f"user{i}@example.com"}}) + "\n"
                for i in range(first, first + n)
            ) + extra
            subprocess.run([shardkit, "events", "publish", "--config", conf, "--topic", "users"],
                           input=lines.encode(), check=True)

        log = {n: os.path.join(tmp, n + ".handled") for n in ports}
        publish(0, 25)
        wait_for("the first 25 signups in every stage", lambda: all(len(handled(log[n])) == 25 for n in ports))
        print("25 signups: welcome-email, newsletter and analytics each handled 25")

        procs["analytics"].send_signal(signal.SIGKILL)
        procs["analytics"].wait()
        print("analytics function killed (kill -9)")
        poison = json.dumps({"specversion": "1.0", "id": "signup-bad", "source": "/web/signup",
                             "type": "user.created", "partitionkey": "userbad",
                             "data": {"email": "not-an-address"}}) + "\n"
        publish(25, 25, poison)
        wait_for("welcome and newsletter to go on", lambda: len(handled(log["welcome"])) == 50 and len(handled(log["newsletter"])) == 51)
        time.sleep(1.0)
        print(f"25 more signups: welcome-email {len(handled(log['welcome']))}, newsletter "
              f"{len(handled(log['newsletter']))}, analytics {len(handled(log['analytics']))} (its events wait)")
        assert len(handled(log["analytics"])) == 25

        wait_for("the malformed signup dead-lettered", lambda: subprocess.run(
            [shardkit, "dlq", "list", "--config", conf, "--topic", "users.dlq"], capture_output=True, text=True).stdout.strip() != "")
        print("dead-letter stream users.dlq (PARTITION ID KEY REASON ATTEMPTS ERROR):")
        subprocess.run([shardkit, "dlq", "list", "--config", conf, "--topic", "users.dlq"], check=True)

        function("analytics", ports["analytics"])
        wait_for("analytics to catch up", lambda: len(handled(log["analytics"])) == 51)
        print(f"analytics function restarted: it handled {len(handled(log['analytics']))} of 51, nothing lost")

        procs["welcome"].send_signal(signal.SIGTERM)
        procs["welcome"].wait()
        function("welcome", ports["welcome"], lenient=True)
        subprocess.run([shardkit, "dlq", "redrive", "--config", conf, "--topic", "users.dlq"], check=True)
        wait_for("the redriven signup welcomed", lambda: "signup-bad" in handled(log["welcome"]))
        left = subprocess.run([shardkit, "dlq", "list", "--config", conf, "--topic", "users.dlq"],
                              capture_output=True, text=True, check=True).stdout
        assert left == "", left
        print("welcome function fixed, dead letter redriven: signup-bad welcomed, users.dlq empty")

        procs["pipeline"].send_signal(signal.SIGTERM)
        procs["pipeline"].wait(timeout=15)
        with open(os.path.join(tmp, "pipeline.log")) as f:
            for line in f:
                if "handled" in line:
                    print(line.rstrip())
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
