package shardkit

// #include "shardkit.h"
import "C"

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Node is a member of a node set: a unique name and a positive weight.
// Algorithms that ignore weights (jump, jumpback, memento) require weight 1.
type Node struct {
	Name   string
	Weight int64
}

// Config chooses how keys are placed. The zero value, like a nil *Config,
// takes every default: the engine's default algorithm, that algorithm's
// default hash, and no hash tag.
type Config struct {
	// Algorithm is a name the engine parses: "modulo", "ketama" (alias of
	// "ketama:twemproxy"), "ketama:nginx", "ketama:uhashring", "jump",
	// "jumpback", "rendezvous", "maglev[:TABLE_SIZE]",
	// "bounded[:LOAD_FACTOR]", "memento". Empty for the default.
	Algorithm string
	// Hash is a key hash name: "xxh3", "xxh3:SEED", "fnv1a_64", "md5",
	// "crc32", "crc32a", ... Empty for the algorithm's default.
	Hash string
	// HashTag is a two-character delimiter pair such as "{}": only the bytes
	// between them are hashed, so related keys land together. Empty for none.
	HashTag string
}

// Movement says how many keys change node between two snapshots.
type Movement struct {
	// Fraction is the share of sampled keys whose node (by name) differs.
	Fraction float64
	// Minimum is the least any placement function must move for this change:
	// the share of weight that changes hands.
	Minimum float64
}

// Balance says how evenly keys spread over a snapshot's nodes, each load
// taken relative to the node's fair share by weight.
type Balance struct {
	// PeakToMean is the highest load over its fair share (1.0 is perfect).
	PeakToMean float64
	// Stddev is the standard deviation of load over fair share.
	Stddev float64
}

// Sharder is one immutable sharding snapshot: a node set, its algorithm and
// the nodes marked down. Every method is safe for concurrent use, Close
// included: a call in flight when Close runs completes normally, the C memory
// is released once the last such call returns, and later calls get
// ErrClosed. Membership changes return a new Sharder and leave this one as it
// was; each Sharder must be closed on its own (a finalizer closes forgotten
// ones eventually, but C memory does not pressure Go's GC, so close promptly).
type Sharder struct {
	ref   *cref
	ptr   *C.shardkit_sharder
	nodes *nodeCache
}

// nodeCache maps slots to nodes, fetched once per snapshot so that lookups
// return a name without a second C call. Shared, read-only, between clones.
type nodeCache struct {
	names   []string // by slot; "" for an empty slot
	weights []uint32 // by slot; 0 for an empty slot
	list    []Node   // the nodes in slot order
}

// liveHandles counts C sharders not yet freed, for the leak tests.
var liveHandles atomic.Int64

// wrap adopts a C sharder. On error it frees ptr itself.
func wrap(ptr *C.shardkit_sharder, nodes *nodeCache) (*Sharder, error) {
	if nodes == nil {
		var err error
		if nodes, err = loadNodes(ptr); err != nil {
			C.shardkit_sharder_free(ptr)
			return nil, err
		}
	}
	s := &Sharder{ptr: ptr, nodes: nodes}
	liveHandles.Add(1)
	s.ref = newCref(func() {
		C.shardkit_sharder_free(ptr)
		liveHandles.Add(-1)
	})
	runtime.SetFinalizer(s, (*Sharder).Close)
	return s, nil
}

