// The peer side of bench/lease.sh: etcd's own Go lock,
// go.etcd.io/etcd/client/v3/concurrency.Mutex, run the way its users run it
// (one Session, one Mutex, Lock/Unlock), against the same etcd as shardkit.
//
//	lease-bench-go latency --endpoints LIST [--iters N] [--warmup N] [--ttl S] [--name NAME] [--out FILE]
//	lease-bench-go handoff --endpoints LIST [--iters N] [--warmup N] [--ttl S] [--name NAME] [--out FILE]
//	lease-bench-go rtt     --endpoints LIST [--iters N] [--warmup N] [--out FILE]   # plain Get and Txn(Put), no lock
//	lease-bench-go hold    --endpoints LIST --ttl S --name NAME   # prints "held", holds until INT/TERM
//	lease-bench-go wait    --endpoints LIST --ttl S --name NAME [--timeout S]   # prints CLOCK_MONOTONIC ns once it holds
//
// hold and wait are the two processes of the crash-failover run (the driver
// kill -9s hold and compares its own CLOCK_MONOTONIC with the one wait
// prints) and of the fault run (leftovers.py). Raw samples go out as JSON; bench/lease/report.py summarises.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Key prefix of the benchmark's mutexes (concurrency.Mutex adds "/" and the
// lease id).
const lockPrefix = "bench/golock/"

// How long the benchmark waits for etcd to show a queued waiter: far more
// than loopback needs, so only a broken run hits it.
const queueWait = 5 * time.Second

type opts struct {
	endpoints string
	iters     int
	warmup    int
	ttl       int
	name      string
	out       string
	settleMs  int
	timeout   float64
}

func monotonicNs() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

func connect(o *opts) (*clientv3.Client, error) {
	if o.endpoints == "" {
		return nil, fmt.Errorf("--endpoints is required")
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(o.endpoints, ","),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

func latency(o *opts) (map[string]any, error) {
	cli, err := connect(o)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx := context.Background()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(o.ttl))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	m := concurrency.NewMutex(s, lockPrefix+o.name)
	var both, acq, rel []int64
	for i := 0; i < o.warmup+o.iters; i++ {
		t0 := time.Now()
		if err := m.Lock(ctx); err != nil {
			return nil, fmt.Errorf("Lock: %w", err)
		}
		t1 := time.Now()
		if err := m.Unlock(ctx); err != nil {
			return nil, fmt.Errorf("Unlock: %w", err)
		}
		t2 := time.Now()
		if i >= o.warmup {
			both = append(both, t2.Sub(t0).Nanoseconds())
			acq = append(acq, t1.Sub(t0).Nanoseconds())
			rel = append(rel, t2.Sub(t1).Nanoseconds())
		}
	}
	return map[string]any{
		"impl": "go-concurrency-mutex", "backend": "etcd",
		"iters": o.iters, "warmup": o.warmup, "ttl": o.ttl,
		"acquire_release_ns": both, "acquire_ns": acq, "release_ns": rel,
	}, nil
}

// waitKeys waits until n keys are under prefix (holder and queued waiter).
func waitKeys(cli *clientv3.Client, prefix string, n int64) error {
	deadline := time.Now().Add(queueWait)
	for {
		r, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if r.Count >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d keys under %q not seen within %v", n, prefix, queueWait)
		}
		time.Sleep(time.Millisecond)
	}
}

type acquired struct {
	at  time.Time
	err error
}

func handoff(o *opts) (map[string]any, error) {
	cli, err := connect(o)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx := context.Background()
	sa, err := concurrency.NewSession(cli, concurrency.WithTTL(o.ttl))
	if err != nil {
		return nil, err
	}
	defer sa.Close()
	sb, err := concurrency.NewSession(cli, concurrency.WithTTL(o.ttl))
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	pfx := lockPrefix + o.name
	ma, mb := concurrency.NewMutex(sa, pfx), concurrency.NewMutex(sb, pfx)
	var handoffs, releases []int64
	for i := 0; i < o.warmup+o.iters; i++ {
		if err := ma.Lock(ctx); err != nil {
			return nil, fmt.Errorf("A Lock: %w", err)
		}
		done := make(chan acquired, 1)
		go func() {
			err := mb.Lock(ctx)
			done <- acquired{time.Now(), err}
		}()
		if err := waitKeys(cli, pfx+"/", 2); err != nil {
			return nil, err
		}
		// Same settle time as the shardkit side: the waiter has enqueued
		// and now reads its predecessor and starts its watch; a waiter
		// queued this long is the steady state being measured.
		time.Sleep(time.Duration(o.settleMs) * time.Millisecond)
		t0 := time.Now()
		if err := ma.Unlock(ctx); err != nil {
			return nil, fmt.Errorf("A Unlock: %w", err)
		}
		tRel := time.Now()
		r := <-done
		if r.err != nil {
			return nil, fmt.Errorf("B Lock: %w", r.err)
		}
		if err := mb.Unlock(ctx); err != nil {
			return nil, fmt.Errorf("B Unlock: %w", err)
		}
		if i >= o.warmup {
			handoffs = append(handoffs, r.at.Sub(t0).Nanoseconds())
			releases = append(releases, tRel.Sub(t0).Nanoseconds())
		}
	}
	return map[string]any{
		"impl": "go-concurrency-mutex", "backend": "etcd",
		"iters": o.iters, "warmup": o.warmup, "ttl": o.ttl,
		"settle_ms": o.settleMs, "handoff_ns": handoffs, "release_call_ns": releases,
	}, nil
}

