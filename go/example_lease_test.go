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

	leaders, err := coord.Observe(ctx, "primary")
	if err != nil {
		panic(err)
	}
	fmt.Println("leader:", <-leaders) // the current state first: none

	e, _ := sess.Election("primary")
	defer e.Close()
	if _, err := e.Campaign(ctx, []byte("node-1")); err != nil {
		panic(err)
	}
	for l := range leaders { // the channel keeps the latest state only
		if l != nil {
			fmt.Println("leader:", string(l.Value))
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
