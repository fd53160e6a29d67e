package shardkit

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// hitLess is the merge order: score descending, shard ascending, doc
// ascending.
func hitLess(a, b Hit) int {
	switch {
	case a.Score != b.Score:
		if a.Score > b.Score {
			return -1
		}
		return 1
	case a.Shard != b.Shard:
		return int(a.Shard) - int(b.Shard)
	case a.Doc != b.Doc:
		if a.Doc < b.Doc {
			return -1
		}
		return 1
	}
	return 0
}

func randomHitLists(r *rand.Rand, n, maxLen int) [][]Hit {
	lists := make([][]Hit, n)
	for i := range lists {
		l := make([]Hit, r.IntN(maxLen+1))
		for j := range l {
			// Few distinct scores and shards, so ties are common.
			l[j] = Hit{Score: float32(r.IntN(40))/4 - 2, Shard: uint32(r.IntN(4)), Doc: r.Uint64N(500)}
		}
		slices.SortFunc(l, hitLess)
		lists[i] = l
	}
	return lists
}

func naiveTopK(lists [][]Hit, offset, size int) []Hit {
	var all []Hit
	for _, l := range lists {
		all = append(all, l...)
	}
	slices.SortStableFunc(all, hitLess)
	if offset >= len(all) {
		return []Hit{}
	}
	return all[offset:min(len(all), offset+size)]
}

func TestTopKMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		lists := randomHitLists(r, r.IntN(9), 50)
		offset, size := r.IntN(40), 1+r.IntN(50)
		got, err := TopK(lists, offset, size)
		if err != nil {
			t.Fatal(err)
		}
		if want := naiveTopK(lists, offset, size); !slices.Equal(got, want) {
			t.Fatalf("round %d: TopK(offset %d, size %d) = %v, want %v", round, offset, size, got, want)
		}
	}
}

// Above the engine's parallel threshold (65536 hits): the parallel path.
func TestTopKLarge(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	lists := randomHitLists(r, 16, 10000)
	for _, c := range []struct{ offset, size int }{{0, 100}, {1000, 10}, {0, 200000}} {
		got, err := TopK(lists, c.offset, c.size)
		if err != nil {
			t.Fatal(err)
		}
		if want := naiveTopK(lists, c.offset, c.size); !slices.Equal(got, want) {
			t.Fatalf("TopK(%d, %d): %d hits differ from the sorted reference's %d", c.offset, c.size, len(got), len(want))
		}
	}
}

func TestTopKErrors(t *testing.T) {
	good := []Hit{{3, 0, 1}, {2, 0, 2}}
	unsorted := []Hit{{1, 0, 1}, {2, 0, 2}}
	_, err := TopK([][]Hit{good, unsorted}, 0, 10)
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "hit list 1 is not sorted") ||
		!strings.Contains(err.Error(), "position 1") {
		t.Fatalf("unsorted: %v", err)
	}
	nan := []Hit{{float32(math.NaN()), 0, 1}}
	if _, err := TopK([][]Hit{nan}, 0, 1); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "NaN") {
		t.Fatalf("NaN: %v", err)
	}
	if _, err := TopK([][]Hit{good}, 0, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("size 0: %v", err)
	}
	if _, err := TopK([][]Hit{good}, -1, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("negative offset: %v", err)
	}
	for _, lists := range [][][]Hit{nil, {nil, {}}, {good, nil}} {
		got, err := TopK(lists, 0, 5)
		if err != nil || len(got) != len(naiveTopK(lists, 0, 5)) {
			t.Fatalf("TopK(%v) = %v, %v", lists, got, err)
		}
	}
	if got, err := TopK([][]Hit{good}, 5, 5); err != nil || len(got) != 0 {
		t.Fatalf("past the end: %v, %v", got, err)
	}
}

func randomPostings[T DocID](r *rand.Rand, universe int, keep float64, scale T) []T {
	var l []T
	for id := 0; id < universe; id++ {
		if r.Float64() < keep {
			l = append(l, T(id)*scale)
		}
	}
	return l
}

func naivePostings[T DocID](lists [][]T, op postingOp) []T {
	count := map[T]int{}
	for _, l := range lists {
		for _, v := range l {
			count[v]++
		}
	}
	out := []T{}
	for v, c := range count {
		if op == opUnion || c == len(lists) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

func checkPostings[T DocID](t *testing.T, r *rand.Rand, rounds, universe int, scale T) {
	t.Helper()
	for round := 0; round < rounds; round++ {
		lists := make([][]T, 1+r.IntN(5))
		keep := 0.3 + 0.7*r.Float64()
		for i := range lists {
			lists[i] = randomPostings(r, universe, keep, scale)
		}
		inter, err := Intersect(lists)
		if err != nil {
			t.Fatal(err)
		}
		if want := naivePostings(lists, opIntersect); !slices.Equal(inter, want) {
			t.Fatalf("round %d: Intersect = %d ids, want %d", round, len(inter), len(want))
		}
		uni, err := Union(lists)
		if err != nil {
			t.Fatal(err)
		}
		if want := naivePostings(lists, opUnion); !slices.Equal(uni, want) {
			t.Fatalf("round %d: Union = %d ids, want %d", round, len(uni), len(want))
		}
	}
}

func TestIntersectUnionMatchNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	checkPostings[uint32](t, r, 30, 1500, 1)
	checkPostings[uint64](t, r, 30, 1500, 1<<33+1)
	// Above the parallel threshold.
	checkPostings[uint32](t, r, 2, 60000, 1)
	checkPostings[uint64](t, r, 2, 60000, 1<<33+1)
}

type docID uint32

func TestPostingsErrors(t *testing.T) {
	_, err := Intersect([][]uint32{{1, 2, 3}, {4, 4}})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "posting list 1 duplicate id at position 1") {
		t.Fatalf("duplicate: %v", err)
	}
	_, err = Union([][]uint64{{5, 1}})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "posting list 0 not sorted") {
		t.Fatalf("unsorted: %v", err)
	}
	if _, err := Intersect[uint32](nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("no lists: %v", err)
	}
	if got, err := Union[uint64](nil); err != nil || len(got) != 0 {
		t.Fatalf("union of nothing: %v, %v", got, err)
	}
	if got, err := Intersect([][]uint32{{1, 2}, nil}); err != nil || len(got) != 0 {
		t.Fatalf("with an empty list: %v, %v", got, err)
	}
	// Named types over uint32 work too.
	got, err := Union([][]docID{{1, 3}, {2, 3}})
	if err != nil || !slices.Equal(got, []docID{1, 2, 3}) {
		t.Fatalf("named type: %v, %v", got, err)
	}
}
