"""top_k, top_k_arrays, intersect and union: property tests against naive
Python references (sorted(...)[offset:offset + size], set operations) for
every input kind (lists, array.array, numpy), every error path, and the GIL
being released during a large intersection."""

from __future__ import annotations

import array
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_gil import MARGIN, ticks_during

import shardkit

# Scores exactly representable as float32 (core's hit score), ties included.
SCORES = st.sampled_from([math.inf, 7.5, 3.0, 1.0, 0.5, 0.0, -0.0, -1.0, -2.25, -math.inf])
U64_MAX = 2**64 - 1

Hit = tuple[float, int]


def merge_order(hits: list[Hit]) -> list[Hit]:
    """One shard's hits in merge order: score descending, doc ascending."""
    return sorted(hits, key=lambda h: (-h[0], h[1]))


def reference_top_k(lists: Sequence[Sequence[Hit]], size: int, offset: int) -> list[tuple[float, int, int]]:
    every = [(s, shard, d) for shard, hits in enumerate(lists) for s, d in hits]
    every.sort(key=lambda h: (-h[0], h[1], h[2]))
    return every[offset : offset + size]


SCORE_KINDS = ("f", "d", "np32", "np64")
DOC_KINDS = ("Q", "L", "I", "npu64", "npu32", "npi64")


def score_buffer(kind: str, scores: list[float]) -> Any:
    if kind in ("f", "d"):
        return array.array(kind, scores)
    return np.array(scores, dtype=np.float32 if kind == "np32" else np.float64)


def id_buffer(kind: str, ids: list[int]) -> Any:
    if kind in ("Q", "L", "I"):
        return array.array(kind, ids)
    return np.array(ids, dtype={"npu64": np.uint64, "npu32": np.uint32, "npi64": np.int64}[kind])


def as_input(kind: str, hits: list[Hit], doc_kind: str, score_kind: str) -> Any:
    """One shard's hits in the input form `kind`."""
    if kind == "pairs":
        return hits
    if kind == "list-pairs":
        return [[s, d] for s, d in hits]
    return (score_buffer(score_kind, [s for s, _ in hits]), id_buffer(doc_kind, [d for _, d in hits]))


@st.composite
def hit_lists(draw: st.DrawFn) -> list[list[Hit]]:
    shards = draw(st.integers(0, 6))
    return [
        merge_order(draw(st.lists(st.tuples(SCORES, st.integers(0, 2**32 - 1)), max_size=30)))
        for _ in range(shards)
    ]


@given(
    lists=hit_lists(),
    size=st.integers(1, 60),
    offset=st.integers(0, 60),
    kinds=st.lists(st.sampled_from(("pairs", "list-pairs", "buffers")), min_size=6, max_size=6),
    doc_kind=st.sampled_from(DOC_KINDS),
    score_kind=st.sampled_from(SCORE_KINDS),
    trusted=st.booleans(),
)
def test_top_k_matches_sorted_slice(
    lists: list[list[Hit]],
    size: int,
    offset: int,
    kinds: list[str],
    doc_kind: str,
    score_kind: str,
    trusted: bool,
) -> None:
    inputs = [as_input(k, hits, doc_kind, score_kind) for k, hits in zip(kinds, lists)]
    want = reference_top_k(lists, size, offset)
    got = shardkit.top_k(inputs, size, offset, trusted=trusted)
    assert got == want
    # -0.0 and 0.0 compare equal; the score given is the score returned.
    assert [math.copysign(1, s) for s, _, _ in got] == [math.copysign(1, s) for s, _, _ in want]
    scores, shards, docs = shardkit.top_k_arrays(inputs, size, offset, trusted=trusted)
    assert (scores.typecode, shards.typecode, docs.typecode) == ("f", "I", "Q")
    assert list(zip(scores, shards, docs)) == want


