package shardkit

// #include "shardkit.h"
import "C"

import (
	"context"
	"fmt"
	"runtime"
)

// FencingToken proves a hold of a lock, a leadership or a shard. Revision
// is the number external resources compare (larger is newer; pass it to
// FenceGate.Admit or a store's compare, or export it as the CLI does in
// SHARDKIT_FENCING_TOKEN). Lease is the lease the hold lives under.
type FencingToken struct {
	Revision int64
	Lease    int64
}

func tokenOf(t C.shardkit_fencing_token) FencingToken {
	return FencingToken{Revision: int64(t.revision), Lease: int64(t.lease)}
}

// Lock is one contender for a named lock under a session. Safe for
// concurrent use, but one Lock is one waiter: acquiring it twice without
// Unlock is an ErrInvalidArgument.
//
// Close frees the handle without releasing: a hold (or a wait's place in
// the queue) then lasts until the session is closed or its lease ends.
// Call Unlock first to hand the lock on at once. Close interrupts a Lock
// call in flight on another goroutine, which returns ErrClosed.
type Lock struct {
	ref  *cref
	ptr  *C.shardkit_lock
	name string
}

// Name is the lock's name.
func (l *Lock) Name() string { return l.name }

// Lock waits until the lock is held and returns its fencing token. The
// wait ends when ctx does: with ctx's deadline the error matches both
// context.DeadlineExceeded and ErrTimeout, with a cancel both
// context.Canceled and ErrCancelled (see ContextError), and in every case
// the waiter has left the queue when Lock returns. Other errors:
// ErrSessionLost, ErrInvalidArgument when already held through this Lock.
func (l *Lock) Lock(ctx context.Context) (FencingToken, error) {
	if !l.ref.acquire() {
		return FencingToken{}, ErrClosed
	}
	defer l.ref.release()
	var tok C.shardkit_fencing_token
	err := waitCall(ctx, l.ref.closing, fmt.Sprintf("waiting for lock %q", l.name),
		func(timeout C.int64_t, cancel *C.shardkit_cancel) error {
			return call(func() C.shardkit_status { return C.shardkit_lock_acquire(l.ptr, timeout, cancel, &tok) })
		})
	if err != nil {
		return FencingToken{}, err
	}
	return tokenOf(tok), nil
}

// TryLock takes the lock only if it is free now: ok says whether it did.
// It makes one request; ctx is checked before it is sent.
func (l *Lock) TryLock(ctx context.Context) (token FencingToken, ok bool, err error) {
	if err := precheck(ctx, fmt.Sprintf("trying lock %q", l.name)); err != nil {
		return FencingToken{}, false, err
	}
	if !l.ref.acquire() {
		return FencingToken{}, false, ErrClosed
	}
	defer l.ref.release()
	var got C.bool
	var tok C.shardkit_fencing_token
	err = call(func() C.shardkit_status {
		return C.shardkit_lock_try_acquire(l.ptr, &got, &tok)
	})
	if err != nil {
		return FencingToken{}, false, err
	}
	return tokenOf(tok), bool(got), nil
}

// Unlock releases the lock. ErrFenced when the hold had already ended (its
// lease expired or was revoked: someone else may hold it now),
// ErrInvalidArgument when it is not held through this Lock. ctx is checked
// before the request is sent; the request then runs to completion.
func (l *Lock) Unlock(ctx context.Context) error {
	if err := precheck(ctx, fmt.Sprintf("releasing lock %q", l.name)); err != nil {
		return err
	}
	if !l.ref.acquire() {
		return ErrClosed
	}
	defer l.ref.release()
	return call(func() C.shardkit_status { return C.shardkit_lock_release(l.ptr) })
}

// Put writes key = value into the coordinator's store only while this lock
// is held (the store checks the hold in the same transaction) and returns
// the write's revision. ErrFenced when the lock is not held through this
// Lock (never acquired, released) or its hold has ended; ErrSessionLost
// once the session is lost. ctx is checked before the request is sent.
func (l *Lock) Put(ctx context.Context, key, value []byte) (int64, error) {
	if err := precheck(ctx, fmt.Sprintf("guarded put under lock %q", l.name)); err != nil {
		return 0, err
	}
	if !l.ref.acquire() {
		return 0, ErrClosed
	}
	defer l.ref.release()
	var rev C.int64_t
	err := call(func() C.shardkit_status {
		return C.shardkit_lock_put(l.ptr, bytesPtr(key), C.size_t(len(key)), bytesPtr(value), C.size_t(len(value)), &rev)
	})
	if err != nil {
		return 0, err
	}
	return int64(rev), nil
}

// Close frees the handle without releasing the lock (see Lock). Safe to
// call more than once; always returns nil.
func (l *Lock) Close() error {
	if l != nil && l.ref.close() {
		runtime.SetFinalizer(l, nil)
	}
	return nil
}
