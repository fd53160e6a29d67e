"""shardkit: sharding functions from one Rust engine.

Build a :class:`Sharder` over named, weighted nodes and look keys up, one at a
time or in batches (the GIL is released for batches)::

    import shardkit
    s = shardkit.Sharder({"cache-a": 1, "cache-b": 2}, "maglev")
    s.lookup(b"user:42")            # -> "cache-b"
    s.lookup_many([b"k1", b"k2"])   # -> ["cache-a", "cache-b"]

Sharders are immutable snapshots: ``with_node``, ``without_node``,
``with_weight`` and ``with_down`` return new ones. Every error is a
:class:`ShardkitError` and also the matching builtin (``ValueError``,
``KeyError``, ``OSError``, ``ConnectionError``, ``TimeoutError``, ...).

Ownership election (locks with fencing tokens, leader election, shard
ownership) runs on a real etcd or on an embedded in-process store::

    coord = shardkit.Coordinator()          # SHARDKIT_ENDPOINTS, or embedded
    with coord.lock("jobs", ttl=10) as token:
        write_somewhere(data, fencing_token=int(token))

    with coord.session(ttl=10) as session:  # one lease for many holds
        with session.lock("jobs") as token:
            session.guarded_put(token, b"jobs/state", b"running")

Every blocking method releases the GIL; each has an ``*_async`` twin
returning an awaitable, and locks, sessions and shard owners work with
``async with``.

Scatter/gather fans a request out to shards (HTTP/JSON URLs, callables or
coroutine functions) and gathers the answers under a deadline::

    s = shardkit.Scatter(["http://10.0.0.1:8080/search", "http://10.0.0.2:8080/search"])
    got = s.gather({"q": "tail latency"}, timeout=0.5, coverage="best-effort")  # or "all", 1, "1/2"
    got.answers, got.missing, got.degraded

Merging what the shards answered: :func:`top_k` (a k-way merge of per-shard
hit lists, ``(score, doc)`` pairs or numpy/array buffers), :func:`intersect`
and :func:`union` of sorted posting lists; all release the GIL::

    shardkit.top_k([[(2.5, 7), (1.0, 3)], [(2.0, 9)]], 2)   # -> [(2.5, 0, 7), (2.0, 1, 9)]
    shardkit.intersect([[1, 4, 9], [4, 9, 12]])              # -> [4, 9]

A cache proxy (a nutcracker drop-in for memcache text and meta, and Redis)
runs inside the process, for tests and sidecars, from nutcracker's YAML::

    with shardkit.Proxy(yaml, metrics_addr="127.0.0.1:9100") as proxy:
        addr = proxy.address("cache")    # "127.0.0.1:PORT" for listen: 127.0.0.1:0
        proxy.reload(new_yaml)           # client connections stay open
        proxy.metrics()                  # Prometheus text

Event pipelines: CloudEvents (:class:`Event`) on topics, consumed by stages
that call Python handlers (plain or ``async def``, one event or a batch a
call), in per-key order, with retries and dead letters::

    p = shardkit.Pipeline()                 # or Pipeline("redis://127.0.0.1:6379")
    @p.stage("orders", reply_topic="invoices")
    def bill(event: shardkit.Event) -> shardkit.Event:
        return shardkit.Event(f"inv-{event.id}", "billing", "invoice", key=event.key)
    with p:
        p.publish("orders", shardkit.Event("1", "shop", "order", data={"total": 3}))
    p.dead_letters("orders.dlq"); p.redrive("orders.dlq")
"""

from shardkit._native import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    HASHES,
    PARALLEL_BATCH_THRESHOLD,
    PARTITION_KEY,
    Balance,
    CancelledError,
    CompactedError,
    BadResponseError,
    BufferTooSmallError,
    ConfigError,
    Coordinator,
    DuplicateNodeError,
    Election,
    EmptyNodeSetError,
    Event,
    FenceGate,
    FencedError,
    FencingToken,
    Gathered,
    InvalidArgumentError,
    InvalidUtf8Error,
    Leader,
    Lock,
    Movement,
    NotFoundError,
    NullPointerError,
    Observer,
    OwnershipEvent,
    PanicError,
    Permanent,
    Pipeline,
    Proxy,
    Scatter,
    ScopedLock,
    Session,
    SessionLostError,
    ShardOwner,
    Sharder,
    ShardkitError,
    ShardkitIOError,
    ShardkitTimeoutError,
    UnavailableError,
    __version__,
    intersect,
    top_k,
    top_k_arrays,
    union,
)

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "HASHES",
    "PARALLEL_BATCH_THRESHOLD",
    "PARTITION_KEY",
    "Balance",
    "CancelledError",
    "CompactedError",
    "BadResponseError",
    "BufferTooSmallError",
    "ConfigError",
    "Coordinator",
    "DuplicateNodeError",
    "Election",
    "EmptyNodeSetError",
    "Event",
    "FenceGate",
    "FencedError",
    "FencingToken",
    "Gathered",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "Leader",
    "Lock",
    "Movement",
    "NotFoundError",
    "NullPointerError",
    "Observer",
    "OwnershipEvent",
    "PanicError",
    "Permanent",
    "Pipeline",
    "Proxy",
    "Scatter",
    "ScopedLock",
    "Session",
    "SessionLostError",
    "ShardOwner",
    "Sharder",
    "ShardkitError",
    "ShardkitIOError",
    "ShardkitTimeoutError",
    "UnavailableError",
    "__version__",
    "intersect",
    "top_k",
    "top_k_arrays",
    "union",
]
