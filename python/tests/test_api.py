"""Every public method and property of shardkit.Sharder, Movement, Balance."""

from __future__ import annotations

import array
import inspect
import pickle
import re

import pytest

import shardkit
from conftest import supports_weights

NODES = ["cache-a", "cache-b", "cache-c", "cache-d"]
KEYS = [b"user:%d" % i for i in range(2000)]


@pytest.fixture(params=list(shardkit.ALGORITHMS))
def sharder(request: pytest.FixtureRequest) -> shardkit.Sharder:
    return shardkit.Sharder(NODES, request.param)


def test_module_metadata() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", shardkit.__version__)
    assert "ketama:uhashring" in shardkit.ALGORITHMS
    assert "xxh3" in shardkit.HASHES and "fnv1a_64" in shardkit.HASHES
    assert shardkit.PARALLEL_BATCH_THRESHOLD > 0
    assert set(shardkit.__all__) <= set(dir(shardkit))


def test_default_algorithm_is_cores() -> None:
    # The Python signature spells the default out; it must be core's.
    default = inspect.signature(shardkit.Sharder).parameters["algorithm"].default
    assert default == shardkit.DEFAULT_ALGORITHM
    if shardkit.DEFAULT_ALGORITHM in shardkit.ALGORITHMS:
        assert shardkit.Sharder(NODES).algorithm == shardkit.DEFAULT_ALGORITHM


def test_lookup_returns_a_member(sharder: shardkit.Sharder) -> None:
    seen = {sharder.lookup(k) for k in KEYS}
    assert seen <= set(NODES)
    assert len(seen) == len(NODES), f"{sharder!r} never chose some node over {len(KEYS)} keys"


def test_str_keys_hash_as_utf8(sharder: shardkit.Sharder) -> None:
    for text in ["user:1", "ключ", "鍵🔑", ""]:
        raw = text.encode()
        assert sharder.lookup(text) == sharder.lookup(raw)
        assert sharder.lookup(bytearray(raw)) == sharder.lookup(raw)
        assert sharder.lookup(memoryview(raw)) == sharder.lookup(raw)
        assert sharder.key_hash(text) == sharder.key_hash(raw)


def test_noncontiguous_memoryview_is_its_bytes() -> None:
    s = shardkit.Sharder(NODES, "jump")
    view = memoryview(b"0a1b2c3d")[::2]
    assert s.lookup(view) == s.lookup(b"0123")


def test_lookup_many_matches_lookup(sharder: shardkit.Sharder) -> None:
    mixed = [k if i % 3 else k.decode() for i, k in enumerate(KEYS)]
    assert sharder.lookup_many(mixed) == [sharder.lookup(k) for k in mixed]
    assert sharder.lookup_many(tuple(KEYS)) == sharder.lookup_many(KEYS)
    assert sharder.lookup_many(k for k in KEYS) == sharder.lookup_many(KEYS)
    assert sharder.lookup_many([]) == []


def test_lookup_many_above_parallel_threshold() -> None:
    s = shardkit.Sharder(NODES, "jump")
    keys = [b"k%d" % i for i in range(shardkit.PARALLEL_BATCH_THRESHOLD * 3 + 17)]
    out = s.lookup_many(keys)
    assert len(out) == len(keys)
    step = 97
    assert out[::step] == [s.lookup(k) for k in keys[::step]]


def test_batch_returns_shared_name_objects() -> None:
    s = shardkit.Sharder(NODES, "jump")
    out = s.lookup_many(KEYS)
    by_name = {}
    for name in out:
        # One str object per node and snapshot: no allocation per key.
        assert by_name.setdefault(name, name) is name
    assert s.lookup(KEYS[0]) is by_name[out[0]]


def test_lookup_many_slots(sharder: shardkit.Sharder) -> None:
    slots = sharder.lookup_many_slots(KEYS)
    assert isinstance(slots, array.array) and slots.itemsize == 4 and slots.typecode == "I"
    assert len(slots) == len(KEYS)
    assert [sharder.node(s) for s in slots] == sharder.lookup_many(KEYS)
    assert [sharder.slot_names[s] for s in slots] == sharder.lookup_many(KEYS)
    # A buffer: memoryview (and numpy) read it without copying.
    assert memoryview(slots).format == "I"


def test_node_and_slot_names() -> None:
    s = shardkit.Sharder(NODES, "ketama:nginx")
    assert s.slot_names == tuple(NODES)
    assert [s.node(i) for i in range(len(NODES))] == NODES
    for bad in (-1, len(NODES), 2**40):
        with pytest.raises(shardkit.NotFoundError, match=str(bad)):
            s.node(bad)


