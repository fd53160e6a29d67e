"""Property tests (hypothesis) over arbitrary keys and node sets."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import shardkit
from conftest import ADD_MOVES_ONLY_TO_NEW, supports_weights

keys_st = st.lists(st.binary(max_size=64), min_size=1, max_size=64)
names_st = st.lists(
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=24), min_size=1, max_size=24, unique=True
)
algorithm_st = st.sampled_from(list(shardkit.ALGORITHMS))


@given(algorithm=algorithm_st, names=names_st, keys=keys_st)
def test_lookup_is_deterministic_and_in_the_node_set(algorithm: str, names: list[str], keys: list[bytes]) -> None:
    s = shardkit.Sharder(names, algorithm)
    again = shardkit.Sharder(list(names), algorithm)
    for key in keys:
        node = s.lookup(key)
        assert node in names
        assert s.lookup(key) == node == again.lookup(key)


@given(algorithm=algorithm_st, names=names_st, keys=keys_st, data=st.data())
def test_batch_equals_map_lookup(algorithm: str, names: list[str], keys: list[bytes], data: st.DataObject) -> None:
    if supports_weights(algorithm):
        weights = data.draw(st.lists(st.integers(1, 50), min_size=len(names), max_size=len(names)))
        s = shardkit.Sharder(dict(zip(names, weights)), algorithm)
    else:
        s = shardkit.Sharder(names, algorithm)
    expected = [s.lookup(k) for k in keys]
    assert s.lookup_many(keys) == expected
    assert [s.node(i) for i in s.lookup_many_slots(keys)] == expected


@given(algorithm=algorithm_st, names=names_st, key=st.binary(max_size=64), data=st.data())
def test_lookup_n_distinct_and_starts_with_lookup(
    algorithm: str, names: list[str], key: bytes, data: st.DataObject
) -> None:
    s = shardkit.Sharder(names, algorithm)
    n = data.draw(st.integers(1, len(names)))
    got = s.lookup_n(key, n)
    assert len(got) == n == len(set(got))
    assert got[0] == s.lookup(key)
    assert set(got) <= set(names)


@given(algorithm=algorithm_st, names=names_st, keys=keys_st, data=st.data())
def test_down_node_moves_only_its_keys(algorithm: str, names: list[str], keys: list[bytes], data: st.DataObject) -> None:
    assume(len(names) >= 2)
    victim = data.draw(st.sampled_from(names))
    s = shardkit.Sharder(names, algorithm)
    d = s.with_down(victim)
    for key, before, after in zip(keys, s.lookup_many(keys), d.lookup_many(keys)):
        assert after != victim
        if before != victim:
            assert after == before, f"{algorithm}: {key!r} moved {before} -> {after} though {victim} went down"
        else:
            # The key's next choice takes over.
            assert after == s.lookup_n(key, 2)[1]


@pytest.mark.parametrize("algorithm", ADD_MOVES_ONLY_TO_NEW)
@given(names=names_st, keys=keys_st, new=st.text(min_size=1, max_size=8))
def test_adding_a_node_only_moves_keys_to_it(algorithm: str, names: list[str], keys: list[bytes], new: str) -> None:
    assume(new not in names)
    s = shardkit.Sharder(names, algorithm)
    t = s.with_node(new)
    for key, before, after in zip(keys, s.lookup_many(keys), t.lookup_many(keys)):
        assert after in (before, new), f"{algorithm}: {key!r} moved {before} -> {after}, not to {new}"


@given(names=names_st, keys=keys_st, data=st.data())
def test_memento_removal_moves_only_the_removed_nodes_keys(names: list[str], keys: list[bytes], data: st.DataObject) -> None:
    assume(len(names) >= 2)
    s = shardkit.Sharder(names, "memento")
    # Remove a few nodes one after another, anywhere in the set.
    for victim in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names) - 1, unique=True)):
        t = s.without_node(victim)
        for key, before, after in zip(keys, s.lookup_many(keys), t.lookup_many(keys)):
            assert after != victim
            if before != victim:
                assert after == before, f"{key!r} moved {before} -> {after} when {victim} was removed"
        s = t


@given(names=names_st, keys=keys_st)
def test_memento_equals_jump_while_nothing_is_removed(names: list[str], keys: list[bytes]) -> None:
    assert shardkit.Sharder(names, "memento").lookup_many(keys) == shardkit.Sharder(names, "jump").lookup_many(keys)


@given(names=names_st, key=st.binary(max_size=32), tag=st.binary(min_size=1, max_size=8).filter(lambda b: b"}" not in b))
def test_hash_tag_hashes_only_the_tag(names: list[str], key: bytes, tag: bytes) -> None:
    s = shardkit.Sharder(names, "jump", hash_tag="{}")
    assume(b"{" not in key)
    assert s.key_hash(key + b"{" + tag + b"}" + key) == s.key_hash(tag)
