"""Cross-language placement vectors (tests/vectors/placement.tsv, generated
from Rust): the same key maps to the same node from Rust, C, Go and Python."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

import shardkit

VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors" / "placement.tsv"

Config = tuple[str, str, str, str]


def load() -> dict[Config, list[tuple[bytes, str]]]:
    cases: dict[Config, list[tuple[bytes, str]]] = defaultdict(list)
    for lineno, line in enumerate(VECTORS.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        assert len(cols) == 6, f"{VECTORS}:{lineno}: expected 6 tab-separated columns, got {len(cols)}"
        algorithm, hash_name, hash_tag, nodes, key_hex, expected = cols
        cases[(algorithm, hash_name, hash_tag, nodes)].append((bytes.fromhex(key_hex), expected))
    return cases


def build(algorithm: str, hash_name: str, hash_tag: str, nodes: str) -> shardkit.Sharder:
    pairs = []
    for item in nodes.split(","):
        name, _, weight = item.rpartition("=")
        pairs.append((name, int(weight)))
    return shardkit.Sharder(pairs, algorithm, hash=hash_name or None, hash_tag=hash_tag or None)


def test_placement_vectors() -> None:
    if not VECTORS.exists():
        if os.environ.get("SHARDKIT_REQUIRE_VECTORS") == "1":
            pytest.fail(f"{VECTORS} is missing and SHARDKIT_REQUIRE_VECTORS=1")
        pytest.skip(f"{VECTORS} not generated yet")
    cases = load()
    assert cases, f"{VECTORS} has no vectors"
    checked = 0
    failures = []
    for (algorithm, hash_name, hash_tag, nodes), expected in cases.items():
        s = build(algorithm, hash_name, hash_tag, nodes)
        keys = [k for k, _ in expected]
        want = [e for _, e in expected]
        got_batch = s.lookup_many(keys)
        got_single = [s.lookup(k) for k in keys]
        for key, w, b, g in zip(keys, want, got_batch, got_single):
            if not (w == b == g):
                failures.append(f"{algorithm} hash={hash_name!r} tag={hash_tag!r} nodes={nodes}: key {key.hex()} -> {g}/{b}, want {w}")
        checked += len(keys)
    assert not failures, f"{len(failures)} of {checked} vectors differ:\n" + "\n".join(failures[:20])
    assert checked == sum(len(v) for v in cases.values())
