"""The Python side of `make demo`: the same pool from Python, then a resize."""

import sys

import shardkit

config, keys = sys.argv[1], sys.argv[2:]
ring = shardkit.Sharder.from_twemproxy_file(config)
print(f"py   shardkit {shardkit.__version__}, {len(ring)} servers")
for key in keys:
    print(f"py   {key}\t{ring.lookup(key)}")

# A cache tier on maglev, then one more node: how much moves?
tier = shardkit.Sharder([f"cache-{i}" for i in range(8)], "maglev")
grown = tier.with_node("cache-8")
m = tier.movement(grown, samples=200_000)
print(f"py   maglev 8 -> 9 nodes moves {m.fraction:.1%} of keys (minimum {m.minimum:.1%})")
batch = grown.lookup_many([f"user:{i}" for i in range(1_000_000)])
print(f"py   routed {len(batch):,} keys in one batch call")
