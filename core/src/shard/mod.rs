//! Sharding functions over a node set, held as immutable snapshots.
//!
//! A [`Sharder`] is one snapshot: nodes, the algorithm's table, and which
//! nodes are marked down. Lookups never lock; membership changes
//! ([`Sharder::apply`]) build a new snapshot in one pass and leave the old one
//! untouched, so a live service swaps an `Arc` (see [`LiveSharder`]).
//!
//! Internally nodes live in *slots*. For most algorithms slots are dense; the
//! position-based ones (jump, jumpback) fill a removed node's slot with the
//! last node, and Memento leaves a hole that the next added node refills, which
//! is what keeps its disruption minimal.

mod bounded;
mod jump;
mod jumpback;
mod ketama;
mod live;
mod maglev;
mod memento;
mod modulo;
mod rendezvous;
mod report;

pub use bounded::{DEFAULT_LOAD_FACTOR, DEFAULT_PARTITIONS, MAX_PARTITIONS};
pub use jump::jump_hash;
pub use jumpback::jumpback_hash;
pub use ketama::KetamaMode;
pub use live::LiveSharder;
pub use maglev::{
    DEFAULT_TABLE_SIZE as DEFAULT_MAGLEV_TABLE_SIZE, MAX_TABLE_SIZE as MAX_MAGLEV_TABLE_SIZE,
};
pub use report::{Balance, Movement};

use crate::error::{Error, ErrorKind, Result};
use crate::hash::{mix64, HashFn};
use crate::keysel::KeySelector;
use crate::node::{validate_nodes, Node};
use rayon::prelude::*;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Batches at least this long are split across rayon's pool.
pub const PARALLEL_BATCH_THRESHOLD: usize = 16 * 1024;

/// The sharding function.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Algorithm {
    /// `hash % total_weight` over a weighted list (twemproxy `modula`).
    Modulo,
    /// A ketama ring compatible with a named peer.
    Ketama(KetamaMode),
    /// Lamping & Veach's jump consistent hash (unweighted).
    Jump,
    /// Ertl's JumpBackHash: jump's placement guarantees in O(1) (unweighted).
    JumpBack,
    /// Weighted rendezvous (highest random weight) hashing.
    Rendezvous,
    /// Google's Maglev lookup table, weighted.
    Maglev {
        /// Entries in the lookup table: a prime, at least the node count.
        table_size: u32,
    },
    /// Consistent hashing with bounded loads over a fixed partition count,
    /// weighted.
    BoundedLoad {
        /// `c`: no node holds more than `c` times its fair share of
        /// partitions (see the `bounded` module docs for the rounding).
        load_factor: f64,
        /// Partitions keys hash to (`hash % partitions`); at least the node
        /// count.
        partitions: u32,
    },
    /// MementoHash: jump plus arbitrary removal with minimal disruption
    /// (unweighted).
    Memento,
    /// MementoHash over JumpBackHash: the same removal guarantees with O(1)
    /// lookups at any size (unweighted).
    MementoJumpBack,
}

impl Algorithm {
    /// The key hash used when the configuration does not name one.
    pub fn default_hash(&self) -> HashFn {
        match self {
            Algorithm::Ketama(mode) => mode.default_hash(),
            _ => HashFn::default(),
        }
    }

    /// The canonical name, accepted back by [`Algorithm::from_name`].
    pub fn name(&self) -> String {
        match *self {
            Algorithm::Modulo => "modulo".into(),
            Algorithm::Ketama(m) => format!("ketama:{}", m.name()),
            Algorithm::Jump => "jump".into(),
            Algorithm::JumpBack => "jumpback".into(),
            Algorithm::Rendezvous => "rendezvous".into(),
            Algorithm::Maglev { table_size } if table_size == maglev::DEFAULT_TABLE_SIZE => {
                "maglev".into()
            }
            Algorithm::Maglev { table_size } => format!("maglev:{table_size}"),
            Algorithm::BoundedLoad {
                load_factor,
                partitions,
            } => {
                if partitions != bounded::DEFAULT_PARTITIONS {
                    format!("bounded:{load_factor}:{partitions}")
                } else if load_factor != bounded::DEFAULT_LOAD_FACTOR {
                    format!("bounded:{load_factor}")
                } else {
                    "bounded".into()
                }
            }
            Algorithm::Memento => "memento".into(),
            Algorithm::MementoJumpBack => "memento:jumpback".into(),
        }
    }