def test_lookup_n(sharder: shardkit.Sharder) -> None:
    for key in KEYS[:200]:
        for n in (1, 2, len(NODES)):
            got = sharder.lookup_n(key, n)
            assert len(got) == n and len(set(got)) == n
            assert got[0] == sharder.lookup(key)
            assert set(got) <= set(NODES)
        # Stable order: a shorter list is a prefix of a longer one.
        assert sharder.lookup_n(key, 2) == sharder.lookup_n(key, len(NODES))[:2]


@pytest.mark.parametrize("n", [0, 5])
def test_lookup_n_bounds(n: int) -> None:
    s = shardkit.Sharder(NODES, "jump")
    with pytest.raises(shardkit.InvalidArgumentError, match=f"got {n}"):
        s.lookup_n(b"k", n)


def test_lookup_n_negative_is_a_python_error() -> None:
    s = shardkit.Sharder(NODES, "jump")
    with pytest.raises(OverflowError):
        s.lookup_n(b"k", -1)


def test_key_hash() -> None:
    s = shardkit.Sharder(NODES, "jump", hash="xxh3")
    h = s.key_hash(b"user:1")
    assert isinstance(h, int) and 0 <= h < 2**64
    assert h == s.key_hash("user:1")
    assert s.key_hash(b"user:2") != h
    # A different seed is a different function.
    assert shardkit.Sharder(NODES, "jump", hash="xxh3:7").key_hash(b"user:1") != h
    # twemproxy's fnv1a_64 computes in 32 bits.
    assert shardkit.Sharder(NODES, "ketama:twemproxy").key_hash(b"user:1") < 2**32


def test_hash_tag_groups_keys() -> None:
    s = shardkit.Sharder(NODES, "jump", hash_tag="{}")
    assert s.hash_tag == "{}"
    assert s.key_hash(b"user:{42}:name") == s.key_hash(b"42")
    assert len({s.lookup(b"user:{42}:%d" % i) for i in range(200)}) == 1
    # Keys without a tag hash whole.
    assert s.key_hash(b"plain") == shardkit.Sharder(NODES, "jump").key_hash(b"plain")
    assert shardkit.Sharder(NODES, "jump", hash_tag="<>").key_hash(b"a<b>c") == s.key_hash(b"b")


def test_properties_and_repr() -> None:
    s = shardkit.Sharder({"a": 1, "b": 1, "c": 1}, "ketama:twemproxy", hash="md5", hash_tag="{}")
    assert s.algorithm == "ketama:twemproxy"
    assert s.hash_name == "md5"
    assert s.nodes == ["a", "b", "c"]
    assert s.weights == {"a": 1, "b": 1, "c": 1}
    assert len(s) == 3
    assert "a" in s and "z" not in s and 3 not in s
    assert repr(s) == "Sharder(algorithm='ketama:twemproxy', hash='md5', nodes=3, hash_tag='{}')"
    down = s.with_down("b")
    assert repr(down).endswith("down=1)")
    assert shardkit.Sharder(["x"], "ketama").algorithm == "ketama:twemproxy"
    assert shardkit.Sharder(["x"], "ketama:uhashring").hash_name == "md5"
    assert shardkit.Sharder(["x"], "jump").hash_tag is None


def test_node_input_shapes() -> None:
    weights = {"a": 3, "b": 1, "c": 2}
    expected = shardkit.Sharder(weights, "ketama:nginx")
    keys = KEYS[:500]
    for shape in (
        list(weights.items()),
        tuple(weights.items()),
        (pair for pair in weights.items()),
        [["a", 3], ["b", 1], ["c", 2]],
        [("a", 3), "b", ("c", 2)],
    ):
        s = shardkit.Sharder(shape, "ketama:nginx")
        assert s.weights == weights
        assert s.lookup_many(keys) == expected.lookup_many(keys)
    assert shardkit.Sharder(["a", "b"], "jump").weights == {"a": 1, "b": 1}
    assert shardkit.Sharder(("a", "b"), "jump").nodes == ["a", "b"]


def test_membership_changes_are_new_snapshots() -> None:
    algo = "ketama:nginx"
    s = shardkit.Sharder(NODES, algo)
    before = s.lookup_many(KEYS)

    added = s.with_node("cache-e", 2)
    assert added.weights["cache-e"] == 2 and len(added) == 5
    assert s.nodes == NODES and s.lookup_many(KEYS) == before  # unchanged
    assert added.with_node("cache-f").weights["cache-f"] == 1

    removed = s.without_node("cache-b")
    assert removed.nodes == ["cache-a", "cache-c", "cache-d"]
    assert "cache-b" not in removed.lookup_many(KEYS)

    heavier = s.with_weight("cache-a", 5)
    assert heavier.weights["cache-a"] == 5
    share = lambda sh: sh.lookup_many(KEYS).count("cache-a") / len(KEYS)  # noqa: E731
    assert share(heavier) > share(s)

    down = s.with_down("cache-c")
    assert down.is_down("cache-c") and not down.is_down("cache-a")
    assert down.down_nodes == ["cache-c"]
    assert len(down) == 4
    out = down.lookup_many(KEYS)
    assert "cache-c" not in out
    # Marking down moves only the down node's keys.
    assert all(b == a for a, b in zip(before, out) if a != "cache-c")
    for key in KEYS[:100]:
        assert "cache-c" not in down.lookup_n(key, 3)
    up = down.with_down("cache-c", down=False)
    assert up.lookup_many(KEYS) == before and up.down_nodes == []

    with pytest.raises(shardkit.NotFoundError, match="nope"):
        s.is_down("nope")


