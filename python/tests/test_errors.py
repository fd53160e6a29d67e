"""Bad input raises the right class, with a message naming the bad value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import shardkit
from shardkit import _native

CLASSES = {
    "InvalidArgumentError": (ValueError, 1),
    "EmptyNodeSetError": (ValueError, 2),
    "DuplicateNodeError": (ValueError, 3),
    "NotFoundError": (KeyError, 4),
    "ConfigError": (ValueError, 5),
    "ShardkitIOError": (OSError, 6),
    "InvalidUtf8Error": (ValueError, 7),
    "UnavailableError": (ConnectionError, 11),
}


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_hierarchy(name: str) -> None:
    cls = getattr(shardkit, name)
    builtin, code = CLASSES[name]
    assert issubclass(cls, shardkit.ShardkitError)
    assert issubclass(cls, builtin)
    assert issubclass(shardkit.ShardkitError, Exception)
    assert cls.code == code  # the stable code shared with C and Go
    assert cls.__module__ == "shardkit" and cls.__doc__
    e = cls("detail")
    assert str(e) == "detail"  # KeyError's quoting is undone for NotFoundError


def test_classes_match_cores_error_table() -> None:
    """Every kind in core's one table has its class, with its code and its
    name, and every class is a kind of the table."""
    table = _native.error_kinds()
    codes = [code for code, _, _ in table]
    assert codes == list(range(1, len(codes) + 1))  # stable, contiguous
    classes = {
        cls.code: cls
        for cls in (getattr(shardkit, n) for n in shardkit.__all__)
        if isinstance(cls, type) and issubclass(cls, shardkit.ShardkitError) and cls is not shardkit.ShardkitError
    }
    for code, name, description in table:
        assert code in classes, f"kind {name!r} ({code}, {description!r}) has no Python class"
        cls = classes[code]
        # InvalidArgumentError for invalid_argument; a Shardkit prefix where
        # the plain name would shadow a builtin (ShardkitIOError for io).
        assert cls.__name__.removeprefix("Shardkit").removesuffix("Error").lower() == name.replace("_", ""), (cls, name)
        assert cls.__module__ == "shardkit" and cls.__doc__, cls
        assert getattr(_native, cls.__name__) is cls
    assert sorted(classes) == codes  # and no class without a kind


def test_empty_node_list() -> None:
    for empty in ([], {}, ()):
        with pytest.raises(shardkit.EmptyNodeSetError, match="empty"):
            shardkit.Sharder(empty, "jump")
    with pytest.raises(shardkit.EmptyNodeSetError, match="last one"):
        shardkit.Sharder(["a"], "jump").without_node("a")


def test_duplicate_node() -> None:
    with pytest.raises(shardkit.DuplicateNodeError, match='"b"'):
        shardkit.Sharder(["a", "b", "b"], "jump")
    with pytest.raises(shardkit.DuplicateNodeError, match='"a"'):
        shardkit.Sharder(["a"], "jump").with_node("a")
    with pytest.raises(ValueError):
        shardkit.Sharder([("a", 1), ("a", 2)], "ketama:nginx")


@pytest.mark.parametrize("weight", [0, -1, -(2**40), 2**21])
def test_bad_weight(weight: int) -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match=rf'got {weight} for node "a"'):
        shardkit.Sharder({"a": weight, "b": 1}, "ketama:nginx")
    s = shardkit.Sharder(["a", "b"], "ketama:nginx")
    with pytest.raises(shardkit.InvalidArgumentError, match=rf"got {weight}"):
        s.with_weight("a", weight)
    with pytest.raises(shardkit.InvalidArgumentError, match=rf"got {weight}"):
        s.with_node("c", weight)
    with pytest.raises(shardkit.InvalidArgumentError, match=rf"got {weight}"):
        s.apply([("weight", "a", weight)])


def test_weight_beyond_64_bits_is_named() -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match=str(2**70)):
        shardkit.Sharder({"a": 2**70}, "ketama:nginx")


@pytest.mark.parametrize("weight", [1.5, "2", None, True])
def test_weight_of_wrong_type(weight: Any) -> None:
    with pytest.raises(TypeError, match=type(weight).__name__):
        shardkit.Sharder({"a": weight}, "ketama:nginx")


def test_unweighted_algorithm_refuses_weights() -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match="weight 2"):
        shardkit.Sharder({"a": 1, "b": 2}, "jump")


@pytest.mark.parametrize("size", ["65536", "0", "1", "abc"])
def test_invalid_maglev_table_size(size: str) -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match=size):
        shardkit.Sharder(["a", "b"], f"maglev:{size}")


def test_unknown_algorithm() -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match="no-such-algo") as e:
        shardkit.Sharder(["a"], "no-such-algo")
    assert "jump" in str(e.value)  # lists what is accepted
    with pytest.raises(shardkit.InvalidArgumentError, match="ketama:bogus|bogus"):
        shardkit.Sharder(["a"], "ketama:bogus")


def test_unknown_hash() -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match="sha999") as e:
        shardkit.Sharder(["a"], "jump", hash="sha999")
    assert "fnv1a_64" in str(e.value)
    with pytest.raises(shardkit.InvalidArgumentError, match="nope"):
        shardkit.Sharder(["a"], "jump", hash="xxh3:nope")


@pytest.mark.parametrize("tag", ["", "{", "{}}", "«»"])
def test_bad_hash_tag(tag: str) -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match="hash_tag") as e:
        shardkit.Sharder(["a"], "jump", hash_tag=tag)
    assert repr(tag).strip("'") in str(e.value)


@pytest.mark.parametrize("key", [1, 1.5, None, ["a"], object()])
def test_wrong_key_types(key: Any) -> None:
    s = shardkit.Sharder(["a", "b"], "jump")
    name = type(key).__name__
    for call in (s.lookup, s.key_hash, lambda k: s.lookup_n(k, 1)):
        with pytest.raises(TypeError, match=f"not {name}"):
            call(key)
    with pytest.raises(TypeError, match=rf"keys\[1\] must be bytes or str.*not {name}"):
        s.lookup_many([b"ok", key])
    with pytest.raises(TypeError, match=rf"keys\[2\].*not {name}"):
        s.lookup_many_slots(["ok", b"ok", key])


@pytest.mark.parametrize("keys", [b"abc", "abc", bytearray(b"abc"), 5, None])
def test_wrong_batch_container(keys: Any) -> None:
    s = shardkit.Sharder(["a", "b"], "jump")
    with pytest.raises(TypeError, match=type(keys).__name__):
        s.lookup_many(keys)


def test_unencodable_str_key() -> None:
    s = shardkit.Sharder(["a", "b"], "jump")
    with pytest.raises(shardkit.InvalidUtf8Error, match=r"\\ud800"):
        s.lookup("bad\ud800")
    with pytest.raises(shardkit.InvalidUtf8Error, match=r"keys\[1\]"):
        s.lookup_many(["ok", "bad\ud800"])


@pytest.mark.parametrize(
    "nodes, match",
    [
        ("abc", "not a single str"),
        (b"abc", "not a single bytes"),
        (5, "not int"),
        ([1, 2], r"nodes\[0\].*not int"),
        ([("a", 1, 2)], r"nodes\[0\].*not tuple"),
        ([(1, 1)], "node name must be a str, not int"),
        ({1: 1}, "node name must be a str, not int"),
    ],
)
def test_wrong_node_types(nodes: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        shardkit.Sharder(nodes, "jump")


def test_empty_node_name() -> None:
    with pytest.raises(shardkit.InvalidArgumentError, match="name"):
        shardkit.Sharder(["a", ""], "jump")


def test_membership_errors_name_the_node() -> None:
    s = shardkit.Sharder(["a", "b"], "ketama:nginx")
    for call in (
        lambda: s.without_node("ghost"),
        lambda: s.with_weight("ghost", 2),
        lambda: s.with_down("ghost"),
    ):
        with pytest.raises(shardkit.NotFoundError, match='"ghost"'):
            call()
    with pytest.raises(KeyError):
        s.without_node("ghost")


def test_unreadable_yaml() -> None:
    for bad in ("pool: [unclosed", "pool:\n  servers: 5\n", "just a string", ""):
        with pytest.raises(shardkit.ConfigError) as e:
            shardkit.Sharder.from_twemproxy(bad)
        assert str(e.value)


def test_missing_twemproxy_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yml"
    with pytest.raises(shardkit.ShardkitIOError, match="missing.yml"):
        shardkit.Sharder.from_twemproxy_file(missing)
    with pytest.raises(OSError):
        shardkit.Sharder.from_twemproxy_file(str(missing))


def test_directory_as_twemproxy_file(tmp_path: Path) -> None:
    with pytest.raises(shardkit.ShardkitIOError, match=tmp_path.name):
        shardkit.Sharder.from_twemproxy_file(tmp_path)


def test_missing_pool() -> None:
    yaml = "alpha:\n  servers:\n   - 127.0.0.1:11211:1\n"
    with pytest.raises(shardkit.NotFoundError, match="beta"):
        shardkit.Sharder.from_twemproxy(yaml, pool="beta")


@pytest.mark.parametrize("upstream", ["", "127.0.0.1:8081 weight=0", "127.0.0.1:8081 weight=x", "127.0.0.1:8081 bogus=1"])
def test_bad_nginx_upstream(upstream: str) -> None:
    with pytest.raises(shardkit.ShardkitError) as e:
        shardkit.Sharder.from_nginx(upstream)
    assert isinstance(e.value, ValueError)
