package shardkit

import (
	"errors"
	"strings"
	"testing"
)

// allSentinels holds every sentinel, one per Kind.
var allSentinels = []*Error{
	ErrInvalidArgument, ErrEmptyNodeSet, ErrDuplicateNode, ErrNotFound, ErrConfig, ErrIO,
	ErrInvalidUTF8, ErrNullPointer, ErrBufferTooSmall, ErrPanic, ErrUnavailable,
	ErrTimeout, ErrSessionLost, ErrCancelled, ErrFenced, ErrCompacted, ErrBadResponse,
}

// Every code the engine reports has a Go Kind and sentinel, and Go has none
// the engine lacks: a kind added to core without its Go sentinel (here and
// in errors.go) fails this test.
func TestEveryEngineKindHasASentinel(t *testing.T) {
	byKind := map[Kind]*Error{}
	for _, s := range allSentinels {
		if byKind[s.Kind] != nil {
			t.Fatalf("two sentinels of kind %d (%v)", uint32(s.Kind), s.Kind)
		}
		byKind[s.Kind] = s
	}
	code := Kind(1)
	for ; !strings.HasPrefix(code.String(), "unknown status code"); code++ {
		if code > 1000 {
			t.Fatal("shardkit_status_message never said \"unknown status code\"")
		}
		s, ok := byKind[code]
		if !ok {
			t.Errorf("engine code %d (%q) has no Go Kind and sentinel: add them to errors.go and allSentinels", uint32(code), code.String())
			continue
		}
		if want := "shardkit: " + code.String(); s.Error() != want {
			t.Errorf("sentinel of code %d reads %q, want %q", uint32(code), s.Error(), want)
		}
		delete(byKind, code)
	}
	for k := range byKind {
		t.Errorf("Go kind %d has no engine code (the engine's codes end at %d)", uint32(k), uint32(code-1))
	}
}

// A code the engine does not know says so and keeps its number.
func TestUnknownKindString(t *testing.T) {
	if got, want := Kind(1<<20).String(), "unknown status code 1048576"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

// The engine's message starts with the kind's description; the Go error
// says it once.
func TestErrorDropsTheRepeatedKind(t *testing.T) {
	err := newError(uint32(KindNotFound), KindNotFound.String()+`: node "x"`)
	if got, want := err.Error(), "shardkit: "+KindNotFound.String()+`: node "x"`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("%v is not ErrNotFound", err)
	}
}