def test_apply_batches_changes() -> None:
    s = shardkit.Sharder(NODES, "ketama:nginx")
    t = s.apply([("add", "cache-e", 3), ("add", "cache-f"), ("remove", "cache-a"), ("weight", "cache-b", 4), ("down", "cache-c")])
    assert t.weights == {"cache-b": 4, "cache-c": 1, "cache-d": 1, "cache-e": 3, "cache-f": 1}
    assert t.down_nodes == ["cache-c"]
    assert t.apply([("up", "cache-c")]).down_nodes == []
    assert s.apply([]).lookup_many(KEYS) == s.lookup_many(KEYS)
    # All or nothing: a failing change leaves no partial snapshot.
    with pytest.raises(shardkit.NotFoundError, match="ghost"):
        s.apply([("add", "cache-e"), ("remove", "ghost")])
    with pytest.raises(shardkit.InvalidArgumentError, match="frobnicate"):
        s.apply([("frobnicate", "cache-a")])
    with pytest.raises(TypeError, match="list"):
        s.apply([["add", "x"]])
    with pytest.raises(TypeError, match="takes 2 items"):
        s.apply([("remove", "cache-a", 1)])


def test_all_down_is_unavailable() -> None:
    s = shardkit.Sharder(["a", "b"], "jump").with_down("a").with_down("b")
    for call in (lambda: s.lookup(b"k"), lambda: s.lookup_many([b"k"]), lambda: s.lookup_n(b"k", 1)):
        with pytest.raises(shardkit.UnavailableError, match="2 nodes"):
            call()
    with pytest.raises(ConnectionError):
        s.lookup(b"k")


def test_movement() -> None:
    a = shardkit.Sharder(NODES, "ketama:nginx")
    b = a.with_node("cache-e")
    m = a.movement(b, samples=20_000)
    assert isinstance(m, shardkit.Movement)
    assert m.samples == 20_000
    assert m.fraction == m.moved / m.samples
    assert m.minimum == pytest.approx(0.2)
    assert 0.1 < m.fraction < 0.3
    assert a.movement(a, 1000).moved == 0
    assert "fraction=" in repr(m)
    with pytest.raises(shardkit.InvalidArgumentError, match="got 0"):
        a.movement(b, samples=0)
    with pytest.raises(TypeError):
        a.movement("not a sharder")  # type: ignore[arg-type]


def test_balance() -> None:
    s = shardkit.Sharder({"a": 1, "b": 3}, "ketama:nginx")
    b = s.balance(samples=40_000)
    assert isinstance(b, shardkit.Balance)
    assert b.samples == 40_000
    assert set(b.per_node) == {"a", "b"} and sum(b.per_node.values()) == 40_000
    assert b.per_node["b"] > 2 * b.per_node["a"]
    assert b.min_to_mean <= 1.0 <= b.peak_to_mean < 1.5
    assert b.stddev >= 0
    assert "peak_to_mean=" in repr(b)
    with pytest.raises(shardkit.InvalidArgumentError, match="got 0"):
        s.balance(samples=0)


def test_maglev_table_size() -> None:
    s = shardkit.Sharder(NODES, "maglev:251")
    assert set(s.lookup_many(KEYS)) == set(NODES)


def test_weights_shift_load() -> None:
    for algorithm in shardkit.ALGORITHMS:
        if not supports_weights(algorithm):
            continue
        s = shardkit.Sharder({"light": 1, "heavy": 4}, algorithm)
        heavy = s.lookup_many(KEYS).count("heavy") / len(KEYS)
        assert 0.65 < heavy < 0.95, f"{algorithm}: heavy node got {heavy:.2f} of keys at weight 4:1"


def test_classes_are_not_constructible_or_picklable_by_accident() -> None:
    with pytest.raises(TypeError):
        shardkit.Movement()  # type: ignore[call-arg]
    s = shardkit.Sharder(NODES, "jump")
    with pytest.raises(TypeError):
        pickle.dumps(s)
