"""A typed use of the public API, checked by mypy --strict against the stubs
(run_tests.sh). Also run by the test suite, so it must stay executable."""

from __future__ import annotations

from array import array

import shardkit


def route(keys: list[bytes]) -> dict[str, list[bytes]]:
    s: shardkit.Sharder = shardkit.Sharder({"cache-a": 1, "cache-b": 2}, "ketama:nginx", hash="xxh3", hash_tag="{}")
    out: dict[str, list[bytes]] = {}
    for key, node in zip(keys, s.lookup_many(keys)):
        out.setdefault(node, []).append(key)
    single: str = s.lookup("user:1")
    replicas: list[str] = s.lookup_n(b"user:1", 2)
    assert single == replicas[0]
    slots: array[int] = s.lookup_many_slots(keys)
    names: list[str] = [s.node(i) for i in slots]
    assert names == s.lookup_many(keys)
    h: int = s.key_hash(bytearray(b"user:1"))
    assert h >= 0
    bigger = s.with_node("cache-c", 3).with_weight("cache-a", 2).with_down("cache-b").without_node("cache-c")
    again = bigger.apply([("up", "cache-b"), ("add", "cache-d"), ("weight", "cache-d", 5), ("remove", "cache-d")])
    m: shardkit.Movement = s.movement(again, samples=1000)
    frac: float = m.fraction
    b: shardkit.Balance = s.balance(1000)
    per: dict[str, int] = b.per_node
    assert 0.0 <= frac <= 1.0 and sum(per.values()) == 1000
    tag: str | None = s.hash_tag
    assert tag == "{}" and len(s) == 2 and "cache-a" in s
    try:
        shardkit.Sharder([], "jump")
    except shardkit.EmptyNodeSetError as e:
        code: int = e.code
        assert code == 2
    try:
        s.without_node("nope")
    except KeyError:
        pass
    return out


PROXY_YAML = """\
cache:
  listen: 127.0.0.1:0
  hash: fnv1a_64
  distribution: ketama
  servers:
   - 127.0.0.1:11211:1
"""


def proxy() -> dict[str, str]:
    """Starts and stops an embedded proxy (no traffic: nothing dials its server)."""
    with shardkit.Proxy(PROXY_YAML, metrics_addr="127.0.0.1:0") as p:
        addr: str = p.address("cache")
        listening: dict[str, str] = p.listening()
        assert listening == {"cache": addr}
        p.reload(PROXY_YAML)
        text: str = p.metrics()
        stats: dict[str, object] = p.stats()
        assert 'pool="cache"' in text and "cache" in stats
        where: str | None = p.metrics_addr
        assert where is not None and p.stats_addr is None and not p.stopped
        try:
            p.address("other")
        except shardkit.NotFoundError as e:
            assert e.code == 4
    assert p.stopped
    p.stop()
    return listening


def pipeline() -> dict[str, dict[str, int]]:
    """An in-process pipeline: a plain stage replying, an async one, a batch one."""
    import time

    p = shardkit.Pipeline("memory", partitions=4)

    @p.stage("orders", reply_topic="invoices", max_attempts=3, min_backoff=0.01)
    def bill(event: shardkit.Event) -> shardkit.Event | None:
        if event.data is None:
            raise shardkit.Permanent("an order without data")
        return shardkit.Event(f"inv-{event.id}", "billing", "invoice", key=event.key, data={"of": event.id})

    @p.stage("invoices", name="mail")
    async def mail(event: shardkit.Event) -> None:
        assert event.type == "invoice"

    @p.stage("orders", name="audit", batch=10, linger=0.01)
    def audit(events: list[shardkit.Event]) -> list[shardkit.Event | BaseException | None]:
        return [None for _ in events]

    order = shardkit.Event("1", "shop", "order", key="user-1", data={"total": 3}, extensions={"tenant": "acme"})
    raw: bytes = order.to_json()
    assert shardkit.Event.from_json(raw) == order and order.extensions["tenant"] == "acme"
    with p:
        p.publish("orders", [order, shardkit.Event("2", "shop", "order")])
        deadline = time.monotonic() + 10
        while p.stats()["mail"]["handled"] < 1 or not p.dead_letters("orders.dlq"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    dead: list[shardkit.Event] = p.dead_letters("orders.dlq")
    assert dead[0].extensions["dlqreason"] == "permanent"
    moved: int = p.redrive("orders.dlq")
    assert moved == 1
    return p.stats()


if __name__ == "__main__":
    print(route([b"user:%d" % i for i in range(10)]))
