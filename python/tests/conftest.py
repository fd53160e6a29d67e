"""Shared helpers for the shardkit Python tests."""

from __future__ import annotations

import functools
import os

from hypothesis import HealthCheck, settings

import shardkit

# CI runs on 2 shared cores: bounded example counts, no per-example deadline
# (tests use a debug build of the extension).
settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("SHARDKIT_HYPOTHESIS_EXAMPLES", "50")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")

# Algorithms under which adding a node moves keys only onto it (equal
# weights). ketama:twemproxy is left out on purpose: it scales each server's
# points by a float share of the total, so adding a server can change the
# others' point counts, exactly as nutcracker does (e.g. 24 -> 25 servers).
# maglev and bounded loads only approximate minimal disruption.
ADD_MOVES_ONLY_TO_NEW = ("ketama:nginx", "ketama:uhashring", "jump", "jumpback", "rendezvous", "memento")


@functools.lru_cache(maxsize=None)
def supports_weights(algorithm: str) -> bool:
    """Whether `algorithm` accepts a weight other than 1 (jump-like ones don't)."""
    try:
        shardkit.Sharder({"a": 2, "b": 1}, algorithm)
    except shardkit.InvalidArgumentError:
        return False
    return True
