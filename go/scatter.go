package shardkit

// #include <stdlib.h>
// #include "shardkit.h"
import "C"

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// ScatterOptions tunes how an HTTPScatter treats slow calls. A nil
// *ScatterOptions, like the zero value, turns hedging and tied requests off.
type ScatterOptions struct {
	// Hedge sends a second copy of a leaf call that outlives the leaf's
	// recent HedgePercentile latency to another replica; first answer wins.
	Hedge bool
	// HedgePercentile is the latency quantile after which a call is
	// hedged, in (0, 1]; 0 means the default, 0.95.
	HedgePercentile float64
	// HedgeBudget is the share of extra calls hedging may add, in (0, 1];
	// 0 means the default, 0.05. (Turn Hedge off for no hedges.)
	HedgeBudget float64
	// HedgeMinSamples is how many latency samples a leaf needs before its
	// calls are hedged; 0 means the default, 20.
	HedgeMinSamples uint64
	// Tied sends every leaf call to two replicas at once (where the leaf
	// has two); the loser is dropped when the winner answers.
	Tied bool
}

// Coverage says how many leaves must answer a Gather, spelled as in every
// shardkit binding and the CLI: "all" (every leaf), "best-effort" (alias
// "best_effort": whatever arrived by the deadline, as long as one leaf
// answered), "K" (at least K leaves, 1 to the leaf count) or "K/N" (the
// same, N stating the leaf count, which must match). Any string may be
// given (a flag's or a config file's value); the engine parses it, so every
// language accepts and refuses the same spellings, and a bad one is an
// ErrInvalidArgument whose message starts "coverage <text>: ".
//
// The zero value "" means All, as the C ABI reads an empty policy.
type Coverage string

const (
	// All needs every leaf's answer.
	All Coverage = "all"
	// RequireAll is All, under its earlier name.
	RequireAll = All
	// BestEffort takes whatever arrived by the deadline, as long as one
	// leaf answered (a gather no leaf answered is an error, not an empty
	// result).
	BestEffort Coverage = "best-effort"
)

// AtLeast needs at least k leaves' answers (1 <= k <= the leaf count; the
// engine refuses other k when the Gather runs).
func AtLeast(k int) Coverage { return Coverage(strconv.Itoa(k)) }

// Answer is one leaf's answer: its index in the leaf list and the JSON it
// returned.
type Answer struct {
	Leaf   int
	Answer json.RawMessage
}

// Missing is a leaf without an answer and why: Err.Kind is KindBadResponse
// (non-2xx status or malformed JSON), KindUnavailable (connection refused),
// KindTimeout (cut off by the deadline) or KindCancelled (no longer
// needed once the coverage was met, or could not be).
type Missing struct {
	Leaf int
	Err  *Error
}

// Gathered is what a Gather collected, answers and missing leaves each in
// leaf order.
type Gathered struct {
	Answers  []Answer
	Missing  []Missing
	Answered int
	Total    int
	// Degraded is true when some leaf's part is missing.
	Degraded bool
}

// The document shardkit_http_scatter_gather returns.
type gatheredJSON struct {
	Answers []struct {
		Leaf   int             `json:"leaf"`
		Answer json.RawMessage `json:"answer"`
	} `json:"answers"`
	Missing []struct {
		Leaf  int    `json:"leaf"`
		Code  uint32 `json:"code"`
		Error string `json:"error"`
	} `json:"missing"`
	Answered int  `json:"answered"`
	Total    int  `json:"total"`
	Degraded bool `json:"degraded"`
}

// HTTPScatter fans a JSON request out to HTTP leaves, each a group of
// replica URLs, over a pooled keep-alive client, with the engine's tail
// policies (deadline, coverage, hedging, tied requests, replica choice).
// Safe for concurrent use; replica statistics are learned across calls.
// Close it when done (a finalizer closes a forgotten one eventually).
type HTTPScatter struct {
	ref    *cref
	ptr    *C.shardkit_http_scatter
	leaves int
}

