package shardkit

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// DefaultConnectTimeout bounds Connect when its context has no deadline.
const DefaultConnectTimeout = 5 * time.Second

// Coordinator is a handle on a store that sessions, locks, elections and
// shard owners coordinate through: a real etcd (Connect) or an in-process
// store with etcd's semantics (NewEmbeddedCoordinator). Safe for
// concurrent use. Close it when done; sessions, observers and everything
// else made from it stay valid after Close (they share the store), except
// Election.Leader, which asks through the coordinator.
type Coordinator struct {
	ref  *cref
	ptr  *C.shardkit_coordinator
	desc string
}

func wrapCoordinator(ptr *C.shardkit_coordinator) *Coordinator {
	desc := ""
	var text, msg *C.char
	if C.sk_coordinator_describe(ptr, &text, &msg) == C.SHARDKIT_STATUS_OK {
		desc = C.GoString(text)
		C.free(unsafe.Pointer(text))
	} else if msg != nil {
		C.free(unsafe.Pointer(msg))
	}
	c := &Coordinator{ptr: ptr, desc: desc}
	c.ref = newCref(func() { C.shardkit_coordinator_free(ptr) })
	runtime.SetFinalizer(c, (*Coordinator).Close)
	return c
}

// NewEmbeddedCoordinator makes a new, empty in-process store with etcd's
// semantics. Contenders share it by making their sessions from this one
// Coordinator; it is for tests and single-process use.
func NewEmbeddedCoordinator() (*Coordinator, error) {
	var out *C.shardkit_coordinator
	var msg *C.char
	if st := C.sk_coordinator_new_embedded(&out, &msg); st != C.SHARDKIT_STATUS_OK {
		return nil, statusError(st, msg)
	}
	return wrapCoordinator(out), nil
}

// Connect connects to etcd at endpoints: comma-separated "host:port" or
// "http://host:port" entries. It returns when ctx ends if the connect has
// not finished by then (DefaultConnectTimeout bounds it when ctx has no
// deadline). Requests the Coordinator later makes without a session
// (Leader, Revoke) are bounded by the longer of ctx's time left and
// DefaultConnectTimeout, so a short connect deadline does not carry over
// to them. Errors: ErrInvalidArgument for an unparsable entry,
// ErrUnavailable when no endpoint answers in time, or a ContextError.
func Connect(ctx context.Context, endpoints string) (*Coordinator, error) {
	timeout := DefaultConnectTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) > timeout {
		timeout = time.Until(d)
	}
	ms := uint64((timeout + time.Millisecond - 1) / time.Millisecond)
	what := fmt.Sprintf("connecting to etcd at %q", endpoints)
	return detached(ctx, what, func() (*Coordinator, error) {
		var out *C.shardkit_coordinator
		var msg *C.char
		st := C.sk_coordinator_connect(stringPtr(endpoints), C.size_t(len(endpoints)),
			C.uint64_t(ms), &out, &msg)
		if st != C.SHARDKIT_STATUS_OK {
			return nil, statusError(st, msg)
		}
		return wrapCoordinator(out), nil
	}, func(c *Coordinator) { c.Close() })
}

// String describes the store: "embedded store", or "etcd at ..." with the
// endpoints.
func (c *Coordinator) String() string {
	if c == nil {
		return "<nil>"
	}
	return c.desc
}

// Close releases the handle; it is safe to call more than once and always
// returns nil. Sessions and observers made from it live on.
func (c *Coordinator) Close() error {
	if c != nil && c.ref.close() {
		runtime.SetFinalizer(c, nil)
	}
	return nil
}

// Leader is the leadership of an election as an observer sees it.
type Leader struct {
	// Value is what the leader proclaimed.
	Value []byte
	// Token is the leadership's fencing token. Token.Lease is 0 in values
	// delivered by Observe, whose C callback carries the revision only.
	Token FencingToken
}

