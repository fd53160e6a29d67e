package shardkit

import (
	"errors"
	"fmt"
)

// Kind is the coarse class of an error. The values are shardkit's stable
// status codes (the same numbers C sees), so they never change meaning.
type Kind uint32

// The error kinds, numbered as core's ErrorKind codes.
const (
	KindInvalidArgument Kind = 1
	KindEmptyNodeSet    Kind = 2
	KindDuplicateNode   Kind = 3
	KindNotFound        Kind = 4
	KindConfig          Kind = 5
	KindIO              Kind = 6
	KindInvalidUTF8     Kind = 7
	KindNullPointer     Kind = 8
	KindBufferTooSmall  Kind = 9
	KindPanic           Kind = 10
	KindUnavailable     Kind = 11
)

var kindNames = map[Kind]string{
	KindInvalidArgument: "invalid argument",
	KindEmptyNodeSet:    "empty node set",
	KindDuplicateNode:   "duplicate node",
	KindNotFound:        "not found",
	KindConfig:          "invalid configuration",
	KindIO:              "I/O error",
	KindInvalidUTF8:     "invalid UTF-8",
	KindNullPointer:     "NULL pointer",
	KindBufferTooSmall:  "buffer too small",
	KindPanic:           "panic caught at FFI boundary",
	KindUnavailable:     "unavailable",
}

// String is the kind's short description, as core words it.
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("unknown error kind %d", uint32(k))
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
)

// ErrClosed is returned by every method of a Sharder (or Live) after Close.
// It is a Go-side condition, not one of the engine's kinds, so it is a plain
// error value rather than an *Error.
var ErrClosed = errors.New("shardkit: use of a closed Sharder")

// newError builds the *Error for a non-OK status, keeping core's message. The
// C side may prefix the message with the kind's description (core's Display
// does); that prefix is dropped so Error() does not repeat it.
func newError(code uint32, message string) error {
	k := Kind(code)
	if desc, ok := kindNames[k]; ok {
		prefix := desc + ": "
		if len(message) > len(prefix) && message[:len(prefix)] == prefix {
			message = message[len(prefix):]
		}
	}
	return &Error{Kind: k, Message: message}
}

// invalidArgf builds an InvalidArgument error for checks the Go layer must do
// itself because the value cannot be represented in the C call (a negative
// count, a length mismatch between Go slices).
func invalidArgf(format string, args ...any) error {
	return &Error{Kind: KindInvalidArgument, Message: fmt.Sprintf(format, args...)}
}
