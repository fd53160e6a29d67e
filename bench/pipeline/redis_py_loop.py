"""The baseline a Python service would hand-roll: a redis-py consumer-group
loop (XREADGROUP COUNT 1000, then XACK the batch) over one stream, with a
no-op handler. Events are published first (XADD in pipelines of 1,000),
then the loop is timed until it has acknowledged every one. Prints JSON.

Usage: redis_py_loop.py REDIS_PORT EVENTS
"""

import json
import sys
import time

import redis  # from PyPI, in the benchmark's own venv only

port, n = int(sys.argv[1]), int(sys.argv[2])
r = redis.Redis(host="127.0.0.1", port=port)
stream, group = "bench:pyloop", "g"
r.delete(stream)
r.xgroup_create(stream, group, id="0", mkstream=True)
body = json.dumps({"specversion": "1.0", "id": "x", "source": "/bench", "type": "bench.event"})
for start in range(0, n, 1000):
    p = r.pipeline(transaction=False)
    for i in range(start, min(n, start + 1000)):
        p.xadd(stream, {"e": body})
    p.execute()
t0 = time.perf_counter()
done = 0
while done < n:
    got = r.xreadgroup(group, "c", {stream: ">"}, count=1000, block=100)
    if not got:
        continue
    ids = [entry_id for entry_id, _fields in got[0][1]]
    for _id, fields in got[0][1]:
        json.loads(fields[b"e"])  # the handler: decode the event
    r.xack(stream, group, *ids)
    done += len(ids)
secs = time.perf_counter() - t0
print(json.dumps({"events": n, "events_per_s": n / secs, "redis_py": redis.__version__}))
