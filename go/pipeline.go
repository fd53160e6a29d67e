package shardkit

// #include "shardkit.h"
// extern int32_t skGoEvent(void *, char *, size_t, shardkit_reply *);
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Event is a CloudEvent (1.0) as stages hand it to a Go handler and take it
// from Publish: the required attributes, the optional ones shardkit
// routes and filters on, extensions, and JSON data. The engine validates
// it; a bad one is an ErrInvalidArgument naming the attribute and value.
type Event struct {
	ID      string
	Source  string
	Type    string
	Subject string
	// Key orders and partitions: events of one key are handled one at a
	// time, in order (the CloudEvents partitionkey extension).
	Key string
	// Data is the event's JSON data (nil: none).
	Data json.RawMessage
	// Extensions are the other attributes, as strings.
	Extensions map[string]string
}

// structured is the event in CloudEvents structured JSON.
func (e Event) structured() map[string]any {
	m := map[string]any{"specversion": "1.0", "id": e.ID, "source": e.Source, "type": e.Type}
	for k, v := range e.Extensions {
		m[k] = v
	}
	if e.Subject != "" {
		m["subject"] = e.Subject
	}
	if e.Key != "" {
		m["partitionkey"] = e.Key
	}
	if e.Data != nil {
		m["data"] = e.Data
		m["datacontenttype"] = "application/json"
	}
	return m
}

func eventFromJSON(b []byte) (Event, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return Event{}, err
	}
	var e Event
	str := func(k string) string {
		var s string
		if raw, ok := m[k]; ok {
			_ = json.Unmarshal(raw, &s)
		}
		return s
	}
	e.ID, e.Source, e.Type, e.Subject, e.Key = str("id"), str("source"), str("type"), str("subject"), str("partitionkey")
	if raw, ok := m["data"]; ok {
		e.Data = raw
	}
	for k := range m {
		switch k {
		case "id", "source", "type", "subject", "partitionkey", "data", "data_base64", "specversion", "datacontenttype", "time", "dataschema":
		default:
			if e.Extensions == nil {
				e.Extensions = map[string]string{}
			}
			e.Extensions[k] = str(k)
		}
	}
	return e, nil
}

// Handler handles one event and returns the events to emit to its stage's
// reply topic. It runs on one of the engine's threads, concurrently for
// different keys. A nil error acknowledges the event (after the returned
// events are stored); an error has it tried again after a backoff, up to
// the stage's max_attempts; Reject(err) dead-letters it at once.
type Handler func(ctx context.Context, ev Event) ([]Event, error)

type rejected struct{ error }

// Reject marks err as one no retry can fix: the event goes to the dead-
// letter topic now, with err's text.
func Reject(err error) error { return rejected{err} }

// Pipeline runs event pipeline stages whose handlers are Go functions, on
// the in-process transport ("memory") or on Redis Streams (a redis://
// URL). Safe for concurrent use. Close drains it.
type Pipeline struct {
	ref *cref
	ptr *C.shardkit_pipeline
	mu  sync.Mutex
	uds []unsafe.Pointer
	ctx context.Context
	end context.CancelFunc
	// drain is what the finalizer or Close passes to the engine.
	drain time.Duration
}

// OpenPipeline opens a pipeline on transport ("memory" or a redis:// URL)
// with partitions partitions per topic (1 to 4096; publishers and workers
// of a topic must agree).
func OpenPipeline(transport string, partitions int) (*Pipeline, error) {
	if partitions < 1 || partitions > 4096 {
		return nil, newError(uint32(KindInvalidArgument), fmt.Sprintf("partitions %d: must be 1..=4096", partitions))
	}
	var out *C.shardkit_pipeline
	err := call(func() C.shardkit_status {
		return C.shardkit_pipeline_open(stringPtr(transport), C.size_t(len(transport)), C.uint32_t(partitions), &out)
	})
	if err != nil {
		return nil, err
	}
	ctx, end := context.WithCancel(context.Background())
	p := &Pipeline{ptr: out, ctx: ctx, end: end, drain: 10 * time.Second}
	p.ref = newCref(func() {
		C.shardkit_pipeline_free(out, C.uint64_t(p.drain.Milliseconds()))
		// Only now, with no handler running or to run, may the handles go.
		p.mu.Lock()
		for _, ud := range p.uds {
			deleteCallbackUserdata(ud)
		}
		p.uds = nil
		p.mu.Unlock()
	})
	runtime.SetFinalizer(p, func(p *Pipeline) { _ = p.Close(0) })
	return p, nil
}

type stageState struct {
	h   Handler
	ctx context.Context
}

// Stage starts a stage: settings are a pipeline file's stage keys without
// function, as YAML or JSON (name, topic, filter, reply_topic,
// max_attempts, concurrency, ordering, ...; an unknown key is an ErrConfig
// naming it), and h handles its events.
func (p *Pipeline) Stage(settings string, h Handler) error {
	if h == nil {
		return newError(uint32(KindNullPointer), "handler is nil")
	}
	if !p.ref.acquire() {
		return ErrClosed
	}
	defer p.ref.release()
	ud := newCallbackUserdata(&stageState{h: h, ctx: p.ctx})
	err := call(func() C.shardkit_status {
		return C.shardkit_pipeline_stage(p.ptr, stringPtr(settings), C.size_t(len(settings)),
			C.shardkit_event_handler(C.skGoEvent), ud)
	})
	if err != nil {
		deleteCallbackUserdata(ud)
		return err
	}
	p.mu.Lock()
	p.uds = append(p.uds, ud)
	p.mu.Unlock()
	return nil
}

