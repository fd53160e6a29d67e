package shardkit

// #include "shardkit.h"
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// OwnershipEvent is one change in a ShardOwner's holdings.
type OwnershipEvent struct {
	// Shard is the shard's name.
	Shard string
	// Gained is true when the worker now owns Shard, false when it lost it
	// and must no longer act on it.
	Gained bool
	// Token is the ownership's fencing token value (its revision) when
	// Gained, else 0.
	Token int64
}

// ShardOwner is a worker taking part in a shard group: the group's shards
// are shared out over its live workers by rendezvous hashing, and each is
// held through a key under the worker's session.
//
// Events are delivered in order, and none is dropped, either on a channel
// (OwnShards) or to a function (OwnShardsFunc). The rules that keep two
// workers from acting on one shard:
//
//   - A lost shard is released to another worker only after its Lost event
//     was delivered: received from the channel, or returned from the
//     function. The engine's callback waits for that, so the consumer must
//     keep up, and must not wait for other shardkit calls before taking
//     the event (the waiting callback occupies one of the engine's runtime
//     threads). With the channel, "received" is the moment of the receive,
//     not the end of the consumer's handling; use OwnShardsFunc when the
//     handling itself must finish before the shard moves.
//   - Close is the exception: it releases every shard without waiting for
//     the consumer (the caller asked to give them all up, so it should
//     stop acting on them before calling Close). Their Lost events still
//     arrive; then the channel is closed and Done with it.
//
// Gained events never wait. As delivery is asynchronous, check Owned (or
// fence with the token) before acting on a shard whose Gained event is
// old. With the channel, read until it is closed (for ev := range events):
// events left unread after Close keep one goroutine waiting to deliver
// them.
type ShardOwner struct {
	ref    *cref
	ptr    *C.shardkit_shard_owner
	state  *ownerState
	group  string
	worker string
	shards []string
}

// ownerItem is one queued event; ack, for a Lost event delivered while
// the owner is open, is closed once the consumer has received it.
type ownerItem struct {
	ev  OwnershipEvent
	ack chan struct{}
}

// ownerState is the part of a ShardOwner that its callback and its
// forwarding goroutine reach; it holds no reference to the ShardOwner, so
// the ShardOwner's finalizer can still run.
type ownerState struct {
	mu       sync.Mutex
	queue    []ownerItem
	finished bool          // the C owner is freed: no event will follow
	wake     chan struct{} // capacity 1: "the queue or finished changed"
	deliver  func(OwnershipEvent)
	done     func()        // after the last delivery
	drained  chan struct{} // closed after done

	stopOnce sync.Once
	closing  chan struct{} // closed by Close: Lost events no longer wait
}

func newOwnerState(deliver func(OwnershipEvent), done func()) *ownerState {
	return &ownerState{
		wake:    make(chan struct{}, 1),
		deliver: deliver,
		done:    done,
		drained: make(chan struct{}),
		closing: make(chan struct{}),
	}
}

func (st *ownerState) poke() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// push queues ev (never dropping one, whatever the consumer does) and, for
// a Lost event while the owner is open, waits until it was delivered.
func (st *ownerState) push(ev OwnershipEvent) {
	var ack chan struct{}
	if !ev.Gained {
		select {
		case <-st.closing:
		default:
			ack = make(chan struct{})
		}
	}
	st.mu.Lock()
	st.queue = append(st.queue, ownerItem{ev: ev, ack: ack})
	st.mu.Unlock()
	st.poke()
	if ack != nil {
		select {
		case <-ack:
		case <-st.closing:
		}
	}
}

// stopWaiting lets every waiting and later Lost event go at once.
func (st *ownerState) stopWaiting() {
	st.stopOnce.Do(func() { close(st.closing) })
}

// finish says no event will follow; the channel closes once the queue is
// delivered.
func (st *ownerState) finish() {
	st.mu.Lock()
	st.finished = true
	st.mu.Unlock()
	st.poke()
}

// forward delivers the queued events in order, on its own goroutine, then
// calls done once the owner is finished.
func (st *ownerState) forward() {
	for {
		st.mu.Lock()
		if len(st.queue) == 0 {
			done := st.finished
			st.mu.Unlock()
			if done {
				st.done()
				close(st.drained)
				return
			}
			<-st.wake
			continue
		}
		it := st.queue[0]
		st.queue[0] = ownerItem{}
		st.queue = st.queue[1:]
		st.mu.Unlock()
		st.deliver(it.ev)
		if it.ack != nil {
			close(it.ack)
		}
	}
}

// OwnShards joins shard group group as worker under this session,
// competing for shards; every worker of a group must pass the same list.
// It returns once the worker is registered; shards are then taken in the
// background and reported on the channel (see ShardOwner for the delivery
// rules), which is closed after Close. Errors: ErrInvalidArgument (empty
// or bad names, a '/' in the worker name, no shards), ErrDuplicateNode (a
// shard listed twice, or the worker name already live in the group),
// ErrSessionLost, store errors. ctx is checked before the registration is
// sent.
func (s *Session) OwnShards(ctx context.Context, group, worker string, shards []string) (*ShardOwner, <-chan OwnershipEvent, error) {
	out := make(chan OwnershipEvent)
	o, err := s.ownShards(ctx, group, worker, shards,
		func(ev OwnershipEvent) { out <- ev }, func() { close(out) })
	if err != nil {
		return nil, nil, err
	}
	return o, out, nil
}

