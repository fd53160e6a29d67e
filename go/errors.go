package shardkit

// #include "shardkit.h"
import "C"

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
)

// Kind is the coarse class of an error. The values are shardkit's stable
// status codes (the same numbers C sees), so they never change meaning.
type Kind uint32

// The error kinds: the C header's status codes, which core declares.
const (
	KindInvalidArgument Kind = C.SHARDKIT_STATUS_INVALID_ARGUMENT
	KindEmptyNodeSet    Kind = C.SHARDKIT_STATUS_EMPTY_NODE_SET
	KindDuplicateNode   Kind = C.SHARDKIT_STATUS_DUPLICATE_NODE
	KindNotFound        Kind = C.SHARDKIT_STATUS_NOT_FOUND
	KindConfig          Kind = C.SHARDKIT_STATUS_CONFIG
	KindIO              Kind = C.SHARDKIT_STATUS_IO
	KindInvalidUTF8     Kind = C.SHARDKIT_STATUS_INVALID_UTF8
	KindNullPointer     Kind = C.SHARDKIT_STATUS_NULL_POINTER
	KindBufferTooSmall  Kind = C.SHARDKIT_STATUS_BUFFER_TOO_SMALL
	KindPanic           Kind = C.SHARDKIT_STATUS_PANIC
	KindUnavailable     Kind = C.SHARDKIT_STATUS_UNAVAILABLE
	KindTimeout         Kind = C.SHARDKIT_STATUS_TIMEOUT
	KindSessionLost     Kind = C.SHARDKIT_STATUS_SESSION_LOST
	KindCancelled       Kind = C.SHARDKIT_STATUS_CANCELLED
	KindFenced          Kind = C.SHARDKIT_STATUS_FENCED
	KindCompacted       Kind = C.SHARDKIT_STATUS_COMPACTED
	KindBadResponse     Kind = C.SHARDKIT_STATUS_BAD_RESPONSE
)

// kindText holds the engine's description of every code it knows, indexed
// by code ("ok" at 0). The text is static, so it is read once. Codes past
// the last all share one text (the ABI's "unknown status code"), which is
// how the end is found without copying that text here.
var kindText = sync.OnceValue(func() []string {
	message := func(code uint32) string {
		return C.GoString(C.shardkit_status_message(C.shardkit_status(code)))
	}
	unknown := message(^uint32(0))
	var text []string
	for code := uint32(0); ; code++ {
		t := message(code)
		if t == unknown {
			return text
		}
		text = append(text, t)
	}
})

// String is the kind's short description, as core words it.
func (k Kind) String() string {
	if text := kindText(); uint64(k) < uint64(len(text)) {
		return text[k]
	}
	return C.GoString(C.shardkit_status_message(C.shardkit_status(k))) + " " + strconv.FormatUint(uint64(k), 10)
}

// Error is every failure shardkit reports: a Kind to branch on and the
// engine's message, which names the offending value.
//
// Compare with the sentinels through errors.Is, which matches on Kind alone:
//
//	if errors.Is(err, shardkit.ErrDuplicateNode) { ... }
//
// and reach the fields with errors.As.
type Error struct {
	Kind    Kind
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "shardkit: " + e.Kind.String()
	}
	return "shardkit: " + e.Kind.String() + ": " + e.Message
}

// Is reports whether target is an *Error of the same Kind. A sentinel has no
// message, so any error of its kind matches it; two errors with messages match
// only when the messages agree too.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t.Kind != e.Kind {
		return false
	}
	return t.Message == "" || t.Message == e.Message
}

