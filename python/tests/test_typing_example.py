"""The typed example (also checked by mypy in run_tests.sh) runs as written."""

from __future__ import annotations

import runpy
from pathlib import Path


def test_typed_usage_example_runs() -> None:
    ns = runpy.run_path(str(Path(__file__).parent / "typing" / "usage.py"))
    routed = ns["route"]([b"user:%d" % i for i in range(100)])
    assert sum(len(v) for v in routed.values()) == 100
    assert set(routed) <= {"cache-a", "cache-b"}


def test_typed_proxy_example_runs() -> None:
    ns = runpy.run_path(str(Path(__file__).parent / "typing" / "usage.py"))
    listening = ns["proxy"]()
    assert set(listening) == {"cache"}


def test_typed_pipeline_example_runs() -> None:
    ns = runpy.run_path(str(Path(__file__).parent / "typing" / "usage.py"))
    stats = ns["pipeline"]()
    assert stats["bill"]["handled"] == 1 and stats["bill"]["dead_lettered"] == 1
    assert stats["audit"]["handled"] == 2
