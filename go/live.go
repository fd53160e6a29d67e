package shardkit

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Live is the current snapshot of a changing node set. Readers go through it
// without locks; writers replace the snapshot whole, and Live closes the one
// it replaces. A reader that raced with a replacement and found its snapshot
// closed retries on the new one, so readers never see ErrClosed until the
// Live itself is closed.
type Live struct {
	cur atomic.Pointer[Sharder]
	// mu serialises writers so that Update's read-modify-write is atomic;
	// readers never take it.
	mu sync.Mutex
}

// NewLive returns a Live serving s. The Live owns s from now on: it closes s
// when s is replaced or when the Live is closed.
func NewLive(s *Sharder) *Live {
	l := &Live{}
	l.cur.Store(s)
	return l
}

// Store makes s the current snapshot and closes the previous one. The Live
// owns s from now on. After Close, Store closes s and returns ErrClosed.
func (l *Live) Store(s *Sharder) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.storeLocked(s)
}

func (l *Live) storeLocked(s *Sharder) error {
	if s == nil {
		return &Error{Kind: KindNullPointer, Message: "cannot store a nil Sharder in a Live"}
	}
	old := l.cur.Load()
	if old == nil {
		s.Close()
		return ErrClosed
	}
	l.cur.Store(s)
	return old.Close()
}

// Update builds the next snapshot from the current one with f (typically a
// call to Add, Remove, Reweight or SetDown) and stores it. Writers are
// serialised, so concurrent Updates compose. If f fails nothing changes.
func (l *Live) Update(f func(current *Sharder) (*Sharder, error)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.cur.Load()
	if cur == nil {
		return ErrClosed
	}
	next, err := f(cur)
	if err != nil {
		return err
	}
	if next == cur {
		return nil
	}
	return l.storeLocked(next)
}

// Snapshot returns a handle on the current snapshot that stays valid after
// later replacements; the caller must Close it.
func (l *Live) Snapshot() (*Sharder, error) {
	var out *Sharder
	err := l.read(func(s *Sharder) (err error) {
		out, err = s.Clone()
		return err
	})
	return out, err
}

// read runs f on the current snapshot, retrying when f lost a race with a
// replacement (its snapshot was closed under it but is no longer current).
func (l *Live) read(f func(*Sharder) error) error {
	for {
		s := l.cur.Load()
		if s == nil {
			return ErrClosed
		}
		err := f(s)
		if err == nil || !errors.Is(err, ErrClosed) || l.cur.Load() == s {
			return err
		}
	}
}

// Lookup is Sharder.Lookup on the current snapshot.
func (l *Live) Lookup(key []byte) (node string, err error) {
	err = l.read(func(s *Sharder) (err error) {
		node, err = s.Lookup(key)
		return err
	})
	return node, err
}

// LookupString is Sharder.LookupString on the current snapshot.
func (l *Live) LookupString(key string) (node string, err error) {
	err = l.read(func(s *Sharder) (err error) {
		node, err = s.LookupString(key)
		return err
	})
	return node, err
}

// LookupN is Sharder.LookupN on the current snapshot.
func (l *Live) LookupN(key []byte, n int) (nodes []string, err error) {
	err = l.read(func(s *Sharder) (err error) {
		nodes, err = s.LookupN(key, n)
		return err
	})
	return nodes, err
}

// LookupBatch is Sharder.LookupBatch on the current snapshot: every key is
// placed by the same snapshot.
func (l *Live) LookupBatch(keys [][]byte) (nodes []string, err error) {
	err = l.read(func(s *Sharder) (err error) {
		nodes, err = s.LookupBatch(keys)
		return err
	})
	return nodes, err
}

// Close closes the current snapshot; later calls return ErrClosed. Safe to
// call more than once.
func (l *Live) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.cur.Swap(nil); old != nil {
		return old.Close()
	}
	return nil
}
