// Package bench is the Go half of `make bench` (driven by bench/run.sh): the
// cost of one lookup through shardkit's Go binding (cgo call included) for
// every algorithm at 10 to 10,000 nodes, and the same workloads on the Go
// libraries Go users pick instead, measured in the same `go test -bench` run:
//
//   - jump:       github.com/dgryski/go-jump
//   - maglev:     github.com/dgryski/go-maglev (table size 65537, as shardkit's default)
//   - rendezvous: github.com/dgryski/go-rendezvous (keys hashed with xxhash64)
//   - bounded:    github.com/buraksezer/consistent (xxhash64; see boundedConfig)
//   - ring:       github.com/golang/groupcache/consistenthash, 160 crc32 points
//     per node: the shape of nginx's consistent hash (shardkit ketama:nginx)
//
// Keys and hashes are the SplitMix64 streams of bench/rust/src/main.rs, and
// TestChecksums writes the same placement checksums the Rust benchmark
// writes, so the report can check that Go places keys where Rust does.
//
// Run with -tags shardkit_release to link target/release/libshardkit.a.
package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
	jump "github.com/dgryski/go-jump"
	maglev "github.com/dgryski/go-maglev"
	rendezvous "github.com/dgryski/go-rendezvous"
	"github.com/golang/groupcache/consistenthash"
	shardkit "github.com/shardkit/shardkit/go"
)

const (
	keyLen    = 20
	numKeys   = 1 << 14
	keyMask   = numKeys - 1
	checkKeys = 4096
	keySeed   = 0x5eed0001
	hashSeed  = 0x5eed0002
	// ringPoints is nginx's (and ketama's) points per node of weight 1.
	ringPoints = 160
)

var sizes = []int{10, 100, 1000, 10000}

// defaultAlgorithms is used when SHARDKIT_BENCH_ALGORITHMS (comma-separated,
// set by run.sh from the engine's list) is empty.
var defaultAlgorithms = []string{
	"modulo", "ketama:twemproxy", "ketama:nginx", "ketama:uhashring", "jump",
	"jumpback", "rendezvous", "maglev", "bounded", "memento",
}

func algorithms() []string {
	if v := os.Getenv("SHARDKIT_BENCH_ALGORITHMS"); v != "" {
		return strings.Split(v, ",")
	}
	return defaultAlgorithms
}

type splitMix uint64

func (s *splitMix) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// The inputs every language regenerates: see make_keys in the Rust bench.
var (
	keys    [][]byte
	keyStrs []string
	hashes  []uint64
	sink    uint64
)

func init() {
	st := splitMix(keySeed)
	var r uint64
	for i := 0; i < numKeys; i++ {
		k := make([]byte, keyLen)
		for j := range k {
			if j%8 == 0 {
				r = st.next()
			}
			k[j] = byte('a' + ((r>>(8*(j%8)))&0xff)%26)
		}
		keys = append(keys, k)
		keyStrs = append(keyStrs, string(k))
	}
	st = splitMix(hashSeed)
	for i := 0; i < numKeys; i++ {
		hashes = append(hashes, st.next())
	}
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "node-" + strconv.Itoa(i)
	}
	return out
}

// Built objects are cached so -count repetitions time lookups, not builds.
var (
	cacheMu sync.Mutex
	cache   = map[string]any{}
)

func cached[T any](key string, build func() (T, error)) (T, error) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if v, ok := cache[key]; ok {
		return v.(T), nil
	}
	v, err := build()
	if err == nil {
		cache[key] = v
	}
	return v, err
}

func sharder(alg string, n int) (*shardkit.Sharder, error) {
	return cached(fmt.Sprintf("shardkit/%s/%d", alg, n), func() (*shardkit.Sharder, error) {
		nodes := make([]shardkit.Node, n)
		for i, name := range names(n) {
			nodes[i] = shardkit.Node{Name: name, Weight: 1}
		}
		return shardkit.New(nodes, &shardkit.Config{Algorithm: alg})
	})
}

// BenchmarkShardkit: per lookup through the Go binding. "hash" is
// LookupHashSlot on a precomputed key hash; "key" is Lookup on a 20-byte key
// (hash included), returning the node name as the peers do.
func BenchmarkShardkit(b *testing.B) {
	for _, alg := range algorithms() {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("alg=%s/n=%d/hash", alg, n), func(b *testing.B) {
				s, err := sharder(alg, n)
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				var acc uint64
				for i := 0; i < b.N; i++ {
					slot, err := s.LookupHashSlot(hashes[i&keyMask])
					if err != nil {
						b.Fatal(err)
					}
					acc += uint64(slot)
				}
				sink = acc
			})
			b.Run(fmt.Sprintf("alg=%s/n=%d/key", alg, n), func(b *testing.B) {
				s, err := sharder(alg, n)
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				var acc uint64
				for i := 0; i < b.N; i++ {
					node, err := s.Lookup(keys[i&keyMask])
					if err != nil {
						b.Fatal(err)
					}
					acc += uint64(len(node))
				}
				sink = acc
			})
		}
	}
}

// xxHasher adapts xxhash to buraksezer/consistent's Hasher.
type xxHasher struct{}

