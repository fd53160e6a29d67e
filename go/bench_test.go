package shardkit

import (
	"fmt"
	"testing"
)

// Benchmark sizes and algorithms, shared with bench/ (which runs these with
// -tags shardkit_release against an optimised library).
var benchSizes = []int{10, 100, 1000, 10000}

// benchKeys are 20-byte keys, the size the project's targets quote.
func benchKeys(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("key:%016d", i))
	}
	return out
}

func benchSharder(b *testing.B, alg string, n int) *Sharder {
	b.Helper()
	s, err := New(nodeSet(n, false), &Config{Algorithm: alg})
	if err != nil {
		b.Fatalf("New(%s, %d nodes): %v", alg, n, err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkLookup measures one Lookup (key to node name) through cgo, per
// algorithm and node count: BenchmarkLookup/ALG/nodes=N.
func BenchmarkLookup(b *testing.B) {
	ks := benchKeys(1024)
	for _, a := range algorithms {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/nodes=%d", a.name, n), func(b *testing.B) {
				s := benchSharder(b, a.name, n)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := s.Lookup(ks[i&1023]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkLookupBatch measures LookupBatchSlots over 4096 keys, reported per
// key (ns/op is per batch; see the ns/key metric).
func BenchmarkLookupBatch(b *testing.B) {
	const batch = 4096
	ks := benchKeys(batch)
	out := make([]uint32, batch)
	for _, a := range algorithms {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/nodes=%d", a.name, n), func(b *testing.B) {
				s := benchSharder(b, a.name, n)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := s.LookupBatchSlots(ks, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/key")
			})
		}
	}
}
