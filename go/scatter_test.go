package shardkit

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Leaves for the scatter tests: real HTTP servers on loopback (httptest),
// routed by path like tests/c/test_scatter.c's:
//
//	/ok...  200 {"path": ..., "got": <request body>}
//	/bad    200 with malformed JSON
//	/500    500
//	/slow   answers after slowFor, or when the client gives up
type leafServer struct {
	*httptest.Server
	requests atomic.Int64
}

const slowFor = 3 * time.Second

func newLeafServer(t *testing.T) *leafServer {
	t.Helper()
	ls := &leafServer{}
	ls.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.requests.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/bad":
			io.WriteString(w, `{"answer": [1, 2`)
			return
		case r.URL.Path == "/500":
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":"boom"}`)
			return
		case r.URL.Path == "/slow":
			select {
			case <-time.After(slowFor):
			case <-r.Context().Done():
				return
			}
		case strings.HasPrefix(r.URL.Path, "/ok"):
		default:
			http.NotFound(w, r)
			return
		}
		if len(body) == 0 {
			body = []byte("null")
		}
		json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "got": json.RawMessage(body)})
	}))
	t.Cleanup(ls.Close)
	return ls
}

func (ls *leafServer) url(path string) string { return ls.URL + path }

func newScatter(t *testing.T, leaves [][]string, opts *ScatterOptions) *HTTPScatter {
	t.Helper()
	s, err := NewHTTPScatter(leaves, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var query = []byte(`{"q":"abc"}`)

func TestGatherAll(t *testing.T) {
	ls := newLeafServer(t)
	s := newScatter(t, [][]string{{ls.url("/ok/0")}, {ls.url("/ok/1")}, {ls.url("/ok/2")}}, nil)
	if s.Len() != 3 {
		t.Fatalf("Len = %d", s.Len())
	}
	for round := 0; round < 3; round++ {
		g, err := s.Gather(within(t, 5*time.Second), query, RequireAll)
		if err != nil {
			t.Fatal(err)
		}
		if g.Answered != 3 || g.Total != 3 || g.Degraded || len(g.Missing) != 0 || len(g.Answers) != 3 {
			t.Fatalf("gathered %+v", g)
		}
		for i, a := range g.Answers {
			var doc struct {
				Path string
				Got  map[string]string
			}
			if err := json.Unmarshal(a.Answer, &doc); err != nil {
				t.Fatal(err)
			}
			if a.Leaf != i || doc.Path != "/ok/"+string(rune('0'+i)) || doc.Got["q"] != "abc" {
				t.Fatalf("answer %d: leaf %d, %s", i, a.Leaf, a.Answer)
			}
		}
	}
	g, err := s.Gather(within(t, 5*time.Second), nil, AtLeast(2))
	if err != nil || g.Answered < 2 {
		t.Fatalf("AtLeast(2): %+v, %v", g, err)
	}
	if _, err := s.Gather(within(t, 5*time.Second), query, AtLeast(4)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("AtLeast(4) of 3: %v", err)
	}
	if _, err := s.Gather(within(t, 5*time.Second), query, AtLeast(0)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("AtLeast(0): %v", err)
	}
}

// Coverage goes to the engine as text, so Go takes every spelling core
// does and refuses the rest with core's message, which names the value.
func TestGatherCoverageSpellings(t *testing.T) {
	ls := newLeafServer(t)
	s := newScatter(t, [][]string{{ls.url("/ok/0")}, {ls.url("/ok/1")}, {ls.url("/ok/2")}}, nil)
	for _, c := range []struct {
		coverage Coverage
		atLeast  int
	}{
		{All, 3}, {RequireAll, 3}, {"all", 3},
		// The zero value is All, as the C ABI reads an empty policy.
		{"", 3},
		{BestEffort, 1}, {"best-effort", 1}, {"best_effort", 1},
		{AtLeast(1), 1}, {AtLeast(2), 2}, {AtLeast(3), 3},
		{"2", 2}, {"2/3", 2}, {"3/3", 3}, {" 2 ", 2},
	} {
		g, err := s.Gather(within(t, 5*time.Second), query, c.coverage)
		if err != nil || g.Answered < c.atLeast || g.Total != 3 {
			t.Fatalf("coverage %q: %+v, %v", c.coverage, g, err)
		}
	}
	for _, c := range []struct {
		coverage Coverage
		prefix   string // how core names the value
	}{
		{"most", `coverage "most": `},
		{"All", `coverage "All": `},
		{"best effort", `coverage "best effort": `},
		{"0", "coverage 0: "},
		{AtLeast(0), "coverage 0: "},
		{"4", "coverage 4: "},
		{AtLeast(4), "coverage 4: "},
		{AtLeast(-1), `coverage "-1": `},
		{"2/4", `coverage "2/4": `},
		{"4/3", `coverage "4/3": `},
		{"2/x", `coverage "2/x": `},
	} {
		_, err := s.Gather(within(t, 5*time.Second), query, c.coverage)
		expectError(t, err, ErrInvalidArgument, c.prefix)
		if e := (*Error)(nil); !errors.As(err, &e) || !strings.HasPrefix(e.Message, c.prefix) {
			t.Fatalf("coverage %q: %v, want a message starting %q", c.coverage, err, c.prefix)
		}
	}
}

func TestGatherSlowLeaf(t *testing.T) {
	ls := newLeafServer(t)
	s := newScatter(t, [][]string{{ls.url("/ok/0")}, {ls.url("/slow")}}, nil)
	start := time.Now()
	g, err := s.Gather(within(t, 300*time.Millisecond), query, BestEffort)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= slowFor {
		t.Fatalf("best effort waited %v for the slow leaf", took)
	}
	if g.Answered != 1 || !g.Degraded || len(g.Missing) != 1 || g.Missing[0].Leaf != 1 ||
		!errors.Is(g.Missing[0].Err, ErrTimeout) {
		t.Fatalf("gathered %+v", g)
	}
	_, err = s.Gather(within(t, 300*time.Millisecond), query, RequireAll)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "coverage 1/2") {
		t.Fatalf("require all: %v", err)
	}
}

func TestGatherBadLeaves(t *testing.T) {
	ls := newLeafServer(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	refused := dead.URL + "/ok"
	dead.Close()
	s := newScatter(t, [][]string{{ls.url("/ok/0")}, {ls.url("/bad")}, {ls.url("/500")}, {refused}}, nil)
	g, err := s.Gather(within(t, 5*time.Second), query, BestEffort)
	if err != nil {
		t.Fatal(err)
	}
	if g.Answered != 1 || g.Total != 4 || len(g.Missing) != 3 {
		t.Fatalf("gathered %+v", g)
	}
	want := []struct {
		kind   *Error
		needle string
	}{{ErrBadResponse, "malformed JSON"}, {ErrBadResponse, "500"}, {ErrUnavailable, "refused"}}
	for i, m := range g.Missing {
		if m.Leaf != i+1 || !errors.Is(m.Err, want[i].kind) || !strings.Contains(m.Err.Message, want[i].needle) {
			t.Fatalf("missing %d: leaf %d, %v", i, m.Leaf, m.Err)
		}
	}

	two := newScatter(t, [][]string{{ls.url("/ok/0")}, {ls.url("/bad")}}, nil)
	_, err = two.Gather(within(t, 5*time.Second), query, RequireAll)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "malformed JSON") {
		t.Fatalf("require all with a malformed leaf: %v", err)
	}
}

func TestFirst(t *testing.T) {
	ls := newLeafServer(t)
	s := newScatter(t, [][]string{{ls.url("/ok/a"), ls.url("/ok/b")}}, nil)
	got, err := s.First(within(t, 5*time.Second), query)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Path string }
	if err := json.Unmarshal(got, &doc); err != nil || !strings.HasPrefix(doc.Path, "/ok/") {
		t.Fatalf("First = %s, %v", got, err)
	}

	failover := newScatter(t, [][]string{{ls.url("/500"), ls.url("/ok/c")}}, nil)
	for i := 0; i < 3; i++ {
		got, err := failover.First(within(t, 5*time.Second), query)
		if err != nil || !strings.Contains(string(got), `"/ok/c"`) {
			t.Fatalf("failover: %s, %v", got, err)
		}
	}
	for _, path := range []string{"/bad", "/500"} {
		one := newScatter(t, [][]string{{ls.url(path)}}, nil)
		if _, err := one.First(within(t, 5*time.Second), query); !errors.Is(err, ErrBadResponse) {
			t.Fatalf("First on %s: %v", path, err)
		}
	}
	slow := newScatter(t, [][]string{{ls.url("/slow")}}, nil)
	_, err = slow.First(within(t, 200*time.Millisecond), query)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow First: %v", err)
	}
	two := newScatter(t, [][]string{{ls.url("/ok/0")}, {ls.url("/ok/1")}}, nil)
	if _, err := two.First(within(t, 5*time.Second), query); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("First over two leaves: %v", err)
	}
}