def test_top_k_parallel_path_matches_reference() -> None:
    """16 x 10,000 hits: above core's parallel threshold."""
    rng = random.Random(7)
    lists = [merge_order([(float(rng.randrange(1000)), rng.randrange(10**6)) for _ in range(10_000)]) for _ in range(16)]
    npl = [(np.array([s for s, _ in h], np.float32), np.array([d for _, d in h], np.uint64)) for h in lists]
    for size, offset in ((10, 0), (1000, 5000), (200_000, 0)):
        want = reference_top_k(lists, size, offset)
        assert shardkit.top_k(lists, size, offset) == want
        assert shardkit.top_k(npl, size, offset) == want
        assert shardkit.top_k(npl, size, offset, trusted=True) == want


def test_top_k_defaults_and_generators() -> None:
    assert shardkit.top_k(iter([iter([(2.0, 1), (1, 0)])]), 5) == [(2.0, 0, 1), (1.0, 0, 0)]
    assert shardkit.top_k([], 3) == []
    assert shardkit.top_k([[(1.0, 1)]], 1, offset=1) == []
    assert shardkit.top_k([[(1.0, U64_MAX)]], 1) == [(1.0, 0, U64_MAX)]


@st.composite
def posting_lists(draw: st.DrawFn, max_id: int) -> list[list[int]]:
    base = draw(st.lists(st.integers(0, max_id), max_size=40))
    n = draw(st.integers(1, 5))
    # Lists share ids from `base` so that intersections are often non-empty.
    return [
        sorted(set(draw(st.lists(st.sampled_from(base), max_size=40)) if base else [])
               | set(draw(st.lists(st.integers(0, max_id), max_size=5))))
        for _ in range(n)
    ]


ID_KINDS_32 = ("I", "npu32", "npi32", "i")
ID_KINDS_64 = ("Q", "L", "npu64", "npi64", "q", "l")


def ids_as(kind: str, ids: list[int]) -> Any:
    if kind == "list":
        return ids
    if kind in ("I", "i", "Q", "L", "q", "l"):
        return array.array(kind, ids)
    dtype = {"npu32": np.uint32, "npi32": np.int32, "npu64": np.uint64, "npi64": np.int64}[kind]
    return np.array(ids, dtype=dtype)


@given(
    lists=posting_lists(2**31 - 1),
    kinds=st.lists(st.sampled_from(("list",) + ID_KINDS_32 + ID_KINDS_64), min_size=5, max_size=5),
)
def test_intersect_and_union_match_set_operations(lists: list[list[int]], kinds: list[str]) -> None:
    kinds = kinds[: len(lists)]
    inputs = [ids_as(k, ids) for k, ids in zip(kinds, lists)]
    want_i = sorted(set(lists[0]).intersection(*lists[1:]))
    want_u = sorted(set().union(*lists))
    got_i = shardkit.intersect(inputs)
    got_u = shardkit.union(inputs)
    assert list(got_i) == want_i
    assert list(got_u) == want_u
    # Result type: a list when any input is a list; else an array, 32-bit
    # only when every input is.
    if "list" in kinds:
        assert type(got_i) is list and type(got_u) is list
    else:
        code = "I" if all(k in ID_KINDS_32 for k in kinds) else "Q"
        assert isinstance(got_i, array.array) and got_i.typecode == code
        assert isinstance(got_u, array.array) and got_u.typecode == code


@given(lists=posting_lists(U64_MAX))
def test_full_64_bit_range(lists: list[list[int]]) -> None:
    want = sorted(set(lists[0]).intersection(*lists[1:]))
    assert shardkit.intersect(lists) == want
    assert list(shardkit.intersect([np.array(x, np.uint64) for x in lists])) == want
    assert shardkit.union(lists) == sorted(set().union(*lists))


