package shardkit

// #include "shardkit.h"
import "C"

import (
	"runtime"
	"strings"
)

// ProxyOptions says where a Proxy reports on itself. A nil *ProxyOptions,
// like the zero value, serves neither: nothing listens unless asked.
type ProxyOptions struct {
	// StatsAddr ("host:port") serves nutcracker's JSON stats: every
	// connection gets the document and is closed (nutcracker -s/-a).
	StatsAddr string
	// MetricsAddr ("host:port") serves Prometheus text at /metrics over
	// HTTP.
	MetricsAddr string
}

// Proxy is the engine's cache proxy run inside this process: a nutcracker
// (twemproxy) drop-in for memcache (text and meta) and Redis, serving
// every pool of its configuration on the engine's runtime, for tests and
// sidecars. Safe for concurrent use, Close included: calls in flight when
// Close runs complete normally, the proxy stops once the last one returns,
// and later calls get ErrClosed. A finalizer stops a forgotten proxy
// eventually, but its listeners stay open until then: close it.
type Proxy struct {
	ref *cref
	ptr *C.shardkit_proxy
}

// StartProxy starts a proxy serving every pool of config: nutcracker's YAML
// plus shardkit's pool keys (algorithm, replicas, eject_mode, hot_keys,
// ...). Every pool's listen address is bound before it returns; port 0
// lets the system choose, which Address then tells. Errors: ErrConfig
// naming the key and line for a bad configuration; ErrIO naming the
// address when one cannot be bound. On error nothing is left listening.
func StartProxy(config string, opts *ProxyOptions) (*Proxy, error) {
	var stats, metrics string
	if opts != nil {
		stats, metrics = opts.StatsAddr, opts.MetricsAddr
	}
	var out *C.shardkit_proxy
	err := call(func() C.shardkit_status {
		return C.shardkit_proxy_start(
			stringPtr(config), C.size_t(len(config)),
			stringPtr(stats), C.size_t(len(stats)),
			stringPtr(metrics), C.size_t(len(metrics)),
			&out)
	})
	if err != nil {
		return nil, err
	}
	p := &Proxy{ptr: out}
	p.ref = newCref(func() { C.shardkit_proxy_free(out) })
	runtime.SetFinalizer(p, (*Proxy).Close)
	return p, nil
}

// Address is the address pool listens on: "host:port" (the port the system
// chose when the configuration said port 0), or the unix socket path.
// ErrNotFound, naming the pools there are, for an unknown pool; ErrClosed
// after Close.
func (p *Proxy) Address(pool string) (string, error) {
	if !p.ref.acquire() {
		return "", ErrClosed
	}
	defer p.ref.release()
	var out *C.char
	err := call(func() C.shardkit_status {
		return C.shardkit_proxy_address(p.ptr, stringPtr(pool), C.size_t(len(pool)), &out)
	})
	if err != nil {
		return "", err
	}
	addr := C.GoString(out)
	C.shardkit_string_free(out)
	return addr, nil
}

// Reload applies a new configuration without dropping client connections:
// pools that stay keep their listeners (a pool first given port 0 may name
// either port 0 or the port it got) and, when their servers are unchanged,
// their backend connections; new pools start listening; removed pools stop.
// On error (ErrConfig, ErrIO) nothing changes. ErrClosed after Close.
func (p *Proxy) Reload(config string) error {
	if !p.ref.acquire() {
		return ErrClosed
	}
	defer p.ref.release()
	return call(func() C.shardkit_status {
		return C.shardkit_proxy_reload(p.ptr, stringPtr(config), C.size_t(len(config)))
	})
}

// Metrics is the Prometheus text exposition of every pool, as /metrics
// serves it. ErrClosed after Close.
func (p *Proxy) Metrics() (string, error) {
	return p.text(func(out **C.char) C.shardkit_status {
		return C.shardkit_proxy_metrics(p.ptr, out)
	})
}

// Stats is nutcracker's JSON stats of every pool, as the stats address
// serves them. ErrClosed after Close.
func (p *Proxy) Stats() (string, error) {
	return p.text(func(out **C.char) C.shardkit_status {
		return C.shardkit_proxy_stats(p.ptr, out)
	})
}

// Listening maps every pool to the address it listens on (the port the
// system chose where the configuration said port 0). ErrClosed after Close.
func (p *Proxy) Listening() (map[string]string, error) {
	text, err := p.text(func(out **C.char) C.shardkit_status {
		return C.shardkit_proxy_listening(p.ptr, out)
	})
	if err != nil {
		return nil, err
	}
	pools := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if pool, addr, ok := strings.Cut(line, "\t"); ok {
			pools[pool] = addr
		}
	}
	return pools, nil
}

// StatsAddr is the address the stats listener is bound to; ErrNotFound
// when the proxy was started without one.
func (p *Proxy) StatsAddr() (string, error) {
	return p.text(func(out **C.char) C.shardkit_status {
		return C.shardkit_proxy_admin_address(p.ptr, 0, out)
	})
}

// MetricsAddr is the address the metrics listener is bound to;
// ErrNotFound when the proxy was started without one.
func (p *Proxy) MetricsAddr() (string, error) {
	return p.text(func(out **C.char) C.shardkit_status {
		return C.shardkit_proxy_admin_address(p.ptr, 1, out)
	})
}

// text runs one call that hands back a library string, and frees it.
func (p *Proxy) text(f func(out **C.char) C.shardkit_status) (string, error) {
	if !p.ref.acquire() {
		return "", ErrClosed
	}
	defer p.ref.release()
	var out *C.char
	if err := call(func() C.shardkit_status { return f(&out) }); err != nil {
		return "", err
	}
	text := C.GoString(out)
	C.shardkit_string_free(out)
	return text, nil
}

// Close stops the proxy: its listeners close, connections already open get
// the replies to what they sent, and the engine waits (at most 5 s) for the
// proxy's tasks, so its sockets and memory are back when the last call in
// flight has returned. Safe to call more than once, and with calls in
// flight; always returns nil.
func (p *Proxy) Close() error {
	if p != nil && p.ref.close() {
		runtime.SetFinalizer(p, nil)
	}
	return nil
}