// rtt times plain requests through the same client: a one-key Get and a
// one-put Txn, the floor under the lock figures.
func rtt(o *opts) (map[string]any, error) {
	cli, err := connect(o)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx := context.Background()
	key := "bench/rtt/" + o.name
	var reads, writes []int64
	for i := 0; i < o.warmup+o.iters; i++ {
		t0 := time.Now()
		if _, err := cli.Get(ctx, key); err != nil {
			return nil, fmt.Errorf("Get: %w", err)
		}
		t1 := time.Now()
		if _, err := cli.Txn(ctx).Then(clientv3.OpPut(key, "v")).Commit(); err != nil {
			return nil, fmt.Errorf("Txn: %w", err)
		}
		t2 := time.Now()
		if i >= o.warmup {
			reads = append(reads, t1.Sub(t0).Nanoseconds())
			writes = append(writes, t2.Sub(t1).Nanoseconds())
		}
	}
	return map[string]any{
		"impl": "go-clientv3", "backend": "etcd", "iters": o.iters, "warmup": o.warmup,
		"read_ns": reads, "write_txn_ns": writes,
	}, nil
}

// hold takes the lock and keeps it (and its session's keepalives) until
// SIGINT/SIGTERM (then it unlocks and closes the session, as a well-behaved
// Go service would) or kill -9.
func hold(o *opts) error {
	cli, err := connect(o)
	if err != nil {
		return err
	}
	defer cli.Close()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(o.ttl))
	if err != nil {
		return err
	}
	defer s.Close()
	m := concurrency.NewMutex(s, lockPrefix+o.name)
	if err := m.Lock(context.Background()); err != nil {
		return err
	}
	fmt.Println("held")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return m.Unlock(context.Background())
}

// wait queues for the lock (at most --timeout seconds when given; SIGINT or
// SIGTERM cancel the wait) and prints when it got it.
func wait(o *opts) error {
	cli, err := connect(o)
	if err != nil {
		return err
	}
	defer cli.Close()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(o.ttl))
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(o.timeout*float64(time.Second)))
		defer cancel()
	}
	m := concurrency.NewMutex(s, lockPrefix+o.name)
	if err := m.Lock(ctx); err != nil {
		return err
	}
	fmt.Println(monotonicNs())
	return m.Unlock(context.Background())
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lease-bench-go latency|handoff|rtt|hold|wait [flags]")
		os.Exit(2)
	}
	cmd := os.Args[1]
	o := &opts{}
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	fs.StringVar(&o.endpoints, "endpoints", "", "etcd endpoints, comma-separated")
	fs.IntVar(&o.iters, "iters", 2000, "measured iterations")
	fs.IntVar(&o.warmup, "warmup", 200, "iterations before measuring")
	fs.IntVar(&o.ttl, "ttl", 10, "session TTL in seconds")
	fs.StringVar(&o.name, "name", "bench-latency-go", "lock name")
	fs.StringVar(&o.out, "out", "", "write the JSON here instead of stdout")
	fs.Float64Var(&o.timeout, "timeout", 0, "wait: give up after this many seconds (0: never)")
	fs.IntVar(&o.settleMs, "settle-ms", 200, "handoff: how long the waiter has been queued before the release")
	_ = fs.Parse(os.Args[2:])

	var (
		res map[string]any
		err error
	)
	switch cmd {
	case "latency":
		res, err = latency(o)
	case "handoff":
		res, err = handoff(o)
	case "rtt":
		res, err = rtt(o)
	case "hold":
		err = hold(o)
	case "wait":
		err = wait(o)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err == nil && res != nil {
		var b []byte
		b, err = json.Marshal(res)
		if err == nil {
			if o.out != "" {
				err = os.WriteFile(o.out, append(b, '\n'), 0o644)
			} else {
				fmt.Println(string(b))
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lease-bench-go:", err)
		os.Exit(1)
	}
}
