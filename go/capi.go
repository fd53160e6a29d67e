package shardkit

// The C side of the binding. Every fallible entry point is called through a
// small wrapper in shim.c that, on failure, copies the engine's last-error
// text before returning. The text lives in thread-local storage on the OS
// thread that made the call, and a goroutine may move to another thread
// between two cgo calls; reading it inside the same C call is what makes the
// message belong to this failure.
//
// All wrappers are declared noescape (they keep no pointer past the call) and
// nocallback (they never call into Go), which lets the compiler keep the
// out-parameters on the goroutine's stack and skips callback bookkeeping on
// the hot path.

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#cgo noescape sk_new
#cgo noescape sk_apply
#cgo nocallback sk_apply
#cgo noescape sk_is_down
#cgo nocallback sk_is_down
#cgo nocallback sk_new
#cgo noescape sk_from_twemproxy_file
#cgo nocallback sk_from_twemproxy_file
#cgo noescape sk_from_twemproxy_yaml
#cgo nocallback sk_from_twemproxy_yaml
#cgo noescape sk_from_nginx_upstream
#cgo nocallback sk_from_nginx_upstream
#cgo noescape sk_clone
#cgo nocallback sk_clone
#cgo noescape sk_load_nodes
#cgo nocallback sk_load_nodes
#cgo noescape sk_slot_of
#cgo nocallback sk_slot_of
#cgo noescape sk_key_hash
#cgo nocallback sk_key_hash
#cgo noescape sk_lookup
#cgo nocallback sk_lookup
#cgo noescape sk_lookup_hash
#cgo nocallback sk_lookup_hash
#cgo noescape sk_lookup_n
#cgo nocallback sk_lookup_n
#cgo noescape sk_lookup_batch_packed
#cgo nocallback sk_lookup_batch_packed
#cgo noescape sk_add
#cgo nocallback sk_add
#cgo noescape sk_remove
#cgo nocallback sk_remove
#cgo noescape sk_reweight
#cgo nocallback sk_reweight
#cgo noescape sk_set_down
#cgo nocallback sk_set_down
#cgo noescape sk_movement
#cgo nocallback sk_movement
#cgo noescape sk_balance
#cgo nocallback sk_balance
#cgo nocallback shardkit_sharder_free

#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
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

// statusError turns a non-OK status and the message copied by a wrapper into
// an error, and frees the message.
func statusError(st C.shardkit_status, msg *C.char) error {
	text := ""
	if msg != nil {
		text = C.GoString(msg)
		C.free(unsafe.Pointer(msg))
	}
	if text == "" {
		text = C.GoString(C.shardkit_status_message(st))
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