func (xxHasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

type member string

func (m member) String() string { return string(m) }

// boundedConfig is buraksezer/consistent's default configuration
// (ReplicationFactor 20, Load 1.25) with its default PartitionCount of 271
// per 10 members: exactly the default at 10 nodes, and the same 27.1
// partitions per member at every size. The default's 271 partitions in all
// cannot be spread over more than 271 members (it panics), and 271 per
// member would make the map it reads per lookup 10× larger than needed.
func boundedConfig(n int) consistent.Config {
	return consistent.Config{
		Hasher:            xxHasher{},
		PartitionCount:    consistent.DefaultPartitionCount * ((n + 9) / 10),
		ReplicationFactor: consistent.DefaultReplicationFactor,
		Load:              consistent.DefaultLoad,
	}
}

func timeLoop(b *testing.B, f func(i int) uint64) {
	b.ResetTimer()
	var acc uint64
	for i := 0; i < b.N; i++ {
		acc += f(i)
	}
	sink = acc
}

// boundedMaxNodes is the largest member count buraksezer/consistent is
// measured at: it re-sorts its whole ring for every member added, so building
// it over 10,000 members takes about 90 s on a 2-core machine.
const boundedMaxNodes = 1000

// BenchmarkPeers: the same workloads on the Go libraries users pick. "hash"
// rows take a precomputed uint64 key hash (what go-jump and go-maglev take);
// "key" rows take the 20-byte key and return the node's name (xxhash64 where
// the library leaves the key hash to the caller). Each structure is built
// once, on first use, outside the timed loop.
func BenchmarkPeers(b *testing.B) {
	for _, n := range sizes {
		nodeNames := names(n)
		b.Run(fmt.Sprintf("peer=go-jump/n=%d/hash", n), func(b *testing.B) {
			timeLoop(b, func(i int) uint64 { return uint64(jump.Hash(hashes[i&keyMask], n)) })
		})
		b.Run(fmt.Sprintf("peer=go-jump/n=%d/key", n), func(b *testing.B) {
			timeLoop(b, func(i int) uint64 {
				return uint64(len(nodeNames[jump.Hash(xxhash.Sum64(keys[i&keyMask]), n)]))
			})
		})
		maglevTable := func() *maglev.Table {
			t, _ := cached(fmt.Sprintf("maglev/%d", n), func() (*maglev.Table, error) {
				return maglev.New(nodeNames, maglev.SmallM), nil
			})
			return t
		}
		b.Run(fmt.Sprintf("peer=go-maglev/n=%d/hash", n), func(b *testing.B) {
			table := maglevTable()
			timeLoop(b, func(i int) uint64 { return uint64(table.Lookup(hashes[i&keyMask])) })
		})
		b.Run(fmt.Sprintf("peer=go-maglev/n=%d/key", n), func(b *testing.B) {
			table := maglevTable()
			timeLoop(b, func(i int) uint64 {
				return uint64(len(nodeNames[table.Lookup(xxhash.Sum64(keys[i&keyMask]))]))
			})
		})
		b.Run(fmt.Sprintf("peer=go-rendezvous/n=%d/key", n), func(b *testing.B) {
			rdv, _ := cached(fmt.Sprintf("rendezvous/%d", n), func() (*rendezvous.Rendezvous, error) {
				return rendezvous.New(nodeNames, xxhash.Sum64String), nil
			})
			timeLoop(b, func(i int) uint64 { return uint64(len(rdv.Lookup(keyStrs[i&keyMask]))) })
		})
		if n <= boundedMaxNodes {
			b.Run(fmt.Sprintf("peer=buraksezer-consistent/n=%d/key", n), func(b *testing.B) {
				c, _ := cached(fmt.Sprintf("bounded/%d", n), func() (*consistent.Consistent, error) {
					members := make([]consistent.Member, n)
					for i, name := range nodeNames {
						members[i] = member(name)
					}
					return consistent.New(members, boundedConfig(n)), nil
				})
				timeLoop(b, func(i int) uint64 { return uint64(len(c.LocateKey(keys[i&keyMask]).String())) })
			})
		}
		b.Run(fmt.Sprintf("peer=groupcache-consistenthash/n=%d/key", n), func(b *testing.B) {
			ring, _ := cached(fmt.Sprintf("ring/%d", n), func() (*consistenthash.Map, error) {
				m := consistenthash.New(ringPoints, nil)
				m.Add(nodeNames...)
				return m, nil
			})
			timeLoop(b, func(i int) uint64 { return uint64(len(ring.Get(keyStrs[i&keyMask]))) })
		})
	}
}

// TestChecksums writes, to $SHARDKIT_BENCH_CHECKS, the sums of slots over the
// first keys and hashes for every algorithm and size: the report compares
// them with Rust's. Without the variable it only checks that lookups succeed.
func TestChecksums(t *testing.T) {
	type row struct {
		Algorithm string `json:"algorithm"`
		Nodes     int    `json:"nodes"`
		CheckKey  uint64 `json:"check_key"`
		CheckHash uint64 `json:"check_hash"`
	}
	var rows []row
	for _, alg := range algorithms() {
		for _, n := range sizes {
			s, err := sharder(alg, n)
			if err != nil {
				t.Fatalf("%s over %d nodes: %v", alg, n, err)
			}
			r := row{Algorithm: alg, Nodes: n}
			for i := 0; i < checkKeys; i++ {
				slot, err := s.LookupSlot(keys[i])
				if err != nil {
					t.Fatal(err)
				}
				r.CheckKey += uint64(slot)
				slot, err = s.LookupHashSlot(hashes[i])
				if err != nil {
					t.Fatal(err)
				}
				r.CheckHash += uint64(slot)
			}
			rows = append(rows, r)
		}
	}
	path := os.Getenv("SHARDKIT_BENCH_CHECKS")
	if path == "" {
		return
	}
	data, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
