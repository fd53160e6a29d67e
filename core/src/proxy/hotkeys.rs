//! Hot-key detection, and a small cache in the proxy for the hottest keys'
//! reads.
//!
//! A proxy sends every read of a key to the one backend that owns it. Real
//! traffic is skewed (Zipf-like): a few keys take a large share of the reads,
//! so the backends that own them run at several times the mean load and
//! saturate while the rest idle. [`HotKeys`] finds those keys while traffic
//! flows and keeps a short-lived copy of their replies in the proxy, so most of
//! their reads never reach their backend.
//!
//! # Use
//!
//! For a read of `key` (one cacheable read form only, e.g. memcached `get` or
//! Redis `GET`: a `gets` or `STRLEN` reply is not a `get` reply):
//!
//! 1. `let hot = hot_keys.record(key);`
//! 2. if `hot` and `hot_keys.get(key)` is `Some(reply)`, answer with it;
//! 3. otherwise, if `hot`, take `let ticket = hot_keys.begin_fill(key)` *before*
//!    sending the read, send it, and on a successful reply call
//!    `hot_keys.complete_fill(ticket, reply)` (on an error just drop the
//!    ticket).
//!
//! For a write to `key` (set, add, cas, delete, incr, touch, any Redis command
//! that changes the key, ...): call `hot_keys.invalidate(key)` when the
//! backend's reply arrives, before relaying it to the client; also when the
//! write failed or timed out, since it may have been applied. Calling it when
//! the write is sent as well stops serving the old value sooner, but does not
//! replace the call on the reply: a fill begun between the two could cache the
//! old value.
//!
//! # Staleness bound
//!
//! Times are this proxy's monotonic clock. A reply that [`HotKeys::get`]
//! returns at time `t`:
//!
//! * **was produced by the backend after `t - ttl`.** An entry is stamped
//!   with the time of the `begin_fill` that preceded its backend read, the
//!   backend produced the reply after that, and `get` serves an entry only
//!   while `now - stamp < ttl`. So a write that completed at the backend at
//!   time `w` — through another proxy, or straight to the backend — shows in
//!   every reply this proxy serves from `w + ttl` on.
//! * **reflects every write through this proxy whose `invalidate` returned
//!   before the `get` began.** `invalidate` removes the key's entry and bumps
//!   its write generation; a fill whose ticket predates the bump is refused at
//!   `complete_fill`, and a fill begun after it sends its read after the
//!   write's reply arrived, so it reads the new value. In particular a client
//!   that writes through this proxy and then reads through it sees its write.
//!
//! Generations live in a fixed table indexed by the key's hash, so a write to
//! another key in the same slot also refuses a fill in flight: it costs one
//! more backend read, never a stale reply.
//!
//! # Detection
//!
//! Counting is done by a HeavyKeeper top-k sketch ([`heavykeeper::TopK`]),
//! sharded by key hash into [`SHARDS`] parts, each behind its own mutex. Each
//! part keeps two sketches: the current `window` and the previous one. A key's
//! recent count is its count in the current window plus its count in the
//! previous one, weighted by the share of that window still inside a sliding
//! window of length `window`; at each window boundary the previous sketch is
//! dropped. So the counts cover the last `window` or so, and a key that stops
//! being read loses its weight within two windows. A key is hot when its recent
//! count is at least `threshold` times all reads over the same span (and at
//! least [`MIN_HOT_COUNT`]).
//!
//! [`TICKS_PER_WINDOW`] times a window, whichever `record` finds a tick due
//! runs it: it sums the shards' totals into the hot threshold (so no read
//! touches a shared counter), publishes the hot keys in a lock-free table, and
//! sweeps the cache.
//!
//! ## Cost and contention
//!
//! A read of a key that is not hot locks one shard: one sketch update and two
//! lookups, 80 to 120 ns on one thread. The hot keys are where the traffic piles up — under
//! Zipf(1.1) the hottest key alone takes 13% of the reads — so for a key the
//! last tick found well above the threshold, `record` finds it in the
//! published table and counts only a random 1 in `m` of its reads, with weight
//! `m`: `m` is the largest power of two that leaves at least
//! [`SAMPLE_HEADROOM`] × the threshold sampled reads per window, so the
//! estimate stays within a few percent and the key far from the threshold.
//! The other reads of that key cost a hash, a table probe and a thread-local
//! coin, some 7 ns: no lock, no clock, no shared write. Keys near or below the threshold
//! are counted exactly, which is where accuracy decides hotness. Sampling every
//! key instead (1 read in `n`, on a thread-local counter) would need the same
//! table to answer on the reads it skips, and would make detection slow and
//! noisy at low rates, for no gain on cold keys, whose reads already spread
//! over the shards.
//!
//! Memory is bounded whatever the number of distinct keys: per shard two
//! sketches of `SKETCH_DEPTH × width` 16-byte buckets plus `capacity / SHARDS`
//! tracked keys (keys longer than [`MAX_KEY_LEN`] are not tracked), and as
//! many hot-key candidates; two hot tables of `2 × capacity` words; at most
//! `max_hot` cached replies of at most `max_value` bytes; a 32 KiB generation
//! table.
//!
//! ## Why heavykeeper
//!
//! The project uses a well-kept crate where one does the job. `heavykeeper` is
//! maintained (some 25 releases, the latest in 2026), light (ahash, fastrand,
//! thiserror), takes byte keys by reference (`add(&[u8])` allocates only when a
//! key enters the top-k) and lists the top-k with counts. Others looked at:
//! `flowstats`' Space-Saving takes each item by value, an allocation per read;
//! `dsrs` is a C++ DataSketches binding last released in 2021. What the crate
//! lacks, aging and concurrent use, is the window rotation and sharding here.

use crate::hash::prehashed::BuildPreHashed;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use heavykeeper::TopK;
use xxhash_rust::xxh3::xxh3_64;

/// Independently locked parts of the sketch and of the cache. Enough that
/// traffic to cold keys rarely meets on a lock; each costs two small sketches.
const SHARDS: usize = 16;

