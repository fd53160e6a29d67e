package shardkit

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Readers hammer the current snapshot while a writer keeps replacing it and
// closing the old one. Under -race this checks the Go side's bookkeeping; the
// assertions check that no reader ever sees a wrong answer or a crash, and
// that each lookup is answered by one consistent snapshot.
func TestLiveReadersWhileWriterSwaps(t *testing.T) {
	base := nodeSet(16, true)
	s, err := New(base, &Config{Algorithm: "ketama:twemproxy"})
	if err != nil {
		t.Fatal(err)
	}
	live := NewLive(s)
	defer live.Close()

	valid := map[string]bool{"extra": true}
	for _, n := range base {
		valid[n.Name] = true
	}
	ks := keys(64)
	var stop atomic.Bool
	var lookups atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				k := ks[(i+r)%len(ks)]
				var names []string
				var err error
				switch i % 4 {
				case 0:
					var n string
					n, err = live.Lookup(k)
					names = []string{n}
				case 1:
					var n string
					n, err = live.LookupString(string(k))
					names = []string{n}
				case 2:
					names, err = live.LookupN(k, 3)
				case 3:
					names, err = live.LookupBatch(ks[:8])
				}
				if err != nil {
					errs <- fmt.Errorf("reader %d: %w", r, err)
					return
				}
				for _, n := range names {
					if !valid[n] {
						errs <- fmt.Errorf("reader %d: unknown node %q", r, n)
						return
					}
				}
				lookups.Add(1)
			}
		}(r)
	}
	swaps := 0
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) || swaps < 50 {
		var err error
		if swaps%2 == 0 {
			err = live.Update(func(cur *Sharder) (*Sharder, error) {
				return cur.Add(Node{Name: "extra", Weight: 2})
			})
		} else {
			err = live.Update(func(cur *Sharder) (*Sharder, error) {
				return cur.Remove("extra")
			})
		}
		if err != nil {
			t.Fatalf("swap %d: %v", swaps, err)
		}
		swaps++
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if lookups.Load() < 1000 {
		t.Fatalf("only %d lookups ran beside %d swaps", lookups.Load(), swaps)
	}
	t.Logf("%d lookups beside %d snapshot swaps", lookups.Load(), swaps)
}

// The same pattern without Live: an atomic pointer, and a writer that closes
// each replaced snapshot at once. Readers may hold a snapshot that gets
// closed under them: they must get ErrClosed (never a crash, never a wrong
// node) and find a fresh snapshot on retry.
func TestClosingSnapshotsUnderReaders(t *testing.T) {
	var cur atomic.Pointer[Sharder]
	first, err := New(nodeSet(8, false), &Config{Algorithm: "jump"})
	if err != nil {
		t.Fatal(err)
	}
	cur.Store(first)
	baseline := liveHandles.Load()

	var stop atomic.Bool
	var closedSeen, ok atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			key := []byte(fmt.Sprintf("reader-%d", r))
			for !stop.Load() {
				s := cur.Load()
				name, err := s.Lookup(key)
				switch {
				case errors.Is(err, ErrClosed):
					closedSeen.Add(1)
				case err != nil:
					errs <- err
					return
				case !strings.HasPrefix(name, "node-"):
					errs <- fmt.Errorf("unknown node %q", name)
					return
				default:
					ok.Add(1)
				}
				if _, err := s.LookupBatch([][]byte{key, key}); err != nil && !errors.Is(err, ErrClosed) {
					errs <- err
					return
				}
			}
		}(r)
	}
	swaps := 0
	deadline := time.Now().Add(time.Second)
	for ; time.Now().Before(deadline) || swaps < 300; swaps++ {
		old := cur.Load()
		next, err := old.Clone()
		if err != nil {
			t.Fatal(err)
		}
		cur.Store(next)
		old.Close()
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	cur.Load().Close()
	if got := liveHandles.Load(); got != baseline-1 {
		t.Fatalf("%d C handles outstanding after closing all, want %d", got, baseline-1)
	}
	if ok.Load() < 1000 {
		t.Fatalf("only %d lookups ran beside %d swaps", ok.Load(), swaps)
	}
	t.Logf("%d lookups ok, %d saw a snapshot closed under them, %d swaps", ok.Load(), closedSeen.Load(), swaps)
}

