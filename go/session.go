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

// SessionOption tunes a session made by Coordinator.Session.
type SessionOption func(*sessionOptions)

type sessionOptions struct {
	margin     time.Duration
	rpcTimeout time.Duration
}

// WithLossMargin sets how long before the lease's TTL the session declares
// itself lost, so that holders stop acting before the server can hand what
// they hold to someone else. 0 (the default) takes a fifth of the TTL,
// between 200 ms and 3 s; at most half the TTL.
func WithLossMargin(d time.Duration) SessionOption {
	return func(o *sessionOptions) { o.margin = d }
}

// WithRPCTimeout bounds every single request the session makes (a
// keepalive, a put, a release). 0 (the default) means 5 s.
func WithRPCTimeout(d time.Duration) SessionOption {
	return func(o *sessionOptions) { o.rpcTimeout = d }
}

// Session is a lease kept alive in the background, with a local deadline
// that runs out before the server's. Locks, elections and shard owners are
// made under a session and end when it is lost. Safe for concurrent use.
//
// Close revokes the lease, releasing everything held under it at once. A
// Session that is never closed is freed by a finalizer without revoking:
// its lease then lives while any Lock, Election or ShardOwner made from it
// is alive, and expires one TTL after the last is gone.
type Session struct {
	ref   *cref
	ptr   *C.shardkit_session
	coord *Coordinator
	state *sessionState
	lease int64
}

// sessionState is the part of a session its loss callback reaches (through
// a cgo.Handle); it holds no reference to the Session, so the Session's
// finalizer can still run.
type sessionState struct {
	once sync.Once
	lost chan struct{}
	mu   sync.Mutex
	err  error
}

func (st *sessionState) finish(err error) {
	st.once.Do(func() {
		st.mu.Lock()
		st.err = err
		st.mu.Unlock()
		close(st.lost)
	})
}

func millisOf(d time.Duration) C.uint64_t {
	return C.uint64_t((d + time.Millisecond - 1) / time.Millisecond)
}

// Session grants a lease of ttl (a whole number of seconds, at least 1 s;
// etcd may require more) and keeps it alive in the background. It returns
// as soon as ctx is done; a lease granted after that is revoked in the
// background.
func (c *Coordinator) Session(ctx context.Context, ttl time.Duration, opts ...SessionOption) (*Session, error) {
	var o sessionOptions
	for _, opt := range opts {
		opt(&o)
	}
	if ttl < time.Second || ttl%time.Second != 0 {
		return nil, invalidArgf("session ttl %v: must be a whole number of seconds, at least 1s", ttl)
	}
	if o.margin < 0 {
		return nil, invalidArgf("session loss margin %v is negative", o.margin)
	}
	if o.rpcTimeout < 0 {
		return nil, invalidArgf("session RPC timeout %v is negative", o.rpcTimeout)
	}
	what := fmt.Sprintf("granting a %v session lease", ttl)
	return detached(ctx, what, func() (*Session, error) {
		if !c.ref.acquire() {
			return nil, ErrClosed
		}
		defer c.ref.release()
		var out *C.shardkit_session
		err := call(func() C.shardkit_status {
			return C.shardkit_session_new_with(c.ptr, C.uint64_t(ttl/time.Second), millisOf(o.margin),
				millisOf(o.rpcTimeout), &out)
		})
		if err != nil {
			return nil, err
		}
		return wrapSession(out, c)
	}, discardSession)
}

// Resume takes over the live lease leaseID (after a restart, with the id
// LeaseID gave), renewing it at once; it keeps the TTL it was granted.
// ErrNotFound when the lease expired or was revoked. It returns as soon as
// ctx is done (the resumed session is then closed in the background).
func (c *Coordinator) Resume(ctx context.Context, leaseID int64) (*Session, error) {
	what := fmt.Sprintf("resuming lease %x", leaseID)
	return detached(ctx, what, func() (*Session, error) {
		if !c.ref.acquire() {
			return nil, ErrClosed
		}
		defer c.ref.release()
		var out *C.shardkit_session
		err := call(func() C.shardkit_status {
			return C.shardkit_session_resume(c.ptr, C.int64_t(leaseID), &out)
		})
		if err != nil {
			return nil, err
		}
		return wrapSession(out, c)
	}, discardSession)
}

func discardSession(s *Session) { _ = s.Close(context.Background()) }

