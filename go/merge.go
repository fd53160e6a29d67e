package shardkit

// #include "shardkit.h"
import "C"

import (
	"runtime"
	"unsafe"
)

// Hit is one scored search hit as a leaf returns it. Its layout is the C
// ABI's shardkit_hit (score at 0, shard at 4, doc at 8; 16 bytes), so hit
// lists go to the engine without a copy.
type Hit struct {
	// Score is the relevance; higher ranks first. Must not be NaN.
	Score float32
	// Shard is the leaf the hit came from; breaks score ties, lower first.
	Shard uint32
	// Doc is the document id within its shard; breaks the remaining ties,
	// lower first.
	Doc uint64
}

// Hit must match shardkit_hit exactly, field by field.
var (
	_ [unsafe.Sizeof(Hit{}) - unsafe.Sizeof(C.shardkit_hit{})]struct{}
	_ [unsafe.Sizeof(C.shardkit_hit{}) - unsafe.Sizeof(Hit{})]struct{}
	_ [unsafe.Offsetof(Hit{}.Shard) - unsafe.Offsetof(C.shardkit_hit{}.shard)]struct{}
	_ [unsafe.Offsetof(C.shardkit_hit{}.shard) - unsafe.Offsetof(Hit{}.Shard)]struct{}
	_ [unsafe.Offsetof(Hit{}.Doc) - unsafe.Offsetof(C.shardkit_hit{}.doc)]struct{}
	_ [unsafe.Offsetof(C.shardkit_hit{}.doc) - unsafe.Offsetof(Hit{}.Doc)]struct{}
)

// listPtrs describes lists to C without copying them: a Go array of
// pointers to each list's first element, and one of lengths. The cgo rules
// let C receive Go memory holding Go pointers only when those are pinned,
// so every list's backing array is pinned until the returned Pinner is
// unpinned (after the C call). Empty lists go as NULL with length 0.
func listPtrs[T any](lists [][]T) (ptrs []unsafe.Pointer, lens []C.size_t, pin *runtime.Pinner) {
	pin = new(runtime.Pinner)
	ptrs = make([]unsafe.Pointer, len(lists))
	lens = make([]C.size_t, len(lists))
	for i, l := range lists {
		if len(l) == 0 {
			continue
		}
		p := unsafe.Pointer(unsafe.SliceData(l))
		pin.Pin(p)
		ptrs[i] = p
		lens[i] = C.size_t(len(l))
	}
	return ptrs, lens, pin
}

// TopK returns the hits at ranks offset .. offset+size of the merged order
// of lists (score descending, then shard ascending, then doc ascending),
// fewer when the lists hold fewer. Each list must already be in that order.
//
// Every list is checked in full: a list out of order or a NaN score is an
// ErrInvalidArgument naming the list and position. size must be at least
// 1 and offset at least 0 (ErrInvalidArgument). Large inputs are merged in
// parallel by the engine, with the same result.
func TopK(lists [][]Hit, offset, size int) ([]Hit, error) {
	if offset < 0 || size < 0 {
		return nil, invalidArgf("top-k offset %d and size %d must not be negative", offset, size)
	}
	total := 0
	for _, l := range lists {
		total += len(l)
	}
	// The page can hold no more than what lies past offset.
	bound := max(0, min(size, total-offset))
	out := make([]Hit, bound)
	ptrs, lens, pin := listPtrs(lists)
	defer pin.Unpin()
	var n C.size_t
	err := call(func() C.shardkit_status {
		return C.shardkit_top_k((**C.shardkit_hit)(unsafe.Pointer(unsafe.SliceData(ptrs))),
			unsafe.SliceData(lens), C.size_t(len(lists)), C.size_t(offset), C.size_t(size),
			(*C.shardkit_hit)(unsafe.Pointer(unsafe.SliceData(out))), C.size_t(bound), &n)
	})
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}

// DocID is the type of a posting-list entry: 32- or 64-bit document ids.
type DocID interface{ ~uint32 | ~uint64 }

type postingOp int

const (
	opIntersect postingOp = iota
	opUnion
)

// Intersect returns the ids present in every list, ascending. Each list
// must be strictly increasing (ErrInvalidArgument naming the list and
// position otherwise), and there must be at least one list. Large inputs
// run in parallel in the engine.
func Intersect[T DocID](lists [][]T) ([]T, error) {
	return postings(lists, opIntersect)
}

// Union returns the ids present in any list, ascending, each once. Each
// list must be strictly increasing (ErrInvalidArgument naming the list and
// position otherwise); no lists give an empty result.
func Union[T DocID](lists [][]T) ([]T, error) {
	return postings(lists, opUnion)
}

func postings[T DocID](lists [][]T, op postingOp) ([]T, error) {
	// The largest the result can be: the shortest list for an
	// intersection, every id once for a union.
	bound := 0
	for i, l := range lists {
		switch {
		case op == opUnion:
			bound += len(l)
		case i == 0 || len(l) < bound:
			bound = len(l)
		}
	}
	out := make([]T, bound)
	ptrs, lens, pin := listPtrs(lists)
	defer pin.Unpin()
	var (
		n    C.size_t
		pp   = unsafe.Pointer(unsafe.SliceData(ptrs))
		lp   = unsafe.SliceData(lens)
		nl   = C.size_t(len(lists))
		op0  = unsafe.Pointer(unsafe.SliceData(out))
		ocap = C.size_t(bound)
	)
	err := call(func() C.shardkit_status {
		var zero T
		if unsafe.Sizeof(zero) == 4 {
			lists, out := (**C.uint32_t)(pp), (*C.uint32_t)(op0)
			if op == opIntersect {
				return C.shardkit_intersect_u32(lists, lp, nl, out, ocap, &n)
			}
			return C.shardkit_union_u32(lists, lp, nl, out, ocap, &n)
		}
		lists, out := (**C.uint64_t)(pp), (*C.uint64_t)(op0)
		if op == opIntersect {
			return C.shardkit_intersect_u64(lists, lp, nl, out, ocap, &n)
		}
		return C.shardkit_union_u64(lists, lp, nl, out, ocap, &n)
	})
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}