//export skGoEvent
func skGoEvent(ud unsafe.Pointer, ev *C.char, n C.size_t, reply *C.shardkit_reply) (code C.int32_t) {
	st := callbackValue(ud).(*stageState)
	fail := func(c C.int32_t, err error) C.int32_t {
		msg := err.Error()
		C.shardkit_reply_error(reply, stringPtr(msg), C.size_t(len(msg)))
		return c
	}
	defer func() {
		// A panicking handler fails its event; it must not unwind into C.
		if r := recover(); r != nil {
			code = fail(C.SHARDKIT_RETRY, fmt.Errorf("handler panicked: %v", r))
		}
	}()
	e, err := eventFromJSON(C.GoBytes(unsafe.Pointer(ev), C.int(n)))
	if err != nil {
		return fail(C.SHARDKIT_REJECT, err)
	}
	out, err := st.h(st.ctx, e)
	if err != nil {
		var r rejected
		if errors.As(err, &r) {
			return fail(C.SHARDKIT_REJECT, r.error)
		}
		return fail(C.SHARDKIT_RETRY, err)
	}
	for _, o := range out {
		b, jerr := json.Marshal(o.structured())
		if jerr != nil {
			return fail(C.SHARDKIT_RETRY, jerr)
		}
		if C.shardkit_reply_emit(reply, bytesPtr(b), C.size_t(len(b))) != C.SHARDKIT_STATUS_OK {
			return fail(C.SHARDKIT_RETRY, fmt.Errorf("reply event %q is not a valid event", o.ID))
		}
	}
	return C.SHARDKIT_HANDLED
}

// Publish stores events in topic, in order, each in the partition of its
// key. On a bad event nothing is published and the error names it.
func (p *Pipeline) Publish(topic string, events ...Event) error {
	if !p.ref.acquire() {
		return ErrClosed
	}
	defer p.ref.release()
	list := make([]map[string]any, len(events))
	for i, e := range events {
		list[i] = e.structured()
	}
	b, err := json.Marshal(list)
	if err != nil {
		return newError(uint32(KindInvalidArgument), err.Error())
	}
	return call(func() C.shardkit_status {
		return C.shardkit_pipeline_publish(p.ptr, stringPtr(topic), C.size_t(len(topic)), bytesPtr(b), C.size_t(len(b)))
	})
}

// Peek returns the events of topic without consuming them, at most max per
// partition: a reply or dead-letter topic's, say.
func (p *Pipeline) Peek(topic string, max int) ([]Event, error) {
	if !p.ref.acquire() {
		return nil, ErrClosed
	}
	defer p.ref.release()
	var out *C.char
	err := call(func() C.shardkit_status {
		return C.shardkit_pipeline_peek(p.ptr, stringPtr(topic), C.size_t(len(topic)), C.size_t(max), &out)
	})
	if err != nil {
		return nil, err
	}
	text := C.GoString(out)
	C.shardkit_string_free(out)
	var raws []json.RawMessage
	if err := json.Unmarshal([]byte(text), &raws); err != nil {
		return nil, err
	}
	events := make([]Event, 0, len(raws))
	for _, r := range raws {
		e, err := eventFromJSON(r)
		if err != nil {
			return nil, err
		}
		events = append(events, e)
	}
	return events, nil
}

// StageStats are a stage's counters.
type StageStats struct {
	Handled      uint64 `json:"handled"`
	Failures     uint64 `json:"failures"`
	DeadLettered uint64 `json:"dead_lettered"`
	Skipped      uint64 `json:"skipped"`
	Emitted      uint64 `json:"emitted"`
	Redelivered  uint64 `json:"redelivered"`
	InFlight     uint64 `json:"in_flight"`
}

// Stats returns every stage's counters by name.
func (p *Pipeline) Stats() (map[string]StageStats, error) {
	if !p.ref.acquire() {
		return nil, ErrClosed
	}
	defer p.ref.release()
	var out *C.char
	err := call(func() C.shardkit_status {
		return C.shardkit_pipeline_stats(p.ptr, nil, 0, &out)
	})
	if err != nil {
		return nil, err
	}
	text := C.GoString(out)
	C.shardkit_string_free(out)
	stats := map[string]StageStats{}
	if err := json.Unmarshal([]byte(text), &stats); err != nil {
		return nil, err
	}
	return stats, nil
}

// Close stops every stage, letting events in progress finish within drain
// (the rest is delivered again later), and frees the pipeline: when the
// last call in flight has returned, no handler runs and none will. Later
// calls get ErrClosed. Not from a handler.
func (p *Pipeline) Close(drain time.Duration) error {
	p.drain = drain
	if p.ref.close() {
		p.end()
		runtime.SetFinalizer(p, nil)
	}
	return nil
}