// loadNodes reads a snapshot's nodes with shardkit_sharder_nodes: every
// slot's name (packed into one buffer), its offsets and weights in one C
// call, or two when the names outgrow the first guess of their size (the
// second is sized by what the first reported). Reading slot by slot cost
// two cgo calls per slot, which made a new 10,000-node jump snapshot about
// a third slower to build.
func loadNodes(ptr *C.shardkit_sharder) (*nodeCache, error) {
	slots := int(C.shardkit_sharder_slot_count(ptr))
	// offsets[i]..offsets[i+1] is slot i's name in buf (empty for an empty
	// slot, as no node's name is).
	offsets := make([]uint, slots+1)
	weights := make([]uint32, slots)
	// Room for names of up to 24 bytes ("10.0.0.12:11211", "cache-17")
	// without a second call; longer ones cost that call.
	buf := make([]byte, 24*slots)
	var n C.size_t
	err := call(func() C.shardkit_status {
		st := readNodes(ptr, buf, offsets, weights, &n)
		if st == C.SHARDKIT_STATUS_BUFFER_TOO_SMALL {
			// A snapshot never changes, so the size just reported holds.
			buf = make([]byte, n)
			st = readNodes(ptr, buf, offsets, weights, &n)
		}
		return st
	})
	if err != nil {
		return nil, err
	}
	// One Go string holds every name; the per-slot strings are views of it.
	all := string(buf[:n])
	c := &nodeCache{
		names:   make([]string, slots),
		weights: weights,
		list:    make([]Node, 0, slots),
	}
	for i := range slots {
		if start, end := offsets[i], offsets[i+1]; end > start {
			name := all[start:end]
			c.names[i] = name
			c.list = append(c.list, Node{Name: name, Weight: int64(weights[i])})
		}
	}
	return c, nil
}

// readNodes is one shardkit_sharder_nodes call into Go slices, which hold
// no Go pointers and are not kept past the call.
func readNodes(ptr *C.shardkit_sharder, buf []byte, offsets []uint, weights []uint32, n *C.size_t) C.shardkit_status {
	return C.shardkit_sharder_nodes(ptr, bytesPtr(buf), C.size_t(len(buf)),
		(*C.size_t)(unsafe.Pointer(unsafe.SliceData(offsets))), C.size_t(len(offsets)),
		(*C.uint32_t)(unsafe.Pointer(unsafe.SliceData(weights))), C.size_t(len(weights)), n)
}

// acquire registers a call in flight; false once the Sharder is closed.
func (s *Sharder) acquire() bool { return s != nil && s.ref.acquire() }

// release ends a call in flight (see cref.release).
func (s *Sharder) release() { s.ref.release() }

// closed reports whether Close has been called.
func (s *Sharder) closed() bool { return s == nil || s.ref.closed() }

// Close releases the snapshot. It is safe to call more than once and while
// other goroutines use the Sharder; it always returns nil.
func (s *Sharder) Close() error {
	if s != nil && s.ref.close() {
		runtime.SetFinalizer(s, nil)
	}
	return nil
}

// newSharder wraps the snapshot that f makes through its out-parameter.
func newSharder(f func(out **C.shardkit_sharder) C.shardkit_status) (*Sharder, error) {
	var out *C.shardkit_sharder
	if err := call(func() C.shardkit_status { return f(&out) }); err != nil {
		return nil, err
	}
	return wrap(out, nil)
}

// New builds a snapshot over nodes, in order. cfg may be nil for defaults.
func New(nodes []Node, cfg *Config) (*Sharder, error) {
	total := 0
	for _, n := range nodes {
		total += len(n.Name)
	}
	if cfg != nil {
		total += len(cfg.Algorithm) + len(cfg.Hash) + len(cfg.HashTag)
	}
	strs := newCStrings(total)
	defer strs.free()
	// Go memory holding only C pointers may be passed to C.
	cnodes := make([]C.shardkit_node, len(nodes))
	for i, n := range nodes {
		cnodes[i].name, cnodes[i].name_len = strs.add(n.Name)
		cnodes[i].weight = C.int64_t(n.Weight)
	}
	var ccfg *C.shardkit_config
	if cfg != nil {
		ccfg = &C.shardkit_config{}
		// Empty fields stay NULL/0, which the ABI reads as "the default".
		if cfg.Algorithm != "" {
			ccfg.algorithm, ccfg.algorithm_len = strs.add(cfg.Algorithm)
		}
		if cfg.Hash != "" {
			ccfg.hash, ccfg.hash_len = strs.add(cfg.Hash)
		}
		if cfg.HashTag != "" {
			ccfg.hash_tag, ccfg.hash_tag_len = strs.add(cfg.HashTag)
		}
	}
	return newSharder(func(out **C.shardkit_sharder) C.shardkit_status {
		return C.shardkit_sharder_new(unsafe.SliceData(cnodes), C.size_t(len(cnodes)), ccfg, out)
	})
}