func TestScatterOptions(t *testing.T) {
	ls := newLeafServer(t)
	before := ls.requests.Load()
	tied := newScatter(t, [][]string{{ls.url("/ok/t1"), ls.url("/ok/t2")}}, &ScatterOptions{Tied: true})
	g, err := tied.Gather(within(t, 5*time.Second), query, RequireAll)
	if err != nil || g.Answered != 1 {
		t.Fatalf("tied: %+v, %v", g, err)
	}
	if ls.requests.Load() == before {
		t.Fatal("no request reached the leaves")
	}
	hedged := newScatter(t, [][]string{{ls.url("/ok/h"), ls.url("/ok/h")}},
		&ScatterOptions{Hedge: true, HedgePercentile: 0.5, HedgeBudget: 1, HedgeMinSamples: 1})
	for i := 0; i < 5; i++ {
		if g, err := hedged.Gather(within(t, 5*time.Second), query, RequireAll); err != nil || g.Answered != 1 {
			t.Fatalf("hedged: %+v, %v", g, err)
		}
	}
	_, err = NewHTTPScatter([][]string{{ls.url("/ok")}}, &ScatterOptions{Hedge: true, HedgePercentile: 1.5})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "1.5") {
		t.Fatalf("percentile 1.5: %v", err)
	}
}