    /// Parses `modulo`, `ketama` (twemproxy mode), `ketama:twemproxy`,
    /// `ketama:nginx`, `ketama:uhashring`, `jump`, `jumpback`, `rendezvous`
    /// (alias `hrw`), `maglev` (table size 65537), `maglev:SIZE`, `bounded`
    /// (load factor 1.25, 65537 partitions), `bounded:C`, `bounded:C:P`,
    /// `memento` (alias `memento:jump`) and `memento:jumpback`.
    pub fn from_name(name: &str) -> Result<Algorithm> {
        let lower = name.trim().to_ascii_lowercase();
        let (head, arg) = match lower.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (lower.as_str(), None),
        };
        let no_arg = |alg: Algorithm| match arg {
            None => Ok(alg),
            Some(a) => Err(Error::invalid(format!(
                "algorithm {head:?} takes no parameter, got {a:?} in {name:?}"
            ))),
        };
        match head {
            "modulo" | "modula" => no_arg(Algorithm::Modulo),
            "jump" => no_arg(Algorithm::Jump),
            "jumpback" => no_arg(Algorithm::JumpBack),
            "rendezvous" | "hrw" => no_arg(Algorithm::Rendezvous),
            "memento" => match arg.map(str::trim) {
                None | Some("jump") => Ok(Algorithm::Memento),
                Some("jumpback") => Ok(Algorithm::MementoJumpBack),
                Some(a) => Err(Error::invalid(format!(
                    "memento runs over jump or jumpback, got {a:?} in {name:?}"
                ))),
            },
            "maglev" => {
                let table_size = match arg {
                    None => maglev::DEFAULT_TABLE_SIZE,
                    Some(a) => a.trim().parse::<u32>().map_err(|_| {
                        Error::invalid(format!(
                            "maglev table size must be a prime between 2 and {}, got {a:?} in {name:?}",
                            maglev::MAX_TABLE_SIZE
                        ))
                    })?,
                };
                maglev::validate_table_size(table_size)?;
                Ok(Algorithm::Maglev { table_size })
            }
            "bounded" => {
                let (c, p) = match arg {
                    None => (None, None),
                    Some(a) => match a.split_once(':') {
                        Some((c, p)) => (Some(c), Some(p)),
                        None => (Some(a), None),
                    },
                };
                let load_factor = match c {
                    None => bounded::DEFAULT_LOAD_FACTOR,
                    Some(c) => c.trim().parse::<f64>().map_err(|_| {
                        Error::invalid(format!(
                            "bounded load factor must be a finite number greater than 1.0, got {c:?} in {name:?}"
                        ))
                    })?,
                };
                bounded::validate_load_factor(load_factor)?;
                let partitions = match p {
                    None => bounded::DEFAULT_PARTITIONS,
                    Some(p) => p.trim().parse::<u32>().map_err(|_| {
                        Error::invalid(format!(
                            "bounded partition count must be between 1 and {}, got {p:?} in {name:?}",
                            bounded::MAX_PARTITIONS
                        ))
                    })?,
                };
                bounded::validate_partitions(partitions)?;
                Ok(Algorithm::BoundedLoad {
                    load_factor,
                    partitions,
                })
            }
            "ketama" => Ok(Algorithm::Ketama(match arg {
                None => KetamaMode::Twemproxy,
                Some(m) => KetamaMode::from_name(m)?,
            })),
            _ => Err(Error::invalid(format!(
                "unknown sharding algorithm {name:?}; expected one of {}",
                ALGORITHM_NAMES.join(", ")
            ))),
        }
    }

    /// How a removed node's slot is reused (see the module docs).
    fn removal(&self) -> Removal {
        match self {
            Algorithm::Jump | Algorithm::JumpBack => Removal::SwapLast,
            Algorithm::Memento | Algorithm::MementoJumpBack => Removal::Hole,
            _ => Removal::Ordered,
        }
    }

    /// Whether nodes may have weights other than 1.
    pub fn weighted(&self) -> bool {
        !matches!(
            self,
            Algorithm::Jump | Algorithm::JumpBack | Algorithm::Memento | Algorithm::MementoJumpBack
        )
    }
}