// Closing a Sharder while calls are in flight on it: the calls finish or
// report ErrClosed, and once Close has returned every later call reports
// ErrClosed; the C handle is freed exactly once.
func TestCloseDuringCalls(t *testing.T) {
	for round := 0; round < 20; round++ {
		baseline := liveHandles.Load()
		s, err := New(nodeSet(50, true), &Config{Algorithm: "maglev"})
		if err != nil {
			t.Fatal(err)
		}
		var closed atomic.Bool
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for r := 0; r < 6; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 2000; i++ {
					wasClosed := closed.Load()
					_, err := s.LookupString("key")
					if err != nil && !errors.Is(err, ErrClosed) {
						errs <- err
						return
					}
					if wasClosed && err == nil {
						errs <- errors.New("a lookup succeeded after Close returned")
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(round*50) * time.Microsecond)
		s.Close()
		closed.Store(true)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := liveHandles.Load(); got != baseline {
			t.Fatalf("round %d: %d C handles outstanding, want %d", round, got, baseline)
		}
	}
}

// The engine keeps the last error per OS thread. Many goroutines failing at
// once, each with its own bad value, must each get their own message.
func TestErrorMessagesStayWithTheirCall(t *testing.T) {
	s := mustNew(t, nodeSet(4, false), &Config{Algorithm: "jump"})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				name := fmt.Sprintf("missing-%d-%d", g, i)
				_, err := s.Remove(name)
				if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"`+name+`"`) {
					errs <- fmt.Errorf("Remove(%q): %v", name, err)
					return
				}
				w := int64(-(g*1000 + i + 1))
				_, err = New([]Node{{"a", w}}, nil)
				if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), fmt.Sprint(w)) {
					errs <- fmt.Errorf("New(weight %d): %v", w, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A Sharder that is never closed is freed by its finalizer.
func TestFinalizerFreesForgottenSharders(t *testing.T) {
	baseline := liveHandles.Load()
	func() {
		for i := 0; i < 50; i++ {
			s, err := New(nodeSet(3, true), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.LookupString("k"); err != nil {
				t.Fatal(err)
			}
		}
	}()
	for i := 0; i < 50 && liveHandles.Load() > baseline; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	// Other tests' forgotten sharders may be finalized meanwhile, so only an
	// excess counts.
	if got := liveHandles.Load(); got > baseline {
		t.Fatalf("%d of 50 forgotten sharders still hold C memory", got-baseline)
	}
}

func TestLive(t *testing.T) {
	s, err := New([]Node{{"a", 1}, {"b", 1}}, &Config{Algorithm: "rendezvous"})
	if err != nil {
		t.Fatal(err)
	}
	live := NewLive(s)
	snap, err := live.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()

	// A failed update changes nothing.
	err = live.Update(func(cur *Sharder) (*Sharder, error) { return cur.Add(Node{"a", 1}) })
	expectError(t, err, ErrDuplicateNode, `"a"`)
	if n, _ := live.Lookup([]byte("k")); n == "" {
		t.Fatal("lookup failed after a failed update")
	}

	if err := live.Update(func(cur *Sharder) (*Sharder, error) { return cur.Remove("a") }); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys(100) {
		if n, _ := live.Lookup(k); n != "b" {
			t.Fatalf("%q on %q after removing a", k, n)
		}
	}
	// The snapshot taken earlier still sees both nodes and stays usable.
	if snap.Len() != 2 {
		t.Fatalf("snapshot Len %d", snap.Len())
	}
	if s.Len() != 0 {
		t.Fatal("Live did not close the snapshot it replaced")
	}

	only, _ := New([]Node{{"c", 1}}, nil)
	if err := live.Store(only); err != nil {
		t.Fatal(err)
	}
	if n, _ := live.LookupString("k"); n != "c" {
		t.Fatalf("after Store: %q", n)
	}
	expectError(t, live.Store(nil), ErrNullPointer, "nil")

	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := live.Lookup([]byte("k")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lookup on a closed Live: %v", err)
	}
	late, _ := New([]Node{{"d", 1}}, nil)
	if err := live.Store(late); !errors.Is(err, ErrClosed) {
		t.Fatalf("Store on a closed Live: %v", err)
	}
	if late.Len() != 0 {
		t.Fatal("Store on a closed Live did not close what it was given")
	}
	if err := live.Update(func(cur *Sharder) (*Sharder, error) { return cur, nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Update on a closed Live: %v", err)
	}
}
