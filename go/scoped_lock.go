package shardkit

// #include "shardkit.h"
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// ScopedLock is a lock on one name held under a lease of its own: Acquire
// grants a fresh lease and waits for the lock under it, Release unlocks and
// revokes that lease, so nothing of a hold outlives it. It is core's scoped
// lock, the one behind Python's `with coord.lock(name)`, C's
// shardkit_scoped_lock and `shardkit lock NAME -- CMD`. One ScopedLock is
// held at most once at a time and may be acquired again after a release.
// Safe for concurrent use.
//
// Close frees the handle: a hold still in place is given up (its lease is
// revoked in the background, which frees the lock at once, long before the
// TTL), and an Acquire in flight on another goroutine returns ErrClosed.
type ScopedLock struct {
	ref  *cref
	ptr  *C.shardkit_scoped_lock
	name string
}

// ScopedLock makes a scoped lock on name (the rules of lock names) whose
// holds live under leases of ttl (a whole number of seconds, at least 1 s,
// as for Session; the loss margin and request bound at their defaults).
// It sends nothing yet.
func (c *Coordinator) ScopedLock(name string, ttl time.Duration) (*ScopedLock, error) {
	// The C ABI takes whole seconds; refusing other values (as Session
	// does) beats rounding a TTL the caller chose.
	if ttl < time.Second || ttl%time.Second != 0 {
		return nil, invalidArgf("scoped lock ttl %v: must be a whole number of seconds, at least 1s", ttl)
	}
	if !c.ref.acquire() {
		return nil, ErrClosed
	}
	defer c.ref.release()
	var out *C.shardkit_scoped_lock
	err := call(func() C.shardkit_status {
		return C.shardkit_scoped_lock_new(c.ptr, stringPtr(name), C.size_t(len(name)),
			C.uint64_t(ttl/time.Second), &out)
	})
	if err != nil {
		return nil, err
	}
	l := &ScopedLock{ptr: out, name: name}
	// The free revokes a hold still in place, in the background, so a
	// forgotten ScopedLock hands its lock on when it is collected.
	l.ref = newCref(func() { C.shardkit_scoped_lock_free(out) })
	runtime.SetFinalizer(l, (*ScopedLock).Close)
	return l, nil
}

// Name is the lock's name.
func (l *ScopedLock) Name() string { return l.name }

// Acquire grants a lease, then waits until the lock is held under it, and
// returns the hold's fencing token. ctx ends the wait as for Lock.Lock
// (the error matches both ctx's error and ErrTimeout or ErrCancelled); the
// grant before it is one request, bounded by the request timeout (5 s).
// On every error the lease is revoked and nothing is left in the store:
// the ScopedLock may be acquired again. ErrInvalidArgument when already
// held (or being acquired) through this ScopedLock; store errors
// (ErrUnavailable, ErrIO, ...) as they come.
func (l *ScopedLock) Acquire(ctx context.Context) (FencingToken, error) {
	if !l.ref.acquire() {
		return FencingToken{}, ErrClosed
	}
	defer l.ref.release()
	var tok C.shardkit_fencing_token
	err := waitCall(ctx, l.ref.closing, fmt.Sprintf("acquiring scoped lock %q", l.name),
		func(timeout C.int64_t, cancel *C.shardkit_cancel) error {
			return call(func() C.shardkit_status {
				return C.shardkit_scoped_lock_acquire(l.ptr, timeout, cancel, &tok)
			})
		})
	if err != nil {
		return FencingToken{}, err
	}
	return tokenOf(tok), nil
}

// Release unlocks and revokes the hold's lease; both are attempted and the
// first error returned: ErrFenced when the hold had already ended (its
// lease expired or was revoked: someone else may hold the lock now),
// ErrInvalidArgument when it is not held through this ScopedLock. ctx is
// checked before the requests are sent; they then run to completion, so
// the outcome is known (as for Lock.Unlock).
func (l *ScopedLock) Release(ctx context.Context) error {
	if err := precheck(ctx, fmt.Sprintf("releasing scoped lock %q", l.name)); err != nil {
		return err
	}
	if !l.ref.acquire() {
		return ErrClosed
	}
	defer l.ref.release()
	return call(func() C.shardkit_status { return C.shardkit_scoped_lock_release(l.ptr) })
}

// Token returns the current hold's fencing token and true, or false when
// the lock is not held through this ScopedLock (or it is closed). It asks
// nothing of the store.
func (l *ScopedLock) Token() (FencingToken, bool) {
	if !l.ref.acquire() {
		return FencingToken{}, false
	}
	defer l.ref.release()
	var held C.bool
	var tok C.shardkit_fencing_token
	// Fails only for arguments this call never passes (NULL, a wrong
	// handle type); "not held" is the honest answer then too.
	if call(func() C.shardkit_status { return C.shardkit_scoped_lock_token(l.ptr, &held, &tok) }) != nil {
		return FencingToken{}, false
	}
	return tokenOf(tok), bool(held)
}

// WithLock acquires the lock, runs fn with the hold's token, and releases
// the hold however fn ends (a panic included). The release runs even when
// ctx has ended meanwhile, since a hold left behind would last until its
// lease's TTL; its error (ErrFenced: the hold ended while fn ran) is
// joined to fn's.
func (l *ScopedLock) WithLock(ctx context.Context, fn func(FencingToken) error) (err error) {
	tok, err := l.Acquire(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, l.Release(context.WithoutCancel(ctx))) }()
	return fn(tok)
}

// Close frees the handle, giving up a hold still in place (see
// ScopedLock). Safe to call more than once and with calls in flight;
// always returns nil.
func (l *ScopedLock) Close() error {
	if l != nil && l.ref.close() {
		runtime.SetFinalizer(l, nil)
	}
	return nil
}