func wrapSession(ptr *C.shardkit_session, coord *Coordinator) (*Session, error) {
	state := &sessionState{lost: make(chan struct{})}
	ud := newCallbackUserdata(state)
	err := call(func() C.shardkit_status {
		return C.shardkit_session_on_lost(ptr, lostCallback, ud)
	})
	if err != nil {
		C.shardkit_session_free(ptr)
		deleteCallbackUserdata(ud)
		return nil, err
	}
	s := &Session{ptr: ptr, coord: coord, state: state, lease: int64(C.shardkit_session_lease_id(ptr))}
	s.ref = newCref(func() {
		// Disarms the loss callback (waiting for a running one), so the
		// handle may go right after.
		C.shardkit_session_free(ptr)
		deleteCallbackUserdata(ud)
		state.finish(ErrClosed)
	})
	runtime.SetFinalizer(s, func(s *Session) { s.ref.close() })
	return s, nil
}

// LeaseID is the session's lease id, for Coordinator.Resume and
// Coordinator.Revoke.
func (s *Session) LeaseID() int64 { return s.lease }

// Lost returns a channel that is closed exactly once, when the session is
// lost (its lease expired or was revoked, or its local deadline passed) or
// when it is closed. Err then says which. Like context.Context's Done, it
// is the signal to stop acting on anything held under the session.
func (s *Session) Lost() <-chan struct{} { return s.state.lost }

// Err is nil while the session is live. Once Lost is closed it is the
// reason: an *Error of kind KindSessionLost naming the lease for a loss,
// or ErrClosed after Close.
func (s *Session) Err() error {
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	return s.state.err
}

// Remaining is the time left before the session's local deadline (0 once
// lost or closed).
func (s *Session) Remaining() time.Duration {
	if !s.ref.acquire() {
		return 0
	}
	ms := C.shardkit_session_remaining_ms(s.ptr)
	s.ref.release()
	return time.Duration(ms) * time.Millisecond
}

// Check returns nil while the session may still act, else the loss (an
// ErrSessionLost) or ErrClosed. It also declares a loss whose deadline has
// passed unnoticed (a process waking from a pause), which closes Lost.
// Not blocking.
func (s *Session) Check() error {
	if !s.ref.acquire() {
		return ErrClosed
	}
	defer s.ref.release()
	return call(func() C.shardkit_status { return C.shardkit_session_check(s.ptr) })
}

// Close stops keeping the lease alive and revokes it, releasing every
// lock, leadership and shard held under it at once; then Lost is closed
// (Err gives ErrClosed, unless the session had been lost before). If ctx
// is already done the revoke is skipped (the lease then expires after its
// TTL) and ctx's error returned; otherwise the revoke runs to completion.
// The handle is released either way. Safe to call more than once: later
// calls return nil.
func (s *Session) Close(ctx context.Context) error {
	if s.ref.closed() {
		return nil
	}
	err := precheck(ctx, fmt.Sprintf("revoking the lease %x of a closing session", s.lease))
	if err == nil && s.ref.acquire() {
		err = call(func() C.shardkit_status { return C.shardkit_session_close(s.ptr) })
		s.ref.release()
	}
	if s.ref.close() {
		runtime.SetFinalizer(s, nil)
	}
	return err
}

// Lock makes a contender for the lock name (UTF-8, 1 to 512 bytes, no
// control characters) under this session. It sends nothing yet. Each Lock
// is its own waiter: two Locks of one name exclude each other even under
// one session.
func (s *Session) Lock(name string) (*Lock, error) {
	if !s.ref.acquire() {
		return nil, ErrClosed
	}
	defer s.ref.release()
	var out *C.shardkit_lock
	err := call(func() C.shardkit_status {
		return C.shardkit_lock_new(s.ptr, stringPtr(name), C.size_t(len(name)), &out)
	})
	if err != nil {
		return nil, err
	}
	l := &Lock{ptr: out, name: name}
	l.ref = newCref(func() { C.shardkit_lock_free(out) })
	runtime.SetFinalizer(l, (*Lock).Close)
	return l, nil
}

// Election makes a candidate in election name (same rules as lock names)
// under this session. It sends nothing yet.
func (s *Session) Election(name string) (*Election, error) {
	if !s.ref.acquire() {
		return nil, ErrClosed
	}
	defer s.ref.release()
	var out *C.shardkit_election
	err := call(func() C.shardkit_status {
		return C.shardkit_election_new(s.ptr, stringPtr(name), C.size_t(len(name)), &out)
	})
	if err != nil {
		return nil, err
	}
	e := &Election{ptr: out, name: name, coord: s.coord}
	e.ref = newCref(func() { C.shardkit_election_free(out) })
	runtime.SetFinalizer(e, (*Election).Close)
	return e, nil
}