// FromTwemproxyYAML builds the snapshot of one pool of a twemproxy
// (nutcracker) YAML configuration, with the pool's hash, hash_tag and
// distribution. pool names the pool; "" takes the first in the document.
// Node names are the server entries as written, without their alias (e.g.
// "127.0.0.1:11211:1").
func FromTwemproxyYAML(yaml []byte, pool string) (*Sharder, error) {
	return newSharder(func(out **C.shardkit_sharder) C.shardkit_status {
		return C.shardkit_sharder_from_twemproxy_yaml(bytesPtr(yaml), C.size_t(len(yaml)),
			stringPtr(pool), C.size_t(len(pool)), out)
	})
}

// FromTwemproxyFile reads a twemproxy YAML file and builds one pool's
// snapshot, as FromTwemproxyYAML. A file that cannot be read is an ErrIO.
func FromTwemproxyFile(path string, pool string) (*Sharder, error) {
	return newSharder(func(out **C.shardkit_sharder) C.shardkit_status {
		return C.shardkit_sharder_from_twemproxy_file(stringPtr(path), C.size_t(len(path)),
			stringPtr(pool), C.size_t(len(pool)), out)
	})
}

// FromNginxUpstream builds an nginx `hash ... consistent` ring from a server
// list such as "127.0.0.1:8081 weight=2,127.0.0.1:8082" (entries separated
// by ',', ';' or newlines). Node names are the addresses as written.
func FromNginxUpstream(list string) (*Sharder, error) {
	return newSharder(func(out **C.shardkit_sharder) C.shardkit_status {
		return C.shardkit_sharder_from_nginx_upstream(stringPtr(list), C.size_t(len(list)), out)
	})
}

// FromUpstream builds a ring over an nginx upstream server list placed by
// algorithm ("" means "ketama:nginx", nginx's own `hash ... consistent`):
// the same servers a Lua balancer or `shardkit http-proxy --algorithm` place.
func FromUpstream(list, algorithm string) (*Sharder, error) {
	return newSharder(func(out **C.shardkit_sharder) C.shardkit_status {
		return C.shardkit_sharder_from_upstream(stringPtr(list), C.size_t(len(list)),
			stringPtr(algorithm), C.size_t(len(algorithm)), out)
	})
}

// Clone returns an independent handle on the same snapshot (no copy of the
// tables is made), to be closed on its own.
func (s *Sharder) Clone() (*Sharder, error) {
	if !s.acquire() {
		return nil, ErrClosed
	}
	defer s.release()
	var c *C.shardkit_sharder
	err := call(func() C.shardkit_status {
		if c = C.shardkit_sharder_clone(s.ptr); c == nil {
			return C.SHARDKIT_STATUS_NULL_POINTER
		}
		return C.SHARDKIT_STATUS_OK
	})
	if err != nil {
		return nil, err
	}
	return wrap(c, s.nodes)
}

// Len is the number of nodes, down ones included (0 once closed).
func (s *Sharder) Len() int {
	if s.closed() {
		return 0
	}
	return len(s.nodes.list)
}

// SlotCount is the number of slots, empty ones included; every slot number
// this snapshot returns is below it (0 once closed).
func (s *Sharder) SlotCount() int {
	if s.closed() {
		return 0
	}
	return len(s.nodes.names)
}

