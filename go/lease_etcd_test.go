package shardkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The lease API against a real etcd: /usr/bin/etcd (or $SHARDKIT_ETCD)
// started on free loopback ports in a temporary directory and killed when
// the test ends. Skipped when no etcd binary is installed.

func startEtcd(t *testing.T) string {
	t.Helper()
	return newEtcd(t).client
}

// etcdServer is one etcd process a test owns: it may kill it and start it
// again on the same ports and data (the observer outage test).
type etcdServer struct {
	t      *testing.T
	bin    string
	args   []string
	client string
	cmd    *exec.Cmd
	exited chan error
	logs   *bytes.Buffer
}

// newEtcd starts an etcd on free loopback ports in a temporary directory,
// killed when the test ends, and waits until it serves.
func newEtcd(t *testing.T) *etcdServer {
	t.Helper()
	bin := os.Getenv("SHARDKIT_ETCD")
	if bin == "" {
		bin = "/usr/bin/etcd"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no etcd at %s: %v", bin, err)
	}
	dir := t.TempDir()
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	e := &etcdServer{t: t, bin: bin, client: client, args: []string{
		"--name", "gotest",
		"--data-dir", dir + "/data",
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "gotest=" + peer,
		"--initial-cluster-state", "new",
	}}
	t.Cleanup(e.kill)
	e.start()
	return e
}

