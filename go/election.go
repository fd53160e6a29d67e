package shardkit

// #include "shardkit.h"
import "C"

import (
	"context"
	"fmt"
	"runtime"
)

// Election is one candidate in a named election under a session. Safe for
// concurrent use. Close frees the handle without resigning: leadership (or
// a candidacy) then lasts until the session is closed or its lease ends.
// Close interrupts a Campaign in flight, which returns ErrClosed.
type Election struct {
	ref   *cref
	ptr   *C.shardkit_election
	name  string
	coord *Coordinator
}

// Name is the election's name.
func (e *Election) Name() string { return e.name }

// Campaign waits until this candidate leads, proclaiming value, and returns
// the leadership's fencing token. ctx ends the wait as for Lock.Lock, with
// the same errors.
func (e *Election) Campaign(ctx context.Context, value []byte) (FencingToken, error) {
	if !e.ref.acquire() {
		return FencingToken{}, ErrClosed
	}
	defer e.ref.release()
	var tok C.shardkit_fencing_token
	err := waitCall(ctx, e.ref.closing, fmt.Sprintf("campaigning in election %q", e.name),
		func(timeout C.int64_t, cancel *C.shardkit_cancel) error {
			return call(func() C.shardkit_status {
				return C.shardkit_election_campaign(e.ptr, bytesPtr(value), C.size_t(len(value)), timeout, cancel, &tok)
			})
		})
	if err != nil {
		return FencingToken{}, err
	}
	return tokenOf(tok), nil
}

// Proclaim replaces the leader's value, only while this candidate leads
// (ErrFenced otherwise). ctx is checked before the request is sent.
func (e *Election) Proclaim(ctx context.Context, value []byte) error {
	if err := precheck(ctx, fmt.Sprintf("proclaiming in election %q", e.name)); err != nil {
		return err
	}
	if !e.ref.acquire() {
		return ErrClosed
	}
	defer e.ref.release()
	return call(func() C.shardkit_status {
		return C.shardkit_election_proclaim(e.ptr, bytesPtr(value), C.size_t(len(value)))
	})
}

// Resign gives up leadership (ErrInvalidArgument when not leader through
// this Election). ctx is checked before the request is sent.
func (e *Election) Resign(ctx context.Context) error {
	if err := precheck(ctx, fmt.Sprintf("resigning from election %q", e.name)); err != nil {
		return err
	}
	if !e.ref.acquire() {
		return ErrClosed
	}
	defer e.ref.release()
	return call(func() C.shardkit_status { return C.shardkit_election_resign(e.ptr) })
}

// Leader returns the election's current leader (any candidate), or nil,
// nil when there is none. It asks through the Coordinator the session was
// made from, so it returns ErrClosed once that is closed.
func (e *Election) Leader(ctx context.Context) (*Leader, error) {
	if e.ref.closed() {
		return nil, ErrClosed
	}
	return e.coord.Leader(ctx, e.name)
}

// Close frees the handle without resigning (see Election). Safe to call
// more than once; always returns nil.
func (e *Election) Close() error {
	if e != nil && e.ref.close() {
		runtime.SetFinalizer(e, nil)
	}
	return nil
}
