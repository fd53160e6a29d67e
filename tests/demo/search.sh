#!/usr/bin/env bash
# Distributed document search over the KJV sample corpus: 4 leaves, each
# indexing the verses the placement puts on its shard, a root that scatters
# queries to them and merges the top hits; then one leaf dies, and the root
# answers degraded (best effort) or refuses (require all).
#
# Usage: tests/demo/search.sh PATH/TO/shardkit
set -euo pipefail
SHARDKIT=${1:?usage: $0 PATH/TO/shardkit}
cd "$(dirname "$0")/../.."
CORPUS=tests/data/kjv-verses.tsv
N=4

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

pretty() { python3 -m json.tool; }

# Each leaf prints `listening on http://ADDR` once its index is built.
for i in $(seq 0 $((N - 1))); do
  "$SHARDKIT" search-leaf --shard "$i/$N" --docs "$CORPUS" --listen 127.0.0.1:0 \
    >"$WORK/leaf$i.out" 2>"$WORK/leaf$i.err" &
  PIDS+=($!)
done
ADDRS=()
for i in $(seq 0 $((N - 1))); do
  for _ in $(seq 1 600); do
    [[ -s "$WORK/leaf$i.out" ]] && break
    kill -0 "${PIDS[$i]}" 2>/dev/null || { cat "$WORK/leaf$i.err" >&2; exit 1; }
    sleep 0.1
  done
  addr=$(sed -n '1s#^listening on http://##p' "$WORK/leaf$i.out")
  [[ -n "$addr" ]] || { echo "leaf $i did not start" >&2; cat "$WORK/leaf$i.err" >&2; exit 1; }
  ADDRS+=("$addr")
  cat "$WORK/leaf$i.err"
done
LEAVES=$(IFS=,; echo "${ADDRS[*]}")
echo "leaves: $LEAVES"

echo; echo "\$ shardkit search-root --query 'light darkness' --k 3   (AND)"
"$SHARDKIT" search-root --leaves "$LEAVES" --query "light darkness" --k 3 | pretty

echo; echo "\$ shardkit search-root --query 'faith hope charity' --op or --k 5"
"$SHARDKIT" search-root --leaves "$LEAVES" --query "faith hope charity" --op or --k 5 | pretty

echo; echo "\$ shardkit search-root --query 'jesus wept' --coverage all"
"$SHARDKIT" search-root --leaves "$LEAVES" --query "jesus wept" --coverage all | pretty

echo; echo "killing leaf 2 (pid ${PIDS[2]}, ${ADDRS[2]})"
kill "${PIDS[2]}"
wait "${PIDS[2]}" 2>/dev/null || true

echo; echo "\$ shardkit search-root --query 'light darkness' --k 3 --coverage best-effort"
"$SHARDKIT" search-root --leaves "$LEAVES" --query "light darkness" --k 3 \
  --coverage best-effort | tee "$WORK/degraded.json" | pretty
python3 - "$WORK/degraded.json" <<'PY'
import json, sys
page = json.load(open(sys.argv[1]))
cov = page["coverage"]
assert (cov["answered"], cov["total"], page["degraded"]) == (3, 4, True), page
assert all(h["shard"] != 2 for h in page["hits"]), page
print(f"best effort: coverage {cov['answered']}/{cov['total']}, degraded, no hits from shard 2")
PY

echo; echo "\$ shardkit search-root --query 'light darkness' --coverage all   (must fail)"
if "$SHARDKIT" search-root --leaves "$LEAVES" --query "light darkness" --coverage all \
  2>"$WORK/all.err"; then
  echo "require-all unexpectedly succeeded with a dead leaf" >&2
  exit 1
else
  echo "exit status $?: $(cat "$WORK/all.err")"
fi
grep -q "${ADDRS[2]}" "$WORK/all.err" || { echo "the error does not name the dead leaf" >&2; exit 1; }