// start runs the process (again, after kill: same ports, same data) and
// waits until it serves.
func (e *etcdServer) start() {
	t := e.t
	t.Helper()
	e.logs = &bytes.Buffer{}
	e.cmd = exec.Command(e.bin, e.args...)
	e.cmd.Stdout = e.logs
	e.cmd.Stderr = e.logs
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", e.bin, err)
	}
	e.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, exited chan error) { exited <- cmd.Wait() }(e.cmd, e.exited)
	// Ready once the client port accepts and a connect succeeds; at most
	// 15 s. Dialling first keeps failed connects (each bounded by
	// DefaultConnectTimeout in the background) from piling up.
	deadline := time.Now().Add(15 * time.Second)
	addr := strings.TrimPrefix(e.client, "http://")
	for {
		err := func() error {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Connect(ctx, e.client)
			if err == nil {
				c.Close()
			}
			return err
		}()
		if err == nil {
			return
		}
		select {
		case werr := <-e.exited:
			e.exited <- werr
			t.Fatalf("etcd exited (%v):\n%s", werr, e.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s not ready in 15s (%v):\n%s", e.client, err, e.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill stops the process at once (SIGKILL) and waits for it; a no-op when
// it is not running.
func (e *etcdServer) kill() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	<-e.exited
	e.cmd = nil
}

func TestEtcdLockContentionAcrossCoordinators(t *testing.T) {
	ep := startEtcd(t)
	ctx := bg(t)
	connect := func() *Coordinator {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := Connect(cctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1, c2 := connect(), connect()
	if got := c1.String(); got == "" || got == "embedded store" {
		t.Fatalf("String: %q", got)
	}
	s1 := newSession(t, c1, 5*time.Second)
	s2 := newSession(t, c2, 5*time.Second)
	a := newLock(t, s1, "etcd-jobs")
	b := newLock(t, s2, "etcd-jobs")

	ta, err := a.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.TryLock(ctx); ok || err != nil {
		t.Fatalf("TryLock across coordinators while held: %v %v", ok, err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = b.Lock(short)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("wait past deadline: %v", err)
	}
	if _, err := a.Put(ctx, []byte("etcd-jobs/state"), []byte("a")); err != nil {
		t.Fatal(err)
	}

	// b waits; a's release hands the lock over.
	got := make(chan FencingToken, 1)
	go func() {
		tok, err := b.Lock(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- tok
	}()
	time.Sleep(100 * time.Millisecond)
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	var tb FencingToken
	select {
	case tb = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("b did not get the lock after a released it")
	}
	if tb.Revision <= ta.Revision || tb.Lease != s2.LeaseID() {
		t.Fatalf("b's token %+v after a's %+v", tb, ta)
	}
	_, err = a.Put(ctx, []byte("etcd-jobs/state"), []byte("stale"))
	wantKind(t, err, ErrFenced, "")
	if _, err := b.Put(ctx, []byte("etcd-jobs/state"), []byte("b")); err != nil {
		t.Fatal(err)
	}

	// Revoking b's lease through the other coordinator: b's session is lost.
	if err := c1.Revoke(ctx, s2.LeaseID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s2.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("session not lost within 5s of the revoke")
	}
	wantKind(t, s2.Err(), ErrSessionLost, "")
	if _, ok, err := a.TryLock(ctx); !ok || err != nil {
		t.Fatalf("TryLock after the holder's lease was revoked: %v %v", ok, err)
	}
	if l, err := c2.Leader(ctx, "nobody"); l != nil || err != nil {
		t.Fatalf("Leader of an empty election: %v %v", l, err)
	}
}

// An observer on an etcd that goes away reports the outage once it has
// lasted ReportAfter, goes on following, and delivers the state again
// when etcd is back. The test owns its etcd, so killing it disturbs no
// other test.
func TestEtcdObserverReportsOutageThenState(t *testing.T) {
	etcd := newEtcd(t)
	ctx := bg(t)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := Connect(cctx, etcd.client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A TTL that outlasts the outage, so the leader is still leader after.
	s := newSession(t, c, 60*time.Second)
	e, err := s.Election("svc")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tok, err := e.Campaign(ctx, []byte("me"))
	if err != nil {
		t.Fatal(err)
	}

	octx, stop := context.WithCancel(ctx)
	defer stop()
	const reportAfter = 500 * time.Millisecond
	ch, err := c.Observe(octx, "svc", &ObserveOptions{
		RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, ReportAfter: reportAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	next := func(what string) LeaderState {
		t.Helper()
		select {
		case v, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed waiting for %s", what)
			}
			return v
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s within 30s", what)
		}
		panic("unreachable")
	}
	if v := next("the first state"); v.Err != nil || v.Leader == nil || string(v.Leader.Value) != "me" ||
		v.Leader.Token != tok {
		t.Fatalf("first state %+v (token %+v)", v, tok)
	}

	etcd.kill()
	down := time.Now()
	v := next("the outage")
	took := time.Since(down)
	if v.Err == nil {
		t.Fatalf("a state while etcd is down: %+v", v.Leader)
	}
	if !errors.Is(v.Err, ErrUnavailable) && !errors.Is(v.Err, ErrTimeout) && !errors.Is(v.Err, ErrIO) {
		t.Fatalf("outage reported as %v, want ErrUnavailable, ErrTimeout or ErrIO", v.Err)
	}
	if v.Leader != nil || !strings.Contains(v.Err.Error(), `following election "svc"`) {
		t.Fatalf("outage value %+v", v)
	}
	// The failures started after the kill, so the report cannot come
	// sooner than ReportAfter; a few seconds covers a slow machine.
	if took < reportAfter-50*time.Millisecond || took > 10*time.Second {
		t.Fatalf("outage reported %v after the kill, ReportAfter %v", took, reportAfter)
	}

	t.Logf("reported %v after the kill: %v", took, v.Err)
	etcd.start()
	// Failures may be reported again while etcd comes up; then the state,
	// though it did not change.
	for {
		v := next("the state after the outage")
		if v.Err != nil {
			continue
		}
		if v.Leader == nil || string(v.Leader.Value) != "me" || v.Leader.Token != tok {
			t.Fatalf("state after the outage: %+v, want %+v", v.Leader, tok)
		}
		break
	}
	stop()
	for range ch {
	}
}

// ScopedLocks on two coordinators of one etcd exclude each other, and
// closing a holder hands the lock on at once rather than after its TTL.
func TestEtcdScopedLock(t *testing.T) {
	ep := startEtcd(t)
	ctx := bg(t)
	connect := func() *Coordinator {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := Connect(cctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := newScopedLock(t, connect(), "etcd-scoped", 30*time.Second),
		newScopedLock(t, connect(), "etcd-scoped", 30*time.Second)
	ta, err := a.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := b.Acquire(short); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("acquire while held elsewhere: %v", err)
	}
	a.Close()
	start := time.Now()
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tb, err := b.Acquire(wait)
	if err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("after the holder closed: %v after %v (TTL 30s)", err, time.Since(start))
	}
	if tb.Revision <= ta.Revision || tb.Lease == ta.Lease {
		t.Fatalf("token %+v after %+v", tb, ta)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
