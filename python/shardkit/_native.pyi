"""Type stubs for the native module ``shardkit._native`` (checked by mypy.stubtest)."""

import os
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal, Union, final

from typing_extensions import TypeAlias

__all__ = [
    "ALGORITHMS",
    "Balance",
    "ConfigError",
    "DEFAULT_ALGORITHM",
    "DuplicateNodeError",
    "EmptyNodeSetError",
    "HASHES",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "Movement",
    "NotFoundError",
    "PARALLEL_BATCH_THRESHOLD",
    "Sharder",
    "ShardkitError",
    "ShardkitIOError",
    "UnavailableError",
    "__version__",
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
    def from_nginx(upstream: str) -> Sharder: ...
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
