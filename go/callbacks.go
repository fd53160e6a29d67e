package shardkit

// The Go ends of the C callbacks. Each C callback's userdata is a
// cgo.Handle value; the trampolines in shim.c pass it here as a uintptr_t.
// These run on shardkit's runtime threads (or, for a session loss, on the
// thread of a shardkit call that noticed it first) and must return
// promptly: they never call into C, and only the shard-ownership one ever
// waits (see ownerState.push). A handle is deleted only after the C object
// that calls back through it has been freed, and the C ABI guarantees that
// no callback runs after its _free has returned, so Value never sees a
// deleted handle.

// #include "shim.h"
import "C"

import (
	"runtime/cgo"
	"sync/atomic"
	"unsafe"
)

//export skGoSessionLost
func skGoSessionLost(h C.uintptr_t, code C.shardkit_status, msg *C.char, n C.size_t) {
	st := cgo.Handle(h).Value().(*sessionState)
	st.finish(newError(uint32(code), C.GoStringN(msg, C.int(n))))
}

//export skGoLeader
func skGoLeader(h C.uintptr_t, hasLeader C.bool, value *C.uint8_t, n C.size_t, revision C.int64_t) {
	st := cgo.Handle(h).Value().(*observerState)
	var l *Leader
	if hasLeader {
		l = &Leader{
			Value: C.GoBytes(unsafe.Pointer(value), C.int(n)),
			Token: FencingToken{Revision: int64(revision)},
		}
	}
	st.offer(l)
}

//export skGoOwnership
func skGoOwnership(h C.uintptr_t, gained C.bool, shard *C.char, n C.size_t, token C.int64_t) {
	st := cgo.Handle(h).Value().(*ownerState)
	st.push(OwnershipEvent{
		Shard:  C.GoStringN(shard, C.int(n)),
		Gained: bool(gained),
		Token:  int64(token),
	})
}

// liveCallbackHandles counts cgo.Handles not yet deleted, for the leak
// tests.
var liveCallbackHandles atomic.Int64

func newCallbackHandle(v any) cgo.Handle {
	liveCallbackHandles.Add(1)
	return cgo.NewHandle(v)
}

// deleteCallbackHandle is called only once the C object that calls back
// through h has been freed.
func deleteCallbackHandle(h cgo.Handle) {
	h.Delete()
	liveCallbackHandles.Add(-1)
}
