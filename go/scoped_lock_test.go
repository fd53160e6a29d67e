package shardkit

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// ScopedLock against the embedded store; lease_etcd_test.go runs it across
// two coordinators of a real etcd.

func newScopedLock(t *testing.T, c *Coordinator, name string, ttl time.Duration) *ScopedLock {
	t.Helper()
	l, err := c.ScopedLock(name, ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// leaseGone reports whether lease id was revoked (or expired): resuming
// it is then ErrNotFound. A live lease would be taken over, so the test
// fails loudly then.
func leaseGone(t *testing.T, c *Coordinator, id int64) bool {
	t.Helper()
	s, err := c.Resume(bg(t), id)
	if err == nil {
		s.Close(context.Background())
		return false
	}
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("resuming lease %x: %v", id, err)
	}
	return true
}

func TestScopedLockExcludesWithRisingTokens(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	a := newScopedLock(t, c, "jobs", 5*time.Second)
	b := newScopedLock(t, c, "jobs", 5*time.Second)
	if a.Name() != "jobs" {
		t.Fatalf("Name = %q", a.Name())
	}
	if _, held := a.Token(); held {
		t.Fatal("held before Acquire")
	}
	ta, err := a.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, held := a.Token(); !held || got != ta || ta.Revision == 0 || ta.Lease == 0 {
		t.Fatalf("Token = %+v %v after Acquire gave %+v", got, held, ta)
	}

	// b waits while a holds, and gets the lock when a releases.
	got := make(chan FencingToken, 1)
	go func() {
		tok, err := b.Acquire(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- tok
	}()
	select {
	case <-got:
		t.Fatal("b acquired while a held the lock")
	case <-time.After(100 * time.Millisecond):
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, held := a.Token(); held {
		t.Fatal("held after Release")
	}
	var tb FencingToken
	select {
	case tb = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("b did not get the lock after a released it")
	}
	// Each hold has a lease of its own; tokens rise across holds, and a
	// ScopedLock may be acquired again after a release.
	if tb.Revision <= ta.Revision || tb.Lease == ta.Lease {
		t.Fatalf("b's token %+v after a's %+v", tb, ta)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	ta2, err := a.Acquire(ctx)
	if err != nil || ta2.Revision <= tb.Revision || ta2.Lease == ta.Lease {
		t.Fatalf("a again: %+v %v after %+v", ta2, err, tb)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestScopedLockReleaseRevokesTheLease(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	l := newScopedLock(t, c, "jobs", 30*time.Second)
	tok, err := l.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !leaseGone(t, c, tok.Lease) {
		t.Fatalf("lease %x still live after Release", tok.Lease)
	}
	// A hold whose lease was revoked from outside has ended: Release says
	// so (ErrFenced) and leaves the ScopedLock idle.
	tok, err = l.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, tok.Lease); err != nil {
		t.Fatal(err)
	}
	expectError(t, l.Release(ctx), ErrFenced, "")
	if _, held := l.Token(); held {
		t.Fatal("held after a fenced Release")
	}
	if _, err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestScopedLockDeadlineLeavesNothingBehind(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	a := newScopedLock(t, c, "jobs", 5*time.Second)
	b := newScopedLock(t, c, "jobs", 5*time.Second)
	third := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	if _, err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	for _, end := range []string{"deadline", "cancel"} {
		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		if end == "cancel" {
			wctx, cancel = context.WithCancel(ctx)
			go func() { time.Sleep(100 * time.Millisecond); cancel() }()
		}
		start := time.Now()
		_, err := b.Acquire(wctx)
		took := time.Since(start)
		cancel()
		want, kind := context.DeadlineExceeded, ErrTimeout
		if end == "cancel" {
			want, kind = context.Canceled, ErrCancelled
		}
		if !errors.Is(err, want) || !errors.Is(err, kind) {
			t.Fatalf("%s: %v, want %v and %v", end, err, want, kind)
		}
		if took > 3*time.Second {
			t.Fatalf("%s: the wait took %v", end, took)
		}
		if _, held := b.Token(); held {
			t.Fatalf("%s: held after a failed Acquire", end)
		}
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// b's waits left the queue: another contender gets the lock at once.
	if _, ok, err := third.TryLock(ctx); err != nil || !ok {
		t.Fatalf("TryLock after b's waits ended: %v %v", ok, err)
	}
	if err := third.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// And b is usable again.
	tok, err := b.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !leaseGone(t, c, tok.Lease) {
		t.Fatal("lease live after Release")
	}
}

func TestScopedLockMisuse(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	l := newScopedLock(t, c, "jobs", 5*time.Second)
	expectError(t, l.Release(ctx), ErrInvalidArgument, `"jobs"`)
	if _, err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := l.Acquire(ctx)
	expectError(t, err, ErrInvalidArgument, "already held")
	// The refused Acquire left the hold as it was.
	if _, held := l.Token(); !held {
		t.Fatal("not held after a refused second Acquire")
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	expectError(t, l.Release(ctx), ErrInvalidArgument, "not held")

	for _, ttl := range []time.Duration{0, -time.Second, 500 * time.Millisecond, 1500 * time.Millisecond} {
		_, err := c.ScopedLock("jobs", ttl)
		expectError(t, err, ErrInvalidArgument, "ttl "+ttl.String())
	}
	for _, name := range []string{"", "bad\nname"} {
		_, err := c.ScopedLock(name, time.Second)
		expectError(t, err, ErrInvalidArgument, "")
	}
	// A ctx already done sends nothing.
	done, cancel := context.WithCancel(ctx)
	cancel()
	_, err = l.Acquire(done)
	expectError(t, err, ErrCancelled, "")
	if _, err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	expectError(t, l.Release(done), ErrCancelled, "")
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}

	l.Close()
	l.Close()
	_, err = l.Acquire(ctx)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire after Close: %v", err)
	}
	if err := l.Release(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Release after Close: %v", err)
	}
	if _, held := l.Token(); held {
		t.Fatal("held after Close")
	}
	if err := l.WithLock(ctx, func(FencingToken) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("WithLock after Close: %v", err)
	}
	c.Close()
	if _, err := c.ScopedLock("jobs", time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("ScopedLock on a closed Coordinator: %v", err)
	}
}

// Closing a holder gives the lock up at once (its lease is revoked in the
// background), long before the 30 s TTL.
func TestScopedLockCloseWhileHeldFreesTheLock(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	a, err := c.ScopedLock("jobs", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ta, err := a.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := newScopedLock(t, c, "jobs", 30*time.Second)
	a.Close()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := b.Acquire(wctx); err != nil {
		t.Fatalf("after the holder's Close: %v after %v", err, time.Since(start))
	}
	eventually(t, 5*time.Second, "the closed holder's lease revoked", func() bool { return leaseGone(t, c, ta.Lease) })
}

// Close on one goroutine while others Acquire, Release and read the token:
// every call completes or returns ErrClosed, and an Acquire that Close
// interrupted leaves nothing behind (run under -race and cgocheck2).
func TestScopedLockCloseWithAcquireInFlight(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	holder := newScopedLock(t, c, "jobs", 5*time.Second)
	if _, err := holder.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	waiter, err := c.ScopedLock("jobs", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Acquire(ctx)
		done <- err
	}()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, held := waiter.Token(); held {
					t.Error("the waiter holds the lock")
				}
				if err := waiter.Release(ctx); errors.Is(err, ErrClosed) {
					return
				} else if !errors.Is(err, ErrInvalidArgument) {
					t.Errorf("Release while not held: %v", err)
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	waiter.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Acquire interrupted by Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt the Acquire")
	}
	wg.Wait()
	if err := holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	other := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	if _, ok, err := other.TryLock(ctx); err != nil || !ok {
		t.Fatalf("TryLock after the interrupted waiter: %v %v", ok, err)
	}
}

func TestScopedLockWithLock(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	l := newScopedLock(t, c, "jobs", 5*time.Second)
	other := newScopedLock(t, c, "jobs", 5*time.Second)
	var seen FencingToken
	err := l.WithLock(ctx, func(tok FencingToken) error {
		seen = tok
		if got, held := l.Token(); !held || got != tok {
			t.Errorf("inside WithLock: Token %+v %v, fn got %+v", got, held, tok)
		}
		return nil
	})
	if err != nil || seen.Revision == 0 {
		t.Fatalf("WithLock: %v (token %+v)", err, seen)
	}
	if !leaseGone(t, c, seen.Lease) {
		t.Fatal("lease live after WithLock")
	}
	boom := errors.New("boom")
	if err := l.WithLock(ctx, func(FencingToken) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn's error: %v", err)
	}
	// The hold ended under fn (its lease revoked): fn's success does not
	// hide that, ErrFenced comes back.
	err = l.WithLock(ctx, func(tok FencingToken) error { return c.Revoke(ctx, tok.Lease) })
	expectError(t, err, ErrFenced, "")
	// A panic in fn releases too; a ctx that ends inside fn does not stop
	// the release.
	func() {
		defer func() { _ = recover() }()
		_ = l.WithLock(ctx, func(FencingToken) error { panic("in fn") })
	}()
	wctx, cancel := context.WithCancel(ctx)
	if err := l.WithLock(wctx, func(FencingToken) error { cancel(); return nil }); err != nil {
		t.Fatalf("ctx ended inside fn: %v", err)
	}
	if _, ok := l.Token(); ok {
		t.Fatal("held after WithLock returned")
	}
	if _, err := other.Acquire(within(t, time.Second)); err != nil {
		t.Fatalf("the lock was not handed on: %v", err)
	}
}

// A held ScopedLock dropped without Close is given up by its finalizer.
func TestScopedLockFinalizerGivesUpAHold(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	func() {
		l, err := c.ScopedLock("forgotten", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	other := newScopedLock(t, c, "forgotten", 30*time.Second)
	eventually(t, 10*time.Second, "the forgotten hold given up", func() bool {
		runtime.GC()
		_, err := other.Acquire(within(t, 50*time.Millisecond))
		return err == nil
	})
}