/// The algorithm bindings use when the caller names none: weighted, O(1)
/// lookups, near-perfect balance, and little movement on membership change.
pub const DEFAULT_ALGORITHM: &str = "maglev";

/// Every algorithm name [`Algorithm::from_name`] accepts.
pub const ALGORITHM_NAMES: &[&str] = &[
    "modulo",
    "ketama:twemproxy",
    "ketama:nginx",
    "ketama:uhashring",
    "jump",
    "jumpback",
    "rendezvous",
    "maglev",
    "bounded",
    "memento",
    "memento:jumpback",
];

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Algorithm::from_name(s)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// Later nodes shift down: name-based algorithms don't care about order.
    Ordered,
    /// The last node takes the removed slot: position-based algorithms keep
    /// every other node's buckets.
    SwapLast,
    /// The slot is left empty and logged in `removed`; the next added node
    /// refills the most recently emptied slot (Memento).
    Hole,
}

/// How keys are hashed and placed.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// The sharding function.
    pub algorithm: Algorithm,
    /// The key hash; `None` takes the algorithm's default (xxh3, or the
    /// matched peer's hash for ketama modes).
    pub hash: Option<HashFn>,
    /// Which bytes of a key are hashed.
    pub key_selector: KeySelector,
    /// twemproxy's rule: an empty (selected) key, or a pool of one server,
    /// hashes to 0. On by default for twemproxy-compatible algorithms.
    pub empty_key_hashes_to_zero: bool,
}

impl ShardConfig {
    /// A configuration with the algorithm's defaults.
    pub fn new(algorithm: Algorithm) -> ShardConfig {
        ShardConfig {
            algorithm,
            hash: None,
            key_selector: KeySelector::Whole,
            empty_key_hashes_to_zero: matches!(
                algorithm,
                Algorithm::Ketama(KetamaMode::Twemproxy) | Algorithm::Modulo
            ),
        }
    }

    /// Builds a configuration from the names bindings and config files use:
    /// an algorithm (`None`: [`DEFAULT_ALGORITHM`]), a hash (`None`: the
    /// algorithm's default) and hash-tag delimiters (`None`: whole keys).
    pub fn from_names(
        algorithm: Option<&str>,
        hash: Option<&str>,
        hash_tag: Option<&str>,
    ) -> Result<ShardConfig> {
        let mut cfg = ShardConfig::new(Algorithm::from_name(
            algorithm.unwrap_or(DEFAULT_ALGORITHM),
        )?);
        if let Some(h) = hash {
            cfg = cfg.with_hash(HashFn::from_name(h)?);
        }
        if let Some(t) = hash_tag {
            cfg = cfg.with_key_selector(KeySelector::hash_tag(t)?);
        }
        Ok(cfg)
    }

    /// Sets the key hash.
    pub fn with_hash(mut self, hash: HashFn) -> ShardConfig {
        self.hash = Some(hash);
        self
    }

    /// Sets the key selector.
    pub fn with_key_selector(mut self, sel: KeySelector) -> ShardConfig {
        self.key_selector = sel;
        self
    }

