package shardkit

// #include "shardkit.h"
import "C"

import "runtime"

// FenceGate remembers the newest fencing token seen per resource and
// refuses older ones: what an external resource runs to fence stale lock
// holders. Tokens of one lock are comparable with each other only, so use
// one gate per lock. Safe for concurrent use; nothing in it blocks.
type FenceGate struct {
	ref  *cref
	ptr  *C.shardkit_fence_gate
	name string
}

// NewFenceGate makes a gate for the tokens of lock lockName.
func NewFenceGate(lockName string) (*FenceGate, error) {
	var out *C.shardkit_fence_gate
	err := call(func() C.shardkit_status {
		return C.shardkit_fence_gate_new(stringPtr(lockName), C.size_t(len(lockName)), &out)
	})
	if err != nil {
		return nil, err
	}
	g := &FenceGate{ptr: out, name: lockName}
	g.ref = newCref(func() { C.shardkit_fence_gate_free(out) })
	runtime.SetFinalizer(g, (*FenceGate).Close)
	return g, nil
}

// Admit admits a write to resource carrying token (a FencingToken's
// Revision): it records the token as the newest and returns nil, or
// returns ErrFenced, recording nothing, when a newer token was already
// seen for resource. ErrInvalidArgument for a token <= 0.
func (g *FenceGate) Admit(resource []byte, token int64) error {
	if !g.ref.acquire() {
		return ErrClosed
	}
	defer g.ref.release()
	return call(func() C.shardkit_status {
		return C.shardkit_fence_gate_admit(g.ptr, bytesPtr(resource), C.size_t(len(resource)), C.int64_t(token))
	})
}

// Newest is the newest token admitted for resource (0 when none, and once
// the gate is closed).
func (g *FenceGate) Newest(resource []byte) int64 {
	if !g.ref.acquire() {
		return 0
	}
	defer g.ref.release()
	return int64(C.shardkit_fence_gate_newest(g.ptr, bytesPtr(resource), C.size_t(len(resource))))
}

// Close frees the gate. Safe to call more than once; always returns nil.
func (g *FenceGate) Close() error {
	if g != nil && g.ref.close() {
		runtime.SetFinalizer(g, nil)
	}
	return nil
}
