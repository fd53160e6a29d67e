module github.com/shardkit/shardkit/bench/go

go 1.24

require (
	github.com/buraksezer/consistent v0.10.0
	github.com/cespare/xxhash/v2 v2.3.0
	github.com/dgryski/go-jump v0.0.0-20170409065014-e1f439676b57
	github.com/dgryski/go-maglev v0.0.0-20200611225407-8961b9b1b8e6
	github.com/dgryski/go-rendezvous v0.0.0-20200823014737-9f7001d12a5f
	github.com/golang/groupcache v0.0.0-20241129210726-2c02b8208cf8
	github.com/shardkit/shardkit/go v0.0.0
)

require github.com/dchest/siphash v1.2.3 // indirect

// The binding under test is the one in this checkout.
replace github.com/shardkit/shardkit/go => ../../go
