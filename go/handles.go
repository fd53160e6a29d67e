package shardkit

import "sync/atomic"

// cref guards one C handle (a sharder, a lock, a session, ...) against use
// after free: every C call is bracketed by acquire and release, Close marks
// the handle closed, and the C object is freed by whoever sees "closed and
// no call in flight", exactly once. The C ABI forbids freeing an object while
// a call on it runs; this is what makes Close safe while another goroutine
// is inside Lookup or Lock(ctx). acquire and release are one atomic add
// each, cheap enough for the lookup hot path.
//
// closing is closed by Close so that waits in flight end at once (see
// waitCall) instead of holding the handle until their own deadline.
//
// free must not refer to the Go wrapper that embeds the cref: the wrapper
// carries a finalizer, and a finalizer on an object in a reference cycle
// never runs. It captures the C pointer (and cgo.Handle) only.
type cref struct {
	// state counts calls in flight in its low bits, with stateClosed set by
	// close and stateFreed set by whoever frees, exactly once.
	state   atomic.Uint64
	closing chan struct{}
	free    func()
}

const (
	stateClosed = 1 << 62
	stateFreed  = 1 << 61
)

func newCref(free func()) *cref {
	return &cref{closing: make(chan struct{}), free: free}
}

// acquire registers a call in flight; false once closed.
func (r *cref) acquire() bool {
	if r == nil {
		return false
	}
	if r.state.Add(1)&stateClosed != 0 {
		r.release()
		return false
	}
	return true
}

// release ends a call in flight, freeing the handle when it was the last
// one after close. Since the wrapper method that called acquire is still
// running until release returns, the wrapper (and so its finalizer) stays
// alive across the C call: release is the call's runtime.KeepAlive.
func (r *cref) release() {
	if r.state.Add(^uint64(0)) == stateClosed {
		r.doFree()
	}
}

// doFree is kept out of line so that release, which every call runs,
// inlines into its callers.
//
//go:noinline
func (r *cref) doFree() {
	if r.state.CompareAndSwap(stateClosed, stateClosed|stateFreed) {
		r.free()
	}
}

// close marks the handle closed and interrupts waits in flight; the C
// object is freed now or when the last call in flight returns. It reports
// whether this call did the closing (false: already closed).
func (r *cref) close() bool {
	if r == nil {
		return false
	}
	for {
		old := r.state.Load()
		if old&stateClosed != 0 {
			return false
		}
		if r.state.CompareAndSwap(old, old|stateClosed) {
			break
		}
	}
	close(r.closing)
	r.doFree()
	return true
}

// closed reports whether close has been called.
func (r *cref) closed() bool {
	return r == nil || r.state.Load()&stateClosed != 0
}
