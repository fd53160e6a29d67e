"""Type stubs for the native module ``shardkit._native`` (checked by mypy.stubtest)."""

import os
from array import array
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, Protocol, TypedDict, TypeVar, Union, final, overload

from typing_extensions import Buffer, TypeAlias

__all__ = [
    "ALGORITHMS",
    "Balance",
    "CancelledError",
    "CompactedError",
    "BadResponseError",
    "BufferTooSmallError",
    "ConfigError",
    "Coordinator",
    "DEFAULT_ALGORITHM",
    "DuplicateNodeError",
    "Election",
    "EmptyNodeSetError",
    "Event",
    "FencedError",
    "FenceGate",
    "FencingToken",
    "Gathered",
    "HASHES",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "Leader",
    "Lock",
    "Movement",
    "NotFoundError",
    "NullPointerError",
    "Observer",
    "OwnershipEvent",
    "PARALLEL_BATCH_THRESHOLD",
    "PARTITION_KEY",
    "PanicError",
    "Permanent",
    "Pipeline",
    "Proxy",
    "Scatter",
    "ScopedLock",
    "Session",
    "SessionLostError",
    "Sharder",
    "ShardkitError",
    "ShardkitIOError",
    "ShardkitTimeoutError",
    "ShardOwner",
    "UnavailableError",
    "__version__",
    "error_kinds",
    "intersect",
    "top_k",
    "top_k_arrays",
    "union",
]

__version__: Final[str]
ALGORITHMS: Final[tuple[str, ...]]
HASHES: Final[tuple[str, ...]]
DEFAULT_ALGORITHM: Final[str]
PARALLEL_BATCH_THRESHOLD: Final[int]

_Key: TypeAlias = Union[bytes, str, bytearray, memoryview]
"""A key: bytes, or str (hashed as its UTF-8 encoding)."""

_Nodes: TypeAlias = Union[Sequence[Union[str, tuple[str, int]]], Mapping[str, int], Iterable[tuple[str, int]]]
"""Node names (weight 1) or (name, weight) pairs, or a mapping of name to weight."""

_Change: TypeAlias = Union[
    tuple[Literal["add"], str],
    tuple[Literal["add"], str, int],
    tuple[Literal["remove"], str],
    tuple[Literal["weight"], str, int],
    tuple[Literal["down"], str],
    tuple[Literal["up"], str],
]
"""One membership change for :meth:`Sharder.apply`."""

class _ArrayInterface(Protocol):
    """A numpy array. At run time it is a buffer; numpy's stubs declare
    ``__buffer__`` only for Python 3.12+, so it is matched by this instead."""

    @property
    def __array_interface__(self) -> dict[str, Any]: ...

_BufferLike: TypeAlias = Union[Buffer, _ArrayInterface]
"""An object exporting the buffer protocol: array.array, numpy array, memoryview."""

_Hits: TypeAlias = Union[Sequence[tuple[float, int]], tuple[_BufferLike, _BufferLike]]
"""One shard's hits in merge order (score descending, then doc ascending):
``(score, doc)`` pairs, or a ``(scores, docs)`` pair of equal-length 1-D
contiguous buffers (scores float32/float64: array 'f'/'d', numpy; docs 32- or
64-bit integers, non-negative: array 'I'/'L'/'Q'/'i'/'l'/'q', numpy
uint32/uint64/int32/int64). Scores are rounded to float32 (core's hit score)
before the order is checked: scores that round alike are ties, ordered by doc."""

_Postings: TypeAlias = Union[Sequence[int], _BufferLike]
"""A strictly increasing list of ids: ints in [0, 2**64), or a 1-D contiguous
integer buffer (array 'I'/'L'/'Q'/'i'/'l'/'q', numpy uint32/uint64/int32/int64;
signed ones must hold no negative id)."""

def top_k(
    lists: Sequence[_Hits], size: int, offset: int = 0, *, trusted: bool = False
) -> list[tuple[float, int, int]]:
    """The hits at ranks ``offset .. offset + size`` of the merged lists, as
    ``(score, shard, doc)`` tuples; ``lists[i]`` is shard ``i``'s hits.

    Every hit is read and checked (NaN, order) unless ``trusted``: then only
    the first ``offset + size`` of each list are read, and order is checked
    only on the hits the merge consumes (for lists from a source you trust).
    The GIL is released while merging. Errors: ``size`` 0, a NaN score, a
    list out of order (naming list and position), bad buffers."""

