package shardkit

// The Go ends of the C callbacks. The engine calls these exports directly,
// through the function pointers below. They run on shardkit's runtime
// threads (or, for a session loss, on the thread of a shardkit call that
// noticed it first) and must return promptly: they never call into C, and
// only the shard-ownership one ever waits (see ownerState.push). A
// callback's userdata is deleted only after the C object that calls back
// through it has been freed, and the C ABI guarantees that no callback runs
// after its _free has returned, so a callback never sees a deleted one.

/*
#include <stdlib.h>
#include "shardkit.h"

// The exports, declared so that Go can hand them to the engine. Their C
// types differ from the ABI's callback types only in the const of pointed-to
// data, which does not change how they are called.
extern void skGoSessionLost(void *, shardkit_status, char *, size_t);
extern void skGoLeader(void *, shardkit_leader_event *);
extern void skGoOwnership(void *, bool, char *, size_t, int64_t);
*/
import "C"

import (
	"runtime/cgo"
	"sync/atomic"
	"unsafe"
)

// The exports as the C ABI's callback types.
var (
	lostCallback      = C.shardkit_lost_callback(C.skGoSessionLost)
	leaderCallback    = C.shardkit_leader_callback(C.skGoLeader)
	ownershipCallback = C.shardkit_ownership_callback(C.skGoOwnership)
)

//export skGoSessionLost
func skGoSessionLost(ud unsafe.Pointer, code C.shardkit_status, msg *C.char, n C.size_t) {
	st := callbackValue(ud).(*sessionState)
	st.finish(newError(uint32(code), C.GoStringN(msg, C.int(n))))
}

//export skGoLeader
func skGoLeader(ud unsafe.Pointer, ev *C.shardkit_leader_event) {
	st := callbackValue(ud).(*observerState)
	var state LeaderState
	switch {
	case ev.status != C.SHARDKIT_STATUS_OK:
		state.Err = newError(uint32(ev.status), C.GoStringN(ev.message, C.int(ev.message_len)))
	case bool(ev.has_leader):
		state.Leader = &Leader{
			Value: C.GoBytes(unsafe.Pointer(ev.value), C.int(ev.value_len)),
			Token: FencingToken{Revision: int64(ev.revision), Lease: int64(ev.lease)},
		}
	}
	st.offer(state)
}

//export skGoOwnership
func skGoOwnership(ud unsafe.Pointer, gained C.bool, shard *C.char, n C.size_t, token C.int64_t) {
	st := callbackValue(ud).(*ownerState)
	st.push(OwnershipEvent{
		Shard:  C.GoStringN(shard, C.int(n)),
		Gained: bool(gained),
		Token:  int64(token),
	})
}

// liveCallbackHandles counts callback userdata not yet deleted, for the leak
// tests.
var liveCallbackHandles atomic.Int64

// newCallbackUserdata makes the userdata through which a callback reaches v:
// C memory holding v's cgo.Handle. C may keep it for as long as it needs,
// which it may not do with Go memory, and Go never has to turn the handle's
// integer into a pointer itself (the runtime forbids such pointers).
func newCallbackUserdata(v any) unsafe.Pointer {
	ud := C.malloc(C.size_t(unsafe.Sizeof(cgo.Handle(0))))
	*(*cgo.Handle)(ud) = cgo.NewHandle(v)
	liveCallbackHandles.Add(1)
	return ud
}

func callbackValue(ud unsafe.Pointer) any { return (*(*cgo.Handle)(ud)).Value() }

// deleteCallbackUserdata is called only once the C object that calls back
// through ud has been freed.
func deleteCallbackUserdata(ud unsafe.Pointer) {
	(*(*cgo.Handle)(ud)).Delete()
	C.free(ud)
	liveCallbackHandles.Add(-1)
}
