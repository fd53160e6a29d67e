package shardkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of the lease API against the embedded store (an in-process store
// with etcd's semantics); lease_etcd_test.go runs the cross-coordinator
// part against a real etcd. Every wait is bounded.

func newEmbedded(t *testing.T) *Coordinator {
	t.Helper()
	c, err := NewEmbeddedCoordinator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newSession(t *testing.T, c *Coordinator, ttl time.Duration, opts ...SessionOption) *Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.Session(ctx, ttl, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func newLock(t *testing.T, s *Session, name string) *Lock {
	t.Helper()
	l, err := s.Lock(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func bg(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 10 ms for at most d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantKind(t *testing.T, err error, sentinel error, needle string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v (%T): want %v", err, err, sentinel)
	}
	if needle != "" && !strings.Contains(err.Error(), needle) {
		t.Fatalf("error %q does not mention %q", err, needle)
	}
}

func TestLockUnlockGivesRisingTokens(t *testing.T) {
	c := newEmbedded(t)
	s := newSession(t, c, 5*time.Second)
	l := newLock(t, s, "jobs")
	ctx := bg(t)
	var last int64
	for i := 0; i < 3; i++ {
		tok, err := l.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tok.Revision <= last || tok.Lease != s.LeaseID() {
			t.Fatalf("round %d: token %+v after revision %d, lease %x", i, tok, last, s.LeaseID())
		}
		last = tok.Revision
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if l.Name() != "jobs" || s.LeaseID() == 0 {
		t.Fatalf("name %q lease %d", l.Name(), s.LeaseID())
	}
	// Lock twice through one handle is refused; Unlock when not held too.
	if _, err := l.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := l.Lock(ctx)
	wantKind(t, err, ErrInvalidArgument, "")
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wantKind(t, l.Unlock(ctx), ErrInvalidArgument, "")
}

func TestLockContentionBetweenGoroutines(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	const workers, rounds = 4, 5
	var inside atomic.Int32
	var mu sync.Mutex
	var tokens []int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		// Half share one session: each Lock handle is its own waiter.
		s := newSession(t, c, 5*time.Second)
		l := newLock(t, s, "counter")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				tok, err := l.Lock(ctx)
				if err != nil {
					errs <- err
					return
				}
				if n := inside.Add(1); n != 1 {
					errs <- fmt.Errorf("%d holders at once", n)
				}
				mu.Lock()
				tokens = append(tokens, tok.Revision)
				mu.Unlock()
				time.Sleep(time.Millisecond)
				inside.Add(-1)
				if err := l.Unlock(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(tokens) != workers*rounds {
		t.Fatalf("%d holds, want %d", len(tokens), workers*rounds)
	}
	// Holds were serial, so tokens rose in the order they were taken.
	if !sort.SliceIsSorted(tokens, func(i, j int) bool { return tokens[i] < tokens[j] }) {
		t.Fatalf("tokens not rising: %v", tokens)
	}
}

func TestLockDeadlineMatchesBothAndLeavesNoWaiter(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	a := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	b := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	third := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	if _, err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Lock(short)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v: want DeadlineExceeded and ErrTimeout", err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, ErrCancelled) {
		t.Fatalf("error %v also matches a cancellation", err)
	}
	var ce *ContextError
	var se *Error
	if !errors.As(err, &ce) || !errors.As(err, &se) || se.Kind != KindTimeout {
		t.Fatalf("error %v: want a *ContextError holding a KindTimeout *Error", err)
	}
	if took < 150*time.Millisecond || took > 3*time.Second {
		t.Fatalf("the wait took %v for a 200ms deadline", took)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// b's waiter left the queue: the next TryLock gets the lock at once.
	tok, ok, err := third.TryLock(ctx)
	if err != nil || !ok || tok.Revision == 0 {
		t.Fatalf("third TryLock: %+v %v %v", tok, ok, err)
	}
	// And a TryLock while held says no, without an error.
	if _, ok, err := a.TryLock(ctx); err != nil || ok {
		t.Fatalf("TryLock while held: %v %v", ok, err)
	}
}

func TestLockCancelFromAnotherGoroutine(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	a := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	b := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	third := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	if _, err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := b.Lock(wctx)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("cancel did not end the wait")
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("cancel took %v", took)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrCancelled) {
		t.Fatalf("error %v: want Canceled and ErrCancelled", err)
	}
	if errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v also matches ErrTimeout", err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := third.TryLock(ctx); err != nil || !ok {
		t.Fatalf("third TryLock after release: %v %v", ok, err)
	}
	// A context that is already done fails before trying.
	_, err = b.Lock(wctx)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrCancelled) {
		t.Fatalf("done ctx: %v", err)
	}
}

func TestLockCloseInterruptsWait(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	a := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	b := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	if _, err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.Lock(ctx)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("error %v: want ErrClosed", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not end the wait")
	}
	if _, err := b.Lock(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lock after Close: %v", err)
	}
}

func TestGuardedPutAndFencing(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	a := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	b := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	_, err := a.Put(ctx, []byte("jobs/state"), []byte("never held"))
	wantKind(t, err, ErrFenced, "")
	ta, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := a.Put(ctx, []byte("jobs/state"), []byte("a"))
	if err != nil || rev <= ta.Revision {
		t.Fatalf("put: revision %d (token %d), %v", rev, ta.Revision, err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = a.Put(ctx, []byte("jobs/state"), []byte("stale"))
	wantKind(t, err, ErrFenced, "")
	tb, err := b.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := NewFenceGate(""); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty fence gate name: %v", err)
	}
	g, err := NewFenceGate("jobs")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	db := []byte("db")
	if err := g.Admit(db, ta.Revision); err != nil {
		t.Fatal(err)
	}
	if err := g.Admit(db, tb.Revision); err != nil {
		t.Fatal(err)
	}
	wantKind(t, g.Admit(db, ta.Revision), ErrFenced, "")
	if got := g.Newest(db); got != tb.Revision {
		t.Fatalf("newest %d, want %d", got, tb.Revision)
	}
	if got := g.Newest([]byte("other")); got != 0 {
		t.Fatalf("newest of an unseen resource: %d", got)
	}
	wantKind(t, g.Admit(db, 0), ErrInvalidArgument, "")
	wantKind(t, g.Admit(db, -4), ErrInvalidArgument, "")
	g.Close()
	g.Close()
	if err := g.Admit(db, tb.Revision+1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Admit after Close: %v", err)
	}
}

func TestSessionLostAfterRevoke(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	s := newSession(t, c, 2*time.Second)
	l := newLock(t, s, "jobs")
	if _, err := l.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Err() != nil || s.Remaining() <= 0 || s.Check() != nil {
		t.Fatalf("live session: err %v remaining %v check %v", s.Err(), s.Remaining(), s.Check())
	}
	select {
	case <-s.Lost():
		t.Fatal("Lost closed while live")
	default:
	}
	if err := c.Revoke(ctx, s.LeaseID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Lost not closed within 5s of the revoke")
	}
	lease := fmt.Sprintf("%x", s.LeaseID())
	wantKind(t, s.Err(), ErrSessionLost, lease)
	wantKind(t, s.Check(), ErrSessionLost, lease)
	if s.Remaining() != 0 {
		t.Fatalf("remaining %v after loss", s.Remaining())
	}
	// What the C ABI gives: the guarded write sees the lost session first,
	// the release sees the hold is gone.
	_, err := l.Put(ctx, []byte("k"), []byte("v"))
	wantKind(t, err, ErrSessionLost, "")
	wantKind(t, l.Unlock(ctx), ErrFenced, "")
	// Closing a lost session keeps the loss as the reason.
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wantKind(t, s.Err(), ErrSessionLost, lease)
	// Resuming the revoked lease fails.
	_, err = c.Resume(ctx, s.LeaseID())
	wantKind(t, err, ErrNotFound, "")
}

func TestSessionCloseReleasesAndClosesLost(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	s := newSession(t, c, 5*time.Second)
	other := newLock(t, newSession(t, c, 5*time.Second), "jobs")
	l := newLock(t, s, "jobs")
	if _, err := l.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	// Resume shares the live lease.
	r, err := c.Resume(ctx, s.LeaseID())
	if err != nil || r.LeaseID() != s.LeaseID() {
		t.Fatalf("resume: %v", err)
	}
	// Close s first: closing r first would revoke the shared lease, and s
	// could then rightly report it lost (not closed) before its own Close.
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r.Close(context.Background())
	select {
	case <-s.Lost():
	default:
		t.Fatal("Lost not closed by Close")
	}
	if !errors.Is(s.Err(), ErrClosed) {
		t.Fatalf("Err after Close: %v", s.Err())
	}
	if _, ok, err := other.TryLock(ctx); err != nil || !ok {
		t.Fatalf("the lock was not released by Close: %v %v", ok, err)
	}
	// Twice is fine; the session's methods then say closed.
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock("x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lock after Close: %v", err)
	}
	if s.Remaining() != 0 || !errors.Is(s.Check(), ErrClosed) {
		t.Fatal("closed session still reports time left")
	}
	// The Lock handle outlives its session and reports the loss.
	_, err = l.Put(ctx, []byte("k"), []byte("v"))
	wantKind(t, err, ErrSessionLost, "")
}

func TestElectionAndObserve(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	e1, err := newSession(t, c, 5*time.Second).Election("primary")
	if err != nil {
		t.Fatal(err)
	}
	defer e1.Close()
	e2, err := newSession(t, c, 5*time.Second).Election("primary")
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()

	octx, stop := context.WithCancel(ctx)
	ch, err := c.Observe(octx, "primary", nil)
	if err != nil {
		t.Fatal(err)
	}
	// next waits for the observed state to satisfy want, skipping others
	// (the channel keeps the latest state only).
	next := func(what string, want func(*Leader) bool) *Leader {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case v, ok := <-ch:
				if !ok {
					t.Fatalf("channel closed waiting for %s", what)
				}
				if v.Err != nil {
					t.Fatalf("the embedded store failed waiting for %s: %v", what, v.Err)
				}
				if want(v.Leader) {
					return v.Leader
				}
			case <-timeout:
				t.Fatalf("observer did not see %s", what)
			}
		}
	}
	isNil := func(l *Leader) bool { return l == nil }
	valued := func(v string) func(*Leader) bool {
		return func(l *Leader) bool { return l != nil && string(l.Value) == v }
	}
	next("no leader", isNil)
	if l, err := c.Leader(ctx, "primary"); l != nil || err != nil {
		t.Fatalf("leader before any campaign: %v %v", l, err)
	}

	t1, err := e1.Campaign(ctx, []byte("alpha"))
	if err != nil {
		t.Fatal(err)
	}
	if got := next("alpha", valued("alpha")); got.Token.Revision != t1.Revision || got.Token != t1 {
		t.Fatalf("observed token %+v, campaign's %+v", got.Token, t1)
	}
	if err := e1.Proclaim(ctx, []byte("alpha2")); err != nil {
		t.Fatal(err)
	}
	next("alpha2", valued("alpha2"))
	l, err := e2.Leader(ctx)
	if err != nil || l == nil || string(l.Value) != "alpha2" || l.Token != t1 {
		t.Fatalf("leader: %+v %v (token %+v)", l, err, t1)
	}
	// Only the leader proclaims.
	wantKind(t, e2.Proclaim(ctx, []byte("no")), ErrFenced, "")
	wantKind(t, e2.Resign(ctx), ErrInvalidArgument, "")

	won := make(chan FencingToken, 1)
	go func() {
		tok, err := e2.Campaign(ctx, []byte("beta"))
		if err != nil {
			t.Error(err)
		}
		won <- tok
	}()
	time.Sleep(50 * time.Millisecond)
	if err := e1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	next("beta", valued("beta"))
	select {
	case tok := <-won:
		if tok.Revision <= t1.Revision {
			t.Fatalf("second leadership token %d not above %d", tok.Revision, t1.Revision)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("e2's campaign did not return")
	}
	if err := e2.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	next("no leader after resign", isNil)

	// A campaign ends with its context, as a lock wait does.
	if _, err := e1.Campaign(ctx, []byte("again")); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = e2.Campaign(short, []byte("late"))
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("campaign past deadline: %v", err)
	}

	stop()
	eventually(t, 3*time.Second, "observer channel closed", func() bool {
		select {
		case _, ok := <-ch:
			return !ok
		default:
			return false
		}
	})
}

// worker is one ShardOwner in the shard tests, with what its handler saw.
type worker struct {
	name  string
	owner *ShardOwner
	mu    sync.Mutex
	held  map[string]int64
}

func TestShardOwnersShareShardsExactlyOnce(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	shards := make([]string, 12)
	for i := range shards {
		shards[i] = fmt.Sprintf("s%02d", i)
	}
	// holder is set by the handlers: a shard's Lost must be handled before
	// another worker hears Gained for it, except from a worker that is
	// closing (Close hands shards on without waiting for its handler).
	var hmu sync.Mutex
	holder := map[string]string{}
	closing := map[string]bool{}
	var violations []string // under hmu
	report := func(format string, args ...any) { violations = append(violations, fmt.Sprintf(format, args...)) }

	start := func(name string) *worker {
		w := &worker{name: name, held: map[string]int64{}}
		s := newSession(t, c, 5*time.Second)
		o, err := s.OwnShardsFunc(ctx, "grp", name, shards, func(ev OwnershipEvent) {
			hmu.Lock()
			if ev.Gained {
				if h := holder[ev.Shard]; h != "" && !closing[h] {
					report("%s gained %s still held by %s", name, ev.Shard, h)
				}
				holder[ev.Shard] = name
			} else if holder[ev.Shard] == name {
				delete(holder, ev.Shard)
			}
			if ev.Gained && ev.Token <= 0 {
				report("%s gained %s with token %d", name, ev.Shard, ev.Token)
			}
			hmu.Unlock()
			w.mu.Lock()
			if ev.Gained {
				w.held[ev.Shard] = ev.Token
			} else {
				delete(w.held, ev.Shard)
			}
			w.mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		w.owner = o
		t.Cleanup(func() { o.Close(context.Background()) })
		return w
	}
	count := func(w *worker) int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.held)
	}
	settled := func(ws ...*worker) bool {
		n := 0
		seen := map[string]bool{}
		for _, w := range ws {
			owned := w.owner.Owned()
			w.mu.Lock()
			same := len(owned) == len(w.held)
			for sh, tok := range owned {
				same = same && w.held[sh] == tok
			}
			w.mu.Unlock()
			if !same {
				return false
			}
			for sh := range owned {
				if seen[sh] {
					return false
				}
				seen[sh] = true
			}
			n += len(owned)
		}
		return n == len(shards)
	}

	w1 := start("w1")
	eventually(t, 5*time.Second, "w1 owns every shard", func() bool { return settled(w1) })
	w2 := start("w2")
	w3 := start("w3")
	eventually(t, 5*time.Second, "three workers share the shards", func() bool {
		return settled(w1, w2, w3) && count(w1) > 0 && count(w2) > 0 && count(w3) > 0
	})
	hmu.Lock()
	closing["w1"] = true
	hmu.Unlock()
	if err := w1.owner.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w1.owner.Owned(); len(got) != 0 {
		t.Fatalf("closed owner still owns %v", got)
	}
	select {
	case <-w1.owner.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after Close")
	}
	if count(w1) != 0 {
		t.Fatalf("w1 was not told it lost its shards: %v", w1.held)
	}
	eventually(t, 5*time.Second, "w2 and w3 take w1's shards", func() bool { return settled(w2, w3) })
	hmu.Lock()
	for _, v := range violations {
		t.Error(v)
	}
	// The cleanups close w2 and w3, which hands shards on without waiting.
	closing["w2"], closing["w3"] = true, true
	hmu.Unlock()
	if err := w1.owner.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestShardOwnerChannel(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	s := newSession(t, c, 5*time.Second)
	shards := []string{"a", "b", "c"}
	o, events, err := s.OwnShards(ctx, "chan", "only", shards)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for len(got) < len(shards) {
		select {
		case ev := <-events:
			if !ev.Gained {
				t.Fatalf("unexpected %+v", ev)
			}
			got[ev.Shard] = ev.Token
		case <-time.After(5 * time.Second):
			t.Fatalf("gained only %v", got)
		}
	}
	if owned := o.Owned(); len(owned) != 3 || owned["a"] != got["a"] {
		t.Fatalf("Owned %v, events %v", owned, got)
	}
	if o.Group() != "chan" || o.Worker() != "only" {
		t.Fatal("names")
	}
	// Close does not wait for the consumer; the Lost events then arrive
	// and the channel closes.
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
	lost := map[string]bool{}
	timeout := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case ev, ok := <-events:
			if !ok {
				open = false
				break
			}
			if ev.Gained || ev.Token != 0 {
				t.Fatalf("after Close: %+v", ev)
			}
			lost[ev.Shard] = true
		case <-timeout:
			t.Fatal("channel not closed after Close")
		}
	}
	if len(lost) != 3 {
		t.Fatalf("lost %v", lost)
	}
	select {
	case <-o.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed with the channel")
	}
}

// A Lost event while the owner is open waits for the consumer: the shard
// goes to the new worker only once the old one's consumer took the event.
func TestShardLostWaitsForConsumer(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	s1 := newSession(t, c, 5*time.Second)
	o1, ev1, err := s1.OwnShards(ctx, "slow", "w1", []string{"x", "y", "z", "q"})
	if err != nil {
		t.Fatal(err)
	}
	defer o1.Close(context.Background())
	for n := 0; n < 4; n++ {
		select {
		case <-ev1:
		case <-time.After(5 * time.Second):
			t.Fatal("w1 did not gain its shards")
		}
	}
	// w2 joins while nobody reads ev1: w1's shards for w2 stay held.
	s2 := newSession(t, c, 5*time.Second)
	o2, ev2, err := s2.OwnShards(ctx, "slow", "w2", []string{"x", "y", "z", "q"})
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close(context.Background())
	go func() {
		for range ev2 {
		}
	}()
	time.Sleep(500 * time.Millisecond)
	if n := len(o2.Owned()); n != 0 {
		// With rendezvous over two workers, w2 is due some of the four
		// shards (all four staying on w1 would be 1 in 16); none may move
		// while w1's consumer has not taken the Lost event.
		t.Fatalf("w2 owns %d shards before w1's consumer heard it lost them", n)
	}
	// Read w1's events now: its Lost events go through, and w2 gains.
	lost := 0
	deadline := time.Now().Add(10 * time.Second)
	for lost == 0 || len(o2.Owned()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("w2 did not gain within 10s of w1's consumer reading: w1 lost %d, owns %v; w2 owns %v",
				lost, o1.Owned(), o2.Owned())
		}
		select {
		case ev := <-ev1:
			if !ev.Gained {
				lost++
			}
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestLeaseBadInput(t *testing.T) {
	c := newEmbedded(t)
	ctx := bg(t)
	for _, ttl := range []time.Duration{0, -time.Second, 500 * time.Millisecond, 1500 * time.Millisecond} {
		_, err := c.Session(ctx, ttl)
		wantKind(t, err, ErrInvalidArgument, "ttl "+ttl.String())
	}
	_, err := c.Session(ctx, time.Second, WithLossMargin(-time.Second))
	wantKind(t, err, ErrInvalidArgument, "margin")
	s := newSession(t, c, 5*time.Second)
	_, err = s.Lock("")
	wantKind(t, err, ErrInvalidArgument, "")
	_, err = s.Lock("bad\nname")
	wantKind(t, err, ErrInvalidArgument, "")
	_, err = s.Election("")
	wantKind(t, err, ErrInvalidArgument, "")
	_, _, err = s.OwnShards(ctx, "g", "w", nil)
	wantKind(t, err, ErrInvalidArgument, "")
	_, _, err = s.OwnShards(ctx, "g", "a/b", []string{"x"})
	wantKind(t, err, ErrInvalidArgument, "a/b")
	_, _, err = s.OwnShards(ctx, "g", "w", []string{"x", "x"})
	wantKind(t, err, ErrDuplicateNode, `"x"`)
	_, err = s.OwnShardsFunc(ctx, "g", "w", []string{"x"}, nil)
	wantKind(t, err, ErrInvalidArgument, "nil")
	_, err = c.Observe(ctx, "", nil)
	wantKind(t, err, ErrInvalidArgument, "")
	_, err = c.Observe(ctx, "e", &ObserveOptions{ReportAfter: -time.Second})
	wantKind(t, err, ErrInvalidArgument, "ReportAfter -1s")
	// The engine checks the policy itself: a first pause above the longest.
	_, err = c.Observe(ctx, "e", &ObserveOptions{RetryMin: 2 * time.Second, RetryMax: time.Second})
	wantKind(t, err, ErrInvalidArgument, "retry_min (2000 ms)")
	_, err = c.Observe(ctx, "e", &ObserveOptions{RetryMin: 2 * time.Second})
	wantKind(t, err, ErrInvalidArgument, "retry_max (1000 ms)")
	_, err = c.Leader(ctx, "")
	wantKind(t, err, ErrInvalidArgument, "")

	for _, ep := range []string{"https://127.0.0.1:2379", "", "127.0.0.1:notaport"} {
		_, err := Connect(ctx, ep)
		wantKind(t, err, ErrInvalidArgument, "")
	}
}

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestConnectUnreachableReturnsWithinDeadline(t *testing.T) {
	ep := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := Connect(ctx, ep)
	took := time.Since(start)
	if err == nil {
		c.Close()
		t.Fatalf("connected to %s, where nothing listens", ep)
	}
	if took > 1500*time.Millisecond {
		t.Fatalf("Connect took %v with a 500ms deadline", took)
	}
	if !errors.Is(err, ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v: want ErrUnavailable or DeadlineExceeded", err)
	}
	// A cancel returns at once too.
	cctx, ccancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); ccancel() }()
	start = time.Now()
	if c, err := Connect(cctx, ep); err == nil {
		c.Close()
		t.Fatal("connected")
	} else if took := time.Since(start); took > time.Second {
		t.Fatalf("cancelled Connect took %v (%v)", took, err)
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	c, err := NewEmbeddedCoordinator()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.String(), "embedded") {
		t.Fatalf("String: %q", c.String())
	}
	ctx := bg(t)
	s, err := c.Session(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := s.Lock("l")
	e, _ := s.Election("e")
	o, _, err := s.OwnShards(ctx, "g", "w", []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Campaign(ctx, []byte("v")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := o.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	checks := map[string]error{}
	_, checks["Lock.Lock"] = l.Lock(ctx)
	_, _, checks["Lock.TryLock"] = l.TryLock(ctx)
	checks["Lock.Unlock"] = l.Unlock(ctx)
	_, checks["Lock.Put"] = l.Put(ctx, nil, nil)
	_, checks["Election.Campaign"] = e.Campaign(ctx, nil)
	checks["Election.Proclaim"] = e.Proclaim(ctx, nil)
	checks["Election.Resign"] = e.Resign(ctx)
	_, checks["Election.Leader"] = e.Leader(ctx)
	_, checks["Session.Election"] = s.Election("x")
	_, _, checks["Session.OwnShards"] = s.OwnShards(ctx, "g", "w2", []string{"x"})
	_, checks["Coordinator.Session"] = c.Session(ctx, time.Second)
	_, checks["Coordinator.Resume"] = c.Resume(ctx, 1)
	_, checks["Coordinator.Leader"] = c.Leader(ctx, "e")
	_, checks["Coordinator.Observe"] = c.Observe(ctx, "e", nil)
	checks["Coordinator.Revoke"] = c.Revoke(ctx, 1)
	for what, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	if len(o.Owned()) != 0 {
		t.Error("closed owner owns shards")
	}
	// nil receivers of Close are fine too.
	var nl *Lock
	var nc *Coordinator
	nl.Close()
	nc.Close()
}

// Objects dropped without Close are freed by their finalizers; this runs
// them (under -race, with callbacks registered) to check nothing crashes.
func TestFinalizersFreeForgottenObjects(t *testing.T) {
	ctx := bg(t)
	func() {
		c, err := NewEmbeddedCoordinator()
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.Session(ctx, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := s.Lock("forgotten")
		if _, err := l.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.OwnShardsFunc(ctx, "g", "w", []string{"x"}, func(OwnershipEvent) {}); err != nil {
			t.Fatal(err)
		}
		g, _ := NewFenceGate("forgotten")
		_ = g
	}()
	for i := 0; i < 3; i++ {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
}

// Every callback handle is deleted once its C object is freed: sessions,
// observers (when their ctx ends) and shard owners.
func TestCallbackHandlesAreReleased(t *testing.T) {
	before := liveCallbackHandles.Load()
	c, err := NewEmbeddedCoordinator()
	if err != nil {
		t.Fatal(err)
	}
	ctx := bg(t)
	s, err := c.Session(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	octx, stop := context.WithCancel(ctx)
	ch, err := c.Observe(octx, "e", nil)
	if err != nil {
		t.Fatal(err)
	}
	o, events, err := s.OwnShards(ctx, "g", "w", []string{"x", "y"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range events {
		}
	}()
	// A failed start releases its handle at once: the worker name is live
	// under another lease.
	s2, err := c.Session(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s2.OwnShards(ctx, "g", "w", []string{"x", "y"}); !errors.Is(err, ErrDuplicateNode) {
		t.Fatalf("same worker under two leases: %v", err)
	}
	if n := liveCallbackHandles.Load() - before; n != 4 {
		t.Fatalf("%d live handles, want 4", n)
	}
	s2.Close(ctx)
	stop()
	for range ch {
	}
	o.Close(ctx)
	s.Close(ctx)
	c.Close()
	eventually(t, 3*time.Second, "handles deleted", func() bool { return liveCallbackHandles.Load() == before })
}