def top_k_arrays(
    lists: Sequence[_Hits], size: int, offset: int = 0, *, trusted: bool = False
) -> tuple[array[float], array[int], array[int]]:
    """:func:`top_k` as three arrays: scores ('f'), shards ('I'), docs ('Q')."""

# intersect / union: the ids present in every list / in any list, ascending,
# each once. When every list is a buffer the result is an array.array, 'I' if
# every list is 32-bit and 'Q' otherwise (wrap it with numpy.frombuffer
# without a copy); when any list is a Python sequence, a list of ints. The GIL
# is released while they run. Errors: a list not strictly increasing (naming
# list and position), a negative id, a bad buffer, and intersect([]).
@overload
def intersect(lists: Sequence[_BufferLike]) -> array[int]: ...
@overload
def intersect(lists: Sequence[Sequence[int]]) -> list[int]: ...
@overload
def intersect(lists: Sequence[_Postings]) -> Union[array[int], list[int]]: ...
@overload
def union(lists: Sequence[_BufferLike]) -> array[int]: ...
@overload
def union(lists: Sequence[Sequence[int]]) -> list[int]: ...
@overload
def union(lists: Sequence[_Postings]) -> Union[array[int], list[int]]: ...

class ShardkitError(Exception):
    """Base class of every error shardkit raises."""

class InvalidArgumentError(ShardkitError, ValueError):
    code: int

class EmptyNodeSetError(ShardkitError, ValueError):
    code: int

class DuplicateNodeError(ShardkitError, ValueError):
    code: int

class NotFoundError(ShardkitError, KeyError):
    code: int

class ConfigError(ShardkitError, ValueError):
    code: int

class ShardkitIOError(ShardkitError, OSError):
    code: int

class InvalidUtf8Error(ShardkitError, ValueError):
    code: int

class UnavailableError(ShardkitError, ConnectionError):
    code: int

class ShardkitTimeoutError(ShardkitError, TimeoutError):
    code: int

class SessionLostError(ShardkitError, RuntimeError):
    code: int

class CancelledError(ShardkitError, RuntimeError):
    code: int

class FencedError(ShardkitError, RuntimeError):
    code: int

class CompactedError(ShardkitError, LookupError):
    code: int

class BadResponseError(ShardkitError, ConnectionError):
    code: int

# The C ABI's own kinds: never raised in Python, present so every code of
# core's error table has its class.
class NullPointerError(ShardkitError, ValueError):
    code: int

class BufferTooSmallError(ShardkitError, ValueError):
    code: int

class PanicError(ShardkitError, RuntimeError):
    code: int

def error_kinds() -> list[tuple[int, str, str]]:
    """Core's error table: ``(code, name, description)`` of every kind, in code order."""

@final
class Movement:
    """How many keys change node between two snapshots."""

    @property
    def samples(self) -> int: ...
    @property
    def moved(self) -> int: ...
    @property
    def fraction(self) -> float: ...
    @property
    def minimum(self) -> float: ...

@final
class Balance:
    """How evenly keys spread, relative to each node's weight."""

    @property
    def samples(self) -> int: ...
    @property
    def peak_to_mean(self) -> float: ...
    @property
    def min_to_mean(self) -> float: ...
    @property
    def stddev(self) -> float: ...
    @property
    def per_node(self) -> dict[str, int]: ...