def test_parallel_path_matches_sets() -> None:
    """Above core's parallel threshold, for the 32- and 64-bit paths."""
    rng = random.Random(11)
    a = sorted(rng.sample(range(1_000_000), 200_000))
    b = sorted(rng.sample(range(1_000_000), 300_000))
    c = sorted(rng.sample(range(1_000_000), 2_000))
    for dtype in (np.uint32, np.uint64):
        arrs = [np.array(x, dtype) for x in (a, b, c)]
        assert list(shardkit.intersect(arrs)) == sorted(set(a) & set(b) & set(c))
        assert list(shardkit.intersect(arrs[:2])) == sorted(set(a) & set(b))
        assert list(shardkit.union(arrs)) == sorted(set(a) | set(b) | set(c))


def test_results_wrap_in_numpy_without_surprises() -> None:
    got = shardkit.intersect([np.array([1, 5, 9], np.uint32), np.array([5, 9], np.uint32)])
    assert np.frombuffer(got, dtype=np.uint32).tolist() == [5, 9]
    got = shardkit.union([np.array([1, 2**40], np.uint64), array.array("I", [3])])
    assert np.frombuffer(got, dtype=np.uint64).tolist() == [1, 3, 2**40]


# ---- errors --------------------------------------------------------------


def raises(exc: type[BaseException], *needles: str) -> Callable[[Callable[[], object]], None]:
    def check(call: Callable[[], object]) -> None:
        with pytest.raises(exc) as info:
            call()
        for needle in needles:
            assert needle in str(info.value), f"{needle!r} not in {info.value}"

    return check


def sorted_hits(n: int) -> list[Hit]:
    return [(float(n - i), i) for i in range(n)]


def test_top_k_unsorted_list_names_list_and_position() -> None:
    bad = sorted_hits(30)
    bad[17] = (100.0, 17)
    lists = [sorted_hits(5), sorted_hits(5), bad]
    check = raises(shardkit.InvalidArgumentError, "hit list 2", "position 17")
    check(lambda: shardkit.top_k(lists, 3))
    check(lambda: shardkit.top_k([as_input("buffers", h, "Q", "f") for h in lists], 3))
    # Tie broken the wrong way: same score, docs descending.
    raises(shardkit.InvalidArgumentError, "hit list 0", "position 1")(lambda: shardkit.top_k([[(1.0, 5), (1.0, 4)]], 1))


def test_top_k_trusted_reads_only_the_page() -> None:
    bad = sorted_hits(30)
    bad[17] = (100.0, 17)
    # The disorder lies beyond the first offset + size hits: not read.
    assert shardkit.top_k([bad], 3, trusted=True) == [(30.0, 0, 0), (29.0, 0, 1), (28.0, 0, 2)]
    raises(shardkit.InvalidArgumentError, "hit list 0", "position 17")(lambda: shardkit.top_k([bad], 10, 10, trusted=True))
    # Not even the items' types are looked at past the page.
    assert shardkit.top_k([[(1.0, 0), "junk"]], 1, trusted=True) == [(1.0, 0, 0)]
    raises(TypeError, "lists[0][1]")(lambda: shardkit.top_k([[(1.0, 0), "junk"]], 1))


def test_top_k_nan_score() -> None:
    check = raises(shardkit.InvalidArgumentError, "NaN", "hit list 1 position 1")
    check(lambda: shardkit.top_k([[(1.0, 0)], [(2.0, 0), (math.nan, 1)]], 5))
    check(lambda: shardkit.top_k([[(1.0, 0)], (np.array([2.0, np.nan]), np.array([0, 1]))], 5))


def test_top_k_size_and_offset() -> None:
    raises(shardkit.InvalidArgumentError, "got 0")(lambda: shardkit.top_k([[(1.0, 0)]], 0))
    raises(shardkit.InvalidArgumentError, "got size -1")(lambda: shardkit.top_k([[(1.0, 0)]], -1))
    raises(shardkit.InvalidArgumentError, "offset -2")(lambda: shardkit.top_k([[(1.0, 0)]], 1, -2))
    raises(TypeError)(lambda: shardkit.top_k([[(1.0, 0)]], 1.5))  # type: ignore[arg-type]


