package shardkit

import (
	"bufio"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPlacementVectors checks the cross-language placement vectors that Rust
// generates: the same key must reach the same node from every binding.
func TestPlacementVectors(t *testing.T) {
	path := filepath.Join("..", "tests", "vectors", "placement.tsv")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && os.Getenv("SHARDKIT_REQUIRE_VECTORS") != "1" {
		t.Skipf("%s is missing (set SHARDKIT_REQUIRE_VECTORS=1 to make that a failure)", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	built := map[string]*Sharder{}
	defer func() {
		for _, s := range built {
			s.Close()
		}
	}()
	checked := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cols := strings.Split(text, "\t")
		if len(cols) != 6 {
			t.Fatalf("%s:%d: %d columns, want 6: %q", path, line, len(cols), text)
		}
		alg, hash, tag, nodeSpec, keyHex, want := cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]
		group := strings.Join(cols[:4], "\t")
		s, ok := built[group]
		if !ok {
			var nodes []Node
			for _, spec := range strings.Split(nodeSpec, ",") {
				name, w, found := strings.Cut(spec, "=")
				weight, err := strconv.ParseInt(w, 10, 64)
				if !found || err != nil {
					t.Fatalf("%s:%d: bad node %q", path, line, spec)
				}
				nodes = append(nodes, Node{Name: name, Weight: weight})
			}
			s, err = New(nodes, &Config{Algorithm: alg, Hash: hash, HashTag: tag})
			if err != nil {
				t.Fatalf("%s:%d: New(%s): %v", path, line, group, err)
			}
			built[group] = s
		}
		key, err := hex.DecodeString(keyHex)
		if err != nil {
			t.Fatalf("%s:%d: bad key hex %q", path, line, keyHex)
		}
		got, err := s.Lookup(key)
		if err != nil {
			t.Fatalf("%s:%d: Lookup(%q): %v", path, line, key, err)
		}
		if got != want {
			t.Errorf("%s:%d: %s hash=%q tag=%q nodes=%s key %q -> %q, want %q",
				path, line, alg, hash, tag, nodeSpec, key, got, want)
		}
		checked++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatalf("%s holds no vectors", path)
	}
	t.Logf("%d vectors over %d node sets", checked, len(built))
}