// Nodes returns the nodes in slot order (nil once closed). The slice is a
// copy the caller may keep or modify.
func (s *Sharder) Nodes() []Node {
	if s.closed() {
		return nil
	}
	return append([]Node(nil), s.nodes.list...)
}

// NodeName returns the name of the node in slot; ErrNotFound for an empty or
// out-of-range slot.
func (s *Sharder) NodeName(slot uint32) (string, error) {
	if s.closed() {
		return "", ErrClosed
	}
	if err := s.nodes.check(slot); err != nil {
		return "", err
	}
	return s.nodes.names[slot], nil
}

// NodeWeight returns the weight of the node in slot; ErrNotFound for an
// empty or out-of-range slot.
func (s *Sharder) NodeWeight(slot uint32) (int64, error) {
	if s.closed() {
		return 0, ErrClosed
	}
	if err := s.nodes.check(slot); err != nil {
		return 0, err
	}
	return int64(s.nodes.weights[slot]), nil
}

func (c *nodeCache) check(slot uint32) error {
	// Names are never empty, so an empty name marks an empty slot.
	if int(slot) >= len(c.names) {
		return &Error{Kind: KindNotFound, Message: fmt.Sprintf("slot %d is out of range: the snapshot has %d slots", slot, len(c.names))}
	}
	if c.names[slot] == "" {
		return &Error{Kind: KindNotFound, Message: fmt.Sprintf("slot %d holds no node", slot)}
	}
	return nil
}

// name maps a slot the engine returned to its cached name.
func (c *nodeCache) name(slot C.uint32_t) (string, error) {
	if err := c.check(uint32(slot)); err != nil {
		return "", &Error{Kind: KindPanic, Message: "engine returned an unknown slot: " + err.Error()}
	}
	return c.names[slot], nil
}

// SlotOf returns the slot of the named node; ErrNotFound if there is none.
func (s *Sharder) SlotOf(name string) (uint32, error) {
	if !s.acquire() {
		return 0, ErrClosed
	}
	var slot C.uint32_t
	err := callPure(func() C.shardkit_status {
		return C.shardkit_sharder_slot_of(s.ptr, stringPtr(name), C.size_t(len(name)), &slot)
	})
	s.release()
	if err != nil {
		return 0, err
	}
	return uint32(slot), nil
}

// KeyHash is the hash of key as this snapshot places it: after hash-tag
// selection and with the algorithm's rules (twemproxy hashes an empty key to
// 0). LookupHash of it gives Lookup's answer.
func (s *Sharder) KeyHash(key []byte) (uint64, error) {
	if !s.acquire() {
		return 0, ErrClosed
	}
	var h C.uint64_t
	err := callPure(func() C.shardkit_status {
		return C.shardkit_sharder_key_hash(s.ptr, bytesPtr(key), C.size_t(len(key)), &h)
	})
	s.release()
	if err != nil {
		return 0, err
	}
	return uint64(h), nil
}

// LookupSlot returns the slot of the node serving key, skipping nodes marked
// down; ErrUnavailable when every node is down.
func (s *Sharder) LookupSlot(key []byte) (uint32, error) {
	if !s.acquire() {
		return 0, ErrClosed
	}
	var slot C.uint32_t
	err := callPure(func() C.shardkit_status {
		return C.shardkit_sharder_lookup(s.ptr, bytesPtr(key), C.size_t(len(key)), &slot)
	})
	s.release()
	if err != nil {
		return 0, err
	}
	return uint32(slot), nil
}

// Lookup returns the name of the node serving key, skipping nodes marked
// down; ErrUnavailable when every node is down.
func (s *Sharder) Lookup(key []byte) (string, error) {
	if !s.acquire() {
		return "", ErrClosed
	}
	var slot C.uint32_t
	err := callPure(func() C.shardkit_status {
		return C.shardkit_sharder_lookup(s.ptr, bytesPtr(key), C.size_t(len(key)), &slot)
	})
	s.release()
	if err != nil {
		return "", err
	}
	return s.nodes.name(slot)
}