def test_top_k_bad_buffers() -> None:
    s32 = np.array([2.0, 1.0], np.float32)
    d64 = np.array([1, 2], np.uint64)
    raises(shardkit.InvalidArgumentError, "lists[0]", "2 scores but 3 docs")(
        lambda: shardkit.top_k([(s32, np.array([1, 2, 3], np.uint64))], 1)
    )
    raises(TypeError, "lists[0] scores", '"l"', "float32")(lambda: shardkit.top_k([(d64.astype(np.int64), d64)], 1))
    raises(TypeError, "lists[0] docs", '"d"')(lambda: shardkit.top_k([(s32, s32.astype(np.float64))], 1))
    raises(TypeError, "lists[0] scores", '"e"')(lambda: shardkit.top_k([(s32.astype(np.float16), d64)], 1))
    raises(TypeError, "lists[1]", "docs must be an integer buffer")(
        lambda: shardkit.top_k([[(1.0, 0)], (s32, [1, 2])], 1)
    )
    strided = np.array([3.0, 9.0, 2.0, 9.0], np.float32)[::2]
    raises(shardkit.InvalidArgumentError, "lists[0] scores", "not contiguous")(lambda: shardkit.top_k([(strided, d64)], 1))
    raises(shardkit.InvalidArgumentError, "lists[0] docs", "not contiguous")(
        lambda: shardkit.top_k([(s32, np.arange(4, dtype=np.uint64)[::2])], 1)
    )
    raises(shardkit.InvalidArgumentError, "lists[0] docs", "id -4 at position 1 is negative")(
        lambda: shardkit.top_k([(s32, np.array([1, -4], np.int64))], 1)
    )
    raises(shardkit.InvalidArgumentError, "one-dimensional", "[1, 2]")(
        lambda: shardkit.top_k([(s32.reshape(1, 2), d64)], 1)
    )


def test_top_k_bad_pairs() -> None:
    raises(TypeError, "lists[0][1] must be a (score, doc) pair", "int")(lambda: shardkit.top_k([[(1.0, 0), 5]], 1))
    raises(TypeError, "lists[0][0] must be a (score, doc) pair")(lambda: shardkit.top_k([[(1.0, 0, 7)]], 1))
    raises(TypeError, "lists[0][0]: score must be a float", "str")(lambda: shardkit.top_k([[("1.0", 0)]], 1))
    raises(shardkit.InvalidArgumentError, "lists[1][0]", "-3")(lambda: shardkit.top_k([[], [(1.0, -3)]], 1))
    raises(shardkit.InvalidArgumentError, "lists[0][0]", str(2**64))(lambda: shardkit.top_k([[(1.0, 2**64)]], 1))
    raises(TypeError, "lists[0][0]: id must be an int", "float")(lambda: shardkit.top_k([[(1.0, 2.0)]], 1))
    raises(TypeError, "lists[0] must be a sequence")(lambda: shardkit.top_k([5], 1))
    raises(TypeError, "lists must be a sequence of lists, not int")(lambda: shardkit.top_k(5, 1))  # type: ignore[arg-type]


def test_float64_scores_are_rounded_to_float32_first() -> None:
    # Distinct as float64, equal as float32: a tie, which docs must order.
    a = 1.0 + 2**-40
    assert shardkit.top_k([[(a, 3), (1.0, 5)]], 2) == [(1.0, 0, 3), (1.0, 0, 5)]
    raises(shardkit.InvalidArgumentError, "hit list 0", "position 1")(lambda: shardkit.top_k([[(a, 5), (1.0, 3)]], 2))


