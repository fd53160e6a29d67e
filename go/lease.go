package shardkit

// #include "shardkit.h"
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"
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
	c := &Coordinator{ptr: ptr, desc: describe(ptr)}
	c.ref = newCref(func() { C.shardkit_coordinator_free(ptr) })
	runtime.SetFinalizer(c, (*Coordinator).Close)
	return c
}

// describe is the store's description, "" if the engine gives none.
func describe(ptr *C.shardkit_coordinator) string {
	var n C.size_t
	st := C.shardkit_coordinator_describe(ptr, nil, 0, &n)
	if st != C.SHARDKIT_STATUS_OK && st != C.SHARDKIT_STATUS_BUFFER_TOO_SMALL {
		return ""
	}
	// A handle's description never changes, so the size just read holds.
	buf := make([]byte, n)
	if C.shardkit_coordinator_describe(ptr, bytesPtr(buf), n, &n) != C.SHARDKIT_STATUS_OK {
		return ""
	}
	return string(buf[:n])
}

// NewEmbeddedCoordinator makes a new, empty in-process store with etcd's
// semantics. Contenders share it by making their sessions from this one
// Coordinator; it is for tests and single-process use.
func NewEmbeddedCoordinator() (*Coordinator, error) {
	var out *C.shardkit_coordinator
	err := call(func() C.shardkit_status {
		return C.shardkit_coordinator_new_embedded(&out)
	})
	if err != nil {
		return nil, err
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
		err := call(func() C.shardkit_status {
			return C.shardkit_coordinator_connect(stringPtr(endpoints), C.size_t(len(endpoints)),
				C.uint64_t(ms), &out)
		})
		if err != nil {
			return nil, err
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
	// Token is the leadership's fencing token: its revision and the lease
	// the leader holds under.
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
		var n C.size_t
		var tok C.shardkit_fencing_token
		buf := make([]byte, 256)
		err := call(func() C.shardkit_status {
			// The value may grow between two reads (a new proclamation);
			// each retry makes room for at least what the last one needed,
			// and a few are plenty.
			for attempt := 1; ; attempt++ {
				st := C.shardkit_coordinator_leader(c.ptr, stringPtr(name), C.size_t(len(name)),
					bytesPtr(buf), C.size_t(len(buf)), &found, &n, &tok)
				if st != C.SHARDKIT_STATUS_BUFFER_TOO_SMALL || attempt == 8 {
					return st
				}
				buf = make([]byte, max(int(n), 2*len(buf)))
			}
		})
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, nil
		}
		return &Leader{Value: buf[:n:n], Token: tokenOf(tok)}, nil
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
	return call(func() C.shardkit_status { return C.shardkit_coordinator_revoke(c.ptr, C.int64_t(leaseID)) })
}

// ObserveOptions is how an observer rides out a failing store (core's
// follow policy, the same in every binding): a failed read or watch is
// retried after a pause of RetryMin, doubling up to RetryMax, and once the
// failures have lasted ReportAfter the channel carries the last one as a
// LeaderState with Err set; the observer then goes on following. A nil
// *ObserveOptions, like a zero field, takes core's default: 50 ms, 1 s and
// 5 s (which rides out an etcd leader change but not an outage). Durations
// are rounded up to whole milliseconds.
type ObserveOptions struct {
	// RetryMin is the first pause after a failure.
	RetryMin time.Duration
	// RetryMax is the longest pause between attempts (at least RetryMin).
	RetryMax time.Duration
	// ReportAfter is how long failures may last before one is reported
	// (time.Millisecond reports about the first).
	ReportAfter time.Duration
}

// policy is o as the C ABI's follow policy, core's defaults filling the
// zero fields.
func (o *ObserveOptions) policy() (C.shardkit_follow_policy, error) {
	var p C.shardkit_follow_policy
	C.shardkit_follow_policy_default(&p)
	if o == nil {
		return p, nil
	}
	for _, f := range []struct {
		name string
		d    time.Duration
		ms   *C.uint64_t
	}{
		{"RetryMin", o.RetryMin, &p.retry_min_ms},
		{"RetryMax", o.RetryMax, &p.retry_max_ms},
		{"ReportAfter", o.ReportAfter, &p.report_after_ms},
	} {
		// A negative duration has no C form (the ABI's are unsigned).
		if f.d < 0 {
			return p, invalidArgf("observe option %s %v is negative", f.name, f.d)
		}
		if f.d > 0 {
			*f.ms = millisOf(f.d)
		}
	}
	return p, nil
}

// LeaderState is what an observer delivers: a leadership state (Err nil;
// Leader nil means no leader), or a store failure (Err set, Leader nil)
// that lasted the ObserveOptions' ReportAfter. Err is an *Error of the
// store's kind (ErrUnavailable, ErrTimeout, ErrIO, ...) naming the
// election. After a failure the observer keeps following, and the next
// state is the store's current one, even if it did not change.
type LeaderState struct {
	Leader *Leader
	Err    error
}

// observerState is what an observer's callback delivers into: a channel
// of capacity one holding the latest value only.
type observerState struct {
	mu sync.Mutex
	ch chan LeaderState
}

// offer replaces any undelivered value with v. It never blocks: the
// callback runs on a runtime thread, and a slow reader only needs the
// newest news, not every step in between.
func (o *observerState) offer(v LeaderState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	select {
	case <-o.ch:
	default:
	}
	o.ch <- v // cannot block: emptied above, and only offer sends
}

// Observe follows the leadership of election name until ctx is done, then
// closes the channel. The first value is the current state; after that a
// value comes on every change (a new leader, a new proclaimed value, no
// leader), and for a store failure that outlasted opts.ReportAfter (nil
// opts: core's defaults, see ObserveOptions).
//
// States and failures travel on one channel, in the order they happened,
// so one receive tells both what is known and whether it is current:
//
//	for v := range ch {
//		if v.Err != nil { /* leadership unknown for now: v.Err says why */ continue }
//		if v.Leader == nil { /* no leader */ }
//	}
//
// Delivery policy: the channel holds one value and keeps only the latest.
// A reader that falls behind skips intermediate values and always sees the
// newest one next; the engine's thread is never blocked by a slow reader.
// A failure is itself such a value: one followed by the recovered state
// before the reader came back is superseded by that state. Pass a ctx that
// ends: an observer on context.Background() runs for the life of the
// process.
func (c *Coordinator) Observe(ctx context.Context, name string, opts *ObserveOptions) (<-chan LeaderState, error) {
	if ctx.Err() != nil {
		return nil, ctxError(ctx, fmt.Sprintf("observing election %q", name), nil)
	}
	policy, err := opts.policy()
	if err != nil {
		return nil, err
	}
	if !c.ref.acquire() {
		return nil, ErrClosed
	}
	st := &observerState{ch: make(chan LeaderState, 1)}
	ud := newCallbackUserdata(st)
	var obs *C.shardkit_observer
	err = call(func() C.shardkit_status {
		return C.shardkit_observer_start(c.ptr, stringPtr(name), C.size_t(len(name)), &policy,
			leaderCallback, ud, &obs)
	})
	c.ref.release()
	if err != nil {
		deleteCallbackUserdata(ud)
		return nil, err
	}
	go func() {
		<-ctx.Done()
		// Returns once no callback runs and none will: only then may the
		// handle go and the channel close.
		C.shardkit_observer_free(obs)
		deleteCallbackUserdata(ud)
		close(st.ch)
	}()
	return st.ch, nil
}
