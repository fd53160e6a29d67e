package shardkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPipelineHandlesInKeyOrderAndDeadLettersRejects(t *testing.T) {
	p, err := OpenPipeline("memory", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(time.Second)
	var mu sync.Mutex
	order := map[string][]int{}
	tries := map[string]int{}
	err = p.Stage(`{name: greet, topic: users, reply_topic: out, min_backoff: 1, max_backoff: 5, lease: 300, concurrency: 8}`,
		func(ctx context.Context, ev Event) ([]Event, error) {
			mu.Lock()
			tries[ev.ID]++
			n := tries[ev.ID]
			mu.Unlock()
			switch {
			case strings.HasPrefix(ev.ID, "bad"):
				return nil, Reject(errors.New("no such user"))
			case strings.HasPrefix(ev.ID, "flaky") && n == 1:
				return nil, errors.New("try again")
			case strings.HasPrefix(ev.ID, "panic") && n == 1:
				panic("boom")
			}
			var d struct{ N int }
			_ = json.Unmarshal(ev.Data, &d)
			mu.Lock()
			order[ev.Key] = append(order[ev.Key], d.N)
			mu.Unlock()
			return []Event{{ID: "hi-" + ev.ID, Source: "/go", Type: "greeting", Key: ev.Key}}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	for i := 0; i < 60; i++ {
		events = append(events, Event{ID: fmt.Sprintf("u%d", i), Source: "/t", Type: "user.created",
			Key: fmt.Sprintf("k%d", i%6), Data: json.RawMessage(fmt.Sprintf(`{"N":%d}`, i/6))})
	}
	events = append(events, Event{ID: "bad-1", Source: "/t", Type: "x", Key: "b"},
		Event{ID: "flaky-1", Source: "/t", Type: "x", Key: "f", Data: json.RawMessage(`{"N":0}`)},
		Event{ID: "panic-1", Source: "/t", Type: "x", Key: "p", Data: json.RawMessage(`{"N":0}`)})
	if err := p.Publish("users", events...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "62 handled and 1 dead-lettered", func() bool {
		s, err := p.Stats()
		return err == nil && s["greet"].Handled == 62 && s["greet"].DeadLettered == 1
	})
	mu.Lock()
	for k, ns := range order {
		for i := 1; i < len(ns); i++ {
			if ns[i] < ns[i-1] {
				t.Errorf("key %s out of order: %v", k, ns)
			}
		}
	}
	mu.Unlock()
	out, err := p.Peek("out", 1000)
	if err != nil || len(out) != 62 {
		t.Fatalf("reply events: %d, %v", len(out), err)
	}
	dead, err := p.Peek("users.dlq", 10)
	if err != nil || len(dead) != 1 || dead[0].ID != "bad-1" {
		t.Fatalf("dead letters: %+v, %v", dead, err)
	}
	if dead[0].Extensions["dlqreason"] != "permanent" || !strings.Contains(dead[0].Extensions["dlqerror"], "no such user") {
		t.Errorf("dead letter attributes: %v", dead[0].Extensions)
	}
}

func TestPipelineBadInputIsNamed(t *testing.T) {
	if _, err := OpenPipeline("kafka://x", 4); err == nil || !strings.Contains(err.Error(), "kafka://x") {
		t.Errorf("bad transport: %v", err)
	}
	p, err := OpenPipeline("memory", 2)
	if err != nil {
		t.Fatal(err)
	}
	h := func(ctx context.Context, ev Event) ([]Event, error) { return nil, nil }
	if err := p.Stage(`{name: s, topic: t, retries: 3}`, h); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "retries") {
		t.Errorf("unknown key: %v", err)
	}
	if err := p.Publish("t", Event{ID: "", Source: "/t", Type: "x"}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "id") {
		t.Errorf("bad event: %v", err)
	}
	p.Close(0)
	if err := p.Publish("t", Event{ID: "1", Source: "/t", Type: "x"}); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}