def test_posting_list_errors_name_list_and_position() -> None:
    bad = list(range(30))
    bad[17] = 3
    lists: list[Any] = [list(range(40)), list(range(40)), bad]
    for op in (shardkit.intersect, shardkit.union):
        check = raises(shardkit.InvalidArgumentError, "posting list 2 not sorted at position 17", "3 follows 16")
        check(lambda: op(lists))
        check(lambda: op([np.array(x, np.uint32) for x in lists]))
        check(lambda: op([np.array(x, np.int64) for x in lists]))
        raises(shardkit.InvalidArgumentError, "posting list 0 duplicate id at position 2")(lambda: op([[1, 2, 2]]))
        raises(shardkit.InvalidArgumentError, "lists[1][1]", "-5")(lambda: op([[1], [0, -5]]))
        raises(shardkit.InvalidArgumentError, "lists[0][0]", str(2**64))(lambda: op([[2**64]]))
        raises(TypeError, "lists[0][1]: id must be an int, not float")(lambda: op([[1, 2.0]]))
        raises(shardkit.InvalidArgumentError, "lists[1]", "id -7 at position 2 is negative")(
            lambda: op([[1], np.array([1, 2, -7], np.int64)])
        )
        raises(shardkit.InvalidArgumentError, "lists[0]", "id -1 at position 0")(lambda: op([array.array("i", [-1, 2])]))
        raises(shardkit.InvalidArgumentError, "lists[0]", "not contiguous")(
            lambda: op([np.arange(10, dtype=np.uint64)[::2]])
        )
        raises(shardkit.InvalidArgumentError, "one-dimensional")(lambda: op([np.zeros((2, 2), np.uint32)]))
        raises(TypeError, "lists[0]", '"d"', "integers")(lambda: op([np.arange(3.0)]))
        raises(TypeError, "lists[0]", '"H"')(lambda: op([array.array("H", [1, 2])]))
        raises(TypeError, "lists[0]", '"B"')(lambda: op([b"\x01\x02"]))
        big_endian = np.array([1, 2], dtype=">u8")
        raises(TypeError, "lists[0]", '">')(lambda: op([big_endian]))
        raises(TypeError, "lists[0] must be a sequence of ints")(lambda: op([5]))
        raises(TypeError, "not a single ndarray")(lambda: op(np.arange(3, dtype=np.uint64)))
        raises(TypeError, "not a single str")(lambda: op("123"))  # type: ignore[arg-type]
        raises(TypeError, "not int")(lambda: op(5))  # type: ignore[arg-type]
    raises(shardkit.InvalidArgumentError, "at least one posting list, got 0")(lambda: shardkit.intersect([]))
    assert shardkit.union([]) == []
    assert shardkit.intersect([[]]) == [] and shardkit.union([[], []]) == []


def test_errors_are_shardkit_and_builtin() -> None:
    with pytest.raises(ValueError):
        shardkit.intersect([[2, 1]])
    with pytest.raises(shardkit.ShardkitError):
        shardkit.top_k([[(1.0, 0)]], 0)


# ---- GIL -------------------------------------------------------------------


def test_large_intersect_releases_the_gil() -> None:
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        # Long enough to measure on a debug build: grow until one call takes
        # over 0.3 s (bounded at 2**25 ids a list).
        n = 1 << 18
        while True:
            a = np.arange(0, 2 * n, 2, dtype=np.uint64)
            b = np.arange(0, 3 * n, 3, dtype=np.uint64)
            t0 = time.perf_counter()
            shardkit.intersect([a, b])
            if time.perf_counter() - t0 > 0.3 or n >= 1 << 25:
                break
            n *= 2
        ours, ours_s = ticks_during(lambda: shardkit.intersect([a, b]))

        floats = [random.random() for _ in range(2 * n)]
        control, control_s = ticks_during(lambda: sorted(floats))
    finally:
        sys.setswitchinterval(old)
    assert ours_s > 4 * MARGIN, "intersection too short to measure"
    assert ours >= 1000, f"only {ours} iterations of another thread ran during a {ours_s:.3f}s intersect"
    if control_s > 4 * MARGIN:
        assert control < ours / 10, f"control (GIL held) let {control} iterations run in {control_s:.3f}s"
