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
	var logs bytes.Buffer
	cmd := exec.Command(bin,
		"--name", "gotest",
		"--data-dir", dir+"/data",
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "gotest="+peer,
		"--initial-cluster-state", "new",
	)
	cmd.Stdout = &logs
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	// Ready once the client port accepts and a connect succeeds; at most
	// 15 s. Dialling first keeps failed connects (each bounded by
	// DefaultConnectTimeout in the background) from piling up.
	deadline := time.Now().Add(15 * time.Second)
	addr := strings.TrimPrefix(client, "http://")
	for {
		err := func() error {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return err
			}
			conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Connect(ctx, client)
			if err == nil {
				c.Close()
			}
			return err
		}()
		if err == nil {
			return client
		}
		select {
		case werr := <-exited:
			exited <- werr
			t.Fatalf("etcd exited (%v):\n%s", werr, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s not ready in 15s (%v):\n%s", client, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
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