// LookupString is Lookup for a string key, without copying it.
func (s *Sharder) LookupString(key string) (string, error) {
	if !s.acquire() {
		return "", ErrClosed
	}
	var slot C.uint32_t
	err := callPure(func() C.shardkit_status {
		return C.shardkit_sharder_lookup(s.ptr, stringPtr(key), C.size_t(len(key)), &slot)
	})
	s.release()
	if err != nil {
		return "", err
	}
	return s.nodes.name(slot)
}

// LookupHashSlot returns the slot serving a key hash from KeyHash.
func (s *Sharder) LookupHashSlot(hash uint64) (uint32, error) {
	if !s.acquire() {
		return 0, ErrClosed
	}
	var slot C.uint32_t
	err := callPure(func() C.shardkit_status {
		return C.shardkit_sharder_lookup_hash(s.ptr, C.uint64_t(hash), &slot)
	})
	s.release()
	if err != nil {
		return 0, err
	}
	return uint32(slot), nil
}

// LookupHash returns the name of the node serving a key hash from KeyHash.
func (s *Sharder) LookupHash(hash uint64) (string, error) {
	slot, err := s.LookupHashSlot(hash)
	if err != nil {
		return "", err
	}
	return s.nodes.name(C.uint32_t(slot))
}

// LookupNSlots returns up to n distinct slots for key in a stable order of
// preference, primary first, for replicated placement. Nodes marked down are
// skipped, so fewer than n come back only when nodes are down. n must be
// between 1 and Len().
func (s *Sharder) LookupNSlots(key []byte, n int) ([]uint32, error) {
	if n < 0 {
		return nil, invalidArgf("replica count must be between 1 and the node count, got %d", n)
	}
	if !s.acquire() {
		return nil, ErrClosed
	}
	// The engine rejects n above the node count; the buffer need not be
	// larger than that even when n is (absurdly) large.
	out := make([]uint32, min(n, len(s.nodes.list)))
	var count C.size_t
	err := callPure(func() C.shardkit_status {
		return C.shardkit_sharder_lookup_n(s.ptr, bytesPtr(key), C.size_t(len(key)), C.size_t(n),
			(*C.uint32_t)(unsafe.SliceData(out)), C.size_t(len(out)), &count)
	})
	s.release()
	if err != nil {
		return nil, err
	}
	return out[:count], nil
}

// LookupN returns up to n distinct node names for key, as LookupNSlots.
func (s *Sharder) LookupN(key []byte, n int) ([]string, error) {
	slots, err := s.LookupNSlots(key, n)
	if err != nil {
		return nil, err
	}
	return s.names(slots)
}

func (s *Sharder) names(slots []uint32) ([]string, error) {
	names := make([]string, len(slots))
	for i, slot := range slots {
		name, err := s.nodes.name(C.uint32_t(slot))
		if err != nil {
			return nil, err
		}
		names[i] = name
	}
	return names, nil
}

// LookupPacked looks up count = len(offsets)-1 keys packed back to back in
// data: key i is data[offsets[i]:offsets[i+1]], and its slot goes to out[i].
// This is the zero-copy batch: one C call, no per-key allocation, and the
// engine spreads large batches over its thread pool.
func (s *Sharder) LookupPacked(data []byte, offsets []uint, out []uint32) error {
	if len(offsets) == 0 {
		return invalidArgf("offsets must hold count+1 entries, got an empty slice")
	}
	count := len(offsets) - 1
	if len(out) != count {
		return invalidArgf("output length %d does not match key count %d", len(out), count)
	}
	if !s.acquire() {
		return ErrClosed
	}
	err := callPure(func() C.shardkit_status {
		return C.shardkit_sharder_lookup_batch_packed(s.ptr, bytesPtr(data), C.size_t(len(data)),
			(*C.size_t)(unsafe.Pointer(unsafe.SliceData(offsets))), C.size_t(count),
			(*C.uint32_t)(unsafe.SliceData(out)))
	})
	s.release()
	return err
}