    /// The key hash in effect.
    pub fn effective_hash(&self) -> HashFn {
        self.hash.unwrap_or_else(|| self.algorithm.default_hash())
    }
}

/// The interface every placement table implements.
pub(crate) trait Placement: Send + Sync {
    /// The slot of a key hash. Must return a live slot.
    fn locate(&self, h: u64) -> u32;

    /// Visits slots in this key's order of preference, primary first, until
    /// `visit` returns false. May repeat slots and may stop before visiting
    /// all of them: [`Sharder`] dedups and completes the order.
    fn walk(&self, h: u64, visit: &mut dyn FnMut(u32) -> bool);
}

/// Visits `table` from `start` round to just before it: the preference
/// order of every table-based algorithm (ketama rings, maglev, bounded-load
/// partitions, modulo), where the next entry is the next choice.
pub(crate) fn walk_table(table: &[u32], start: usize, visit: &mut dyn FnMut(u32) -> bool) {
    let (before, from) = table.split_at(start.min(table.len()));
    for &slot in from.iter().chain(before) {
        if !visit(slot) {
            return;
        }
    }
}

/// A preference walk for algorithms with no order of their own: the primary,
/// then the primaries of re-mixed hashes. Stable, and a down node's keys
/// spread over the others instead of piling onto one neighbour.
pub(crate) fn rehash_walk(
    h: u64,
    attempts: usize,
    locate: impl Fn(u64) -> u32,
    visit: &mut dyn FnMut(u32) -> bool,
) {
    if !visit(locate(h)) {
        return;
    }
    for i in 1..=attempts as u64 {
        if !visit(locate(mix64(h ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))) {
            return;
        }
    }
}

/// `x % d` for a fixed 32-bit `d` without a division: Lemire, Kaser & Kurz,
/// "Faster Remainder by Direct Computation" (2019). With a 128-bit
/// reciprocal the result is exact for every 64-bit `x`, so tables indexed
/// this way place keys exactly as `h % d` would.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FastMod {
    d: u64,
    /// `ceil(2^128 / d)`, wrapped to 0 for `d == 1` (every remainder is 0).
    m: u128,
}

impl FastMod {
    pub(crate) fn new(d: u32) -> FastMod {
        assert!(d > 0, "modulus must be positive");
        let m = if d == 1 { 0 } else { u128::MAX / d as u128 + 1 };
        FastMod { d: d as u64, m }
    }

    #[inline]
    pub(crate) fn reduce(&self, x: u64) -> u32 {
        let low = self.m.wrapping_mul(x as u128);
        let hi = (low >> 64) * self.d as u128;
        let lo = ((low as u64 as u128) * self.d as u128) >> 64;
        ((hi + lo) >> 64) as u32
    }
}

enum Table {
    Modulo(modulo::Modulo),
    Ketama(ketama::Ring),
    Jump(jump::Jump),
    JumpBack(jumpback::JumpBack),
    Rendezvous(rendezvous::Rendezvous),
    Maglev(maglev::Maglev),
    Bounded(bounded::Bounded),
    Memento(memento::Memento),
}

impl Table {
    /// Builds the table; `removed` lists emptied slots oldest first (only
    /// [`Removal::Hole`] algorithms leave any).
    fn build(cfg: &ShardConfig, slots: &[Option<Node>], removed: &[u32]) -> Result<Table> {
        Ok(match cfg.algorithm {
            Algorithm::Modulo => Table::Modulo(modulo::Modulo::build(slots)?),
            Algorithm::Ketama(mode) => Table::Ketama(ketama::Ring::build(mode, slots)?),
            Algorithm::Jump => Table::Jump(jump::Jump::build(slots)?),
            Algorithm::JumpBack => Table::JumpBack(jumpback::JumpBack::build(slots)?),
            Algorithm::Rendezvous => Table::Rendezvous(rendezvous::Rendezvous::build(slots)?),
            Algorithm::Maglev { table_size } => {
                Table::Maglev(maglev::Maglev::build(table_size, slots)?)
            }
            Algorithm::BoundedLoad {
                load_factor,
                partitions,
            } => Table::Bounded(bounded::Bounded::build(load_factor, partitions, slots)?),
            Algorithm::Memento => Table::Memento(memento::Memento::build(
                memento::Base::Jump,
                slots,
                removed,
            )?),
            Algorithm::MementoJumpBack => Table::Memento(memento::Memento::build(
                memento::Base::JumpBack,
                slots,
                removed,
            )?),
        })
    }

