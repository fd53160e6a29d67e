"""`Sharder(nodes, "ketama:uhashring")` places keys exactly as uhashring 2.5's
`HashRing(nodes, hash_fn="ketama")`, so Python users can switch without moving
keys. uhashring hashes `str(key)`, so keys here are str (ours hash the UTF-8
bytes, which is what uhashring's md5 sees). Weighted nodes are given to
uhashring as `{name: {"weight": w}}`; its ketama mode then gives each node
`vnodes * len(nodes) * weight // total_weight` groups of 4 points, with the
default `vnodes=40`.
"""

from __future__ import annotations

import random

import pytest
from uhashring import HashRing

import shardkit

KEYS = [f"user:{i}" for i in range(10_000)] + ["", "ключ:1", "鍵🔑", "a" * 300]


def node_names(n: int) -> list[str]:
    # Address-like names, as uhashring users typically write them.
    return [f"10.0.{i // 250}.{i % 250}:11211" for i in range(n)]


def check_same(ring: HashRing, ours: shardkit.Sharder, keys: list[str]) -> None:
    theirs = [ring.get_node(k) for k in keys]
    mine = ours.lookup_many(keys)
    mismatches = [(k, t, m) for k, t, m in zip(keys, theirs, mine) if t != m]
    assert not mismatches, f"{len(mismatches)} of {len(keys)} keys differ, e.g. {mismatches[:3]}"
    assert [ours.lookup(k) for k in keys[:500]] == theirs[:500]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 50, 100])
def test_equal_weights(n: int) -> None:
    names = node_names(n)
    check_same(HashRing(names, hash_fn="ketama"), shardkit.Sharder(names, "ketama:uhashring"), KEYS)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_unequal_weights(seed: int) -> None:
    rnd = random.Random(seed)
    names = node_names(rnd.choice([3, 10, 30]))
    weights = {name: rnd.choice([1, 1, 2, 3, 5, 10]) for name in names}
    ring = HashRing({name: {"weight": w} for name, w in weights.items()}, hash_fn="ketama")
    check_same(ring, shardkit.Sharder(weights, "ketama:uhashring"), KEYS)


def test_small_weight_beside_large_gets_no_points_as_in_uhashring() -> None:
    # 40 * 2 * 1 // 101 == 0: uhashring gives "tiny" no points, and so do we.
    weights = {"big": 100, "tiny": 1}
    ring = HashRing({name: {"weight": w} for name, w in weights.items()}, hash_fn="ketama")
    ours = shardkit.Sharder(weights, "ketama:uhashring")
    check_same(ring, ours, KEYS[:2000])
    assert set(ours.lookup_many(KEYS[:2000])) == {"big"}


def test_after_membership_changes() -> None:
    names = node_names(12)
    ring = HashRing(names, hash_fn="ketama")
    ours = shardkit.Sharder(names, "ketama:uhashring")
    ring.add_node("10.9.9.9:11211")
    ring.remove_node(names[4])
    ours = ours.with_node("10.9.9.9:11211").without_node(names[4])
    check_same(ring, ours, KEYS)
