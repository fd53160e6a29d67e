"""Wrong uses the stubs must reject: run_tests.sh expects mypy to report an
error on exactly the lines marked `# E`, which shows the stubs are in force
(an untyped module would let all of these through)."""

from __future__ import annotations

import shardkit

s = shardkit.Sharder(["a", "b"], "jump")
s.lookup(5)  # E
s.lookup_many([1, 2])  # E
s.lookup_n(b"k")  # E
x: int = s.lookup(b"k")  # E
shardkit.Sharder({"a": "heavy"})  # E
shardkit.Sharder(["a"], hash=3)  # E
s.with_weight("a", "2")  # E
s.apply([("explode", "a")])  # E
s.movement(["a"])  # E
y: str = s.balance().peak_to_mean  # E
c = shardkit.Coordinator.embedded()
c.observe("svc", 0.05)  # E
c.lock("jobs").acquire("soon")  # E
shardkit.Scatter(["http://127.0.0.1:1/x"]).gather(1, timeout=1, coverage=2.5)  # E
p = shardkit.Proxy("cache: {}", stats_addr=9000)  # E
p.address(b"cache")  # E
port: int = p.address("cache")  # E
pl = shardkit.Pipeline()
shardkit.Event(1, "s", "t")  # E
pl.publish("t", 5)  # E
pl.stage("t", batch="10")  # E