// NewHTTPScatter builds a scatter over leaves: leaves[i] holds shard i's
// replica URLs, each http://host:port/path. Nothing is sent yet. Errors:
// ErrEmptyNodeSet for no leaves; ErrInvalidArgument naming a bad URL (one
// that does not parse, is not http://, or has no host, or contains '|'),
// a leaf with no URLs, or a bad option.
func NewHTTPScatter(leaves [][]string, opts *ScatterOptions) (*HTTPScatter, error) {
	// The C ABI takes one string per leaf with its URLs joined by '|'.
	joined := make([]string, len(leaves))
	for i, urls := range leaves {
		for _, u := range urls {
			if strings.ContainsAny(u, "|\x00") {
				return nil, invalidArgf("leaf %d URL %q contains '|' or NUL", i, u)
			}
		}
		joined[i] = strings.Join(urls, "|")
	}
	// Go memory may hold C pointers: the array of C strings stays in Go.
	cstrs := make([]*C.char, len(joined))
	for i, s := range joined {
		cstrs[i] = C.CString(s)
	}
	defer func() {
		for _, p := range cstrs {
			C.free(unsafe.Pointer(p))
		}
	}()
	var copts C.shardkit_scatter_options
	C.shardkit_scatter_options_default(&copts)
	if opts != nil {
		copts.hedge = C.bool(opts.Hedge)
		copts.tied = C.bool(opts.Tied)
		if opts.HedgePercentile != 0 {
			copts.hedge_percentile = C.double(opts.HedgePercentile)
		}
		if opts.HedgeBudget != 0 {
			copts.hedge_budget = C.double(opts.HedgeBudget)
		}
		if opts.HedgeMinSamples != 0 {
			copts.hedge_min_samples = C.uint64_t(opts.HedgeMinSamples)
		}
	}
	var ptr *C.shardkit_http_scatter
	err := call(func() C.shardkit_status {
		return C.shardkit_http_scatter_new(unsafe.SliceData(cstrs), C.size_t(len(cstrs)), &copts, &ptr)
	})
	if err != nil {
		return nil, err
	}
	s := &HTTPScatter{
		ref:    newCref(func() { C.shardkit_http_scatter_free(ptr) }),
		ptr:    ptr,
		leaves: len(leaves),
	}
	runtime.SetFinalizer(s, (*HTTPScatter).Close)
	return s, nil
}

// Len is the number of leaves.
func (s *HTTPScatter) Len() int { return s.leaves }

// Close frees the scatter and its idle connections. Calls in flight finish
// first (the C memory goes once the last returns); later calls get
// ErrClosed. Safe to call more than once; always returns nil.
func (s *HTTPScatter) Close() error {
	if s != nil && s.ref.close() {
		runtime.SetFinalizer(s, nil)
	}
	return nil
}

// scatterTimeout turns ctx's deadline into the C ABI's timeout_ms, rounded
// up so the engine never gives up before the Go deadline. A scatter call
// needs a deadline: without one it is ErrInvalidArgument.
func scatterTimeout(ctx context.Context, what string) (C.uint32_t, error) {
	d, ok := ctx.Deadline()
	if !ok {
		return 0, invalidArgf("%s needs a context with a deadline (context.WithTimeout): "+
			"a scatter waits for its slowest leaf only until then", what)
	}
	left := time.Until(d)
	if left <= 0 {
		return 0, ctxError(ctx, what, nil)
	}
	ms := (left + time.Millisecond - 1) / time.Millisecond
	return C.uint32_t(min(ms, math.MaxUint32)), nil
}

