package shardkit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The embedded proxy in front of real memcached servers: /usr/bin/memcached
// (or $SHARDKIT_MEMCACHED), started on free loopback ports and killed when
// the test ends. A missing memcached fails the tests: the Makefile's
// packages install it, and no stand-in replaces it.

// startMemcached starts one memcached and waits until it answers; its
// "host:port" is returned.
func startMemcached(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("SHARDKIT_MEMCACHED")
	if bin == "" {
		bin = "/usr/bin/memcached"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no memcached at %s ('make deps' installs it): %v", bin, err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, port, _ := net.SplitHostPort(addr)
	args := []string{"-l", "127.0.0.1", "-p", port, "-U", "0", "-m", "64", "-t", "2"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root") // memcached refuses root otherwise
	}
	cmd := exec.Command(bin, args...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("memcached exited: %v: %s", err, logs.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			mc := newMC(t, c)
			reply := mc.call("version\r\n")
			c.Close()
			if strings.HasPrefix(reply, "VERSION ") {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("memcached on %s did not answer within 10 s: %s", addr, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxyYAML is one pool named name listening on listen, over servers.
func proxyYAML(name, listen string, servers []string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n  listen: %s\n  hash: md5\n  distribution: ketama\n  timeout: 2000\n", name, listen)
	for _, e := range extra {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	b.WriteString("  servers:\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "   - %s:1\n", s)
	}
	return b.String()
}

// mc is a memcache text-protocol connection.
type mc struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func newMC(t *testing.T, conn net.Conn) *mc {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &mc{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func dialMC(t *testing.T, addr string) *mc {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return newMC(t, c)
}

func (m *mc) line() string {
	m.t.Helper()
	l, err := m.r.ReadString('\n')
	if err != nil {
		m.t.Fatalf("reading a reply: %v (had %q)", err, l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// call sends req and returns the one-line reply.
func (m *mc) call(req string) string {
	m.t.Helper()
	if _, err := io.WriteString(m.conn, req); err != nil {
		m.t.Fatalf("sending %q: %v", req, err)
	}
	return m.line()
}

func (m *mc) set(key, value string) string {
	m.t.Helper()
	return m.call(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", key, len(value), value))
}

// get sends "get k1 k2 ..." and returns the values found.
func (m *mc) get(keys ...string) map[string]string {
	m.t.Helper()
	if _, err := io.WriteString(m.conn, "get "+strings.Join(keys, " ")+"\r\n"); err != nil {
		m.t.Fatal(err)
	}
	found := map[string]string{}
	for {
		l := m.line()
		if l == "END" {
			return found
		}
		f := strings.Fields(l)
		if len(f) != 4 || f[0] != "VALUE" {
			m.t.Fatalf("get %v: unexpected line %q", keys, l)
		}
		n, _ := strconv.Atoi(f[3])
		data := make([]byte, n+2)
		if _, err := io.ReadFull(m.r, data); err != nil {
			m.t.Fatal(err)
		}
		found[f[1]] = string(data[:n])
	}
}

func mustStartProxy(t *testing.T, config string, opts *ProxyOptions) *Proxy {
	t.Helper()
	p, err := StartProxy(config, opts)
	if err != nil {
		t.Fatalf("StartProxy: %v\n%s", err, config)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func mustAddress(t *testing.T, p *Proxy, pool string) string {
	t.Helper()
	addr, err := p.Address(pool)
	if err != nil {
		t.Fatalf("Address(%q): %v", pool, err)
	}
	return addr
}

func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return true
}

// refusedSoon is refused, allowing the listener up to 5 s to close: a
// reload signals a removed pool's listener to stop and returns without
// waiting for it (Close, by contrast, waits).
func refusedSoon(addr string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !refused(addr) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func TestProxyBadConfigIsErrConfigNamingTheKey(t *testing.T) {
	server := startMemcached(t)
	_, err := StartProxy(proxyYAML("cache", "127.0.0.1:0", []string{server}, "hsah_tag: '{}'"), nil)
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v, want ErrConfig", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "hsah_tag") || !strings.Contains(msg, "line 6") {
		t.Fatalf("message does not name the key and line: %q", msg)
	}
	_, err = StartProxy(proxyYAML("cache", "127.0.0.1:0", []string{server}, "replicas: lots"), nil)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("err = %v, want ErrConfig naming replicas", err)
	}
}

func TestProxyAddressInUseIsErrIO(t *testing.T) {
	server := startMemcached(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = StartProxy(proxyYAML("cache", l.Addr().String(), []string{server}), nil)
	if !errors.Is(err, ErrIO) || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("err = %v, want ErrIO naming %s", err, l.Addr())
	}
}

func TestProxySetGet(t *testing.T) {
	servers := []string{startMemcached(t), startMemcached(t), startMemcached(t)}
	p := mustStartProxy(t, proxyYAML("cache", "127.0.0.1:0", servers), nil)
	addr := mustAddress(t, p, "cache")
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Address = %q, want 127.0.0.1 and the port chosen", addr)
	}

	c := dialMC(t, addr)
	var keys []string
	want := map[string]string{}
	for i := range 60 {
		k, v := fmt.Sprintf("go:%d", i), fmt.Sprintf("value-%d", i)
		keys = append(keys, k)
		want[k] = v
		if r := c.set(k, v); r != "STORED" {
			t.Fatalf("set %s: %q", k, r)
		}
	}
	for _, k := range keys {
		if got := c.get(k); got[k] != want[k] || len(got) != 1 {
			t.Fatalf("get %s = %v, want %q", k, got, want[k])
		}
	}
	// One multi-key get spans every shard.
	if got := c.get(keys...); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("multi-get = %v, want %v", got, want)
	}
	if r := c.call("delete go:0\r\n"); r != "DELETED" {
		t.Fatalf("delete: %q", r)
	}
	if got := c.get("go:0"); len(got) != 0 {
		t.Fatalf("get after delete = %v", got)
	}
	// Meta commands pass through too.
	if r := c.call("ms go:meta 2 T0\r\nhi\r\n"); r != "HD" {
		t.Fatalf("ms: %q", r)
	}
	if r := c.call("mg go:meta s v\r\n"); r != "VA 2 s2" {
		t.Fatalf("mg: %q", r)
	} else if d := c.line(); d != "hi" {
		t.Fatalf("mg data: %q", d)
	}

	// Every server holds some of the keys, each key exactly one.
	total := 0
	for _, s := range servers {
		n := len(dialMC(t, s).get(keys[1:]...))
		if n == 0 {
			t.Errorf("server %s holds none of the keys", s)
		}
		total += n
	}
	if total != len(keys)-1 {
		t.Fatalf("the servers hold %d keys, want %d", total, len(keys)-1)
	}
}

func TestProxyAddressOfUnknownPoolIsErrNotFound(t *testing.T) {
	server := startMemcached(t)
	p := mustStartProxy(t, proxyYAML("cache", "127.0.0.1:0", []string{server}), nil)
	_, err := p.Address("nope")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if msg := err.Error(); !strings.Contains(msg, `"nope"`) || !strings.Contains(msg, `"cache"`) {
		t.Fatalf("message does not name the pool asked for and the pools: %q", msg)
	}
}

func TestProxyReloadKeepsClientConnections(t *testing.T) {
	servers := []string{startMemcached(t), startMemcached(t), startMemcached(t)}
	p := mustStartProxy(t, proxyYAML("cache", "127.0.0.1:0", servers), nil)
	addr := mustAddress(t, p, "cache")
	c := dialMC(t, addr)
	if r := c.set("reload:a", "1"); r != "STORED" {
		t.Fatalf("set: %q", r)
	}

	// Same pool, same servers, another setting: the listener stays.
	if err := p.Reload(proxyYAML("cache", "127.0.0.1:0", servers, "server_failure_limit: 3")); err != nil {
		t.Fatal(err)
	}
	if got := mustAddress(t, p, "cache"); got != addr {
		t.Fatalf("address moved: %s -> %s", addr, got)
	}
	if got := c.get("reload:a"); got["reload:a"] != "1" {
		t.Fatalf("get after reload = %v", got)
	}

	// A bad configuration changes nothing.
	err := p.Reload(proxyYAML("cache", "127.0.0.1:0", servers, "hsah: md5"))
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "hsah") {
		t.Fatalf("err = %v, want ErrConfig naming hsah", err)
	}
	if got := c.get("reload:a"); got["reload:a"] != "1" {
		t.Fatalf("get after a refused reload = %v", got)
	}

	// The bound port may be named instead of :0; a new pool starts.
	if err := p.Reload(proxyYAML("cache", addr, servers) + proxyYAML("extra", "127.0.0.1:0", servers[:1])); err != nil {
		t.Fatal(err)
	}
	extra := mustAddress(t, p, "extra")
	if r := dialMC(t, extra).set("reload:b", "2"); r != "STORED" {
		t.Fatalf("set through the new pool: %q", r)
	}
	if got := c.get("reload:a", "reload:b"); got["reload:a"] != "1" {
		t.Fatalf("get after adding a pool = %v", got)
	}

	// Fewer servers, and the extra pool gone: the same connection now
	// routes over the two servers left.
	if err := p.Reload(proxyYAML("cache", "127.0.0.1:0", servers[:2])); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Address("extra"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Address(extra) after its removal: %v, want ErrNotFound", err)
	}
	if !refusedSoon(extra) {
		t.Fatalf("the removed pool's %s still accepts 5 s after the reload", extra)
	}
	if r := c.set("reload:c", "3"); r != "STORED" {
		t.Fatalf("set after shrinking: %q", r)
	}
	if got := c.get("reload:c"); got["reload:c"] != "3" {
		t.Fatalf("get after shrinking = %v", got)
	}
}

func TestProxyMetricsNameThePool(t *testing.T) {
	servers := []string{startMemcached(t), startMemcached(t)}
	statsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := mustStartProxy(t, proxyYAML("cache", "127.0.0.1:0", servers),
		&ProxyOptions{StatsAddr: statsAddr, MetricsAddr: metricsAddr})
	c := dialMC(t, mustAddress(t, p, "cache"))
	for i := range 10 {
		if r := c.set(fmt.Sprintf("m:%d", i), "v"); r != "STORED" {
			t.Fatalf("set: %q", r)
		}
	}
	text, err := p.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	var requests float64 = -1
	for _, l := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(l, `shardkit_proxy_requests_total{pool="cache"} `); ok {
			requests, _ = strconv.ParseFloat(rest, 64)
		}
	}
	if requests < 10 {
		t.Fatalf("requests_total for pool cache = %v, want >= 10:\n%s", requests, text)
	}
	for _, s := range servers {
		if !strings.Contains(text, s) {
			t.Errorf("metrics do not name server %s", s)
		}
	}

	// The same over HTTP, and nutcracker's JSON on the stats address.
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `shardkit_proxy_requests_total{pool="cache"}`) {
		t.Fatalf("/metrics does not name the pool:\n%s", body)
	}
	conn, err := net.DialTimeout("tcp", statsAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	raw, err := io.ReadAll(conn)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	var stats map[string]any
	if err := json.Unmarshal(raw, &stats); err != nil {
		t.Fatalf("stats %q: %v", raw, err)
	}
	pool, ok := stats["cache"].(map[string]any)
	if stats["service"] != "nutcracker" || !ok {
		t.Fatalf("stats do not name the pool: %s", raw)
	}
	if _, ok := pool[servers[0]+":1"]; !ok {
		t.Fatalf("stats do not name server %s: %s", servers[0], raw)
	}

	// The same through the API: stats JSON, pools and bound addresses.
	js, err := p.Stats()
	if err != nil || !strings.Contains(js, `"service":"nutcracker"`) {
		t.Fatalf("Stats() = %q, %v", js, err)
	}
	pools, err := p.Listening()
	if err != nil || pools["cache"] != mustAddress(t, p, "cache") {
		t.Fatalf("Listening() = %v, %v", pools, err)
	}
	if a, err := p.StatsAddr(); err != nil || a != statsAddr {
		t.Fatalf("StatsAddr() = %q, %v; want %q", a, err, statsAddr)
	}
	if a, err := p.MetricsAddr(); err != nil || a != metricsAddr {
		t.Fatalf("MetricsAddr() = %q, %v; want %q", a, err, metricsAddr)
	}
	bare := mustStartProxy(t, proxyYAML("bare", "127.0.0.1:0", servers), nil)
	if _, err := bare.StatsAddr(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("StatsAddr() without one: %v, want ErrNotFound", err)
	}
}

func TestProxyCloseTwice(t *testing.T) {
	server := startMemcached(t)
	p, err := StartProxy(proxyYAML("cache", "127.0.0.1:0", []string{server}), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := mustAddress(t, p, "cache")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Address("cache"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Address after Close: %v, want ErrClosed", err)
	}
	if _, err := p.Metrics(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Metrics after Close: %v, want ErrClosed", err)
	}
	if err := p.Reload(proxyYAML("cache", "127.0.0.1:0", []string{server})); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reload after Close: %v, want ErrClosed", err)
	}
	if !refused(addr) {
		t.Fatalf("%s still accepts after Close", addr)
	}
	var nilProxy *Proxy
	if err := nilProxy.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestProxyCloseWithCallsInFlight(t *testing.T) {
	server := startMemcached(t)
	for round := range 5 {
		p, err := StartProxy(proxyYAML("cache", "127.0.0.1:0", []string{server}), nil)
		if err != nil {
			t.Fatal(err)
		}
		addr := mustAddress(t, p, "cache")
		var wg sync.WaitGroup
		var mu sync.Mutex
		answered, closed := 0, 0
		// Close comes once every goroutine has had an answer, so calls are
		// in flight, or about to be, when it runs.
		var warm sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			warm.Add(1)
			go func() {
				defer wg.Done()
				first := true
				for {
					var err error
					if g%2 == 0 {
						var got string
						got, err = p.Address("cache")
						if err == nil && got != addr {
							t.Errorf("Address = %q, want %q", got, addr)
						}
					} else {
						var text string
						text, err = p.Metrics()
						if err == nil && !strings.Contains(text, `pool="cache"`) {
							t.Errorf("metrics without the pool: %q", text)
						}
					}
					mu.Lock()
					switch {
					case err == nil:
						answered++
					case errors.Is(err, ErrClosed):
						closed++
					default:
						t.Errorf("call during Close: %v", err)
					}
					mu.Unlock()
					if first {
						first = false
						warm.Done()
					}
					if err != nil {
						return
					}
				}
			}()
		}
		warm.Wait()
		time.Sleep(time.Duration(round) * time.Millisecond)
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if closed != 8 || answered < 8 {
			t.Fatalf("round %d: %d goroutines saw ErrClosed, want 8 (%d answered)", round, closed, answered)
		}
		if !refused(addr) {
			t.Fatalf("round %d: %s still accepts after Close", round, addr)
		}
	}
}