    #[inline]
    fn placement(&self) -> &dyn Placement {
        match self {
            Table::Modulo(t) => t,
            Table::Ketama(t) => t,
            Table::Jump(t) => t,
            Table::JumpBack(t) => t,
            Table::Rendezvous(t) => t,
            Table::Maglev(t) => t,
            Table::Bounded(t) => t,
            Table::Memento(t) => t,
        }
    }

    #[inline]
    fn locate(&self, h: u64) -> u32 {
        // Static dispatch on the hot path.
        match self {
            Table::Modulo(t) => t.locate(h),
            Table::Ketama(t) => t.locate(h),
            Table::Jump(t) => t.locate(h),
            Table::JumpBack(t) => t.locate(h),
            Table::Rendezvous(t) => t.locate(h),
            Table::Maglev(t) => t.locate(h),
            Table::Bounded(t) => t.locate(h),
            Table::Memento(t) => t.locate(h),
        }
    }
}

/// One membership change, for [`Sharder::apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Add a node (its name must be new).
    Add(Node),
    /// Remove the named node.
    Remove(String),
    /// Set the named node's weight.
    Reweight(String, i64),
    /// Mark the named node down: lookups skip it, nothing else moves.
    Down(String),
    /// Mark the named node up again.
    Up(String),
}

struct Snapshot {
    config: ShardConfig,
    hash: HashFn,
    slots: Vec<Option<Node>>,
    by_name: HashMap<String, u32>,
    down: Vec<bool>,
    n_down: usize,
    live: usize,
    /// Slots emptied by removal, oldest first (Memento refills the newest).
    removed: Vec<u32>,
    table: Table,
}

/// An immutable sharding snapshot. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Sharder {
    snap: Arc<Snapshot>,
}

impl fmt::Debug for Sharder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sharder")
            .field("algorithm", &self.snap.config.algorithm)
            .field("hash", &self.snap.hash)
            .field("nodes", &self.snap.live)
            .field("down", &self.snap.n_down)
            .finish()
    }
}

impl Sharder {
    /// Builds a snapshot over `nodes` (in order). Errors on an empty list,
    /// duplicate names, or weights the algorithm cannot honour.
    pub fn new(nodes: Vec<Node>, config: ShardConfig) -> Result<Sharder> {
        validate_nodes(&nodes)?;
        let slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
        Sharder::from_parts(config, slots, vec![false; 0], Vec::new())
    }

    fn from_parts(
        config: ShardConfig,
        slots: Vec<Option<Node>>,
        mut down: Vec<bool>,
        removed: Vec<u32>,
    ) -> Result<Sharder> {
        let live = slots.iter().filter(|s| s.is_some()).count();
        if live == 0 {
            return Err(Error::new(
                ErrorKind::EmptyNodeSet,
                "a node set needs at least one node, and this change would remove the last one",
            ));
        }
        if !config.algorithm.weighted() {
            if let Some(n) = slots.iter().flatten().find(|n| n.weight() != 1) {
                return Err(Error::invalid(format!(
                    "{} does not support weights, got weight {} for node {:?}",
                    config.algorithm,
                    n.weight(),
                    n.name()
                )));
            }
        }
        let mut by_name = HashMap::with_capacity(live);
        for (i, n) in slots.iter().enumerate() {
            if let Some(n) = n {
                by_name.insert(n.name().to_string(), i as u32);
            }
        }
        down.resize(slots.len(), false);
        for (d, s) in down.iter_mut().zip(&slots) {
            *d &= s.is_some();
        }
        let n_down = down.iter().filter(|d| **d).count();
        let table = Table::build(&config, &slots, &removed)?;
        let hash = config.effective_hash();
        Ok(Sharder {
            snap: Arc::new(Snapshot {
                config,
                hash,
                slots,
                by_name,
                down,
                n_down,
                live,
                removed,
                table,
            }),
        })
    }

