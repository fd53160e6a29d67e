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
``KeyError``, ``OSError``, ``ConnectionError``).
"""

from shardkit._native import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    HASHES,
    PARALLEL_BATCH_THRESHOLD,
    Balance,
    ConfigError,
    DuplicateNodeError,
    EmptyNodeSetError,
    InvalidArgumentError,
    InvalidUtf8Error,
    Movement,
    NotFoundError,
    Sharder,
    ShardkitError,
    ShardkitIOError,
    UnavailableError,
    __version__,
)

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "HASHES",
    "PARALLEL_BATCH_THRESHOLD",
    "Balance",
    "ConfigError",
    "DuplicateNodeError",
    "EmptyNodeSetError",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "Movement",
    "NotFoundError",
    "Sharder",
    "ShardkitError",
    "ShardkitIOError",
    "UnavailableError",
    "__version__",
]