@final
class Sharder:
    """An immutable sharding snapshot over named, weighted nodes."""

    def __new__(
        cls,
        nodes: _Nodes,
        algorithm: str = "maglev",
        *,
        hash: str | None = None,
        hash_tag: str | None = None,
    ) -> Sharder: ...
    @staticmethod
    def from_twemproxy(yaml: str, pool: str | None = None) -> Sharder: ...
    @staticmethod
    def from_twemproxy_file(path: str | os.PathLike[str], pool: str | None = None) -> Sharder: ...
    @staticmethod
    def from_nginx(upstream: str, algorithm: str | None = None) -> Sharder:
        """An nginx upstream list (``"host:port [weight=N] [down],..."``) as
        nginx's ``hash ... consistent`` places it, or by ``algorithm``."""
    def lookup(self, key: _Key) -> str: ...
    def lookup_n(self, key: _Key, n: int) -> list[str]: ...
    def lookup_many(self, keys: Iterable[_Key]) -> list[str]: ...
    def lookup_many_slots(self, keys: Iterable[_Key]) -> array[int]: ...
    def key_hash(self, key: _Key) -> int: ...
    def node(self, slot: int) -> str: ...
    @property
    def slot_names(self) -> tuple[str | None, ...]: ...
    @property
    def nodes(self) -> list[str]: ...
    @property
    def weights(self) -> dict[str, int]: ...
    @property
    def down_nodes(self) -> list[str]: ...
    def is_down(self, name: str) -> bool: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def hash_name(self) -> str: ...
    @property
    def hash_tag(self) -> str | None: ...
    def __len__(self) -> int: ...
    def __contains__(self, name: object, /) -> bool: ...
    def with_node(self, name: str, weight: int = 1) -> Sharder: ...
    def without_node(self, name: str) -> Sharder: ...
    def with_weight(self, name: str, weight: int) -> Sharder: ...
    def with_down(self, name: str, down: bool = True) -> Sharder: ...
    def apply(self, changes: Iterable[_Change]) -> Sharder: ...
    def movement(self, other: Sharder, samples: int = 100000) -> Movement: ...
    def balance(self, samples: int = 100000) -> Balance: ...

# --- ownership election -------------------------------------------------------

_Bytes: TypeAlias = Union[bytes, str, bytearray, memoryview]
"""A key or value: bytes, or str (stored as its UTF-8 encoding)."""

_TokenKind: TypeAlias = Literal["lock", "leader", "shard"]