/// Slots of the write-generation table: 32 KiB, so a write to a random other
/// key refuses a given fill in flight with chance 1/4096.
const GENERATION_SLOTS: usize = 4096;

/// Maintenance passes per window: how often the hot threshold is recomputed,
/// the hot table republished and the cache swept of expired replies and keys
/// no longer hot.
const TICKS_PER_WINDOW: u64 = 16;

/// Fewest recent reads that make a key hot whatever its share: under that,
/// caching saves next to nothing, and it keeps the first reads after start
/// (when every key has a large share of a small total) from marking keys hot.
const MIN_HOT_COUNT: f64 = 16.0;

/// A published hot key's reads are sampled 1 in `m` only while at least this
/// many times the hot threshold of them are still counted per window: enough
/// (≥ 128) for a few percent of noise, and it keeps sampled keys at 16 times
/// the threshold or more, where noise cannot flip their hotness.
const SAMPLE_HEADROOM: f64 = 8.0;

/// Sparsest sampling, 1 in 2^this: enough to take almost all of even a
/// dominant key's reads off the locks, while HeavyKeeper, which on a bucket
/// held by another key spends one coin flip per unit of weight, never spends
/// more than 64.
const MAX_SAMPLE_LOG2: u32 = 6;

/// Low bits of a hot-table word that hold the key's sampling rate (log2);
/// the rest hold the key's hash.
const SAMPLE_MASK: u64 = 0xf;

/// Longest key the sketch tracks, so that `capacity` bounds its memory; a
/// longer key is never hot. Memcached keys are at most 250 bytes.
const MAX_KEY_LEN: usize = 1024;

/// Rows of buckets in each HeavyKeeper sketch. Two rows keep an update cheap;
/// with the width below, the heavy keys that matter here rarely collide.
const SKETCH_DEPTH: usize = 2;

/// Buckets per row for each key the sketch keeps in its top-k.
const SKETCH_WIDTH_PER_KEY: usize = 4;

/// HeavyKeeper's decay base: a colliding bucket holding count `c` loses one
/// with chance `SKETCH_DECAY^c`. 1/1.08, the paper's choice.
const SKETCH_DECAY: f64 = 1.0 / 1.08;

/// Seed of the sketches' hashing and decay coin: fixed, so runs repeat.
const SKETCH_SEED: u64 = 0x5eed_4b65_7973;

/// Settings of `HotKeys`.
#[derive(Debug, Clone, PartialEq)]
pub struct HotKeyConfig {
    /// Keys tracked by the sketch (its top-k, over all shards). A key with a
    /// share of the reads well above `1 / capacity` is reliably tracked, so
    /// keep this several times `1 / threshold`.
    pub capacity: usize,
    /// Share of recent reads at or above which a key is hot (0.002 = 0.2%).
    pub threshold: f64,
    /// Most replies cached at once.
    pub max_hot: usize,
    /// Longest a reply is served from the cache, counted from before its
    /// backend read was sent: the staleness bound for writes that do not pass
    /// through this proxy.
    pub ttl: Duration,
    /// Largest reply cached, in bytes.
    pub max_value: usize,
    /// Span the counts cover; a key that stops being read stops being hot
    /// within about two windows.
    pub window: Duration,
}

impl Default for HotKeyConfig {
    /// * `capacity` 1024: with the default threshold a hot key has at least
    ///   twice the `1 / capacity` share the sketch tracks reliably.
    /// * `threshold` 0.002: a key at 0.2% of the reads adds 0.2% × N of the
    ///   mean load to its backend among N (1.6% for 8, 13% for 64); below that
    ///   the many small keys even out. Under Zipf(1.1) about 40 keys qualify.
    /// * `max_hot` 64: room for those; at most 64 × `max_value` = 4 MiB.
    /// * `ttl` 200 ms: other writers' updates show within 200 ms, while a hot
    ///   key costs its backend one read per 200 ms.
    /// * `max_value` 64 KiB: hot keys are mostly small; a big value would take
    ///   memory a small one uses better.
    /// * `window` 1 s: reacts to a shift in traffic within a second or two,
    ///   while a 0.2% key still gets dozens of reads per window at a few
    ///   thousand reads a second.
    fn default() -> Self {
        HotKeyConfig {
            capacity: 1024,
            threshold: 0.002,
            max_hot: 64,
            ttl: Duration::from_millis(200),
            max_value: 64 * 1024,
            window: Duration::from_secs(1),
        }
    }
}

/// Counters for metrics, from `HotKeys::stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HotKeyStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Replies stored by `complete_fill`.
    pub fills: u64,
    /// Fills refused because a write to the key (or to a key sharing its
    /// generation slot) came after their `begin_fill`.
    pub stale_fills: u64,
    /// Cached replies dropped by `invalidate`.
    pub invalidations: u64,
    /// Keys hot at the last tick.
    pub hot: usize,
    /// Replies cached now.
    pub cached: usize,
}

/// Leave to cache the backend's reply to one read of a hot key; taken by
/// [`HotKeys::begin_fill`] before the read is sent.
#[derive(Debug)]
pub(crate) struct FillTicket {
    key: Box<[u8]>,
    hash: u64,
    /// The key's write generation when the ticket was taken.
    generation: u64,
    /// When the ticket was taken: the backend produced the reply later, so
    /// the reply's age counted from here is never an underestimate.
    stamp: u64,
}

/// Online hot-key detector and cache of hot keys' replies; shared by all of a
/// pool's connections (`Send + Sync`).
pub(crate) struct HotKeys {
    window_ns: u64,
    tick_ns: u64,
    ttl_ns: u64,
    threshold: f64,
    max_hot: usize,
    max_value: usize,
    /// Most hot-key candidates a shard keeps (its share of `capacity`).
    per_shard: usize,
    /// Zero of the nanosecond clock every `*_at` function takes.
    start: Instant,
    /// An empty sketch, cloned at each rotation: cheaper than building one.
    blank: TopK<Vec<u8>>,
    windows: Box<[Padded<Mutex<Window>>]>,
    caches: Box<[Padded<CacheShard>]>,
    generations: Box<[AtomicU64]>,
    hot: HotTable,
    /// Recent count at or above which a key is hot (f64 bits); recomputed
    /// each tick, so `record` reads it instead of summing the shards.
    hot_min: AtomicU64,
    /// When the next tick is due (ns).
    next_tick: AtomicU64,
    /// Held by the one tick running, so two never write the hot table at
    /// once (a tick can outlast the next one's due time if its thread stalls).
    ticking: Mutex<()>,
    /// Entries in all caches, at most `max_hot`.
    cached: AtomicUsize,
}

