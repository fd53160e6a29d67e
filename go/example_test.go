package shardkit_test

import (
	"errors"
	"fmt"

	shardkit "github.com/shardkit/shardkit/go"
)

func Example() {
	s, err := shardkit.New([]shardkit.Node{
		{Name: "cache-a", Weight: 1},
		{Name: "cache-b", Weight: 1},
		{Name: "cache-c", Weight: 2},
	}, &shardkit.Config{Algorithm: "ketama:twemproxy"})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	node, _ := s.LookupString("user:42")
	replicas, _ := s.LookupN([]byte("user:42"), 2)
	fmt.Println(node, replicas[0] == node, len(replicas))

	// Membership changes return a new snapshot; s is unchanged.
	bigger, _ := s.Add(shardkit.Node{Name: "cache-d", Weight: 1})
	defer bigger.Close()
	fmt.Println(s.Len(), bigger.Len())
	// Output:
	// cache-b true 2
	// 3 4
}

func ExampleError() {
	_, err := shardkit.New([]shardkit.Node{{Name: "a", Weight: 1}, {Name: "a", Weight: 1}}, nil)
	fmt.Println(errors.Is(err, shardkit.ErrDuplicateNode))
	fmt.Println(err)
	// Output:
	// true
	// shardkit: duplicate node: node "a" appears more than once
}