@final
class FencingToken:
    """Proof of holding a lock, leadership or shard from a store revision on.
    ``int(token)`` is the revision external stores compare."""

    @property
    def revision(self) -> int: ...
    @property
    def value(self) -> int: ...
    @property
    def lease(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> _TokenKind: ...
    @property
    def key(self) -> bytes: ...
    def __int__(self) -> int: ...
    def __hash__(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __lt__(self, other: FencingToken, /) -> bool: ...
    def __le__(self, other: FencingToken, /) -> bool: ...
    def __gt__(self, other: FencingToken, /) -> bool: ...
    def __ge__(self, other: FencingToken, /) -> bool: ...

@final
class FenceGate:
    """Refuses writes to a resource that carry a token older than one seen."""

    def __new__(cls, name: str, kind: _TokenKind = "lock") -> FenceGate: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> _TokenKind: ...
    def admit(self, resource: _Bytes, token: FencingToken | int) -> None: ...
    def newest(self, resource: _Bytes) -> int: ...

@final
class Leader:
    """Who leads an election."""

    @property
    def name(self) -> str: ...
    @property
    def value(self) -> bytes: ...
    @property
    def key(self) -> bytes: ...
    @property
    def revision(self) -> int: ...
    @property
    def lease(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...

@final
class Observer:
    """Leadership changes of one election: a Leader, or None (no leader)."""

    @property
    def name(self) -> str: ...
    def wait(self, timeout: float | None = None) -> Leader | None: ...
    def wait_async(self, timeout: float | None = None) -> Awaitable[Leader | None]: ...
    def __iter__(self) -> Observer: ...
    def __next__(self) -> Leader | None: ...
    def __aiter__(self) -> Observer: ...
    def __anext__(self) -> Awaitable[Leader | None]: ...

@final
class Lock:
    """One contender for a named lock under a session."""

    @property
    def name(self) -> str: ...
    @property
    def token(self) -> FencingToken | None: ...
    def acquire(self, timeout: float | None = None) -> FencingToken: ...
    def try_acquire(self) -> FencingToken | None: ...
    def release(self) -> None: ...
    def put(self, key: _Bytes, value: _Bytes) -> int: ...
    def put_with(self, token: FencingToken, key: _Bytes, value: _Bytes) -> int: ...
    def acquire_async(self, timeout: float | None = None) -> Awaitable[FencingToken]: ...
    def try_acquire_async(self) -> Awaitable[FencingToken | None]: ...
    def release_async(self) -> Awaitable[None]: ...
    def put_async(self, key: _Bytes, value: _Bytes) -> Awaitable[int]: ...
    def __enter__(self) -> FencingToken: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]: ...
    def __aenter__(self) -> Awaitable[FencingToken]: ...
    def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Awaitable[Literal[False]]: ...

@final
class ScopedLock:
    """``Coordinator.lock(...)``: a lock held under a lease of its own, for a
    ``with`` block or between ``acquire`` and ``release``; each release
    revokes the lease."""

    @property
    def name(self) -> str: ...
    @property
    def token(self) -> FencingToken | None: ...
    @property
    def session(self) -> Session | None: ...
    def acquire(self, timeout: float | None = None) -> FencingToken: ...
    def try_acquire(self) -> FencingToken | None: ...
    def release(self) -> None: ...
    def acquire_async(self, timeout: float | None = None) -> Awaitable[FencingToken]: ...
    def try_acquire_async(self) -> Awaitable[FencingToken | None]: ...
    def release_async(self) -> Awaitable[None]: ...
    def __enter__(self) -> FencingToken: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]: ...
    def __aenter__(self) -> Awaitable[FencingToken]: ...
    def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Awaitable[Literal[False]]: ...

@final
class Election:
    """One candidate in a named election under a session."""

    @property
    def name(self) -> str: ...
    @property
    def token(self) -> FencingToken | None: ...
    def campaign(self, value: _Bytes, timeout: float | None = None) -> FencingToken: ...
    def proclaim(self, value: _Bytes) -> None: ...
    def resign(self) -> None: ...
    def leader(self) -> Leader | None: ...
    def campaign_async(self, value: _Bytes, timeout: float | None = None) -> Awaitable[FencingToken]: ...
    def proclaim_async(self, value: _Bytes) -> Awaitable[None]: ...
    def resign_async(self) -> Awaitable[None]: ...
    def leader_async(self) -> Awaitable[Leader | None]: ...

@final
class OwnershipEvent:
    """A shard gained (with its token) or lost (with the reason)."""

    @property
    def kind(self) -> Literal["gained", "lost"]: ...
    @property
    def shard(self) -> str: ...
    @property
    def token(self) -> FencingToken | None: ...
    @property
    def reason(self) -> str | None: ...

@final
class ShardOwner:
    """A worker taking part in a shard group."""

    @property
    def group(self) -> str: ...
    @property
    def worker(self) -> str: ...
    @property
    def owned(self) -> dict[str, FencingToken]: ...
    @property
    def stopped(self) -> bool: ...
    @property
    def error(self) -> ShardkitError | None: ...
    def next_event(self, timeout: float | None = None) -> OwnershipEvent | None: ...
    def next_event_async(self, timeout: float | None = None) -> Awaitable[OwnershipEvent | None]: ...
    def close(self) -> None: ...
    def close_async(self) -> Awaitable[None]: ...
    def __iter__(self) -> ShardOwner: ...
    def __next__(self) -> OwnershipEvent: ...
    def __aiter__(self) -> ShardOwner: ...
    def __anext__(self) -> Awaitable[OwnershipEvent]: ...
    def __enter__(self) -> ShardOwner: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]: ...
    def __aenter__(self) -> Awaitable[ShardOwner]: ...
    def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Awaitable[Literal[False]]: ...

