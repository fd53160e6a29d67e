package shardkit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The algorithms a Go caller can name. Weighted ones get unequal weights in
// the tests; the rest take weight 1 only.
var algorithms = []struct {
	name     string
	weighted bool
}{
	{"modulo", true},
	{"ketama:twemproxy", true},
	{"ketama:nginx", true},
	{"ketama:uhashring", true},
	{"jump", false},
	{"jumpback", false},
	{"rendezvous", true},
	{"maglev", true},
	{"bounded", true},
	{"memento", false},
}

func nodeSet(n int, weighted bool) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		w := int64(1)
		if weighted {
			w = int64(1 + i%3)
		}
		nodes[i] = Node{Name: fmt.Sprintf("node-%02d", i), Weight: w}
	}
	return nodes
}

func keys(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("user:%d", i))
	}
	out[0] = []byte{} // the empty key is a key too
	return out
}

func mustNew(t testing.TB, nodes []Node, cfg *Config) *Sharder {
	t.Helper()
	s, err := New(nodes, cfg)
	if err != nil {
		t.Fatalf("New(%d nodes, %+v): %v", len(nodes), cfg, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// forEachAlgorithm runs f for every algorithm the linked engine knows,
// failing on those it does not: each is part of the contract.
func forEachAlgorithm(t *testing.T, f func(t *testing.T, alg string, weighted bool)) {
	for _, a := range algorithms {
		t.Run(a.name, func(t *testing.T) { f(t, a.name, a.weighted) })
	}
}

func TestVersionMatchesCargo(t *testing.T) {
	manifest, err := os.ReadFile(filepath.Join("..", "Cargo.toml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^version\s*=\s*"([^"]+)"`).FindSubmatch(manifest)
	if m == nil {
		t.Fatal("no version in ../Cargo.toml")
	}
	if got := Version(); got != string(m[1]) {
		t.Fatalf("Version() = %q, Cargo.toml says %q", got, m[1])
	}
}

func TestLookupAgreesAcrossEntryPoints(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, alg string, weighted bool) {
		nodes := nodeSet(7, weighted)
		s := mustNew(t, nodes, &Config{Algorithm: alg})
		twin := mustNew(t, nodes, &Config{Algorithm: alg})
		seen := map[string]int{}
		for _, k := range keys(2000) {
			name, err := s.Lookup(k)
			if err != nil {
				t.Fatalf("Lookup(%q): %v", k, err)
			}
			seen[name]++
			if got, _ := s.LookupString(string(k)); got != name {
				t.Fatalf("LookupString(%q) = %q, Lookup = %q", k, got, name)
			}
			if got, _ := twin.Lookup(k); got != name {
				t.Fatalf("an identical snapshot places %q on %q, not %q", k, got, name)
			}
			slot, err := s.LookupSlot(k)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := s.NodeName(slot); got != name {
				t.Fatalf("LookupSlot(%q) = %d = %q, Lookup = %q", k, slot, got, name)
			}
			h, err := s.KeyHash(k)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := s.LookupHash(h); got != name {
				t.Fatalf("LookupHash(KeyHash(%q)) = %q, Lookup = %q", k, got, name)
			}
			if got, _ := s.LookupHashSlot(h); got != slot {
				t.Fatalf("LookupHashSlot(KeyHash(%q)) = %d, LookupSlot = %d", k, got, slot)
			}
		}
		// 2000 keys over 7 nodes: every node gets some.
		if len(seen) != len(nodes) {
			t.Fatalf("keys reached %d of %d nodes: %v", len(seen), len(nodes), seen)
		}
	})
}

func TestNodesAndSlots(t *testing.T) {
	nodes := []Node{{"a", 1}, {"b", 3}, {"c", 2}}
	s := mustNew(t, nodes, &Config{Algorithm: "ketama:twemproxy"})
	if s.Len() != 3 || s.SlotCount() != 3 {
		t.Fatalf("Len = %d, SlotCount = %d, want 3, 3", s.Len(), s.SlotCount())
	}
	if got := s.Nodes(); !slices.Equal(got, nodes) {
		t.Fatalf("Nodes() = %v, want %v", got, nodes)
	}
	// Nodes returns a copy.
	s.Nodes()[0].Name = "mutated"
	if s.Nodes()[0].Name != "a" {
		t.Fatal("Nodes() exposed the cache")
	}
	for _, n := range nodes {
		slot, err := s.SlotOf(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		name, _ := s.NodeName(slot)
		w, _ := s.NodeWeight(slot)
		if name != n.Name || w != n.Weight {
			t.Fatalf("slot %d holds %q weight %d, want %q weight %d", slot, name, w, n.Name, n.Weight)
		}
	}
	_, err := s.SlotOf("zz-missing")
	expectError(t, err, ErrNotFound, "zz-missing")
	_, err = s.NodeName(3)
	expectError(t, err, ErrNotFound, "3")
	_, err = s.NodeWeight(1 << 31)
	expectError(t, err, ErrNotFound, "2147483648")
}

// The node cache is read in one C call when the names fit a first guess
// of their size, and in two when they do not; both paths, and the empty
// slots removals leave, give every slot its node.
func TestNodeCacheLongNamesAndHoles(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, alg string, weighted bool) {
		for _, size := range []int{1, 7, 30} {
			nodes := make([]Node, 40)
			for i := range nodes {
				w := int64(1)
				if weighted {
					w = int64(1 + i%4)
				}
				// Multi-byte UTF-8 too: offsets count bytes.
				name := fmt.Sprintf("%02d-%s", i, strings.Repeat("é", size))
				nodes[i] = Node{Name: name, Weight: w}
			}
			s := mustNew(t, nodes, &Config{Algorithm: alg})
			if got := s.Nodes(); !slices.Equal(got, nodes) {
				t.Fatalf("names of %d runes: Nodes() = %v", size, got)
			}
			removed, err := s.Remove(nodes[17].Name)
			if err != nil {
				t.Fatal(err)
			}
			defer removed.Close()
			// Compared as sets: some algorithms move a node into the
			// freed slot (jump's last), others leave it empty.
			byName := func(a, b Node) int { return strings.Compare(a.Name, b.Name) }
			want := slices.SortedFunc(slices.Values(slices.Delete(slices.Clone(nodes), 17, 18)), byName)
			if got := slices.SortedFunc(slices.Values(removed.Nodes()), byName); !slices.Equal(got, want) {
				t.Fatalf("after Remove: Nodes() = %v", got)
			}
			empty := 0
			for slot := range uint32(removed.SlotCount()) {
				name, err := removed.NodeName(slot)
				if err != nil {
					expectError(t, err, ErrNotFound, fmt.Sprint(slot))
					empty++
					continue
				}
				got, err := removed.SlotOf(name)
				w, _ := removed.NodeWeight(slot)
				if err != nil || got != slot || w != nodes[slices.IndexFunc(nodes, func(n Node) bool { return n.Name == name })].Weight {
					t.Fatalf("slot %d holds %q (weight %d), SlotOf = %d, %v", slot, name, w, got, err)
				}
			}
			if removed.SlotCount()-empty != removed.Len() {
				t.Fatalf("%d slots, %d empty, %d nodes", removed.SlotCount(), empty, removed.Len())
			}
		}
	})
}

func TestDefaultConfig(t *testing.T) {
	nodes := nodeSet(5, true)
	a := mustNew(t, nodes, nil)
	b := mustNew(t, nodes, &Config{})
	c := mustNew(t, nodes, &Config{Algorithm: "maglev"})
	for _, k := range keys(500) {
		x, _ := a.Lookup(k)
		y, _ := b.Lookup(k)
		z, _ := c.Lookup(k)
		if x != y || x != z {
			t.Fatalf("%q: nil config %q, zero Config %q, maglev %q", k, x, y, z)
		}
	}
}

func TestHashAndHashTag(t *testing.T) {
	nodes := nodeSet(10, true)
	tagged := mustNew(t, nodes, &Config{Algorithm: "ketama:twemproxy", Hash: "md5", HashTag: "{}"})
	plain := mustNew(t, nodes, &Config{Algorithm: "ketama:twemproxy", Hash: "md5"})
	fnv := mustNew(t, nodes, &Config{Algorithm: "ketama:twemproxy", Hash: "fnv1a_64"})
	for i := 0; i < 200; i++ {
		tag := fmt.Sprintf("user%d", i)
		h1, _ := tagged.KeyHash([]byte("{" + tag + "}.profile"))
		h2, _ := tagged.KeyHash([]byte("session.{" + tag + "}"))
		h3, _ := plain.KeyHash([]byte(tag))
		if h1 != h2 || h1 != h3 {
			t.Fatalf("hash tag %q: %x, %x, whole tag hashed %x", tag, h1, h2, h3)
		}
		n1, _ := tagged.LookupString("{" + tag + "}.profile")
		n2, _ := tagged.LookupString("session.{" + tag + "}")
		if n1 != n2 {
			t.Fatalf("keys sharing tag %q went to %q and %q", tag, n1, n2)
		}
	}
	differ := 0
	for _, k := range keys(200) {
		a, _ := plain.KeyHash(k)
		b, _ := fnv.KeyHash(k)
		if a != b {
			differ++
		}
	}
	if differ < 190 {
		t.Fatalf("md5 and fnv1a_64 agree on %d of 200 keys", 200-differ)
	}
}

func TestLookupN(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, alg string, weighted bool) {
		s := mustNew(t, nodeSet(6, weighted), &Config{Algorithm: alg})
		for _, k := range keys(300) {
			primary, _ := s.Lookup(k)
			for n := 1; n <= 6; n++ {
				got, err := s.LookupN(k, n)
				if err != nil {
					t.Fatalf("LookupN(%q, %d): %v", k, n, err)
				}
				if len(got) != n || got[0] != primary {
					t.Fatalf("LookupN(%q, %d) = %v, primary %q", k, n, got, primary)
				}
				if u := slices.Compact(slices.Sorted(slices.Values(got))); len(u) != n {
					t.Fatalf("LookupN(%q, %d) repeats a node: %v", k, n, got)
				}
				slots, _ := s.LookupNSlots(k, n)
				for i, slot := range slots {
					if name, _ := s.NodeName(slot); name != got[i] {
						t.Fatalf("LookupNSlots(%q, %d)[%d] = %q, LookupN says %q", k, n, i, name, got[i])
					}
				}
			}
			// A longer list extends a shorter one: the order is stable.
			all, _ := s.LookupN(k, 6)
			three, _ := s.LookupN(k, 3)
			if !slices.Equal(all[:3], three) {
				t.Fatalf("LookupN(%q): 3 = %v, 6 = %v", k, three, all)
			}
		}
		for _, n := range []int{0, 7, -1, 1 << 40} {
			_, err := s.LookupN([]byte("k"), n)
			expectError(t, err, ErrInvalidArgument, fmt.Sprint(n))
		}
	})
}

func TestBatchMatchesSingle(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, alg string, weighted bool) {
		s := mustNew(t, nodeSet(13, weighted), &Config{Algorithm: alg})
		// Above the engine's parallel threshold (16Ki keys), so the
		// multi-threaded path is checked too.
		for _, n := range []int{0, 1, 1000, 20000} {
			ks := keys(max(n, 1))[:n]
			names, err := s.LookupBatch(ks)
			if err != nil {
				t.Fatalf("LookupBatch(%d keys): %v", n, err)
			}
			slots := make([]uint32, n)
			if err := s.LookupBatchSlots(ks, slots); err != nil {
				t.Fatal(err)
			}
			if len(names) != n {
				t.Fatalf("LookupBatch(%d keys) returned %d names", n, len(names))
			}
			for i, k := range ks {
				want, _ := s.Lookup(k)
				slot, _ := s.LookupSlot(k)
				if names[i] != want || slots[i] != slot {
					t.Fatalf("key %d %q: batch %q/%d, single %q/%d", i, k, names[i], slots[i], want, slot)
				}
			}
		}
	})
}

func TestLookupPacked(t *testing.T) {
	s := mustNew(t, nodeSet(9, true), &Config{Algorithm: "ketama:nginx"})
	data := []byte("alphabetagammadelta")
	offsets := []uint{0, 5, 9, 14, 14, 19} // includes an empty key
	out := make([]uint32, 5)
	if err := s.LookupPacked(data, offsets, out); err != nil {
		t.Fatal(err)
	}
	for i := range out {
		want, _ := s.LookupSlot(data[offsets[i]:offsets[i+1]])
		if out[i] != want {
			t.Fatalf("packed key %d: slot %d, single %d", i, out[i], want)
		}
	}
	err := s.LookupPacked(data, []uint{0, 9, 5, 19}, make([]uint32, 3))
	expectError(t, err, ErrInvalidArgument, "offsets[1] = 9")
	err = s.LookupPacked(data, []uint{0, 5, 99}, make([]uint32, 2))
	expectError(t, err, ErrInvalidArgument, "99")
	err = s.LookupPacked(data, []uint{0, 19}, make([]uint32, 2))
	expectError(t, err, ErrInvalidArgument, "output length 2")
	err = s.LookupPacked(nil, nil, nil)
	expectError(t, err, ErrInvalidArgument, "empty")
	err = s.LookupBatchSlots(keys(3), make([]uint32, 4))
	expectError(t, err, ErrInvalidArgument, "key count 3")
}

func TestMembershipChanges(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, alg string, weighted bool) {
		base := mustNew(t, nodeSet(8, weighted), &Config{Algorithm: alg})
		ks := keys(3000)
		before, _ := base.LookupBatch(ks)

		added, err := base.Add(Node{Name: "node-new", Weight: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer added.Close()
		if added.Len() != 9 || base.Len() != 8 {
			t.Fatalf("after Add: new Len %d, old Len %d", added.Len(), base.Len())
		}
		after, _ := added.LookupBatch(ks)
		gained := 0
		for i := range ks {
			if after[i] == "node-new" {
				gained++
			}
		}
		if gained == 0 {
			t.Fatal("the added node receives no keys")
		}
		// The old snapshot is untouched.
		if again, _ := base.LookupBatch(ks); !slices.Equal(again, before) {
			t.Fatal("Add changed the snapshot it was called on")
		}

		_, err = base.Add(Node{Name: "node-03", Weight: 1})
		expectError(t, err, ErrDuplicateNode, `"node-03"`)
		_, err = base.Add(Node{Name: "w0", Weight: 0})
		expectError(t, err, ErrInvalidArgument, "0")

		removed, err := added.Remove("node-new")
		if err != nil {
			t.Fatal(err)
		}
		defer removed.Close()
		if removed.Len() != 8 {
			t.Fatalf("after Remove: Len %d", removed.Len())
		}
		for i, k := range ks {
			name, _ := removed.Lookup(k)
			if name == "node-new" {
				t.Fatalf("%q placed on the removed node", k)
			}
			// Adding a node and removing it again restores every placement,
			// for every algorithm here.
			if name != before[i] {
				t.Fatalf("%q: %q after add+remove, %q before", k, name, before[i])
			}
		}
		_, err = base.Remove("no-such-node")
		expectError(t, err, ErrNotFound, `"no-such-node"`)

		one := mustNew(t, []Node{{"only", 1}}, &Config{Algorithm: alg})
		_, err = one.Remove("only")
		expectError(t, err, ErrEmptyNodeSet, "")

		if weighted {
			rw, err := base.Reweight("node-02", 5)
			if err != nil {
				t.Fatal(err)
			}
			defer rw.Close()
			slot, _ := rw.SlotOf("node-02")
			if w, _ := rw.NodeWeight(slot); w != 5 {
				t.Fatalf("reweighted node has weight %d, want 5", w)
			}
		}
		for _, w := range []int64{0, -7} {
			_, err = base.Reweight("node-02", w)
			expectError(t, err, ErrInvalidArgument, fmt.Sprint(w))
		}
		_, err = base.Reweight("ghost", 1)
		expectError(t, err, ErrNotFound, `"ghost"`)
	})
}

func TestSetDown(t *testing.T) {
	forEachAlgorithm(t, func(t *testing.T, alg string, weighted bool) {
		base := mustNew(t, nodeSet(5, weighted), &Config{Algorithm: alg})
		ks := keys(2000)
		before, _ := base.LookupBatch(ks)
		down, err := base.SetDown("node-01", true)
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		if down.Len() != 5 {
			t.Fatalf("a down node still counts: Len %d", down.Len())
		}
		after, _ := down.LookupBatch(ks)
		for i, k := range ks {
			switch {
			case after[i] == "node-01":
				t.Fatalf("%q placed on a down node", k)
			case before[i] != "node-01" && after[i] != before[i]:
				t.Fatalf("%q moved from %q to %q though its node is up", k, before[i], after[i])
			case before[i] == "node-01":
				// Its next choice: the second of the replica list.
				two, _ := base.LookupN(k, 2)
				if after[i] != two[1] {
					t.Fatalf("%q: down primary goes to %q, next choice is %q", k, after[i], two[1])
				}
			}
		}
		up, err := down.SetDown("node-01", false)
		if err != nil {
			t.Fatal(err)
		}
		defer up.Close()
		if again, _ := up.LookupBatch(ks); !slices.Equal(again, before) {
			t.Fatal("marking the node up again does not restore placement")
		}

		all := base
		for _, n := range base.Nodes() {
			next, err := all.SetDown(n.Name, true)
			if err != nil {
				t.Fatal(err)
			}
			defer next.Close()
			all = next
		}
		_, err = all.Lookup([]byte("k"))
		expectError(t, err, ErrUnavailable, "5")
		_, err = all.LookupBatch(ks)
		expectError(t, err, ErrUnavailable, "5")
		_, err = all.LookupN([]byte("k"), 2)
		expectError(t, err, ErrUnavailable, "")
		_, err = base.SetDown("ghost", true)
		expectError(t, err, ErrNotFound, `"ghost"`)
	})
}

func TestMovementAndBalance(t *testing.T) {
	a := mustNew(t, nodeSet(4, false), &Config{Algorithm: "jump"})
	same, err := a.Movement(a, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if same.Fraction != 0 || same.Minimum != 0 {
		t.Fatalf("Movement to itself = %+v", same)
	}
	b, err := a.Add(Node{Name: "node-04", Weight: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m, err := a.Movement(b, 20000)
	if err != nil {
		t.Fatal(err)
	}
	// Jump moves only what it must: 1/5 of the keys.
	if m.Minimum < 0.199 || m.Minimum > 0.201 || m.Fraction < 0.18 || m.Fraction > 0.22 {
		t.Fatalf("4 -> 5 nodes under jump: %+v, want about 0.2 of 0.2", m)
	}
	_, err = a.Movement(b, 0)
	expectError(t, err, ErrInvalidArgument, "0")
	_, err = a.Movement(b, -1)
	expectError(t, err, ErrInvalidArgument, "-1")
	_, err = a.Movement(nil, 10)
	expectError(t, err, ErrNullPointer, "nil")

	mg := mustNew(t, nodeSet(100, false), &Config{Algorithm: "maglev"})
	bal, err := mg.Balance(200000)
	if err != nil {
		t.Fatal(err)
	}
	if bal.PeakToMean < 1 || bal.PeakToMean > 1.15 || bal.Stddev <= 0 || bal.Stddev > 0.1 {
		t.Fatalf("maglev over 100 nodes: %+v", bal)
	}
	_, err = mg.Balance(0)
	expectError(t, err, ErrInvalidArgument, "0")
}

const twemproxyYAML = `
alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  hash_tag: "{}"
  distribution: ketama
  servers:
   - 127.0.0.1:11211:1
   - 127.0.0.1:11212:2 cache-b
   - 127.0.0.1:11213:1
beta:
  listen: 127.0.0.1:22122
  hash: md5
  distribution: modula
  servers:
   - 10.0.0.1:11211:1
   - 10.0.0.2:11211:1
`

func TestFromTwemproxyYAML(t *testing.T) {
	first, err := FromTwemproxyYAML([]byte(twemproxyYAML), "")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	alpha, err := FromTwemproxyYAML([]byte(twemproxyYAML), "alpha")
	if err != nil {
		t.Fatal(err)
	}
	defer alpha.Close()
	// nutcracker orders servers by ring name (alias, else host[:port]), shorter first.
	want := []Node{{"127.0.0.1:11212:2", 2}, {"127.0.0.1:11211:1", 1}, {"127.0.0.1:11213:1", 1}}
	if got := alpha.Nodes(); !slices.Equal(got, want) {
		t.Fatalf("alpha nodes = %v, want %v", got, want)
	}
	for _, k := range keys(500) {
		x, _ := first.Lookup(k)
		y, _ := alpha.Lookup(k)
		if x != y {
			t.Fatalf("the default pool is not the first: %q -> %q vs %q", k, x, y)
		}
	}
	// hash_tag "{}" applies.
	for i := 0; i < 100; i++ {
		x, _ := alpha.LookupString(fmt.Sprintf("{u%d}:a", i))
		y, _ := alpha.LookupString(fmt.Sprintf("b:{u%d}", i))
		if x != y {
			t.Fatalf("tag u%d split over %q and %q", i, x, y)
		}
	}
	beta, err := FromTwemproxyYAML([]byte(twemproxyYAML), "beta")
	if err != nil {
		t.Fatal(err)
	}
	defer beta.Close()
	if got := beta.Nodes(); len(got) != 2 || got[0].Name != "10.0.0.1:11211:1" {
		t.Fatalf("beta nodes = %v", got)
	}

	_, err = FromTwemproxyYAML([]byte(twemproxyYAML), "gamma")
	expectError(t, err, ErrNotFound, `"gamma"`)
	_, err = FromTwemproxyYAML([]byte("alpha: [unclosed\n  servers: {"), "")
	expectError(t, err, ErrConfig, "")
	_, err = FromTwemproxyYAML([]byte("alpha:\n  hash: nohash\n  servers:\n   - 127.0.0.1:11211:1\n"), "")
	expectError(t, err, ErrConfig, "nohash")
	_, err = FromTwemproxyYAML([]byte("alpha:\n  servers:\n   - 127.0.0.1:11211:1\n\xff\n"), "")
	expectError(t, err, ErrInvalidUTF8, "")

	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(path, []byte(twemproxyYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := FromTwemproxyFile(path, "beta")
	if err != nil {
		t.Fatal(err)
	}
	defer fromFile.Close()
	if !slices.Equal(fromFile.Nodes(), beta.Nodes()) {
		t.Fatalf("file pool %v, in-memory pool %v", fromFile.Nodes(), beta.Nodes())
	}
	missing := filepath.Join(t.TempDir(), "absent.yml")
	_, err = FromTwemproxyFile(missing, "")
	expectError(t, err, ErrIO, missing)
}

func TestFromNginxUpstream(t *testing.T) {
	s, err := FromNginxUpstream("127.0.0.1:8081 weight=2,127.0.0.1:8082;127.0.0.1:8083 weight=3\n127.0.0.1:8084")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []Node{{"127.0.0.1:8081", 2}, {"127.0.0.1:8082", 1}, {"127.0.0.1:8083", 3}, {"127.0.0.1:8084", 1}}
	if got := s.Nodes(); !slices.Equal(got, want) {
		t.Fatalf("nodes = %v, want %v", got, want)
	}
	// The same ring as an explicit ketama:nginx node set.
	explicit := mustNew(t, want, &Config{Algorithm: "ketama:nginx"})
	for _, k := range keys(1000) {
		x, _ := s.Lookup(k)
		y, _ := explicit.Lookup(k)
		if x != y {
			t.Fatalf("%q: upstream list %q, explicit ring %q", k, x, y)
		}
	}
	_, err = FromNginxUpstream("127.0.0.1:8081 weight=zero")
	expectError(t, err, ErrInvalidArgument, `"zero"`)
	_, err = FromNginxUpstream("127.0.0.1:8081 weight=0")
	expectError(t, err, ErrInvalidArgument, "weight=0")
	_, err = FromNginxUpstream("")
	expectError(t, err, ErrEmptyNodeSet, "")
	_, err = FromNginxUpstream("127.0.0.1:8081,127.0.0.1:8081 weight=2")
	expectError(t, err, ErrDuplicateNode, "127.0.0.1:8081")
}

func TestFromUpstreamWithAnAlgorithm(t *testing.T) {
	list := "127.0.0.1:8081 weight=2,127.0.0.1:8082,127.0.0.1:8083"
	s, err := FromUpstream(list, "maglev")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []Node{{"127.0.0.1:8081", 2}, {"127.0.0.1:8082", 1}, {"127.0.0.1:8083", 1}}
	explicit := mustNew(t, want, &Config{Algorithm: "maglev"})
	for _, k := range keys(1000) {
		x, _ := s.Lookup(k)
		y, _ := explicit.Lookup(k)
		if x != y {
			t.Fatalf("%q: upstream list %q, explicit ring %q", k, x, y)
		}
	}
	nginx, err := FromUpstream(list, "")
	if err != nil {
		t.Fatal(err)
	}
	defer nginx.Close()
	native, err := FromNginxUpstream(list)
	if err != nil {
		t.Fatal(err)
	}
	defer native.Close()
	for _, k := range keys(1000) {
		x, _ := nginx.Lookup(k)
		y, _ := native.Lookup(k)
		if x != y {
			t.Fatalf("%q: default algorithm %q, ketama:nginx %q", k, x, y)
		}
	}
	_, err = FromUpstream(list, "ketamax")
	expectError(t, err, ErrInvalidArgument, "ketamax")
	_, err = FromUpstream(list, "jump")
	expectError(t, err, ErrInvalidArgument, "weight")
}

// expectError checks that err matches sentinel (and no other kind), is an
// *Error carrying the engine's message, and names want.
func expectError(t testing.TB, err error, sentinel *Error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v naming %q", sentinel, want)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %q is not %v", err, sentinel)
	}
	for _, other := range allSentinels {
		if other != sentinel && errors.Is(err, other) {
			t.Fatalf("error %q also matches %v", err, other)
		}
	}
	var e *Error
	if !errors.As(err, &e) || e.Message == "" {
		t.Fatalf("error %q carries no message", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %q", err, want)
	}
	if strings.Count(err.Error(), sentinel.Kind.String()+":") > 1 {
		t.Fatalf("error %q repeats its kind", err)
	}
}

func TestBadInput(t *testing.T) {
	ok := []Node{{"a", 1}, {"b", 1}}
	cases := []struct {
		what     string
		nodes    []Node
		cfg      *Config
		sentinel *Error
		names    string
	}{
		{"empty node list", nil, nil, ErrEmptyNodeSet, "empty"},
		{"empty node slice", []Node{}, &Config{Algorithm: "jump"}, ErrEmptyNodeSet, "empty"},
		{"duplicate node", []Node{{"a", 1}, {"b", 1}, {"a", 2}}, nil, ErrDuplicateNode, `"a"`},
		{"zero weight", []Node{{"a", 1}, {"b", 0}}, nil, ErrInvalidArgument, `got 0 for node "b"`},
		{"negative weight", []Node{{"a", -3}}, nil, ErrInvalidArgument, `got -3 for node "a"`},
		{"huge weight", []Node{{"a", 1 << 40}}, nil, ErrInvalidArgument, "1099511627776"},
		{"weight under jump", []Node{{"a", 2}}, &Config{Algorithm: "jump"}, ErrInvalidArgument, `weight 2 for node "a"`},
		{"empty name", []Node{{"", 1}}, nil, ErrInvalidArgument, "name"},
		{"invalid UTF-8 name", []Node{{"a\xffb", 1}}, nil, ErrInvalidUTF8, "nodes[0].name"},
		{"maglev table not prime", ok, &Config{Algorithm: "maglev:65536"}, ErrInvalidArgument, "65536"},
		{"maglev table not a number", ok, &Config{Algorithm: "maglev:big"}, ErrInvalidArgument, "big"},
		{"unknown algorithm", ok, &Config{Algorithm: "bogus-ring"}, ErrInvalidArgument, "bogus-ring"},
		{"unknown ketama mode", ok, &Config{Algorithm: "ketama:memcachedx"}, ErrInvalidArgument, "memcachedx"},
		{"unknown hash", ok, &Config{Hash: "sha-ish"}, ErrInvalidArgument, "sha-ish"},
		{"bad xxh3 seed", ok, &Config{Hash: "xxh3:-1"}, ErrInvalidArgument, "-1"},
		{"hash tag of one char", ok, &Config{HashTag: "{"}, ErrInvalidArgument, `"{"`},
		{"invalid UTF-8 algorithm", ok, &Config{Algorithm: "jump\xfe"}, ErrInvalidUTF8, "config->algorithm"},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			s, err := New(c.nodes, c.cfg)
			if err == nil {
				s.Close()
			}
			expectError(t, err, c.sentinel, c.names)
		})
	}
}

func TestCloseIsIdempotentAndFinal(t *testing.T) {
	s, err := New(nodeSet(3, false), &Config{Algorithm: "jump"})
	if err != nil {
		t.Fatal(err)
	}
	other := mustNew(t, nodeSet(3, false), &Config{Algorithm: "jump"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	k := []byte("k")
	checks := map[string]error{}
	_, checks["Lookup"] = s.Lookup(k)
	_, checks["LookupString"] = s.LookupString("k")
	_, checks["LookupSlot"] = s.LookupSlot(k)
	_, checks["LookupHash"] = s.LookupHash(1)
	_, checks["LookupHashSlot"] = s.LookupHashSlot(1)
	_, checks["KeyHash"] = s.KeyHash(k)
	_, checks["LookupN"] = s.LookupN(k, 1)
	_, checks["LookupBatch"] = s.LookupBatch([][]byte{k})
	checks["LookupBatchSlots"] = s.LookupBatchSlots([][]byte{k}, make([]uint32, 1))
	checks["LookupPacked"] = s.LookupPacked(k, []uint{0, 1}, make([]uint32, 1))
	_, checks["SlotOf"] = s.SlotOf("node-00")
	_, checks["NodeName"] = s.NodeName(0)
	_, checks["NodeWeight"] = s.NodeWeight(0)
	_, checks["Add"] = s.Add(Node{"x", 1})
	_, checks["Remove"] = s.Remove("node-00")
	_, checks["Reweight"] = s.Reweight("node-00", 1)
	_, checks["SetDown"] = s.SetDown("node-00", true)
	_, checks["Movement"] = s.Movement(other, 10)
	_, checks["Movement(closed)"] = other.Movement(s, 10)
	_, checks["Balance"] = s.Balance(10)
	_, checks["Clone"] = s.Clone()
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if s.Len() != 0 || s.SlotCount() != 0 || s.Nodes() != nil {
		t.Fatalf("closed sharder reports Len %d, SlotCount %d, Nodes %v", s.Len(), s.SlotCount(), s.Nodes())
	}
	var nilSharder *Sharder
	if _, err := nilSharder.Lookup(k); !errors.Is(err, ErrClosed) {
		t.Fatalf("nil Sharder: %v", err)
	}
	if err := nilSharder.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCloneOutlivesOriginal(t *testing.T) {
	s, err := New(nodeSet(4, true), &Config{Algorithm: "rendezvous"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := s.LookupBatch(keys(100))
	c, err := s.Clone()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Close()
	got, err := c.LookupBatch(keys(100))
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("clone after the original closed: %v, %v", got, err)
	}
	if !slices.Equal(c.Nodes(), nodeSet(4, true)) {
		t.Fatalf("clone nodes %v", c.Nodes())
	}
}

func TestApplyIsOneBulkChange(t *testing.T) {
	s, err := New([]Node{{"n0", 1}, {"n1", 1}, {"n2", 1}, {"n3", 1}}, &Config{Algorithm: "memento"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bulk, err := s.Apply(
		Change{Kind: ChangeRemove, Name: "n1"},
		Change{Kind: ChangeAdd, Name: "n9", Weight: 1},
		Change{Kind: ChangeDown, Name: "n3"},
	)
	if err != nil {
		t.Fatal(err)
	}
	defer bulk.Close()
	a, _ := s.Remove("n1")
	defer a.Close()
	b, _ := a.Add(Node{"n9", 1})
	defer b.Close()
	step, _ := b.SetDown("n3", true)
	defer step.Close()
	for _, k := range keys(2000) {
		x, _ := bulk.Lookup(k)
		y, _ := step.Lookup(k)
		if x != y {
			t.Fatalf("%q: bulk %q, step by step %q", k, x, y)
		}
	}
	if d, err := bulk.IsDown("n3"); err != nil || !d {
		t.Fatalf("IsDown(n3) = %v, %v", d, err)
	}
	if d, err := bulk.IsDown("n9"); err != nil || d {
		t.Fatalf("IsDown(n9) = %v, %v", d, err)
	}
	if _, err := bulk.IsDown("ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("IsDown(ghost) = %v", err)
	}
	if s.Len() != 4 {
		t.Fatal("Apply changed its receiver")
	}
	for _, tc := range []struct {
		changes []Change
		want    error
		needle  string
	}{
		{[]Change{{Kind: ChangeRemove, Name: "n0"}, {Kind: ChangeRemove, Name: "ghost"}}, ErrNotFound, `"ghost"`},
		{[]Change{{Kind: ChangeAdd, Name: "n7", Weight: 0}}, ErrInvalidArgument, "got 0"},
		{[]Change{{Kind: 42, Name: "n0"}}, ErrInvalidArgument, "changes[0].kind"},
		{[]Change{{Kind: ChangeDown, Name: "bad\xff"}}, ErrInvalidUTF8, "changes[0].name"},
	} {
		_, err := s.Apply(tc.changes...)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.needle) {
			t.Fatalf("Apply(%v) = %v, want %v naming %s", tc.changes, err, tc.want, tc.needle)
		}
	}
}
