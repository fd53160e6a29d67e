package shardkit_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	shardkit "github.com/shardkit/shardkit/go"
)

// A lock held under a session, with a write fenced by the hold. Against a
// real etcd, use shardkit.Connect(ctx, "127.0.0.1:2379") instead.
func ExampleSession_Lock() {
	ctx := context.Background()
	coord, err := shardkit.NewEmbeddedCoordinator()
	if err != nil {
		panic(err)
	}
	defer coord.Close()
	sess, err := coord.Session(ctx, 10*time.Second)
	if err != nil {
		panic(err)
	}
	defer sess.Close(ctx)

	lock, err := sess.Lock("jobs")
	if err != nil {
		panic(err)
	}
	defer lock.Close()
	token, err := lock.Lock(ctx)
	if err != nil {
		panic(err)
	}
	// Writes through the lock succeed only while it is held.
	_, err = lock.Put(ctx, []byte("jobs/state"), []byte("running"))
	fmt.Println(token.Revision > 0, err)
	_ = lock.Unlock(ctx)
	_, err = lock.Put(ctx, []byte("jobs/state"), []byte("stale"))
	fmt.Println(errors.Is(err, shardkit.ErrFenced))
	// Output:
	// true <nil>
	// true
}

// A lock for one piece of work, under a lease of its own: nothing of the
// hold outlives Release (or Close), not even the lease.
func ExampleScopedLock() {
	ctx := context.Background()
	coord, err := shardkit.NewEmbeddedCoordinator()
	if err != nil {
		panic(err)
	}
	defer coord.Close()
	lock, err := coord.ScopedLock("nightly-report", 10*time.Second)
	if err != nil {
		panic(err)
	}
	defer lock.Close() // gives up a hold still in place

	token, err := lock.Acquire(ctx) // grants a lease, waits for the lock
	if err != nil {
		panic(err)
	}
	fmt.Println("held:", token.Revision > 0)
	fmt.Println(lock.Release(ctx)) // unlocks and revokes the lease
	_, held := lock.Token()
	fmt.Println("held:", held)

	// The same, with the release done however the work ends.
	err = lock.WithLock(ctx, func(token shardkit.FencingToken) error {
		fmt.Println("working under token", token.Revision > 0)
		return nil
	})
	fmt.Println(err)
	// Output:
	// held: true
	// <nil>
	// held: false
	// working under token true
	// <nil>
}

// A wait bounded by a context: the error matches both the context's error
// and shardkit's kind.
func ExampleLock_Lock_timeout() {
	ctx := context.Background()
	coord, _ := shardkit.NewEmbeddedCoordinator()
	defer coord.Close()
	holder, _ := coord.Session(ctx, 10*time.Second)
	defer holder.Close(ctx)
	waiter, _ := coord.Session(ctx, 10*time.Second)
	defer waiter.Close(ctx)

	held, _ := holder.Lock("jobs")
	defer held.Close()
	if _, err := held.Lock(ctx); err != nil {
		panic(err)
	}
	other, _ := waiter.Lock("jobs")
	defer other.Close()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := other.Lock(short)
	fmt.Println(errors.Is(err, context.DeadlineExceeded), errors.Is(err, shardkit.ErrTimeout))
	// Output: true true
}

// Following an election's leadership while candidates come and go.
func ExampleCoordinator_Observe() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	coord, _ := shardkit.NewEmbeddedCoordinator()
	defer coord.Close()
	sess, _ := coord.Session(ctx, 10*time.Second)
	defer sess.Close(context.Background())

	// nil options: core's follow policy (a store failing for 5 s is
	// reported on the channel, and following goes on).
	leaders, err := coord.Observe(ctx, "primary", nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("leader:", (<-leaders).Leader) // the current state first: none

	e, _ := sess.Election("primary")
	defer e.Close()
	if _, err := e.Campaign(ctx, []byte("node-1")); err != nil {
		panic(err)
	}
	for v := range leaders { // the channel keeps the latest value only
		if v.Err != nil {
			fmt.Println("leadership unknown for now:", v.Err)
			continue
		}
		if v.Leader != nil {
			fmt.Println("leader:", string(v.Leader.Value))
			break
		}
	}
	// Output:
	// leader: <nil>
	// leader: node-1
}

// A resource refusing writes from a holder whose lock has passed on.
func ExampleFenceGate() {
	gate, _ := shardkit.NewFenceGate("jobs")
	defer gate.Close()
	db := []byte("db")
	fmt.Println(gate.Admit(db, 7))
	fmt.Println(gate.Admit(db, 9))
	fmt.Println(errors.Is(gate.Admit(db, 7), shardkit.ErrFenced))
	// Output:
	// <nil>
	// <nil>
	// true
}

// A worker taking its share of a shard group.
func ExampleSession_OwnShards() {
	ctx := context.Background()
	coord, _ := shardkit.NewEmbeddedCoordinator()
	defer coord.Close()
	sess, _ := coord.Session(ctx, 10*time.Second)
	defer sess.Close(ctx)

	owner, events, err := sess.OwnShards(ctx, "indexers", "worker-1", []string{"s0", "s1"})
	if err != nil {
		panic(err)
	}
	gained := 0
	for ev := range events {
		if ev.Gained {
			gained++
		}
		if gained == 2 {
			break
		}
	}
	fmt.Println(len(owner.Owned()))
	_ = owner.Close(ctx)
	for range events { // the Lost events, then the channel closes
	}
	fmt.Println(len(owner.Owned()))
	// Output:
	// 2
	// 0
}