@final
class Session:
    """A lease kept alive in the background; lost exactly once, before the server expires it."""

    @property
    def lease_id(self) -> int: ...
    @property
    def ttl(self) -> int: ...
    @property
    def margin(self) -> float: ...
    @property
    def remaining(self) -> float: ...
    @property
    def is_lost(self) -> bool: ...
    @property
    def is_closed(self) -> bool: ...
    def check(self) -> None: ...
    def lost(self) -> Awaitable[SessionLostError]: ...
    def on_lost(self, callback: Callable[[SessionLostError], object]) -> None: ...
    def close(self) -> None: ...
    def close_async(self) -> Awaitable[None]: ...
    def lock(self, name: str) -> Lock: ...
    def election(self, name: str) -> Election: ...
    def guarded_put(self, token: FencingToken, key: _Bytes, value: _Bytes) -> int: ...
    def guarded_put_async(self, token: FencingToken, key: _Bytes, value: _Bytes) -> Awaitable[int]: ...
    def own_shards(
        self,
        group: str,
        worker: str,
        shards: Sequence[str],
        on_change: Callable[[OwnershipEvent], object] | None = None,
    ) -> ShardOwner: ...
    def own_shards_async(
        self,
        group: str,
        worker: str,
        shards: Sequence[str],
        on_change: Callable[[OwnershipEvent], object] | None = None,
    ) -> Awaitable[ShardOwner]: ...
    def __enter__(self) -> Session: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]: ...
    def __aenter__(self) -> Awaitable[Session]: ...
    def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Awaitable[Literal[False]]: ...

