"""Process helpers shared by failover.py and leftovers.py: child processes
whose output lines are read by a thread and stamped with CLOCK_MONOTONIC on
arrival, and etcdctl queries.

CLOCK_MONOTONIC (time.monotonic_ns() on Linux) is one clock for every
process on the machine, so a stamp printed by a contender compares with the
driver's own.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from typing import Sequence

ETCDCTL = os.environ.get("ETCDCTL", "/usr/bin/etcdctl")


def now_ns() -> int:
    return time.monotonic_ns()


class Proc:
    """A child process; each stdout line is queued with its arrival time."""

    def __init__(self, argv: Sequence[str], label: str) -> None:
        self.label = label
        self.argv = list(argv)
        self.p = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[tuple[int, str]] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put((now_ns(), line.rstrip("\n")))

    def _read_err(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.err.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.p.pid

    def line(self, timeout: float) -> tuple[int, str]:
        """The next output line and when it arrived; raises when none comes."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            state = "running" if self.p.poll() is None else f"exited {self.p.returncode}"
            raise RuntimeError(
                f"{self.label}: no output within {timeout:.0f} s ({state}); stderr: {' | '.join(self.err[-5:])}"
            ) from None

    def signal(self, sig: int) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, sig)

    def wait(self, timeout: float) -> int:
        """The exit status; kills the process first when it overstays."""
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise RuntimeError(f"{self.label}: did not exit within {timeout:.0f} s; killed") from None

    def stop(self) -> None:
        """Ends the process if it still runs (cleanup after an error)."""
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def kill_pid(pid: int) -> None:
    """SIGKILL to a process that is not our child (a CMD left behind)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def etcdctl(endpoints: str, *args: str) -> str:
    env = dict(os.environ, ETCDCTL_API="3")
    r = subprocess.run(
        [ETCDCTL, "--endpoints", endpoints, *args], env=env, capture_output=True, text=True, timeout=30
    )
    if r.returncode != 0:
        raise RuntimeError(f"etcdctl {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def keys(endpoints: str, prefix: str) -> list[str]:
    out = etcdctl(endpoints, "get", prefix, "--prefix", "--keys-only")
    return [k for k in out.splitlines() if k.strip()]


def leases(endpoints: str) -> set[str]:
    """Lease ids from `etcdctl lease list` ("found N leases" then one id a line)."""
    out = etcdctl(endpoints, "lease", "list").splitlines()
    return {line.strip() for line in out[1:] if line.strip()}


def wait_keys(endpoints: str, prefix: str, n: int, timeout: float = 10.0) -> None:
    """Waits until at least n keys are under prefix (holder and queued waiters)."""
    deadline = time.monotonic() + timeout
    while True:
        have = len(keys(endpoints, prefix))
        if have >= n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{n} keys under {prefix!r} not seen within {timeout:.0f} s (have {have})")
        time.sleep(0.05)