func TestScatterErrors(t *testing.T) {
	if _, err := NewHTTPScatter(nil, nil); !errors.Is(err, ErrEmptyNodeSet) {
		t.Fatalf("no leaves: %v", err)
	}
	for _, bad := range []string{"ftp://127.0.0.1/x", "127.0.0.1:80/x", "http://a|http://b"} {
		_, err := NewHTTPScatter([][]string{{"http://127.0.0.1:1/ok"}, {bad}}, nil)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), bad) {
			t.Fatalf("URL %q: %v", bad, err)
		}
	}
	if _, err := NewHTTPScatter([][]string{{"http://127.0.0.1:1/ok"}, {}}, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("leaf without URLs: %v", err)
	}

	ls := newLeafServer(t)
	s := newScatter(t, [][]string{{ls.url("/ok")}}, nil)
	if _, err := s.Gather(context.Background(), query, RequireAll); !errors.Is(err, ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "deadline") {
		t.Fatalf("no deadline: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cancel()
	if _, err := s.Gather(ctx, query, RequireAll); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrCancelled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	s.Close()
	s.Close()
	if _, err := s.Gather(within(t, time.Second), query, RequireAll); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if _, err := s.First(within(t, time.Second), query); !errors.Is(err, ErrClosed) {
		t.Fatalf("First after Close: %v", err)
	}
}

// A cancel ends the wait at once; the call finishes in the background and
// the body may be reused right away.
func TestGatherCancelReturnsAtOnce(t *testing.T) {
	ls := newLeafServer(t)
	s := newScatter(t, [][]string{{ls.url("/slow")}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	body := []byte(`{"q":"x"}`)
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	_, err := s.Gather(ctx, body, RequireAll)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("after %v: %v", time.Since(start), err)
	}
	copy(body, "garbage!!")
	s.Close() // freed once the background call returns
}

// Many goroutines share one scatter while another closes it: every call
// either completes or gets ErrClosed (run under -race and cgocheck2).
func TestScatterConcurrentUseAndClose(t *testing.T) {
	ls := newLeafServer(t)
	s, err := NewHTTPScatter([][]string{{ls.url("/ok/0")}, {ls.url("/ok/1"), ls.url("/ok/2")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var ok, closed atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				g, err := s.Gather(ctx, query, RequireAll)
				cancel()
				switch {
				case err == nil && g.Answered == 2:
					ok.Add(1)
				case errors.Is(err, ErrClosed):
					closed.Add(1)
				default:
					t.Errorf("gather: %+v, %v", g, err)
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	s.Close()
	wg.Wait()
	if ok.Load()+closed.Load() != 80 {
		t.Fatalf("%d ok + %d closed of 80", ok.Load(), closed.Load())
	}
}