@final
class Coordinator:
    """A handle on a store: etcd, or an embedded in-process store with etcd's semantics."""

    def __new__(cls, endpoints: str | None = None, timeout: float = 5.0) -> Coordinator: ...
    @staticmethod
    def embedded() -> Coordinator: ...
    @staticmethod
    def connect(endpoints: str, timeout: float = 5.0) -> Coordinator: ...
    @staticmethod
    def connect_async(endpoints: str, timeout: float = 5.0) -> Awaitable[Coordinator]: ...
    @property
    def is_embedded(self) -> bool: ...
    @property
    def description(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    def session(self, ttl: int = 10, margin: float | None = None, rpc_timeout: float = 5.0) -> Session: ...
    def session_async(
        self, ttl: int = 10, margin: float | None = None, rpc_timeout: float = 5.0
    ) -> Awaitable[Session]: ...
    def resume(self, lease_id: int, margin: float | None = None, rpc_timeout: float = 5.0) -> Session: ...
    def resume_async(
        self, lease_id: int, margin: float | None = None, rpc_timeout: float = 5.0
    ) -> Awaitable[Session]: ...
    def leader(self, name: str) -> Leader | None: ...
    def leader_async(self, name: str) -> Awaitable[Leader | None]: ...
    def observe(
        self,
        name: str,
        *,
        retry_min: float | None = None,
        retry_max: float | None = None,
        report_after: float | None = None,
    ) -> Observer:
        """Follows election ``name``. Store failures are retried (pausing
        ``retry_min`` seconds, doubling up to ``retry_max``); ``wait()`` and
        iteration raise the store's error only after ``report_after`` seconds
        of continuous failure. ``None``: core's default (0.05, 1.0, 5.0 s)."""
    def revoke(self, lease_id: int) -> None: ...
    def revoke_async(self, lease_id: int) -> Awaitable[None]: ...
    def lease_ttl(self, lease_id: int) -> tuple[int, int] | None: ...
    def lock(self, name: str, ttl: int = 10, timeout: float | None = None) -> ScopedLock: ...

_Replica: TypeAlias = Union[str, Callable[[Any], Any]]
"""A leaf replica: an ``http://host:port/path`` URL, a callable, or a coroutine function."""

_LeafSpec: TypeAlias = Union[_Replica, Sequence[_Replica]]
"""One shard: a replica, or a list of interchangeable replicas."""

_Coverage: TypeAlias = Union[Literal["all", "best-effort", "best_effort"], str, int]
"""How many shards must answer: ``"all"``; ``"best-effort"`` (or
``"best_effort"``): at least one; at least K of the N leaves as the int K or
the text ``"K"`` or ``"K/N"`` (N must be the leaf count)."""

class _ReplicaMetrics(TypedDict):
    calls: int
    outstanding: int
    ewma: float | None

class _LeafMetrics(TypedDict):
    name: str
    calls: int
    hedges_sent: int
    hedges_won: int
    timeouts: int
    errors: int
    samples: int
    p50: float | None
    p95: float | None
    p99: float | None
    replicas: list[_ReplicaMetrics]

@final
class Gathered:
    """What a gather returned: the answers that arrived and the leaves that did not answer."""

    @property
    def answers(self) -> list[tuple[int, Any]]: ...
    @property
    def missing(self) -> list[tuple[int, ShardkitError]]: ...
    @property
    def answered(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def degraded(self) -> bool: ...

@final
class Scatter:
    """A fan-out over leaves (one per shard), each served by one or more replicas."""

    def __new__(
        cls,
        leaves: Sequence[_LeafSpec],
        *,
        hedge: bool = False,
        hedge_percentile: float = 0.95,
        hedge_budget: float = 0.05,
        tied: bool = False,
    ) -> Scatter: ...
    def __len__(self) -> int: ...
    def gather(self, request: Any, *, timeout: float, coverage: _Coverage = "all") -> Gathered: ...
    def gather_async(self, request: Any, *, timeout: float, coverage: _Coverage = "all") -> Awaitable[Gathered]: ...
    def first(self, request: Any, *, timeout: float) -> Any: ...
    def first_async(self, request: Any, *, timeout: float) -> Awaitable[Any]: ...
    def metrics(self) -> list[_LeafMetrics]: ...

@final
class Proxy:
    """A cache proxy (nutcracker's YAML; memcache text and meta, Redis) serving every pool in this process."""

    def __new__(
        cls, config: str, *, stats_addr: str | None = None, metrics_addr: str | None = None, threads: int | None = None
    ) -> Proxy: ...
    def address(self, pool: str) -> str: ...
    def listening(self) -> dict[str, str]: ...
    def reload(self, config: str) -> None: ...
    def metrics(self) -> str: ...
    def stats(self) -> dict[str, Any]: ...
    @property
    def stats_addr(self) -> str | None: ...
    @property
    def metrics_addr(self) -> str | None: ...
    @property
    def stopped(self) -> bool: ...
    def stop(self) -> None: ...
    def __enter__(self) -> Proxy: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]: ...


# --- event pipelines ------------------------------------------------------------

PARTITION_KEY: Final[str]
"""The CloudEvents extension an event's ``key`` is stored in (``"partitionkey"``)."""

class Permanent(Exception):
    """Raised by a pipeline handler for an event no retry can fix: the event is
    dead-lettered at once, with this exception's message as its error."""

@final
class Event:
    """A CloudEvents 1.0 event. Immutable; every attribute is checked when the
    event is made (a bad one raises :class:`InvalidArgumentError` naming it).

    ``data``: a dict, list, number, bool or None travels as JSON; a ``str`` as
    text (``text/plain`` unless ``datacontenttype`` says otherwise); ``bytes``
    as binary. ``key`` sets the ``partitionkey`` extension: events of one key
    go to one partition and are handled in order."""

    __hash__: ClassVar[None]  # type: ignore[assignment]
    def __new__(
        cls,
        id: str,
        source: str,
        type: str,
        *,
        data: object = None,
        subject: str | None = None,
        time: str | None = None,
        key: str | None = None,
        datacontenttype: str | None = None,
        extensions: dict[str, str] | None = None,
    ) -> Event: ...
    @property
    def id(self) -> str:
        """The ``id`` attribute."""
    @property
    def source(self) -> str:
        """The ``source`` attribute."""
    @property
    def type(self) -> str:
        """The ``type`` attribute."""
    @property
    def subject(self) -> str | None:
        """The ``subject`` attribute."""
    @property
    def time(self) -> str | None:
        """The ``time`` attribute (RFC 3339, as given)."""
    @property
    def key(self) -> str:
        """What events are ordered and partitioned by: the ``partitionkey``
        extension, else ``subject``, else ``id``."""
    @property
    def datacontenttype(self) -> str | None:
        """The ``datacontenttype`` attribute."""
    @property
    def data(self) -> Any:
        """The payload: JSON decoded, text as ``str``, binary as ``bytes``, or None."""
    @property
    def extensions(self) -> dict[str, str]:
        """Every extension attribute (``partitionkey`` and, on a dead letter,
        ``dlqattempts``, ``dlqerror``, ... included), name to value."""
    def to_json(self) -> bytes:
        """Structured content mode: the event as one JSON object."""
    @staticmethod
    def from_json(data: bytes | bytearray | str) -> Event:
        """Parses structured content mode; :class:`InvalidArgumentError` names
        what is wrong."""
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...

_Handled: TypeAlias = Union[Event, list[Event], None]
"""What a handler answers for one event: nothing, an event, or several (sent
to the stage's ``reply_topic``)."""

_BatchItem: TypeAlias = Union[Event, list[Event], BaseException, None]
"""One event's result from a batch handler; an exception fails that event alone."""

_Handler: TypeAlias = Union[
    Callable[[Event], _Handled],
    Callable[[Event], Awaitable[_Handled]],
    Callable[[list[Event]], Sequence[_BatchItem]],
    Callable[[list[Event]], Awaitable[Sequence[_BatchItem]]],
]
"""A stage's handler: one event (``batch=None``) or a list of them (``batch=N``), sync or ``async def``."""

_H = TypeVar("_H", bound=_Handler)

@final
class Pipeline:
    """Stages consuming topics of one transport (``"memory"``, in process, or a
    ``redis://`` URL: Redis Streams), each calling a Python handler.

    Delivery is at least once; events of one key are handled in order; a
    failing event is retried with backoff, then dead-lettered (to
    ``TOPIC.dlq`` unless ``dead_letter`` is given) with its attempts and
    errors as extensions. The GIL is taken once per batch of events;
    ``async def`` handlers run on an asyncio loop the pipeline runs in a
    thread of its own. Handlers should return events rather than publish."""

    def __new__(
        cls, transport: str = "memory", *, partitions: int = 8, capacity: int = 10000, prefix: str = "shardkit:"
    ) -> Pipeline: ...
    def stage(
        self,
        topic: str,
        *,
        name: str | None = None,
        filter: dict[str, str] | None = None,
        reply_topic: str | None = None,
        dead_letter: str | None = None,
        max_attempts: int = 5,
        min_backoff: float = 0.1,
        max_backoff: float = 10.0,
        max_age: float | None = None,
        concurrency: int = 16,
        ordered: bool = True,
        batch: int | None = None,
        linger: float = 0.005,
        visibility: float = 30.0,
        lease: float = 10.0,
    ) -> Callable[[_H], _H]:
        """A decorator registering a handler as a stage consuming ``topic``
        (named after the function unless ``name`` is given; started at once
        if the pipeline runs). ``batch=N``: the handler takes up to N events
        and returns a list of as many results (None, an Event, a list of
        Events, or an exception for a failed event); raising fails the whole
        batch, which is then split to find the failing event. A batch holds
        at most one event of a key, so per-key order holds. Raise
        :class:`Permanent` to dead-letter an event at once. Times in seconds."""
    def publish(self, topic: str, events: Event | Sequence[Event]) -> None:
        """Stores events in ``topic``, each in its key's partition (GIL released)."""
    def peek(self, topic: str, max: int = 1000) -> list[Event]:
        """The events ``topic`` holds, oldest first per partition, at most ``max`` per partition."""
    def dead_letters(self, topic: str, max: int = 1000) -> list[Event]:
        """The events in dead-letter topic ``topic`` (e.g. ``"orders.dlq"``)."""
    def redrive(self, topic: str, id: str | None = None) -> int:
        """Sends the dead letters of ``topic`` (only event ``id``, if given)
        back to the topics they came from; returns how many went.
        :class:`NotFoundError` when ``id`` is not there."""
    def backlog(self, topic: str) -> int:
        """Events stored in ``topic`` and not yet acknowledged by every group."""
    def start(self) -> None:
        """Starts every registered stage (those running already keep running)."""
    def stop(self, drain: float = 10.0) -> None:
        """Stops receiving and waits at most ``drain`` seconds for the events in
        progress; what did not finish is delivered again later. A coroutine
        still running at the limit is cancelled; a plain function runs on in
        its thread, so give ``drain`` more than its longest call if its key
        must not run beside the next worker's."""
    @property
    def running(self) -> bool:
        """Whether the stages are running."""
    @property
    def stages(self) -> list[str]:
        """The registered stages' names."""
    def stats(self) -> dict[str, dict[str, int]]:
        """Each stage's counters: handled, failures, dead_lettered, skipped,
        emitted, redelivered, in_flight (its last run's once stopped)."""
    def __enter__(self) -> Pipeline:
        """Starts the stages."""
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        """Stops the stages (draining at most 10 s)."""
