"""Sharders from twemproxy YAML pools and nginx upstream lists. Placement
against the real nutcracker and nginx is proven in tests/compat; here: the
binding's plumbing (pool choice, paths, names, settings carried over)."""

from __future__ import annotations

from pathlib import Path

import pytest

import shardkit

YAML = """\
alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  distribution: ketama
  servers:
   - 127.0.0.1:11211:1
   - 127.0.0.1:11212:2
   - 127.0.0.1:11213:1 cache-c
beta:
  listen: 127.0.0.1:22122
  hash: md5
  hash_tag: "{}"
  distribution: modula
  servers:
   - 10.0.0.1:11211:1
   - 10.0.0.2:11211:3
"""

KEYS = [b"user:%d" % i for i in range(3000)] + [b"user:{7}:a", b"user:{7}:b"]


def test_first_pool_by_default() -> None:
    s = shardkit.Sharder.from_twemproxy(YAML)
    # Node names are the server entries as written, without the alias.
    # nutcracker orders servers by ring name (alias, else host[:port]), shorter first.
    assert s.nodes == ["127.0.0.1:11213:1", "127.0.0.1:11211:1", "127.0.0.1:11212:2"]
    assert s.weights == {"127.0.0.1:11211:1": 1, "127.0.0.1:11212:2": 2, "127.0.0.1:11213:1": 1}
    assert s.algorithm == "ketama:twemproxy"
    assert s.hash_name == "fnv1a_64"
    assert s.hash_tag is None
    assert set(s.lookup_many(KEYS)) == set(s.nodes)


def test_named_pool_and_its_settings() -> None:
    s = shardkit.Sharder.from_twemproxy(YAML, pool="beta")
    assert s.nodes == ["10.0.0.1:11211:1", "10.0.0.2:11211:3"]
    assert s.algorithm == "modulo"
    assert s.hash_name == "md5"
    assert s.hash_tag == "{}"
    # modula placement depends on weights and order only, so an equivalent
    # sharder built by hand must agree key for key.
    by_hand = shardkit.Sharder(list(s.weights.items()), "modulo", hash="md5", hash_tag="{}")
    assert s.lookup_many(KEYS) == by_hand.lookup_many(KEYS)
    assert s.lookup(b"user:{7}:a") == s.lookup(b"user:{7}:b")


def test_from_file(tmp_path: Path) -> None:
    f = tmp_path / "nutcracker.yml"
    f.write_text(YAML)
    want = shardkit.Sharder.from_twemproxy(YAML, "beta").lookup_many(KEYS)
    assert shardkit.Sharder.from_twemproxy_file(f, "beta").lookup_many(KEYS) == want
    assert shardkit.Sharder.from_twemproxy_file(str(f), pool="beta").lookup_many(KEYS) == want
    first = shardkit.Sharder.from_twemproxy_file(f)
    assert first.lookup_many(KEYS) == shardkit.Sharder.from_twemproxy(YAML).lookup_many(KEYS)


def test_from_nginx_equals_nginx_ring() -> None:
    s = shardkit.Sharder.from_nginx("127.0.0.1:8081 weight=2,127.0.0.1:8082;127.0.0.1:8083 weight=3\n127.0.0.1:8084")
    assert s.algorithm == "ketama:nginx"
    assert s.weights == {"127.0.0.1:8081": 2, "127.0.0.1:8082": 1, "127.0.0.1:8083": 3, "127.0.0.1:8084": 1}
    by_hand = shardkit.Sharder(s.weights, "ketama:nginx")
    assert s.lookup_many(KEYS) == by_hand.lookup_many(KEYS)


def test_from_nginx_with_another_algorithm() -> None:
    up = "127.0.0.1:8081 weight=2,127.0.0.1:8082,127.0.0.1:8083 down"
    s = shardkit.Sharder.from_nginx(up, algorithm="rendezvous")
    assert s.algorithm == "rendezvous"
    by_hand = shardkit.Sharder({"127.0.0.1:8081": 2, "127.0.0.1:8082": 1, "127.0.0.1:8083": 1}, "rendezvous")
    by_hand = by_hand.with_down("127.0.0.1:8083")
    assert s.lookup_many(KEYS) == by_hand.lookup_many(KEYS)
    with pytest.raises(shardkit.InvalidArgumentError, match="ketamax"):
        shardkit.Sharder.from_nginx(up, algorithm="ketamax")
    with pytest.raises(shardkit.InvalidArgumentError, match="weight"):
        shardkit.Sharder.from_nginx(up, algorithm="jump")


def test_config_sharders_support_changes() -> None:
    s = shardkit.Sharder.from_twemproxy(YAML)
    t = s.with_down("127.0.0.1:11212:2")
    assert "127.0.0.1:11212:2" not in t.lookup_many(KEYS)
    with pytest.raises(shardkit.NotFoundError):
        s.without_node("cache-c")  # aliases are not node names