// OwnShardsFunc is OwnShards with a function instead of a channel: handle
// is called for each event, in order, one at a time, on a goroutine of its
// own (not an engine thread), and a lost shard is released only after
// handle has returned for its Lost event (Close excepted, see
// ShardOwner). handle must return promptly. Calls go on after Close
// returns, for the Lost events Close produced; ShardOwner.Done is closed
// after the last one.
func (s *Session) OwnShardsFunc(ctx context.Context, group, worker string, shards []string, handle func(OwnershipEvent)) (*ShardOwner, error) {
	if handle == nil {
		return nil, invalidArgf("shard group %q: the event handler is nil", group)
	}
	return s.ownShards(ctx, group, worker, shards, handle, func() {})
}

func (s *Session) ownShards(ctx context.Context, group, worker string, shards []string,
	deliver func(OwnershipEvent), done func()) (*ShardOwner, error) {
	what := fmt.Sprintf("joining shard group %q as %q", group, worker)
	if err := precheck(ctx, what); err != nil {
		return nil, err
	}
	if !s.ref.acquire() {
		return nil, ErrClosed
	}
	defer s.ref.release()

	total := 0
	for _, sh := range shards {
		total += len(sh)
	}
	strs := newCStrings(total)
	defer strs.free()
	// Go memory holding C pointers only may be passed to C.
	ptrs := make([]*C.char, len(shards))
	lens := make([]C.size_t, len(shards))
	for i, sh := range shards {
		p, n := strs.add(sh)
		ptrs[i], lens[i] = (*C.char)(unsafe.Pointer(p)), n
	}

	state := newOwnerState(deliver, done)
	// Forward from the start: a Lost event can come before start returns.
	go state.forward()
	ud := newCallbackUserdata(state)
	var out *C.shardkit_shard_owner
	err := call(func() C.shardkit_status {
		return C.shardkit_shard_owner_start(s.ptr, stringPtr(group), C.size_t(len(group)),
			stringPtr(worker), C.size_t(len(worker)),
			unsafe.SliceData(ptrs), unsafe.SliceData(lens), C.size_t(len(shards)),
			ownershipCallback, ud, &out)
	})
	if err != nil {
		deleteCallbackUserdata(ud)
		state.finish()
		return nil, err
	}
	o := &ShardOwner{
		ptr:    out,
		state:  state,
		group:  group,
		worker: worker,
		shards: append([]string(nil), shards...),
	}
	o.ref = newCref(func() {
		// Release a callback waiting on the consumer first: the free
		// waits for running callbacks to return.
		state.stopWaiting()
		C.shardkit_shard_owner_free(out)
		deleteCallbackUserdata(ud)
		state.finish()
	})
	runtime.SetFinalizer(o, func(o *ShardOwner) { o.ref.close() })
	return o, nil
}

// Done is closed once the owner is closed (or freed by its finalizer) and
// every remaining event has been delivered: the channel of OwnShards is
// closed then, and the function of OwnShardsFunc will not be called again.
// Close, then wait on Done, to be sure the consumer has seen every Lost
// event.
func (o *ShardOwner) Done() <-chan struct{} { return o.state.drained }

// Group is the shard group's name.
func (o *ShardOwner) Group() string { return o.group }

// Worker is this worker's name in the group.
func (o *ShardOwner) Worker() string { return o.worker }

// Owned returns the shards owned now, each with its ownership's token
// value (empty once closed). Since events are delivered asynchronously,
// check here (or fence with the token) before acting on a shard whose
// Gained event is old.
func (o *ShardOwner) Owned() map[string]int64 {
	owned := map[string]int64{}
	if !o.ref.acquire() {
		return owned
	}
	defer o.ref.release()
	for _, sh := range o.shards {
		var yes C.bool
		var tok C.int64_t
		// Names from start are valid: an error here leaves the shard out.
		if C.shardkit_shard_owner_owns(o.ptr, stringPtr(sh), C.size_t(len(sh)), &yes, &tok) != C.SHARDKIT_STATUS_OK {
			continue
		}
		if yes {
			owned[sh] = int64(tok)
		}
	}
	return owned
}

// Close leaves the group: every owned shard is reported lost and released
// at once, so other workers take it (see ShardOwner: this does not wait
// for the consumer). The events channel closes after the last event. If
// ctx is already done, the shards are not released (they stay held until
// the session ends) and ctx's error is returned; the handle is freed
// either way. Safe to call more than once: later calls return nil.
func (o *ShardOwner) Close(ctx context.Context) error {
	if o.ref.closed() {
		return nil
	}
	err := precheck(ctx, fmt.Sprintf("leaving shard group %q", o.group))
	if err == nil && o.ref.acquire() {
		o.state.stopWaiting()
		err = call(func() C.shardkit_status { return C.shardkit_shard_owner_close(o.ptr) })
		o.ref.release()
	}
	if o.ref.close() {
		runtime.SetFinalizer(o, nil)
	}
	return err
}