    /// The configuration this snapshot was built with.
    pub fn config(&self) -> &ShardConfig {
        &self.snap.config
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.snap.config.algorithm
    }

    /// The key hash in effect.
    pub fn hash_fn(&self) -> HashFn {
        self.snap.hash
    }

    /// Number of nodes (down ones included).
    pub fn len(&self) -> usize {
        self.snap.live
    }

    /// Never true: a snapshot always has a node. Here for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.snap.live == 0
    }

    /// Number of slots, holes included; slot numbers are below this.
    pub fn slot_count(&self) -> usize {
        self.snap.slots.len()
    }

    /// The node in `slot`, if the slot holds one.
    pub fn node(&self, slot: u32) -> Option<&Node> {
        self.snap.slots.get(slot as usize).and_then(|s| s.as_ref())
    }

    /// The slot of the named node.
    pub fn slot_of(&self, name: &str) -> Option<u32> {
        self.snap.by_name.get(name).copied()
    }

    /// The nodes, in slot order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> + '_ {
        self.snap.slots.iter().flatten()
    }

    /// Whether the named node is marked down (`None` if there is no such node).
    pub fn is_down(&self, name: &str) -> Option<bool> {
        self.slot_of(name).map(|s| self.snap.down[s as usize])
    }

    /// The hash of `key` as this snapshot places it: after key selection, and
    /// with twemproxy's empty-key rule when enabled.
    #[inline]
    pub fn key_hash(&self, key: &[u8]) -> u64 {
        let s = &*self.snap;
        let k = s.config.key_selector.select(key);
        if s.config.empty_key_hashes_to_zero && (k.is_empty() || s.live == 1) {
            return 0;
        }
        s.hash.hash(k)
    }

    /// The slot serving a key hash, skipping nodes marked down; `None` only
    /// when every node is down.
    #[inline]
    pub fn lookup_hash(&self, h: u64) -> Option<u32> {
        let s = &*self.snap;
        let slot = s.table.locate(h);
        if s.n_down == 0 || !s.down[slot as usize] {
            return Some(slot);
        }
        let mut found = None;
        self.preference(h, &mut |slot| {
            found = Some(slot);
            false
        });
        found
    }

    /// The slot serving `key`.
    #[inline]
    pub fn lookup_slot(&self, key: &[u8]) -> Result<u32> {
        self.lookup_hash(self.key_hash(key))
            .ok_or_else(|| self.all_down())
    }

    /// The node serving `key`.
    #[inline]
    pub fn lookup(&self, key: &[u8]) -> Result<&Node> {
        let slot = self.lookup_slot(key)?;
        Ok(self.snap.slots[slot as usize]
            .as_ref()
            .expect("lookup returns live slots"))
    }

    /// Up to `n` distinct nodes for `key`, in a stable order of preference
    /// (primary first); nodes marked down are skipped, so fewer than `n`
    /// come back only when nodes are down. `n` must be in `1..=len()`.
    pub fn lookup_n(&self, key: &[u8], n: usize) -> Result<Vec<u32>> {
        if n == 0 || n > self.snap.live {
            return Err(Error::invalid(format!(
                "replica count must be between 1 and the node count {}, got {n}",
                self.snap.live
            )));
        }
        let mut out = Vec::with_capacity(n);
        self.preference(self.key_hash(key), &mut |slot| {
            out.push(slot);
            out.len() < n
        });
        if out.is_empty() {
            return Err(self.all_down());
        }
        Ok(out)
    }

    /// Looks up many keys: `out[i]` receives the slot of `keys[i]`. Runs on
    /// rayon's pool from [`PARALLEL_BATCH_THRESHOLD`] keys (this process's:
    /// see [`crate::runtime::parallel`]).
    pub fn lookup_batch<K: AsRef<[u8]> + Sync>(&self, keys: &[K], out: &mut [u32]) -> Result<()> {
        if keys.len() != out.len() {
            return Err(Error::invalid(format!(
                "output length {} does not match key count {}",
                out.len(),
                keys.len()
            )));
        }
        if self.snap.n_down == self.snap.live {
            return Err(self.all_down());
        }
        let one = |(k, o): (&K, &mut u32)| {
            *o = self
                .lookup_hash(self.key_hash(k.as_ref()))
                .expect("a node is up");
        };
        if keys.len() >= PARALLEL_BATCH_THRESHOLD {
            crate::runtime::parallel(|| {
                keys.par_iter()
                    .zip(out.par_iter_mut())
                    .with_min_len(4096)
                    .for_each(one)
            });
        } else {
            keys.iter().zip(out.iter_mut()).for_each(one);
        }
        Ok(())
    }

    /// Like [`Sharder::lookup_batch`] over precomputed key hashes.
    pub fn lookup_hash_batch(&self, hashes: &[u64], out: &mut [u32]) -> Result<()> {
        if hashes.len() != out.len() {
            return Err(Error::invalid(format!(
                "output length {} does not match hash count {}",
                out.len(),
                hashes.len()
            )));
        }
        if self.snap.n_down == self.snap.live {
            return Err(self.all_down());
        }
        let one = |(h, o): (&u64, &mut u32)| *o = self.lookup_hash(*h).expect("a node is up");
        if hashes.len() >= PARALLEL_BATCH_THRESHOLD {
            crate::runtime::parallel(|| {
                hashes
                    .par_iter()
                    .zip(out.par_iter_mut())
                    .with_min_len(4096)
                    .for_each(one)
            });
        } else {
            hashes.iter().zip(out.iter_mut()).for_each(one);
        }
        Ok(())
    }

    fn all_down(&self) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!("all {} nodes are marked down", self.snap.live),
        )
    }

    /// Visits live, up slots in preference order for `h`, each once, until
    /// `visit` returns false; every such slot is visited eventually.
    fn preference(&self, h: u64, visit: &mut dyn FnMut(u32) -> bool) {
        let s = &*self.snap;
        let mut w = PreferenceWalk {
            seen: vec![0u64; s.slots.len().div_ceil(64)],
            remaining: s.live,
            go_on: true,
            down: &s.down,
            visit,
        };
        s.table.placement().walk(h, &mut |slot| w.take(slot));
        if w.go_on && w.remaining > 0 {
            for (slot, node) in s.slots.iter().enumerate() {
                if node.is_some() && !w.take(slot as u32) {
                    break;
                }
            }
        }
    }

    /// Applies changes in order and builds one new snapshot; on any error
    /// nothing is applied and `self` is unchanged (it is immutable anyway).
    pub fn apply(&self, changes: &[Change]) -> Result<Sharder> {
        let s = &*self.snap;
        let mut slots = s.slots.clone();
        let mut down = s.down.clone();
        let mut removed = s.removed.clone();
        let mut by_name = s.by_name.clone();
        let removal = s.config.algorithm.removal();
        let find = |by_name: &HashMap<String, u32>, name: &str| {
            by_name
                .get(name)
                .copied()
                .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no node named {name:?}")))
        };
        for ch in changes {
            match ch {
                Change::Add(node) => {
                    if by_name.contains_key(node.name()) {
                        return Err(Error::new(
                            ErrorKind::DuplicateNode,
                            format!("node {:?} is already in the set", node.name()),
                        ));
                    }
                    let slot = match removed.pop() {
                        Some(hole) => {
                            slots[hole as usize] = Some(node.clone());
                            down[hole as usize] = false;
                            hole
                        }
                        None => {
                            slots.push(Some(node.clone()));
                            down.push(false);
                            (slots.len() - 1) as u32
                        }
                    };
                    by_name.insert(node.name().to_string(), slot);
                }
                Change::Remove(name) => {
                    let slot = find(&by_name, name)? as usize;
                    by_name.remove(name.as_str());
                    match removal {
                        Removal::Ordered => {
                            slots.remove(slot);
                            down.remove(slot);
                            for v in by_name.values_mut() {
                                if *v as usize > slot {
                                    *v -= 1;
                                }
                            }
                        }
                        Removal::SwapLast => {
                            slots.swap_remove(slot);
                            down.swap_remove(slot);
                            if let Some(Some(moved)) = slots.get(slot) {
                                by_name.insert(moved.name().to_string(), slot as u32);
                            }
                        }
                        Removal::Hole => {
                            slots[slot] = None;
                            down[slot] = false;
                            removed.push(slot as u32);
                        }
                    }
                }
                Change::Reweight(name, w) => {
                    let slot = find(&by_name, name)? as usize;
                    let node = slots[slot].as_ref().expect("named slots are live");
                    slots[slot] = Some(node.reweighted(*w)?);
                }
                Change::Down(name) => down[find(&by_name, name)? as usize] = true,
                Change::Up(name) => down[find(&by_name, name)? as usize] = false,
            }
        }
        Sharder::from_parts(s.config.clone(), slots, down, removed)
    }

    /// A snapshot with `node` added.
    pub fn with_added(&self, node: Node) -> Result<Sharder> {
        self.apply(&[Change::Add(node)])
    }

    /// A snapshot without the named node.
    pub fn with_removed(&self, name: &str) -> Result<Sharder> {
        self.apply(&[Change::Remove(name.to_string())])
    }

    /// A snapshot with the named node's weight set to `weight`.
    pub fn with_weight(&self, name: &str, weight: i64) -> Result<Sharder> {
        self.apply(&[Change::Reweight(name.to_string(), weight)])
    }

    /// A snapshot with the named node marked down (or up again).
    pub fn with_down(&self, name: &str, down: bool) -> Result<Sharder> {
        let ch = if down {
            Change::Down(name.into())
        } else {
            Change::Up(name.into())
        };
        self.apply(&[ch])
    }

    /// Share of `samples` synthetic keys whose node (by name) differs between
    /// this snapshot and `other`, with the minimum any function must move.
    pub fn movement(&self, other: &Sharder, samples: usize) -> Result<Movement> {
        report::movement(self, other, samples)
    }

    /// Load per node over `samples` synthetic keys, relative to weight.
    pub fn balance(&self, samples: usize) -> Result<Balance> {
        report::balance(self, samples)
    }
}

/// Dedups an algorithm's walk and skips down nodes.
struct PreferenceWalk<'a> {
    seen: Vec<u64>,
    remaining: usize,
    go_on: bool,
    down: &'a [bool],
    visit: &'a mut dyn FnMut(u32) -> bool,
}

impl PreferenceWalk<'_> {
    /// Offers one slot; returns whether the walk should continue.
    fn take(&mut self, slot: u32) -> bool {
        let (w, b) = ((slot / 64) as usize, slot % 64);
        if self.seen[w] & (1 << b) == 0 {
            self.seen[w] |= 1 << b;
            self.remaining -= 1;
            if !self.down[slot as usize] {
                self.go_on = (self.visit)(slot);
            }
        }
        self.go_on && self.remaining > 0
    }
}

#[cfg(test)]
mod tests;