/// Keeps each shard on cache lines of its own, so that locking one does not
/// slow its neighbours.
#[repr(align(128))]
struct Padded<T>(T);

/// One shard's counts: the current window's sketch and the previous one's.
struct Window {
    epoch: u64,
    cur: TopK<Vec<u8>>,
    prev: TopK<Vec<u8>>,
    cur_total: u64,
    prev_total: u64,
    /// Keys found hot since they were last published or dropped, by hash:
    /// what the next tick checks and publishes.
    candidates: HashMap<u64, Box<[u8]>, BuildPreHashed>,
}

/// A point in time as the windows see it.
struct Moment {
    epoch: u64,
    /// The share of the previous window still inside the sliding window.
    prev_weight: f64,
}

impl Window {
    /// Moves to `epoch`: the current sketch becomes the previous one, or both
    /// are emptied when more than a window went by without a read here.
    fn rotate(&mut self, epoch: u64, blank: &TopK<Vec<u8>>) {
        if epoch <= self.epoch {
            return;
        }
        if epoch == self.epoch + 1 {
            self.prev = std::mem::replace(&mut self.cur, blank.clone());
            self.prev_total = self.cur_total;
        } else {
            self.cur = blank.clone();
            self.prev = blank.clone();
            self.prev_total = 0;
        }
        self.cur_total = 0;
        self.epoch = epoch;
    }

    /// The key's count over the sliding window ending at `at` (rotated to).
    fn estimate(&self, key: &[u8], at: &Moment) -> f64 {
        let cur = self.cur.count(key) as f64;
        if self.prev_total == 0 {
            return cur;
        }
        cur + at.prev_weight * self.prev.count(key) as f64
    }

    /// All reads of this shard over the sliding window ending at `at`.
    fn total(&self, at: &Moment) -> f64 {
        self.cur_total as f64 + at.prev_weight * self.prev_total as f64
    }
}

/// The hot keys as of the last tick, each with its sampling rate, readable
/// without a lock. Two open-addressing tables of words `hash | log2(rate)`
/// (0 = empty): a tick fills the one readers are not using, then flips
/// `current`. A reader still probing the old one when the tick after next
/// rewrites it may get a wrong answer, which costs a miscount or a needless
/// lookup, never a wrong reply.
struct HotTable {
    tables: [Box<[AtomicU64]>; 2],
    current: AtomicUsize,
    /// Keys in the current table.
    len: AtomicUsize,
}

impl HotTable {
    /// Tables for up to `keys` hot keys, at most half full.
    fn new(keys: usize) -> HotTable {
        let slots = (2 * keys).next_power_of_two().max(16);
        let table = || (0..slots).map(|_| AtomicU64::new(0)).collect();
        HotTable {
            tables: [table(), table()],
            current: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
        }
    }