// LookupBatchSlots looks up many keys in one C call: out[i] receives the slot
// of keys[i]. The keys are packed into one buffer first, because C may not
// hold Go memory that itself holds Go pointers (a [][]byte does).
func (s *Sharder) LookupBatchSlots(keys [][]byte, out []uint32) error {
	if len(out) != len(keys) {
		return invalidArgf("output length %d does not match key count %d", len(out), len(keys))
	}
	total := 0
	for _, k := range keys {
		total += len(k)
	}
	data := make([]byte, 0, total)
	offsets := make([]uint, len(keys)+1)
	for i, k := range keys {
		data = append(data, k...)
		offsets[i+1] = uint(len(data))
	}
	return s.LookupPacked(data, offsets, out)
}

// LookupBatch returns the node name for each key, in order.
func (s *Sharder) LookupBatch(keys [][]byte) ([]string, error) {
	slots := make([]uint32, len(keys))
	if err := s.LookupBatchSlots(keys, slots); err != nil {
		return nil, err
	}
	return s.names(slots)
}

// derive runs a membership change on the C side and wraps the result.
func (s *Sharder) derive(f func(ptr *C.shardkit_sharder, out **C.shardkit_sharder) C.shardkit_status) (*Sharder, error) {
	if !s.acquire() {
		return nil, ErrClosed
	}
	defer s.release()
	return newSharder(func(out **C.shardkit_sharder) C.shardkit_status {
		return f(s.ptr, out)
	})
}

// Add returns a new snapshot with node added; ErrDuplicateNode if its name is
// taken.
func (s *Sharder) Add(node Node) (*Sharder, error) {
	strs := newCStrings(len(node.Name))
	defer strs.free()
	var cn C.shardkit_node
	cn.name, cn.name_len = strs.add(node.Name)
	cn.weight = C.int64_t(node.Weight)
	return s.derive(func(ptr *C.shardkit_sharder, out **C.shardkit_sharder) C.shardkit_status {
		return C.shardkit_sharder_add(ptr, &cn, out)
	})
}

// Remove returns a new snapshot without the named node; ErrNotFound if there
// is none, ErrEmptyNodeSet if it is the last.
func (s *Sharder) Remove(name string) (*Sharder, error) {
	return s.derive(func(ptr *C.shardkit_sharder, out **C.shardkit_sharder) C.shardkit_status {
		return C.shardkit_sharder_remove(ptr, stringPtr(name), C.size_t(len(name)), out)
	})
}

// Reweight returns a new snapshot with the named node's weight set.
func (s *Sharder) Reweight(name string, weight int64) (*Sharder, error) {
	return s.derive(func(ptr *C.shardkit_sharder, out **C.shardkit_sharder) C.shardkit_status {
		return C.shardkit_sharder_reweight(ptr, stringPtr(name), C.size_t(len(name)), C.int64_t(weight), out)
	})
}

// SetDown returns a new snapshot with the named node marked down (or up
// again). Lookups skip a down node to the key's next choice; no other key
// moves.
func (s *Sharder) SetDown(name string, down bool) (*Sharder, error) {
	return s.derive(func(ptr *C.shardkit_sharder, out **C.shardkit_sharder) C.shardkit_status {
		return C.shardkit_sharder_set_down(ptr, stringPtr(name), C.size_t(len(name)), C.bool(down), out)
	})
}

