// Package shardkit places keys on nodes: consistent hashing (ketama rings
// compatible with twemproxy, nginx and uhashring; jump; jumpback; rendezvous;
// maglev; bounded loads; memento) and modulo, over immutable snapshots of a
// node set. It is a thin binding over shardkit's C library; placement is
// computed by the same engine as the Rust, C, Python and CLI front ends, so a
// key maps to the same node from every language.
//
//	s, err := shardkit.New([]shardkit.Node{{Name: "cache-a", Weight: 1}, {Name: "cache-b", Weight: 2}},
//		&shardkit.Config{Algorithm: "ketama:twemproxy"})
//	if err != nil { ... }
//	defer s.Close()
//	node, err := s.LookupString("user:42")
//
// # Snapshots and membership
//
// A Sharder never changes. Add, Remove, Reweight and SetDown return a new
// Sharder; the old one keeps answering until it is closed. Live holds the
// current snapshot of a changing set and swaps it atomically for readers.
//
// # Leases, locks and elections
//
// A Coordinator reaches etcd (Connect) or an embedded in-process store
// (NewEmbeddedCoordinator). A Session is a lease kept alive in the
// background; its Lost channel closes when the lease can no longer be
// trusted, strictly before the server can expire it. Locks and elections
// return fencing tokens; Lock.Put writes only while the lock is held, and a
// FenceGate refuses writes carrying an older token. A ScopedLock takes its
// lock under a lease of its own and revokes it on release. Observe follows an
// election's leader, reporting a store that keeps failing on the same
// channel. Every blocking call takes a context: its deadline bounds the wait
// and cancelling it withdraws the waiter.
//
//	coord, err := shardkit.Connect(ctx, "127.0.0.1:2379")
//	sess, err := coord.Session(ctx, 10*time.Second)
//	lock, err := sess.Lock("jobs")
//	token, err := lock.Lock(ctx)
//	defer lock.Unlock(ctx)
//
// # Cache proxy
//
// StartProxy runs the engine's cache proxy (a nutcracker drop-in for
// memcache text and meta, and Redis) inside the process, from nutcracker's
// YAML; Address tells where a pool listens (port 0 is allowed), Reload
// swaps the configuration without dropping client connections, Metrics is
// the Prometheus text, and Close stops it.
//
//	p, err := shardkit.StartProxy(yaml, &shardkit.ProxyOptions{MetricsAddr: "127.0.0.1:9100"})
//	defer p.Close()
//	addr, err := p.Address("cache")
//
// # Errors
//
// Every engine error is an *Error whose Kind is one of shardkit's stable
// codes; compare with errors.Is against ErrInvalidArgument, ErrDuplicateNode
// and the other sentinels. The message names the offending value. Methods of
// a closed Sharder return ErrClosed.
//
// # Building and linking
//
// The package links the static library libshardkit.a from the repository's
// cargo target directory and includes ../include/shardkit.h, so build the
// library first:
//
//	cargo build -p shardkit-ffi                 # target/debug, the default
//	cargo build --release -p shardkit-ffi       # for -tags shardkit_release
//
// Build tags select the library:
//
//   - (none): ../target/debug/libshardkit.a, what tests use;
//   - shardkit_release: ../target/release/libshardkit.a, for benchmarks and
//     deployment (go test -tags shardkit_release -bench .);
//   - shardkit_system: -lshardkit from the linker's search path, for a library
//     installed elsewhere (set CGO_LDFLAGS=-L... and, if needed, CGO_CFLAGS=-I...).
//
// # Memory and threads
//
// Go memory is handed to C only for the duration of one call, as the cgo
// pointer rules require: keys are passed in place (they hold no pointers),
// and batches are packed into one buffer. Each Sharder owns one C handle,
// released by Close (or, as a safety net, by a finalizer). The engine's
// last-error text is per OS thread, so each fallible call runs with its
// goroutine locked to its thread until the text of a failure has been read.
package shardkit
