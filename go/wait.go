package shardkit

// #include "shardkit.h"
import "C"

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// How a context.Context drives the lease API's blocking calls. There are
// three kinds of call, and each treats ctx in the way its C call allows:
//
//   - Waits (Lock.Lock, Election.Campaign) take a C cancel signal and a
//     timeout: ctx's deadline becomes the timeout and a goroutine fires the
//     signal when ctx is done, so the wait ends at once and leaves no
//     waiter behind (waitCall).
//   - Reads and constructors (Connect, Session, Resume, Leader) return as
//     soon as ctx is done; the C call finishes in the background and what
//     it made is released there (detached).
//   - Single writes (Unlock, Put, Proclaim, Resign, Revoke, Session.Close,
//     OwnShards, ShardOwner.Close) check ctx before they start and then run
//     to completion, bounded by the session's RPC timeout (5 s by default,
//     see WithRPCTimeout): once a write is sent its outcome must be known,
//     or a caller could not tell whether it still holds a lock.

// timeoutMs is ctx's deadline as the C ABI's timeout_ms: -1 for none,
// rounded up so that the C side never gives up before the Go deadline.
func timeoutMs(ctx context.Context) C.int64_t {
	d, ok := ctx.Deadline()
	if !ok {
		return -1
	}
	left := time.Until(d)
	if left <= 0 {
		return 0
	}
	return C.int64_t((left + time.Millisecond - 1) / time.Millisecond)
}

// ctxError is the error for a wait that ctx ended. e is the engine's error
// when it already has the matching kind (its message is kept), else nil.
func ctxError(ctx context.Context, what string, e *Error) error {
	cause := ctx.Err()
	if cause == nil {
		// Only reached for an engine TIMEOUT of a wait whose timeout came
		// from ctx's deadline, a hair before ctx's own timer fired.
		cause = context.DeadlineExceeded
	}
	kind, how := KindCancelled, "the context was cancelled"
	if errors.Is(cause, context.DeadlineExceeded) {
		kind, how = KindTimeout, "the context's deadline passed"
	}
	if e == nil || e.Kind != kind {
		e = &Error{Kind: kind, Message: what + ": " + how}
	}
	return &ContextError{Err: e, Context: cause}
}

// closedError is the error of a wait that Close interrupted.
func closedError(what string) error {
	return fmt.Errorf("%w (%s was interrupted by Close)", ErrClosed, what)
}

// waitCall runs one blocking C wait that takes a timeout and a cancel
// signal, ended by ctx or by closing (the handle's Close). what names the
// wait in errors ("waiting for lock \"jobs\"").
func waitCall(ctx context.Context, closing <-chan struct{}, what string,
	wait func(timeout C.int64_t, cancel *C.shardkit_cancel) error) error {
	if ctx.Err() != nil {
		return ctxError(ctx, what, nil)
	}
	var cancel *C.shardkit_cancel
	if err := call(func() C.shardkit_status { return C.shardkit_cancel_new(&cancel) }); err != nil {
		return err
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	var byClose atomic.Bool
	go func() {
		defer close(exited)
		select {
		case <-ctx.Done():
			C.shardkit_cancel_cancel(cancel)
		case <-closing:
			byClose.Store(true)
			C.shardkit_cancel_cancel(cancel)
		case <-done:
		}
	}()
	err := wait(timeoutMs(ctx), cancel)
	close(done)
	// The watcher may be inside shardkit_cancel_cancel: free the signal
	// only once it has gone.
	<-exited
	C.shardkit_cancel_free(cancel)
	if err == nil {
		// Held is held, even if ctx ended in the same instant.
		return nil
	}
	var e *Error
	if !errors.As(err, &e) || (e.Kind != KindCancelled && e.Kind != KindTimeout) {
		return err
	}
	switch {
	case ctx.Err() != nil:
		return ctxError(ctx, what, e)
	case byClose.Load():
		return closedError(what)
	default:
		if _, ok := ctx.Deadline(); ok && e.Kind == KindTimeout {
			return ctxError(ctx, what, e)
		}
		return err
	}
}

// detached runs a C call that cannot be interrupted, returning as soon as
// ctx is done; a result that arrives after that is handed to discard (when
// not nil) so nothing it made leaks.
func detached[T any](ctx context.Context, what string, call func() (T, error), discard func(T)) (T, error) {
	var zero T
	if ctx.Err() != nil {
		return zero, ctxError(ctx, what, nil)
	}
	if ctx.Done() == nil {
		return call()
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := call()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		select {
		case r := <-ch: // finished in the same instant: keep the answer
			return r.v, r.err
		default:
		}
		go func() {
			if r := <-ch; r.err == nil && discard != nil {
				discard(r.v)
			}
		}()
		return zero, ctxError(ctx, what, nil)
	}
}

// precheck is the ctx check of a single write, made before it is sent.
func precheck(ctx context.Context, what string) error {
	if ctx.Err() != nil {
		return ctxError(ctx, what, nil)
	}
	return nil
}