// Leader returns the current leader of election name, or nil, nil when it
// has none. It returns as soon as ctx is done.
func (c *Coordinator) Leader(ctx context.Context, name string) (*Leader, error) {
	what := fmt.Sprintf("reading the leader of election %q", name)
	return detached(ctx, what, func() (*Leader, error) {
		if !c.ref.acquire() {
			return nil, ErrClosed
		}
		defer c.ref.release()
		var found C.bool
		var value *C.uint8_t
		var n C.size_t
		var tok C.shardkit_fencing_token
		var msg *C.char
		st := C.sk_coordinator_leader(c.ptr, stringPtr(name), C.size_t(len(name)),
			&found, &value, &n, &tok, &msg)
		if st != C.SHARDKIT_STATUS_OK {
			return nil, statusError(st, msg)
		}
		if !found {
			return nil, nil
		}
		defer C.free(unsafe.Pointer(value))
		return &Leader{
			Value: C.GoBytes(unsafe.Pointer(value), C.int(n)),
			Token: FencingToken{Revision: int64(tok.revision), Lease: int64(tok.lease)},
		}, nil
	}, nil)
}

// Revoke revokes any lease by id, deleting every key held under it
// (operators, tests; a lease already gone is fine). The session that held
// it notices at its next keepalive and is lost. ctx is checked before the
// request is sent; the request then runs to completion.
func (c *Coordinator) Revoke(ctx context.Context, leaseID int64) error {
	if err := precheck(ctx, fmt.Sprintf("revoking lease %x", leaseID)); err != nil {
		return err
	}
	if !c.ref.acquire() {
		return ErrClosed
	}
	defer c.ref.release()
	var msg *C.char
	if st := C.sk_coordinator_revoke(c.ptr, C.int64_t(leaseID), &msg); st != C.SHARDKIT_STATUS_OK {
		return statusError(st, msg)
	}
	return nil
}

// observerState is what an observer's callback delivers into: a channel
// of capacity one holding the latest state only.
type observerState struct {
	mu sync.Mutex
	ch chan *Leader
}

// offer replaces any undelivered state with l. It never blocks: the
// callback runs on a runtime thread, and a slow reader only needs the
// newest leadership, not every step in between.
func (o *observerState) offer(l *Leader) {
	o.mu.Lock()
	defer o.mu.Unlock()
	select {
	case <-o.ch:
	default:
	}
	o.ch <- l // cannot block: emptied above, and only offer sends
}

// Observe follows the leadership of election name until ctx is done, then
// closes the channel. The first value is the current state; after that a
// value comes on every change (a new leader, a new proclaimed value, no
// leader). A nil *Leader means "no leader" (tell it from a closed channel
// with v, ok := <-ch).
//
// Delivery policy: the channel holds one value and keeps only the latest.
// A reader that falls behind skips intermediate states and always sees the
// newest one next; the engine's thread is never blocked by a slow reader.
// Store errors are retried in the background, never reported. Pass a ctx
// that ends: an observer on context.Background() runs for the life of the
// process.
func (c *Coordinator) Observe(ctx context.Context, name string) (<-chan *Leader, error) {
	if ctx.Err() != nil {
		return nil, ctxError(ctx, fmt.Sprintf("observing election %q", name), nil)
	}
	if !c.ref.acquire() {
		return nil, ErrClosed
	}
	st := &observerState{ch: make(chan *Leader, 1)}
	h := newCallbackHandle(st)
	var obs *C.shardkit_observer
	var msg *C.char
	rc := C.sk_observer_start(c.ptr, stringPtr(name), C.size_t(len(name)), C.uintptr_t(h), &obs, &msg)
	c.ref.release()
	if rc != C.SHARDKIT_STATUS_OK {
		deleteCallbackHandle(h)
		return nil, statusError(rc, msg)
	}
	go func() {
		<-ctx.Done()
		// Returns once no callback runs and none will: only then may the
		// handle go and the channel close.
		C.shardkit_observer_free(obs)
		deleteCallbackHandle(h)
		close(st.ch)
	}()
	return st.ch, nil
}