// Movement samples keys and reports how many are placed on a different node
// (by name) in other than in s, beside the minimum any function must move.
func (s *Sharder) Movement(other *Sharder, samples int) (Movement, error) {
	if samples < 0 {
		return Movement{}, invalidArgf("sample count must be positive, got %d", samples)
	}
	if other == nil {
		return Movement{}, &Error{Kind: KindNullPointer, Message: "the other Sharder is nil"}
	}
	if !s.acquire() {
		return Movement{}, ErrClosed
	}
	defer s.release()
	if !other.acquire() {
		return Movement{}, ErrClosed
	}
	defer other.release()
	var frac, minimum C.double
	err := call(func() C.shardkit_status {
		return C.shardkit_sharder_movement(s.ptr, other.ptr, C.size_t(samples), &frac, &minimum)
	})
	if err != nil {
		return Movement{}, err
	}
	return Movement{Fraction: float64(frac), Minimum: float64(minimum)}, nil
}

// Balance samples keys and reports how evenly they spread over the nodes.
func (s *Sharder) Balance(samples int) (Balance, error) {
	if samples < 0 {
		return Balance{}, invalidArgf("sample count must be positive, got %d", samples)
	}
	if !s.acquire() {
		return Balance{}, ErrClosed
	}
	var peak, stddev C.double
	err := call(func() C.shardkit_status {
		return C.shardkit_sharder_balance(s.ptr, C.size_t(samples), &peak, &stddev)
	})
	s.release()
	if err != nil {
		return Balance{}, err
	}
	return Balance{PeakToMean: float64(peak), Stddev: float64(stddev)}, nil
}

// ChangeKind says what a [Change] does.
type ChangeKind uint32

// The kinds of membership change [Sharder.Apply] takes.
const (
	// ChangeAdd adds the node Name with Weight (the name must be new).
	ChangeAdd ChangeKind = C.SHARDKIT_CHANGE_KIND_ADD
	// ChangeRemove removes the node Name.
	ChangeRemove ChangeKind = C.SHARDKIT_CHANGE_KIND_REMOVE
	// ChangeReweight sets the weight of node Name to Weight.
	ChangeReweight ChangeKind = C.SHARDKIT_CHANGE_KIND_REWEIGHT
	// ChangeDown marks node Name down: lookups skip it, no other key moves.
	ChangeDown ChangeKind = C.SHARDKIT_CHANGE_KIND_DOWN
	// ChangeUp marks node Name up again.
	ChangeUp ChangeKind = C.SHARDKIT_CHANGE_KIND_UP
)

// Change is one membership change for [Sharder.Apply].
type Change struct {
	Kind   ChangeKind
	Name   string
	Weight int64 // for ChangeAdd and ChangeReweight
}

// Apply returns a new snapshot with all changes applied in order and built
// once. On any error nothing is applied; s is unchanged either way.
func (s *Sharder) Apply(changes ...Change) (*Sharder, error) {
	total := 0
	for _, c := range changes {
		total += len(c.Name)
	}
	strs := newCStrings(total)
	defer strs.free()
	// A Go array of C structs holding only C pointers: legal to pass for the call.
	cc := make([]C.shardkit_change, len(changes)+1)
	for i, c := range changes {
		cc[i].kind = C.uint32_t(c.Kind)
		cc[i].name, cc[i].name_len = strs.add(c.Name)
		cc[i].weight = C.int64_t(c.Weight)
	}
	return s.derive(func(ptr *C.shardkit_sharder, out **C.shardkit_sharder) C.shardkit_status {
		return C.shardkit_sharder_apply(ptr, &cc[0], C.size_t(len(changes)), out)
	})
}

// IsDown reports whether the named node is marked down.
func (s *Sharder) IsDown(name string) (bool, error) {
	slot, err := s.SlotOf(name)
	if err != nil {
		return false, err
	}
	if !s.acquire() {
		return false, ErrClosed
	}
	defer s.release()
	var down C.bool
	err = call(func() C.shardkit_status {
		return C.shardkit_sharder_is_down(s.ptr, C.uint32_t(slot), &down)
	})
	if err != nil {
		return false, err
	}
	return bool(down), nil
}