    /// The sampling rate (log2) of `hash` if it is a published hot key.
    fn lookup(&self, hash: u64) -> Option<u32> {
        let table = &self.tables[self.current.load(Ordering::Acquire)];
        let tag = hash & !SAMPLE_MASK;
        let mask = table.len() - 1;
        let mut i = (hash >> 4) as usize & mask;
        // Bounded, in case the table is being rewritten under this reader.
        for _ in 0..table.len() {
            let word = table[i].load(Ordering::Relaxed);
            if word == 0 {
                return None;
            }
            if word & !SAMPLE_MASK == tag {
                return Some((word & SAMPLE_MASK) as u32);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Replaces the hot keys with `keys` (hash, sampling rate log2); at most
    /// the `keys` given to `new`. Only one caller at a time.
    fn publish(&self, keys: &[(u64, u32)]) {
        let next = 1 - self.current.load(Ordering::Relaxed);
        let table = &self.tables[next];
        for slot in table.iter() {
            slot.store(0, Ordering::Relaxed);
        }
        let mask = table.len() - 1;
        let mut len = 0;
        for &(hash, log2) in keys.iter().take(table.len() / 2) {
            let tag = hash & !SAMPLE_MASK;
            // A hash whose tag is 0 would read as empty: leave it unpublished
            // (counted exactly, like any key); one in 2^60.
            if tag == 0 {
                continue;
            }
            let mut i = (hash >> 4) as usize & mask;
            while table[i].load(Ordering::Relaxed) != 0 {
                i = (i + 1) & mask;
            }
            table[i].store(tag | u64::from(log2), Ordering::Relaxed);
            len += 1;
        }
        // Release: a reader that sees the flip sees the words above.
        self.current.store(next, Ordering::Release);
        self.len.store(len, Ordering::Relaxed);
    }
}

thread_local! {
    /// This thread's xorshift state for sampling hot keys' reads: random
    /// rather than a counter, so that a thread alternating between keys or
    /// pools cannot always sample the same one.
    static SAMPLER: Cell<u64> = const { Cell::new(0x853c_49e6_748f_ea9b) };
}

/// True for a random 1 in 2^`log2` calls.
fn sampled(log2: u32) -> bool {
    SAMPLER.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x & ((1u64 << log2) - 1) == 0
    })
}

/// One shard of the reply cache.
struct CacheShard {
    /// Entries in `inner.map` plus fills between announcing themselves and
    /// deciding; read without the lock so that `get` and `invalidate` skip a
    /// shard holding nothing. See `complete_fill_at` for why fills count.
    occupied: AtomicUsize,
    inner: Mutex<CacheInner>,
}

/// A cache shard's entries, keyed by the key's xxh3 hash, and its counters
/// (kept under the shard's lock instead of in shared atomics, so a hit on
/// one shard does not contend with hits on another).
struct CacheInner {
    map: HashMap<u64, Entry, BuildPreHashed>,
    hits: u64,
    fills: u64,
    stale_fills: u64,
    invalidations: u64,
}

/// A cached reply.
struct Entry {
    /// The whole key: two keys may share a 64-bit hash.
    key: Box<[u8]>,
    reply: Bytes,
    /// The `begin_fill` time of the read that produced `reply`.
    stamp: u64,
}

/// Locks `m`, carrying on past a panic in another holder: the state behind
/// these locks is counts and cached replies, each step of which leaves them
/// usable, and failing every later read of the pool would be worse.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Nanoseconds in `d`, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The shard of a key's hash: bits 32.. (the cache maps use all 64 bits, and
/// hashbrown indexes by the low ones, so those vary within a shard).
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

impl HotKeys {
    /// A detector and cache with the settings in `cfg`. A `threshold` that is
    /// not positive leaves only [`MIN_HOT_COUNT`] deciding; `max_hot` 0 turns
    /// the cache off.
    pub(crate) fn new(cfg: HotKeyConfig) -> HotKeys {
        // At least one nanosecond per tick, so the tick arithmetic holds.
        let window_ns = nanos(cfg.window).max(TICKS_PER_WINDOW);
        let per_shard = cfg.capacity.div_ceil(SHARDS).max(1);
        let width = (per_shard * SKETCH_WIDTH_PER_KEY).next_power_of_two();
        let blank = TopK::with_seed(per_shard, width, SKETCH_DEPTH, SKETCH_DECAY, SKETCH_SEED);
        let windows = (0..SHARDS)
            .map(|_| {
                Padded(Mutex::new(Window {
                    epoch: 0,
                    cur: blank.clone(),
                    prev: blank.clone(),
                    cur_total: 0,
                    prev_total: 0,
                    candidates: HashMap::default(),
                }))
            })
            .collect();
        let caches = (0..SHARDS)
            .map(|_| {
                Padded(CacheShard {
                    occupied: AtomicUsize::new(0),
                    inner: Mutex::new(CacheInner {
                        map: HashMap::default(),
                        hits: 0,
                        fills: 0,
                        stale_fills: 0,
                        invalidations: 0,
                    }),
                })
            })
            .collect();
        HotKeys {
            window_ns,
            tick_ns: window_ns / TICKS_PER_WINDOW,
            ttl_ns: nanos(cfg.ttl),
            threshold: cfg.threshold,
            max_hot: cfg.max_hot,
            max_value: cfg.max_value,
            per_shard,
            start: Instant::now(),
            blank,
            windows,
            caches,
            generations: (0..GENERATION_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hot: HotTable::new(per_shard * SHARDS),
            // Nothing is hot until the first tick, which the first read runs.
            hot_min: AtomicU64::new(f64::INFINITY.to_bits()),
            next_tick: AtomicU64::new(0),
            ticking: Mutex::new(()),
            cached: AtomicUsize::new(0),
        }
    }

    /// Counts one read of `key`; cheap. Returns whether the key is hot now.
    pub(crate) fn record(&self, key: &[u8]) -> bool {
        self.record_with(key, || self.now())
    }

    /// A fresh cached reply for `key` (younger than ttl), if any.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.get_at(key, self.now())
    }

    /// Before a hot key's read goes to its backend: a ticket carrying the
    /// key's current write generation. `None` when the key is not hot (or
    /// the cache is off).
    pub(crate) fn begin_fill(&self, key: &[u8]) -> Option<FillTicket> {
        self.begin_fill_at(key, self.now())
    }

    /// After the backend answered: caches `reply` unless a write to the key
    /// happened since `begin_fill` (its generation changed), it is bigger than
    /// `max_value`, or the cache is full of fresh replies.
    pub(crate) fn complete_fill(&self, ticket: FillTicket, reply: Bytes) {
        self.complete_fill_at(ticket, reply, self.now());
    }

    /// A write (set, delete, incr, ...) to `key` through this proxy: drops the
    /// cached reply and bumps the key's generation, so the proxy's next read
    /// of the key goes to the backend (read-your-writes through the same
    /// proxy) and a read already in flight cannot cache the old value. Cheap
    /// for a key that is not cached: one atomic add and one load.
    pub(crate) fn invalidate(&self, key: &[u8]) {
        let hash = xxh3_64(key);
        // Bump first: a fill that took its ticket before this is refused.
        self.generation(hash).fetch_add(1, Ordering::SeqCst);
        let shard = &self.caches[shard_of(hash)].0;
        // SeqCst, paired with complete_fill_at: a fill this load misses sees
        // the bump above.
        if shard.occupied.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut guard = lock(&shard.inner);
        let inner = &mut *guard;
        if matches!(inner.map.get(&hash), Some(e) if *e.key == *key) {
            inner.map.remove(&hash);
            inner.invalidations += 1;
            drop(guard);
            self.release(shard, 1);
        }
    }

    /// The most counted keys now, hot or not, with their estimated recent
    /// counts, hottest first (the tests' view of the sketch).
    #[cfg(test)]
    pub(crate) fn top(&self, n: usize) -> Vec<(Vec<u8>, u64)> {
        self.top_at(n, self.now())
    }

    /// The keys hot now (over the threshold), hottest first, at most `n`,
    /// with their estimated recent counts: what the metrics list.
    pub(crate) fn hot(&self, n: usize) -> Vec<(Vec<u8>, u64)> {
        let now = self.now();
        let mut out = self.top_at(n.saturating_mul(4), now);
        out.retain(|(k, _)| self.is_hot_at(k, now));
        out.truncate(n);
        out
    }

    /// Counters for metrics: hits served from the cache, fills,
    /// invalidations, keys hot now.
    pub(crate) fn stats(&self) -> HotKeyStats {
        let mut stats = HotKeyStats {
            hot: self.hot.len.load(Ordering::Relaxed),
            cached: self.cached.load(Ordering::Relaxed),
            ..HotKeyStats::default()
        };
        for c in self.caches.iter() {
            let inner = lock(&c.0.inner);
            stats.hits += inner.hits;
            stats.fills += inner.fills;
            stats.stale_fills += inner.stale_fills;
            stats.invalidations += inner.invalidations;
        }
        stats
    }