// call runs one blocking C call for what, returning the JSON text it wrote.
// The C call cannot be interrupted: when ctx is cancelled the method
// returns at once and the call finishes in the background (bounded by
// ctx's deadline; the body was copied, so the caller may reuse it). When
// ctx's deadline passes the method waits the moment it takes the call,
// whose deadline is the same, to return what arrived by then.
func (s *HTTPScatter) call(ctx context.Context, what string, body []byte,
	c func(ptr *C.shardkit_http_scatter, body *C.char, n C.size_t, timeout C.uint32_t, out **C.char) C.shardkit_status) (string, error) {
	timeout, err := scatterTimeout(ctx, what)
	if err != nil {
		return "", err
	}
	if !s.ref.acquire() {
		return "", ErrClosed
	}
	body = bytes.Clone(body)
	type result struct {
		json string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		defer s.ref.release()
		var out *C.char
		err := call(func() C.shardkit_status {
			return c(s.ptr, (*C.char)(unsafe.Pointer(unsafe.SliceData(body))), C.size_t(len(body)), timeout, &out)
		})
		if err != nil {
			done <- result{err: err}
			return
		}
		text := C.GoString(out)
		C.shardkit_string_free(out)
		done <- result{json: text}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The engine's deadline is this one (rounded up to the next
			// millisecond): what arrived by it is the answer, and the call
			// returns it momentarily.
			r = <-done
			break
		}
		select {
		case r = <-done: // finished in the same instant: keep the answer
		default:
			return "", ctxError(ctx, what, nil)
		}
	}
	if e, ok := r.err.(*Error); ok && e.Kind == KindTimeout {
		// The engine's deadline was ctx's: report it as ctx's too.
		return "", ctxError(ctx, what, e)
	}
	return r.json, r.err
}

// Gather sends body (JSON) to every leaf and collects the answers until all
// are in, coverage can no longer be met, or ctx's deadline passes (ctx
// must have one; it is the gather's deadline).
//
// With enough answers it returns them and the missing leaves, each with
// its error. Otherwise the error is ErrTimeout (also matching
// context.DeadlineExceeded) when a leaf was cut off by the deadline, else
// ErrUnavailable; its message names every missing leaf and why. Also
// ErrInvalidArgument for a coverage that does not parse or that the leaf
// count cannot meet (the message names it), ErrClosed
// after Close, and ctx's error (with ErrCancelled) when ctx is cancelled.
func (s *HTTPScatter) Gather(ctx context.Context, body []byte, coverage Coverage) (*Gathered, error) {
	text, err := s.call(ctx, "scatter gather", body,
		func(p *C.shardkit_http_scatter, b *C.char, n C.size_t, t C.uint32_t, out **C.char) C.shardkit_status {
			return C.shardkit_http_scatter_gather(p, b, n, t, stringPtr(string(coverage)), C.size_t(len(coverage)), out)
		})
	if err != nil {
		return nil, err
	}
	var doc gatheredJSON
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		return nil, fmt.Errorf("shardkit: decoding the gathered document: %w", err)
	}
	g := &Gathered{
		Answers:  make([]Answer, len(doc.Answers)),
		Missing:  make([]Missing, len(doc.Missing)),
		Answered: doc.Answered,
		Total:    doc.Total,
		Degraded: doc.Degraded,
	}
	for i, a := range doc.Answers {
		g.Answers[i] = Answer{Leaf: a.Leaf, Answer: a.Answer}
	}
	for i, m := range doc.Missing {
		g.Missing[i] = Missing{Leaf: m.Leaf, Err: &Error{Kind: Kind(m.Code), Message: m.Error}}
	}
	return g, nil
}

// First is root distribution: the scatter has one leaf whose replicas hold
// the same data; body goes to one of them (hedged as configured, failing
// over to another replica on error) and its JSON answer comes back. ctx
// must have a deadline. Errors: ErrInvalidArgument when the scatter has
// more than one leaf; ErrTimeout (and context.DeadlineExceeded) when no
// replica answered in time; otherwise the last replica's error, e.g.
// ErrBadResponse or ErrUnavailable.
func (s *HTTPScatter) First(ctx context.Context, body []byte) (json.RawMessage, error) {
	text, err := s.call(ctx, "scatter first", body,
		func(p *C.shardkit_http_scatter, b *C.char, n C.size_t, t C.uint32_t, out **C.char) C.shardkit_status {
			return C.shardkit_http_scatter_first(p, b, n, t, out)
		})
	if err != nil {
		return nil, err
	}
	return json.RawMessage(text), nil
}