// Sentinels, one per Kind, for errors.Is.
var (
	ErrInvalidArgument = &Error{Kind: KindInvalidArgument}
	ErrEmptyNodeSet    = &Error{Kind: KindEmptyNodeSet}
	ErrDuplicateNode   = &Error{Kind: KindDuplicateNode}
	ErrNotFound        = &Error{Kind: KindNotFound}
	ErrConfig          = &Error{Kind: KindConfig}
	ErrIO              = &Error{Kind: KindIO}
	ErrInvalidUTF8     = &Error{Kind: KindInvalidUTF8}
	ErrNullPointer     = &Error{Kind: KindNullPointer}
	ErrBufferTooSmall  = &Error{Kind: KindBufferTooSmall}
	ErrPanic           = &Error{Kind: KindPanic}
	ErrUnavailable     = &Error{Kind: KindUnavailable}
	// ErrTimeout: a wait ended at its deadline. Waits driven by a
	// context.Context return an error that also matches
	// context.DeadlineExceeded (see ContextError).
	ErrTimeout = &Error{Kind: KindTimeout}
	// ErrSessionLost: the session's lease is gone (expired, revoked, or its
	// local deadline passed) or the session was closed; nothing held under
	// it may be used.
	ErrSessionLost = &Error{Kind: KindSessionLost}
	// ErrCancelled: a wait was cancelled. Waits driven by a context.Context
	// return an error that also matches context.Canceled.
	ErrCancelled = &Error{Kind: KindCancelled}
	// ErrFenced: a fencing token is no longer current (the lock or
	// leadership passed on, or a newer token reached a FenceGate).
	ErrFenced = &Error{Kind: KindFenced}
	// ErrCompacted: a watch asked for history the store compacted away.
	ErrCompacted = &Error{Kind: KindCompacted}
	// ErrBadResponse: a scatter leaf answered with a non-2xx status or a
	// body that is not the JSON the protocol asks for.
	ErrBadResponse = &Error{Kind: KindBadResponse}
)

// ErrClosed is returned by every method of a Sharder, Live, Coordinator,
// Session, Lock, ScopedLock, Election, FenceGate, ShardOwner, HTTPScatter or
// Proxy after its Close, and by a wait that Close interrupted. It is a
// Go-side condition, not one of the engine's kinds, so it is a plain error
// value rather than an *Error.
var ErrClosed = errors.New("shardkit: use of a closed object")

// newError builds the *Error for a non-OK status, keeping core's message. The
// C side may prefix the message with the kind's description (core's Display
// does); that prefix is dropped so Error() does not repeat it.
func newError(code uint32, message string) error {
	k := Kind(code)
	prefix := k.String() + ": "
	if len(message) > len(prefix) && message[:len(prefix)] == prefix {
		message = message[len(prefix):]
	}
	return &Error{Kind: k, Message: message}
}

// invalidArgf builds an InvalidArgument error for checks the Go layer must do
// itself because the value cannot be represented in the C call (a negative
// count, a length mismatch between Go slices).
func invalidArgf(format string, args ...any) error {
	return &Error{Kind: KindInvalidArgument, Message: fmt.Sprintf(format, args...)}
}

// ContextError is what a call returns when its context.Context ended the
// wait: it matches both the context's error and shardkit's own kind, so
// either style of check works:
//
//	errors.Is(err, context.DeadlineExceeded) && errors.Is(err, shardkit.ErrTimeout)
//	errors.Is(err, context.Canceled) && errors.Is(err, shardkit.ErrCancelled)
//
// ErrTimeout itself deliberately does not match context.DeadlineExceeded:
// only errors caused by a context carry both, through Unwrap.
type ContextError struct {
	// Err is the engine-side error: Kind is KindTimeout for a deadline,
	// KindCancelled for a cancellation.
	Err *Error
	// Context is ctx.Err(): context.DeadlineExceeded or context.Canceled
	// (or a cause-less equivalent).
	Context error
}

func (e *ContextError) Error() string {
	return e.Err.Error() + " (" + e.Context.Error() + ")"
}

// Unwrap exposes both errors to errors.Is and errors.As.
func (e *ContextError) Unwrap() []error { return []error{e.Err, e.Context} }