    /// Nanoseconds since `start`: the clock of the `*_at` functions, which
    /// tests drive by hand.
    fn now(&self) -> u64 {
        nanos(self.start.elapsed())
    }

    fn moment(&self, now: u64) -> Moment {
        let into = now % self.window_ns;
        Moment {
            epoch: now / self.window_ns,
            prev_weight: 1.0 - into as f64 / self.window_ns as f64,
        }
    }

    fn hot_min(&self) -> f64 {
        f64::from_bits(self.hot_min.load(Ordering::Relaxed))
    }

    fn generation(&self, hash: u64) -> &AtomicU64 {
        &self.generations[(hash >> 36) as usize % GENERATION_SLOTS]
    }

    /// The shard of `hash` locked and rotated to `epoch`. Lock order: a
    /// window before a cache shard, never the other way.
    fn window(&self, hash: u64, epoch: u64) -> MutexGuard<'_, Window> {
        let mut w = lock(&self.windows[shard_of(hash)].0);
        w.rotate(epoch, &self.blank);
        w
    }

    /// Gives back `n` cache entries removed from `shard`.
    fn release(&self, shard: &CacheShard, n: usize) {
        if n > 0 {
            shard.occupied.fetch_sub(n, Ordering::SeqCst);
            self.cached.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// `record`, with the clock read only when the read is counted.
    fn record_with(&self, key: &[u8], now: impl FnOnce() -> u64) -> bool {
        if key.len() > MAX_KEY_LEN {
            return false;
        }
        let hash = xxh3_64(key);
        let mut weight = 1;
        if let Some(log2) = self.hot.lookup(hash) {
            if log2 > 0 {
                // A published hot key well above the threshold: count a
                // random 1 in 2^log2 of its reads, each for 2^log2.
                if !sampled(log2) {
                    return true;
                }
                weight = 1u64 << log2;
            }
        }
        let now = now();
        self.maybe_tick(now);
        let at = self.moment(now);
        let hot_min = self.hot_min();
        let mut w = self.window(hash, at.epoch);
        w.cur.add(key, weight);
        w.cur_total += weight;
        let hot = w.estimate(key, &at) >= hot_min;
        if hot && w.candidates.len() < self.per_shard && !w.candidates.contains_key(&hash) {
            w.candidates.insert(hash, key.into());
        }
        hot
    }

    #[cfg(test)]
    fn record_at(&self, key: &[u8], now: u64) -> bool {
        self.record_with(key, || now)
    }

    /// Whether `key` is hot at `now` by its estimate, without counting a read.
    fn is_hot_at(&self, key: &[u8], now: u64) -> bool {
        if key.len() > MAX_KEY_LEN {
            return false;
        }
        let at = self.moment(now);
        let hot_min = self.hot_min();
        self.window(xxh3_64(key), at.epoch).estimate(key, &at) >= hot_min
    }

    /// Runs the tick if one is due; the one caller that claims it does the
    /// work, the others go on without waiting.
    fn maybe_tick(&self, now: u64) {
        let due = self.next_tick.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let next = (now / self.tick_ns + 1) * self.tick_ns;
        if self
            .next_tick
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            // Still running the last one (its thread stalled): skip this.
            // A tick that panicked left nothing half-written that matters.
            let _ticking = match self.ticking.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            self.tick(now);
        }
    }

    /// Rotates every shard, recomputes the hot threshold from the total of
    /// recent reads, republishes the hot keys with their sampling rates, and
    /// drops cached replies that expired or whose key is no longer hot, so
    /// their slots go to keys that are.
    fn tick(&self, now: u64) {
        let at = self.moment(now);
        let mut total = 0.0;
        for w in self.windows.iter() {
            let mut w = lock(&w.0);
            w.rotate(at.epoch, &self.blank);
            total += w.total(&at);
        }
        // f64::max ignores a NaN threshold's product.
        let hot_min = (self.threshold * total).max(MIN_HOT_COUNT);
        self.hot_min.store(hot_min.to_bits(), Ordering::Relaxed);

        let mut hot = Vec::new();
        for w in self.windows.iter() {
            let mut w = lock(&w.0);
            // Taken out so the closure below can read the sketches.
            let mut candidates = std::mem::take(&mut w.candidates);
            candidates.retain(|&hash, key| {
                let est = w.estimate(key, &at);
                if est < hot_min {
                    return false;
                }
                // The largest 2^k with est / 2^k >= SAMPLE_HEADROOM * hot_min.
                let log2 = ((est / (SAMPLE_HEADROOM * hot_min)) as u64)
                    .checked_ilog2()
                    .unwrap_or(0)
                    .min(MAX_SAMPLE_LOG2);
                hot.push((hash, log2));
                true
            });
            w.candidates = candidates;
        }
        self.hot.publish(&hot);

        for (w, c) in self.windows.iter().zip(self.caches.iter()) {
            let shard = &c.0;
            if shard.occupied.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let w = lock(&w.0);
            let mut inner = lock(&shard.inner);
            let before = inner.map.len();
            inner.map.retain(|_, e| {
                now.saturating_sub(e.stamp) < self.ttl_ns && w.estimate(&e.key, &at) >= hot_min
            });
            let removed = before - inner.map.len();
            drop(inner);
            self.release(shard, removed);
        }
    }

    fn get_at(&self, key: &[u8], now: u64) -> Option<Bytes> {
        let hash = xxh3_64(key);
        let shard = &self.caches[shard_of(hash)].0;
        // An empty shard needs no lock; a miss is always safe.
        if shard.occupied.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut guard = lock(&shard.inner);
        let inner = &mut *guard;
        let entry = match inner.map.get(&hash) {
            Some(e) if *e.key == *key => e,
            _ => return None,
        };
        if now.saturating_sub(entry.stamp) < self.ttl_ns {
            let reply = entry.reply.clone();
            inner.hits += 1;
            return Some(reply);
        }
        // Expired: free the slot now rather than at the next tick.
        inner.map.remove(&hash);
        drop(guard);
        self.release(shard, 1);
        None
    }

    fn begin_fill_at(&self, key: &[u8], now: u64) -> Option<FillTicket> {
        if self.max_hot == 0 || !self.is_hot_at(key, now) {
            return None;
        }
        let hash = xxh3_64(key);
        Some(FillTicket {
            key: key.into(),
            hash,
            generation: self.generation(hash).load(Ordering::SeqCst),
            stamp: now,
        })
    }

    fn complete_fill_at(&self, ticket: FillTicket, reply: Bytes, now: u64) {
        // A reply already as old as ttl could never be served.
        if reply.len() > self.max_value || now.saturating_sub(ticket.stamp) >= self.ttl_ns {
            return;
        }
        let shard = &self.caches[shard_of(ticket.hash)].0;
        // Announce the fill before reading the generation. `invalidate`
        // bumps the generation before reading `occupied`, so (all SeqCst)
        // either it sees this fill and takes the lock, or this fill sees its
        // bump. Otherwise it could skip the shard while this fill stores a
        // reply read before the write.
        shard.occupied.fetch_add(1, Ordering::SeqCst);
        let mut guard = lock(&shard.inner);
        let inner = &mut *guard;
        let mut kept = false;
        if self.generation(ticket.hash).load(Ordering::SeqCst) != ticket.generation {
            inner.stale_fills += 1;
        } else {
            match inner.map.get_mut(&ticket.hash) {
                Some(e) if e.key == ticket.key => {
                    // Two fills raced: keep the reply of the later read.
                    if ticket.stamp >= e.stamp {
                        e.reply = reply;
                        e.stamp = ticket.stamp;
                        inner.fills += 1;
                    }
                }
                // Another key with the same 64-bit hash holds the slot.
                Some(_) => {}
                None => {
                    if self.reserve(inner, now) {
                        inner.map.insert(
                            ticket.hash,
                            Entry {
                                key: ticket.key,
                                reply,
                                stamp: ticket.stamp,
                            },
                        );
                        inner.fills += 1;
                        kept = true;
                    }
                }
            }
        }
        drop(guard);
        if !kept {
            // The announcement became no entry.
            shard.occupied.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Finds room for one more entry in `inner`'s shard: a free slot under
    /// `max_hot`, or else the slot of an expired entry of this shard. Keys no
    /// longer hot lose their slots at the next tick.
    fn reserve(&self, inner: &mut CacheInner, now: u64) -> bool {
        if self
            .cached
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_hot).then_some(n + 1)
            })
            .is_ok()
        {
            return true;
        }
        let expired = inner
            .map
            .iter()
            .find(|(_, e)| now.saturating_sub(e.stamp) >= self.ttl_ns)
            .map(|(&hash, _)| hash);
        match expired {
            Some(hash) => {
                // The slot passes to the new entry: `cached` stays, and the
                // shard's `occupied` keeps the new entry's announcement.
                inner.map.remove(&hash);
                let shard = &self.caches[shard_of(hash)].0;
                shard.occupied.fetch_sub(1, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    fn top_at(&self, n: usize, now: u64) -> Vec<(Vec<u8>, u64)> {
        let at = self.moment(now);
        let mut all = Vec::new();
        for w in self.windows.iter() {
            let mut w = lock(&w.0);
            w.rotate(at.epoch, &self.blank);
            for node in w.cur.list() {
                let est = w.estimate(&node.item, &at);
                all.push((node.item, est));
            }
            for node in w.prev.list() {
                if !w.cur.contains_top_k(&node.item[..]) {
                    let est = w.estimate(&node.item, &at);
                    all.push((node.item, est));
                }
            }
        }
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.into_iter()
            .map(|(key, est)| (key, est.round() as u64))
            .filter(|&(_, count)| count > 0)
            .take(n)
            .collect()
    }
}

impl fmt::Debug for HotKeys {
    /// The settings and the counters, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let HotKeyStats {
            hits,
            fills,
            stale_fills,
            invalidations,
            hot,
            cached,
        } = self.stats();
        f.debug_struct("HotKeys")
            .field("window_ns", &self.window_ns)
            .field("ttl_ns", &self.ttl_ns)
            .field("threshold", &self.threshold)
            .field("max_hot", &self.max_hot)
            .field("max_value", &self.max_value)
            .field("hot_min", &self.hot_min())
            .field("hot", &hot)
            .field("cached", &cached)
            .field("hits", &hits)
            .field("fills", &fills)
            .field("stale_fills", &stale_fills)
            .field("invalidations", &invalidations)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const MS: u64 = 1_000_000;

    /// SplitMix64: a tiny seeded generator, so every run draws the same keys.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Zipf(s) over ranks 0..n by inverting a precomputed CDF.
    struct Zipf {
        cdf: Vec<f64>,
    }

    impl Zipf {
        fn new(n: usize, s: f64) -> Zipf {
            let mut acc = 0.0;
            let mut cdf: Vec<f64> = (1..=n)
                .map(|k| {
                    acc += (k as f64).powf(-s);
                    acc
                })
                .collect();
            for c in &mut cdf {
                *c /= acc;
            }
            Zipf { cdf }
        }

        fn sample(&self, rng: &mut Rng) -> usize {
            let u = rng.unit();
            self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
        }
    }

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("key:{i}").into_bytes()).collect()
    }

    /// Reads `key` until it is hot at `now`.
    fn make_hot(hk: &HotKeys, key: &[u8], now: u64) {
        let hot = (0..1000).any(|_| hk.record_at(key, now));
        assert!(hot, "{} never became hot", String::from_utf8_lossy(key));
    }

    fn fill(hk: &HotKeys, key: &[u8], reply: &'static [u8], now: u64) {
        let ticket = hk.begin_fill_at(key, now).expect("hot key gets a ticket");
        hk.complete_fill_at(ticket, Bytes::from_static(reply), now);
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<HotKeys>();
        check::<FillTicket>();
    }

    #[test]
    fn zipf_top_keys_are_hot_and_tracked() {
        let hk = HotKeys::new(HotKeyConfig::default());
        let keys = keys(100_000);
        let zipf = Zipf::new(keys.len(), 1.1);
        let mut rng = Rng(42);
        let mut counts = vec![0u32; keys.len()];
        let mut hot_now = vec![false; keys.len()];
        // 100k reads at 20k/s: 5 s, five windows.
        let mut now = 0;
        for _ in 0..100_000 {
            let k = zipf.sample(&mut rng);
            counts[k] += 1;
            hot_now[k] = hk.record_at(&keys[k], now);
            now += 50_000;
        }
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by_key(|&k| std::cmp::Reverse(counts[k]));
        let top10 = &order[..10];
        for &k in top10 {
            assert!(hot_now[k], "top key {k} ({} reads) not hot", counts[k]);
        }
        let reported: Vec<Vec<u8>> = hk.top_at(10, now).into_iter().map(|(k, _)| k).collect();
        let found = top10
            .iter()
            .filter(|&&k| reported.contains(&keys[k]))
            .count();
        assert!(found >= 8, "only {found} of the top 10 in top(10)");
        let tracked: Vec<Vec<u8>> = hk.top_at(1024, now).into_iter().map(|(k, _)| k).collect();
        assert!(top10.iter().all(|&k| tracked.contains(&keys[k])));
        // The hottest key's estimate is close to its reads over the last
        // window (it takes about 1/7.4 of 20k reads).
        let (key, est) = &hk.top_at(1, now)[0];
        assert_eq!(key, &keys[0]);
        assert!((2_500..=2_900).contains(est), "estimate {est}");
        let stats = hk.stats();
        assert!((30..=60).contains(&stats.hot), "{} hot keys", stats.hot);
        // The hottest keys are published with sparse sampling (the top one at
        // ~67 times the threshold: 1 in 8), the barely hot ones exact.
        assert_eq!(hk.hot.lookup(xxh3_64(&keys[0])), Some(3));
        assert_eq!(hk.hot.lookup(xxh3_64(&keys[20])), Some(0));
        assert_eq!(hk.hot.lookup(xxh3_64(&keys[5_000])), None);
    }

    #[test]
    fn uniform_traffic_has_no_hot_key() {
        let hk = HotKeys::new(HotKeyConfig::default());
        let keys = keys(100_000);
        let mut rng = Rng(7);
        let mut now = 0;
        for _ in 0..100_000 {
            let k = rng.below(keys.len());
            assert!(!hk.record_at(&keys[k], now), "key {k} hot at {now}");
            now += 50_000;
        }
        assert_eq!(hk.stats().hot, 0);
        assert!(hk.begin_fill_at(&keys[0], now).is_none());
    }

    #[test]
    fn a_key_that_cools_stops_being_hot() {
        let cfg = HotKeyConfig::default();
        let window = nanos(cfg.window);
        let hk = HotKeys::new(cfg);
        let keys = keys(100_000);
        let mut rng = Rng(9);
        let hot = b"hot-key";
        let step = window / 20_000;
        let mut now = 0;
        let mut was_hot = false;
        // One window with the key at 10% of 20k reads.
        for i in 0..20_000 {
            if i % 10 == 0 {
                was_hot = hk.record_at(hot, now);
            } else {
                hk.record_at(&keys[rng.below(keys.len())], now);
            }
            now += step;
        }
        assert!(was_hot);
        fill(&hk, hot, b"VALUE", now);
        assert_eq!(hk.stats().cached, 1);
        // Then three windows without it.
        for _ in 0..60_000 {
            hk.record_at(&keys[rng.below(keys.len())], now);
            now += step;
        }
        assert!(!hk.is_hot_at(hot, now));
        assert!(hk.begin_fill_at(hot, now).is_none());
        let stats = hk.stats();
        assert_eq!((stats.hot, stats.cached), (0, 0));
        assert!(!hk.top_at(10, now).iter().any(|(k, _)| k == hot));
    }

    #[test]
    fn a_write_during_a_fill_keeps_the_reply_out() {
        let hk = HotKeys::new(HotKeyConfig::default());
        let key = b"k";
        make_hot(&hk, key, 0);
        let ticket = hk.begin_fill_at(key, 0).unwrap();
        hk.invalidate(key);
        hk.complete_fill_at(ticket, Bytes::from_static(b"old"), 0);
        assert_eq!(hk.get_at(key, 0), None);
        assert_eq!(hk.stats().stale_fills, 1);

        // A fill begun after the write is kept, and the next write drops it.
        fill(&hk, key, b"new", 0);
        assert_eq!(hk.get_at(key, 0).as_deref(), Some(&b"new"[..]));
        hk.invalidate(key);
        assert_eq!(hk.get_at(key, 0), None);
        let stats = hk.stats();
        assert_eq!((stats.fills, stats.invalidations, stats.hits), (1, 1, 1));
        assert_eq!(stats.cached, 0);
        // A write to a key that is not cached leaves others alone.
        fill(&hk, key, b"new", 0);
        hk.invalidate(b"other");
        assert!(hk.get_at(key, 0).is_some());
    }

    #[test]
    fn replies_expire_after_ttl() {
        let cfg = HotKeyConfig::default();
        let ttl = nanos(cfg.ttl);
        let hk = HotKeys::new(cfg);
        let key = b"k";
        make_hot(&hk, key, 0);
        // The reply's age counts from begin_fill, not from complete_fill.
        let ticket = hk.begin_fill_at(key, 10 * MS).unwrap();
        hk.complete_fill_at(ticket, Bytes::from_static(b"v"), 50 * MS);
        assert!(hk.get_at(key, 10 * MS + ttl - 1).is_some());
        assert!(hk.get_at(key, 10 * MS + ttl).is_none());
        assert_eq!(hk.stats().cached, 0);
        // A reply that arrives older than ttl is not stored.
        let ticket = hk.begin_fill_at(key, 20 * MS).unwrap();
        hk.complete_fill_at(ticket, Bytes::from_static(b"v"), 20 * MS + ttl);
        assert_eq!(hk.stats().cached, 0);
    }

    #[test]
    fn max_hot_and_max_value_hold() {
        let cfg = HotKeyConfig {
            max_hot: 4,
            max_value: 100,
            ..HotKeyConfig::default()
        };
        let ttl = nanos(cfg.ttl);
        let hk = HotKeys::new(cfg);
        let keys = keys(10);
        for k in &keys {
            make_hot(&hk, k, 0);
        }
        for k in &keys {
            fill(&hk, k, b"v", 0);
        }
        assert_eq!(hk.stats().cached, 4);
        assert_eq!(keys.iter().filter(|k| hk.get_at(k, 0).is_some()).count(), 4);
        // Once those expire, their slots go to other keys.
        let later = ttl + MS;
        for k in &keys {
            make_hot(&hk, k, later);
            fill(&hk, k, b"v", later);
        }
        assert_eq!(hk.stats().cached, 4);
        assert_eq!(
            keys.iter()
                .filter(|k| hk.get_at(k, later).is_some())
                .count(),
            4
        );

        let hk = HotKeys::new(HotKeyConfig {
            max_value: 100,
            ..HotKeyConfig::default()
        });
        make_hot(&hk, b"big", 0);
        make_hot(&hk, b"fits", 0);
        let ticket = hk.begin_fill_at(b"big", 0).unwrap();
        hk.complete_fill_at(ticket, Bytes::from(vec![b'x'; 101]), 0);
        let ticket = hk.begin_fill_at(b"fits", 0).unwrap();
        hk.complete_fill_at(ticket, Bytes::from(vec![b'x'; 100]), 0);
        assert!(hk.get_at(b"big", 0).is_none());
        assert_eq!(hk.get_at(b"fits", 0).map(|r| r.len()), Some(100));
    }

    #[test]
    fn long_keys_and_zero_max_hot_are_never_hot() {
        let hk = HotKeys::new(HotKeyConfig::default());
        let long = vec![b'k'; MAX_KEY_LEN + 1];
        assert!(!(0..100).any(|_| hk.record_at(&long, 0)));
        let hk = HotKeys::new(HotKeyConfig {
            max_hot: 0,
            ..HotKeyConfig::default()
        });
        make_hot(&hk, b"k", 0);
        assert!(hk.begin_fill_at(b"k", 0).is_none());
    }

    #[test]
    fn concurrent_use_neither_deadlocks_nor_panics() {
        let hk = Arc::new(HotKeys::new(HotKeyConfig {
            max_hot: 8,
            ttl: Duration::from_millis(2),
            window: Duration::from_millis(20),
            ..HotKeyConfig::default()
        }));
        let keys = Arc::new(keys(200));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let hk = Arc::clone(&hk);
                let keys = Arc::clone(&keys);
                std::thread::spawn(move || {
                    let zipf = Zipf::new(keys.len(), 1.1);
                    let mut rng = Rng(t);
                    for i in 0..20_000 {
                        let key = &keys[zipf.sample(&mut rng)];
                        if i % 7 == 0 {
                            hk.invalidate(key);
                        } else if hk.record(key) && hk.get(key).is_none() {
                            if let Some(ticket) = hk.begin_fill(key) {
                                hk.complete_fill(ticket, Bytes::from_static(b"v"));
                            }
                        }
                        if i % 5_000 == 0 {
                            assert!(hk.top(5).len() <= 5);
                            assert!(hk.stats().cached <= 8);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let stats = hk.stats();
        assert!(stats.cached <= 8);
        assert!(stats.fills > 0 && stats.hits > 0, "{stats:?}");
        // No fill is in flight now: every shard's count is its entries, and
        // they add up to the global count.
        let mut entries = 0;
        for c in hk.caches.iter() {
            let len = lock(&c.0.inner).map.len();
            assert_eq!(c.0.occupied.load(Ordering::SeqCst), len);
            entries += len;
        }
        assert_eq!(entries, stats.cached);
    }

    /// The product check: Zipf(1.1) reads over 8 backends, with and without
    /// the cache. Prints peak/mean backend load.
    #[test]
    fn cache_evens_out_backend_load() {
        const BACKENDS: usize = 8;
        let hk = HotKeys::new(HotKeyConfig::default());
        let keys = keys(100_000);
        let zipf = Zipf::new(keys.len(), 1.1);
        let mut rng = Rng(2024);
        let mut with_cache = [0u64; BACKENDS];
        let mut without = [0u64; BACKENDS];
        // Backend reads per 250 ms, for the worst short-term imbalance.
        let mut intervals = vec![[0u64; BACKENDS]; 10];
        let mut served = 0u64;
        let reply = Bytes::from_static(b"VALUE k 0 1\r\nv\r\nEND\r\n");
        // 50k reads at 20k/s: 2.5 s of simulated time.
        let mut now = 0;
        for _ in 0..50_000 {
            let key = &keys[zipf.sample(&mut rng)];
            let backend = (xxh3_64(key) % BACKENDS as u64) as usize;
            without[backend] += 1;
            let hot = hk.record_at(key, now);
            if hot && hk.get_at(key, now).is_some() {
                served += 1;
            } else {
                with_cache[backend] += 1;
                intervals[(now / (250 * MS)) as usize][backend] += 1;
                if let Some(ticket) = hk.begin_fill_at(key, now) {
                    hk.complete_fill_at(ticket, reply.clone(), now);
                }
            }
            now += 50_000;
        }
        let ratio = |loads: &[u64]| {
            let mean = loads.iter().sum::<u64>() as f64 / loads.len() as f64;
            *loads.iter().max().unwrap() as f64 / mean
        };
        let (cached, uncached) = (ratio(&with_cache), ratio(&without));
        let worst = intervals.iter().map(|l| ratio(l)).fold(0.0, f64::max);
        let stats = hk.stats();
        eprintln!(
            "backend peak/mean: {cached:.3} with the cache ({worst:.3} in the worst \
             250 ms), {uncached:.3} without; {served} of 50000 reads served by the \
             proxy; {stats:?}"
        );
        assert!(cached <= 1.3, "peak/mean {cached:.3} with the cache");
        assert!(
            uncached >= 1.8,
            "peak/mean {uncached:.3} without: a weak test"
        );
    }
}
