package shardkit

// The C side of the binding. Go calls the C ABI's exports directly; what a
// plain cgo call cannot do is read the engine's last-error text, which lives
// in thread-local storage on the OS thread that failed, while a goroutine may
// move to another thread between two cgo calls. call (below) pins the
// goroutine to its thread for the failing call and the read that follows.

/*
#cgo CFLAGS: -I${SRCDIR}/../include

// The exports on hot paths: lookups run once per key, the node read once or
// twice per new snapshot, and shardkit_last_error on every failure. They
// keep no pointer past the call and never call into Go, so they are declared
// noescape and nocallback (cgo honours noescape only with nocallback): their
// out-parameters and buffers then stay on the goroutine's stack instead of
// costing an allocation per call. Other exports are left plain: an
// allocation is nothing beside what they do, and some of them (session
// calls) do run Go callbacks.
#cgo noescape shardkit_last_error
#cgo nocallback shardkit_last_error
#cgo noescape shardkit_sharder_nodes
#cgo nocallback shardkit_sharder_nodes
#cgo noescape shardkit_sharder_slot_of
#cgo nocallback shardkit_sharder_slot_of
#cgo noescape shardkit_sharder_key_hash
#cgo nocallback shardkit_sharder_key_hash
#cgo noescape shardkit_sharder_lookup
#cgo nocallback shardkit_sharder_lookup
#cgo noescape shardkit_sharder_lookup_hash
#cgo nocallback shardkit_sharder_lookup_hash
#cgo noescape shardkit_sharder_lookup_n
#cgo nocallback shardkit_sharder_lookup_n
#cgo noescape shardkit_sharder_lookup_batch_packed
#cgo nocallback shardkit_sharder_lookup_batch_packed

#include <stdlib.h>
#include "shardkit.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Slots travel as C uint32_t and packed offsets as size_t; the Go types used
// for them must have the same layout so slices can be passed without a copy.
var (
	_ [unsafe.Sizeof(uint32(0)) - unsafe.Sizeof(C.uint32_t(0))]struct{}
	_ [unsafe.Sizeof(C.uint32_t(0)) - unsafe.Sizeof(uint32(0))]struct{}
	_ [unsafe.Sizeof(uint(0)) - unsafe.Sizeof(C.size_t(0))]struct{}
	_ [unsafe.Sizeof(C.size_t(0)) - unsafe.Sizeof(uint(0))]struct{}
)

// call runs f, which makes one fallible C call (or several, returning the
// status of the one that failed), with the goroutine locked to its OS
// thread, and turns a non-OK status into an *Error carrying the engine's
// message. The lock is what makes the message this call's: the engine keeps
// it per thread. Every C call whose error is reported goes through here, so
// a new export needs no C of its own.
//
// f does not escape, so its closure and what it captures stay on the
// caller's stack: the success path costs the thread lock and unlock (about
// 3 ns) and one indirect call, and allocates nothing.
func call(f func() C.shardkit_status) error {
	runtime.LockOSThread()
	// A deferred unlock would also cover a panic in f (a cgo pointer check),
	// but costs about 2 ns more per call; f only converts arguments and
	// calls C.
	st := f()
	if st == C.SHARDKIT_STATUS_OK {
		runtime.UnlockOSThread()
		return nil
	}
	err := lastError(st)
	runtime.UnlockOSThread()
	return err
}

// callPure is call for exports whose outcome depends only on their
// arguments and an immutable snapshot (a Sharder's lookups): the success
// path skips the thread lock, and a failure is made once more under call,
// whose last-error read then belongs to that second, identical failure.
// Never for calls with effects, which must not run twice.
func callPure(f func() C.shardkit_status) error {
	if f() == C.SHARDKIT_STATUS_OK {
		return nil
	}
	return call(f)
}

// lastError builds the error for status st from this thread's last-error
// text. The caller holds the thread the failed call ran on.
func lastError(st C.shardkit_status) error {
	var small [256]byte
	var n C.size_t
	text := ""
	switch C.shardkit_last_error((*C.char)(unsafe.Pointer(&small[0])), C.size_t(len(small)), &n) {
	case C.SHARDKIT_STATUS_OK:
		text = string(small[:n])
	case C.SHARDKIT_STATUS_BUFFER_TOO_SMALL:
		big := make([]byte, n+1)
		if C.shardkit_last_error((*C.char)(unsafe.Pointer(&big[0])), C.size_t(len(big)), &n) == C.SHARDKIT_STATUS_OK {
			text = string(big[:n])
		}
	}
	if text == "" {
		// No detail (or none readable): the kind's description stands in.
		text = Kind(st).String()
	}
	return newError(uint32(st), text)
}

// bytesPtr passes a byte slice's memory to C for the duration of one call.
// The slice holds no Go pointers, which is what the cgo rules require; a nil
// or empty slice may come out as NULL, which the ABI reads as empty.
func bytesPtr(b []byte) *C.uint8_t {
	return (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(b)))
}

// stringPtr is bytesPtr for a string, without copying it. C only reads.
func stringPtr(s string) *C.uint8_t {
	return (*C.uint8_t)(unsafe.Pointer(unsafe.StringData(s)))
}

// cStrings copies strings into one C allocation, so that C structs built in
// Go memory can point at them (Go memory may hold C pointers, never unpinned
// Go ones). free releases the allocation.
type cStrings struct {
	base unsafe.Pointer
	buf  []byte
	used int
}

func newCStrings(total int) *cStrings {
	p := C.malloc(C.size_t(total + 1))
	if p == nil {
		panic("shardkit: out of C memory")
	}
	return &cStrings{base: p, buf: unsafe.Slice((*byte)(p), total+1)}
}

func (c *cStrings) add(s string) (*C.uint8_t, C.size_t) {
	start := c.used
	c.used += copy(c.buf[start:], s)
	return (*C.uint8_t)(unsafe.Add(c.base, start)), C.size_t(len(s))
}

func (c *cStrings) free() { C.free(c.base) }

// Version is the engine's version string, as in its Cargo.toml.
func Version() string {
	return C.GoString(C.shardkit_version())
}
