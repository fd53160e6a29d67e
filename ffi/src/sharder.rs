//! `shardkit_sharder`: immutable sharding snapshots, lookups, membership
//! changes and reports, over `shardkit::Sharder`.

use crate::args::{copy_bytes, copy_out, opt_text, out_ptr, slice, slice_mut, text, write};
use crate::handle::{borrow, into_handle, take};
use crate::shardkit_status;
use shardkit::config::{nginx, twemproxy};
use shardkit::{Change, Error, ErrorKind, Node, Result, ShardConfig, Sharder};

/// An immutable sharding snapshot: nodes, the algorithm's table, and which
/// nodes are marked down. Safe to share between threads and to use from many
/// threads at once; membership changes return a new snapshot. Free each one
/// with `shardkit_sharder_free`.
pub struct shardkit_sharder {
    _private: [u8; 0],
}

/// A node as C describes it.
#[repr(C)]
pub struct shardkit_node {
    /// The node's unique name: UTF-8, not NUL-terminated, `name_len` bytes.
    pub name: *const u8,
    /// Length of `name` in bytes.
    pub name_len: usize,
    /// The node's weight: 1 to 1048576 (algorithms without weights need 1).
    pub weight: i64,
}

/// What a [`shardkit_change`] does.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum shardkit_change_kind {
    /// Add the node `name` with `weight` (its name must be new).
    Add = 1,
    /// Remove the node `name`.
    Remove = 2,
    /// Set the weight of node `name` to `weight`.
    Reweight = 3,
    /// Mark node `name` down: lookups skip it, no other key moves.
    Down = 4,
    /// Mark node `name` up again.
    Up = 5,
}

/// One membership change for `shardkit_sharder_apply`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shardkit_change {
    /// A `shardkit_change_kind` value (a plain integer so that any value C
    /// passes is defined behaviour; unknown values are `INVALID_ARGUMENT`).
    pub kind: u32,
    /// The node's name: UTF-8, not NUL-terminated, `name_len` bytes.
    pub name: *const u8,
    /// Length of `name` in bytes.
    pub name_len: usize,
    /// The weight, for `ADD` and `REWEIGHT`; ignored otherwise.
    pub weight: i64,
}

/// How keys are hashed and placed. Every field pair may be NULL/0 for its
/// default; pass NULL instead of a config for all defaults.
#[repr(C)]
pub struct shardkit_config {
    /// Algorithm name (e.g. "ketama:twemproxy", "jump", "maglev:65537");
    /// NULL/0 selects the library default (maglev).
    pub algorithm: *const u8,
    /// Length of `algorithm` in bytes.
    pub algorithm_len: usize,
    /// Key hash name (e.g. "xxh3", "xxh3:7", "fnv1a_64", "md5");
    /// NULL/0 selects the algorithm's default.
    pub hash: *const u8,
    /// Length of `hash` in bytes.
    pub hash_len: usize,
    /// Hash-tag delimiters, exactly two bytes such as "{}": only the bytes
    /// between them are hashed. NULL/0 hashes the whole key.
    pub hash_tag: *const u8,
    /// Length of `hash_tag` in bytes.
    pub hash_tag_len: usize,
}

/// Borrows the snapshot behind a C handle.
///
/// # Safety
/// `ptr` must be NULL or a live handle from this library.
#[inline(always)]
unsafe fn sharder<'a>(ptr: *const shardkit_sharder, what: &'static str) -> Result<&'a Sharder> {
    // SAFETY: forwarded from the caller.
    unsafe { borrow(ptr, what) }
}

/// Publishes a new snapshot through `out`, checked before any work was done.
///
/// # Safety
/// `out` came from `out_ptr`.
unsafe fn publish(out: *mut *mut shardkit_sharder, s: Sharder) {
    // SAFETY: forwarded from the caller.
    unsafe { write(out, into_handle(s)) }
}

/// Converts one C node.
///
/// # Safety
/// `n.name` must be NULL or point to `n.name_len` readable bytes.
unsafe fn node(n: &shardkit_node, what: impl std::fmt::Display) -> Result<Node> {
    // SAFETY: forwarded from the caller.
    let name = unsafe { text(n.name, n.name_len, what)? };
    Node::new(name, n.weight)
}

/// Converts a C config (NULL = all defaults).
///
/// # Safety
/// `c` must be NULL or point to a `shardkit_config` whose buffers are valid.
unsafe fn config(c: *const shardkit_config) -> Result<ShardConfig> {
    // SAFETY: NULL or a valid config, per the caller.
    let c = unsafe { c.as_ref() };
    let (alg, hash, tag) = match c {
        None => (None, None, None),
        // SAFETY: the config's buffers are valid, per the caller.
        Some(c) => unsafe {
            (
                opt_text(c.algorithm, c.algorithm_len, "config->algorithm")?,
                opt_text(c.hash, c.hash_len, "config->hash")?,
                opt_text(c.hash_tag, c.hash_tag_len, "config->hash_tag")?,
            )
        },
    };
    ShardConfig::from_names(alg, hash, tag)
}

/// Builds a snapshot over `n_nodes` nodes (in order) with `config` (NULL for
/// the defaults: maglev, xxh3, whole keys).
///
/// Errors: `EMPTY_NODE_SET` (no nodes), `DUPLICATE_NODE`, `INVALID_ARGUMENT`
/// (weight out of range, unknown algorithm or hash, bad parameter such as a
/// maglev table size that is not prime, bad hash tag), `INVALID_UTF8` (a name
/// or config string), `NULL_POINTER`.
///
/// # Safety
/// `nodes` must be NULL or point to `n_nodes` nodes whose names are valid;
/// `config` must be NULL or valid; `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_new(
    nodes: *const shardkit_node,
    n_nodes: usize,
    config: *const shardkit_config,
    out: *mut *mut shardkit_sharder,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: per the caller's contract.
        let nodes = unsafe { slice(nodes, n_nodes, "nodes")? };
        let nodes = nodes
            .iter()
            .enumerate()
            // SAFETY: each node's name buffer is valid, per the caller.
            .map(|(i, n)| unsafe { node(n, format_args!("nodes[{i}].name")) })
            .collect::<Result<Vec<_>>>()?;
        // SAFETY: per the caller's contract.
        let cfg = unsafe { self::config(config)? };
        let s = Sharder::new(nodes, cfg)?;
        // SAFETY: checked by out_ptr above.
        unsafe { publish(out, s) };
        Ok(())
    })
}

/// Builds a snapshot from a twemproxy (nutcracker) YAML document held in
/// memory, from the pool named `pool` (NULL/0: the first pool). Node names
/// are the server entries as written, without the alias
/// (e.g. "127.0.0.1:11211:1").
///
/// Errors: `CONFIG` (unreadable YAML or an invalid pool), `NOT_FOUND` (no such
/// pool), `INVALID_UTF8`, `NULL_POINTER`, and the errors of
/// `shardkit_sharder_new`.
///
/// # Safety
/// `yaml` and `pool` must be NULL or point to their lengths in readable bytes;
/// `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_from_twemproxy_yaml(
    yaml: *const u8,
    yaml_len: usize,
    pool: *const u8,
    pool_len: usize,
    out: *mut *mut shardkit_sharder,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: per the caller's contract.
        let (yaml, pool) = unsafe {
            (
                text(yaml, yaml_len, "yaml")?,
                opt_text(pool, pool_len, "pool")?,
            )
        };
        let pool = twemproxy::select_pool(twemproxy::parse_pools(yaml)?, pool)?;
        // SAFETY: checked by out_ptr above.
        unsafe { publish(out, pool.sharder) };
        Ok(())
    })
}

/// Like `shardkit_sharder_from_twemproxy_yaml`, reading the YAML from the
/// file at `path` (UTF-8, not NUL-terminated). Errors: `IO` (the file cannot
/// be read; the detail names the path), and those of the YAML variant.
///
/// # Safety
/// `path` and `pool` must be NULL or point to their lengths in readable
/// bytes; `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_from_twemproxy_file(
    path: *const u8,
    path_len: usize,
    pool: *const u8,
    pool_len: usize,
    out: *mut *mut shardkit_sharder,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: per the caller's contract.
        let (path, pool) = unsafe {
            (
                text(path, path_len, "path")?,
                opt_text(pool, pool_len, "pool")?,
            )
        };
        let pools = twemproxy::load_pools(std::path::Path::new(path))?;
        let pool = twemproxy::select_pool(pools, pool)?;
        // SAFETY: checked by out_ptr above.
        unsafe { publish(out, pool.sharder) };
        Ok(())
    })
}

/// Builds a snapshot matching nginx `hash $key consistent` over an upstream
/// server list such as "127.0.0.1:8081 weight=2,127.0.0.1:8082" (separators:
/// ',', ';' or newline). Node names are the addresses as written.
///
/// Errors: `INVALID_ARGUMENT` (an unparsable entry or parameter, e.g.
/// `weight=0`), `EMPTY_NODE_SET` (no entries), `DUPLICATE_NODE` (an address
/// listed twice), `INVALID_UTF8`, `NULL_POINTER`.
///
/// # Safety
/// `list` must be NULL or point to `list_len` readable bytes; `out` must point
/// to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_from_nginx_upstream(
    list: *const u8,
    list_len: usize,
    out: *mut *mut shardkit_sharder,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: per the caller's contract.
        let list = unsafe { text(list, list_len, "list")? };
        let s = nginx::parse_upstream(list)?;
        // SAFETY: checked by out_ptr above.
        unsafe { publish(out, s) };
        Ok(())
    })
}

/// Another handle on the same snapshot (cheap: a reference count). Free both.
/// Returns NULL for NULL.
///
/// # Safety
/// `s` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_clone(
    s: *const shardkit_sharder,
) -> *mut shardkit_sharder {
    ffi_boundary!(or std::ptr::null_mut() => {
        // SAFETY: per the caller's contract.
        match unsafe { sharder(s, "s") } {
            Ok(s) => into_handle(s.clone()),
            Err(_) => std::ptr::null_mut(),
        }
    })
}

/// Frees a handle. NULL is a no-op. Other handles on the same snapshot (from
/// `shardkit_sharder_clone`) stay valid.
///
/// # Safety
/// `s` must be NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_free(s: *mut shardkit_sharder) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        drop(unsafe { take(s, "s") });
    })
}

/// Number of nodes (down ones included); 0 for NULL.
///
/// # Safety
/// `s` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_len(s: *const shardkit_sharder) -> usize {
    // SAFETY: per the caller's contract.
    ffi_boundary!(or 0 => { unsafe { sharder(s, "s") }.map_or(0, |s| s.len()) })
}

/// Number of slots: slot numbers are below it. Equal to the node count except
/// after removals under memento, which leave empty slots until a node is
/// added. 0 for NULL.
///
/// # Safety
/// `s` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_slot_count(s: *const shardkit_sharder) -> usize {
    // SAFETY: per the caller's contract.
    ffi_boundary!(or 0 => { unsafe { sharder(s, "s") }.map_or(0, |s| s.slot_count()) })
}

/// Copies the name of the node in `slot` into `buf` (UTF-8, not
/// NUL-terminated) and its length into `*out_len`.
///
/// When `buf_len` is too small, returns `BUFFER_TOO_SMALL` and, as a
/// documented exception, still sets `*out_len` to the length needed (so
/// `buf = NULL, buf_len = 0` asks for it). `NOT_FOUND` for an empty or
/// out-of-range slot.
///
/// # Safety
/// `s` must be a live handle; `buf` NULL or `buf_len` writable bytes; `out_len`
/// a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_node_name(
    s: *const shardkit_sharder,
    slot: u32,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let s = unsafe { sharder(s, "s")? };
        let out_len = out_ptr(out_len, "out_len")?;
        // SAFETY: per the caller's contract.
        let buf = unsafe { slice_mut(buf, buf_len, "buf")? };
        let name = node_in(s, slot)?.name().as_bytes();
        // SAFETY: checked by out_ptr above.
        unsafe { copy_bytes(name, buf, out_len, format_args!("slot {slot}'s node name")) }
    })
}

/// Every slot's node in one call, for bindings that cache a snapshot's
/// nodes: slot `i`'s name is `names[offsets[i] .. offsets[i + 1]]` (UTF-8,
/// not NUL-terminated) and its weight `weights[i]`; an empty slot has an
/// empty name and weight 0. `offsets_len` must be the slot count + 1 and
/// `weights_len` the slot count (`INVALID_ARGUMENT` naming them otherwise).
///
/// `*out_names_len` receives the bytes all names take. When `names_cap` is
/// below that, the result is `BUFFER_TOO_SMALL` and, as the buffer
/// convention says, only `*out_names_len` is written (so `names = NULL,
/// names_cap = 0` asks for it).
///
/// # Safety
/// `s` a live handle; `names` NULL or `names_cap` writable bytes; `offsets`
/// and `weights` NULL (length 0) or their lengths in writable elements;
/// `out_names_len` a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_nodes(
    s: *const shardkit_sharder,
    names: *mut u8,
    names_cap: usize,
    offsets: *mut usize,
    offsets_len: usize,
    weights: *mut u32,
    weights_len: usize,
    out_names_len: *mut usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (s, names, offsets, weights) = unsafe {
            (
                sharder(s, "s")?,
                slice_mut(names, names_cap, "names")?,
                slice_mut(offsets, offsets_len, "offsets")?,
                slice_mut(weights, weights_len, "weights")?,
            )
        };
        let out_len = out_ptr(out_names_len, "out_names_len")?;
        let slots = s.slot_count();
        if offsets.len() != slots + 1 || weights.len() != slots {
            return Err(Error::invalid(format!(
                "offsets_len {} and weights_len {} must be the slot count + 1 ({}) and the \
                 slot count ({slots})",
                offsets.len(),
                weights.len(),
                slots + 1
            )));
        }
        let mut packed = Vec::new();
        let mut ends = Vec::with_capacity(slots);
        for i in 0..slots {
            let node = s.node(i as u32);
            packed.extend_from_slice(node.map_or(&[][..], |n| n.name().as_bytes()));
            ends.push((packed.len(), node.map_or(0, |n| n.weight())));
        }
        // SAFETY: checked by out_ptr above.
        unsafe {
            copy_out(
                &packed,
                |b| b,
                names,
                out_len,
                "the node names",
                "names_cap",
            )?
        };
        let mut at = 0;
        for (i, &(end, weight)) in ends.iter().enumerate() {
            offsets[i] = at;
            weights[i] = weight;
            at = end;
        }
        offsets[slots] = at;
        Ok(())
    })
}

fn node_in(s: &Sharder, slot: u32) -> Result<&Node> {
    s.node(slot).ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "slot {slot} holds no node (slot count {}, {} nodes)",
                s.slot_count(),
                s.len()
            ),
        )
    })
}

/// The weight of the node in `slot`; `NOT_FOUND` for an empty or
/// out-of-range slot.
///
/// # Safety
/// `s` must be a live handle; `out` a writable `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_node_weight(
    s: *const shardkit_sharder,
    slot: u32,
    out: *mut u32,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let s = unsafe { sharder(s, "s")? };
        let out = out_ptr(out, "out")?;
        let w = node_in(s, slot)?.weight();
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, w) };
        Ok(())
    })
}

/// The slot of the named node; `NOT_FOUND` if there is none.
///
/// # Safety
/// `s` must be a live handle; `name` NULL or `name_len` readable bytes; `out`
/// a writable `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_slot_of(
    s: *const shardkit_sharder,
    name: *const u8,
    name_len: usize,
    out: *mut u32,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (s, name) = unsafe { (sharder(s, "s")?, text(name, name_len, "name")?) };
        let out = out_ptr(out, "out")?;
        let slot = s
            .slot_of(name)
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no node named {name:?}")))?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, slot) };
        Ok(())
    })
}

/// The hash of `key` as this snapshot places it (after hash-tag selection),
/// for `shardkit_sharder_lookup_hash`.
///
/// # Safety
/// `s` must be a live handle; `key` NULL or `key_len` readable bytes; `out` a
/// writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_key_hash(
    s: *const shardkit_sharder,
    key: *const u8,
    key_len: usize,
    out: *mut u64,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (s, key) = unsafe { (sharder(s, "s")?, slice(key, key_len, "key")?) };
        let out = out_ptr(out, "out")?;
        let h = s.key_hash(key);
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, h) };
        Ok(())
    })
}

/// The slot serving `key` (nodes marked down are skipped). `UNAVAILABLE` when
/// every node is down. Get the node with `shardkit_sharder_node_name`.
///
/// # Safety
/// `s` must be a live handle; `key` NULL or `key_len` readable bytes;
/// `out_slot` a writable `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_lookup(
    s: *const shardkit_sharder,
    key: *const u8,
    key_len: usize,
    out_slot: *mut u32,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (s, key) = unsafe { (sharder(s, "s")?, slice(key, key_len, "key")?) };
        let out = out_ptr(out_slot, "out_slot")?;
        let slot = s.lookup_slot(key)?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, slot) };
        Ok(())
    })
}

/// The slot serving a key hash from `shardkit_sharder_key_hash`.
/// `UNAVAILABLE` when every node is down.
///
/// # Safety
/// `s` must be a live handle; `out_slot` a writable `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_lookup_hash(
    s: *const shardkit_sharder,
    hash: u64,
    out_slot: *mut u32,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let s = unsafe { sharder(s, "s")? };
        let out = out_ptr(out_slot, "out_slot")?;
        let slot = s.lookup_hash(hash).ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                format!("all {} nodes are marked down", s.len()),
            )
        })?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, slot) };
        Ok(())
    })
}

/// Up to `n` distinct slots for `key` in a stable order of preference,
/// primary first (replicas). Nodes marked down are skipped, so fewer than `n`
/// come back only when nodes are down; `*out_count` says how many.
///
/// `n` must be between 1 and the node count (`INVALID_ARGUMENT`), and
/// `out_cap` at least `n` (`BUFFER_TOO_SMALL`).
///
/// # Safety
/// `s` must be a live handle; `key` NULL or `key_len` readable bytes;
/// `out_slots` NULL or `out_cap` writable `uint32_t`s; `out_count` a writable
/// `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_lookup_n(
    s: *const shardkit_sharder,
    key: *const u8,
    key_len: usize,
    n: usize,
    out_slots: *mut u32,
    out_cap: usize,
    out_count: *mut usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (s, key, slots) = unsafe {
            (
                sharder(s, "s")?,
                slice(key, key_len, "key")?,
                slice_mut(out_slots, out_cap, "out_slots")?,
            )
        };
        let out_count = out_ptr(out_count, "out_count")?;
        let found = s.lookup_n(key, n)?;
        if out_cap < n {
            return Err(Error::new(
                ErrorKind::BufferTooSmall,
                format!("out_cap {out_cap} is smaller than the replica count n = {n}"),
            ));
        }
        slots[..found.len()].copy_from_slice(&found);
        // SAFETY: checked by out_ptr above.
        unsafe { write(out_count, found.len()) };
        Ok(())
    })
}

/// Looks up `count` keys: `out_slots[i]` receives the slot of the key
/// `keys[i]`, `key_lens[i]` bytes long (a NULL key with length 0 is empty).
/// Large batches run in parallel on shardkit's thread pool. `UNAVAILABLE`
/// when every node is down; nothing is written on error.
///
/// # Safety
/// `s` must be a live handle; `keys` and `key_lens` NULL (count 0) or `count`
/// entries each, every key valid for its length; `out_slots` NULL (count 0) or
/// `count` writable `uint32_t`s.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_lookup_batch(
    s: *const shardkit_sharder,
    keys: *const *const u8,
    key_lens: *const usize,
    count: usize,
    out_slots: *mut u32,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (s, ptrs, lens, out) = unsafe {
            (
                sharder(s, "s")?,
                slice(keys, count, "keys")?,
                slice(key_lens, count, "key_lens")?,
                slice_mut(out_slots, count, "out_slots")?,
            )
        };
        let keys = ptrs
            .iter()
            .zip(lens)
            .enumerate()
            // SAFETY: each key is valid for its length, per the caller.
            .map(|(i, (&k, &len))| unsafe { slice(k, len, format_args!("keys[{i}]")) })
            .collect::<Result<Vec<&[u8]>>>()?;
        s.lookup_batch(&keys, out)
    })
}

/// Like `shardkit_sharder_lookup_batch` over keys packed into one buffer: key
/// `i` is `data[offsets[i] .. offsets[i + 1]]`. `offsets` has `count + 1`
/// entries, starts at 0, never decreases and ends at `data_len`
/// (`INVALID_ARGUMENT` otherwise, naming the first bad entry).
///
/// # Safety
/// `s` must be a live handle; `data` NULL or `data_len` readable bytes;
/// `offsets` `count + 1` readable `size_t`s; `out_slots` NULL (count 0) or
/// `count` writable `uint32_t`s.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_lookup_batch_packed(
    s: *const shardkit_sharder,
    data: *const u8,
    data_len: usize,
    offsets: *const usize,
    count: usize,
    out_slots: *mut u32,
) -> shardkit_status {
    ffi_boundary!({
        let n_offsets = count
            .checked_add(1)
            .ok_or_else(|| Error::invalid(format!("count {count} is too large")))?;
        // SAFETY: per the caller's contract.
        let (s, data, offsets, out) = unsafe {
            (
                sharder(s, "s")?,
                slice(data, data_len, "data")?,
                slice(offsets, n_offsets, "offsets")?,
                slice_mut(out_slots, count, "out_slots")?,
            )
        };
        if offsets[0] != 0 {
            return Err(Error::invalid(format!(
                "offsets[0] must be 0, got {}",
                offsets[0]
            )));
        }
        if offsets[count] != data_len {
            return Err(Error::invalid(format!(
                "offsets[{count}] (the last) must equal data_len {data_len}, got {}",
                offsets[count]
            )));
        }
        let keys = offsets
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                data.get(w[0]..w[1]).ok_or_else(|| {
                    Error::invalid(format!(
                        "offsets must not decrease, got offsets[{i}] = {} and offsets[{}] = {}",
                        w[0],
                        i + 1,
                        w[1]
                    ))
                })
            })
            .collect::<Result<Vec<&[u8]>>>()?;
        s.lookup_batch(&keys, out)
    })
}

/// Runs a membership change that yields a new snapshot.
///
/// # Safety
/// `s` must be a live handle; `out` as for `out_ptr`.
unsafe fn change(
    s: *const shardkit_sharder,
    out: *mut *mut shardkit_sharder,
    f: impl FnOnce(&Sharder) -> Result<Sharder>,
) -> Result<()> {
    // SAFETY: per the caller's contract.
    let s = unsafe { sharder(s, "s")? };
    let out = out_ptr(out, "out")?;
    let next = f(s)?;
    // SAFETY: checked by out_ptr above.
    unsafe { publish(out, next) };
    Ok(())
}

/// A new snapshot with `node` added (its name must be new:
/// `DUPLICATE_NODE`). `s` is unchanged; free both.
///
/// # Safety
/// `s` must be a live handle; `node` a valid node; `out` a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_add(
    s: *const shardkit_sharder,
    node: *const shardkit_node,
    out: *mut *mut shardkit_sharder,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let n = unsafe { node.as_ref() }
            .ok_or_else(|| Error::new(ErrorKind::NullPointer, "node is NULL"))?;
        // SAFETY: per the caller's contract.
        let n = unsafe { self::node(n, "node->name")? };
        // SAFETY: per the caller's contract.
        unsafe { change(s, out, |s| s.with_added(n)) }
    })
}

/// A new snapshot without the named node (`NOT_FOUND` if absent,
/// `EMPTY_NODE_SET` for the last node). `s` is unchanged; free both.
///
/// # Safety
/// `s` must be a live handle; `name` NULL or `name_len` readable bytes; `out`
/// a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_remove(
    s: *const shardkit_sharder,
    name: *const u8,
    name_len: usize,
    out: *mut *mut shardkit_sharder,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let name = unsafe { text(name, name_len, "name")? };
        // SAFETY: per the caller's contract.
        unsafe { change(s, out, |s| s.with_removed(name)) }
    })
}

/// A new snapshot with the named node's weight set to `weight`
/// (`NOT_FOUND`, or `INVALID_ARGUMENT` for a weight out of range). `s` is
/// unchanged; free both.
///
/// # Safety
/// `s` must be a live handle; `name` NULL or `name_len` readable bytes; `out`
/// a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_reweight(
    s: *const shardkit_sharder,
    name: *const u8,
    name_len: usize,
    weight: i64,
    out: *mut *mut shardkit_sharder,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let name = unsafe { text(name, name_len, "name")? };
        // SAFETY: per the caller's contract.
        unsafe { change(s, out, |s| s.with_weight(name, weight)) }
    })
}

/// A new snapshot with the named node marked down (`down = true`) or up
/// again. Lookups skip a down node to the key's next choice; no other key
/// moves. `s` is unchanged; free both.
///
/// # Safety
/// `s` must be a live handle; `name` NULL or `name_len` readable bytes; `out`
/// a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_set_down(
    s: *const shardkit_sharder,
    name: *const u8,
    name_len: usize,
    down: bool,
    out: *mut *mut shardkit_sharder,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let name = unsafe { text(name, name_len, "name")? };
        // SAFETY: per the caller's contract.
        unsafe { change(s, out, |s| s.with_down(name, down)) }
    })
}

/// Over `samples` synthetic keys, the share whose node (by name) differs
/// between `from` and `to` (`*out_fraction`), and the least share any
/// function must move for that change (`*out_minimum`).
///
/// # Safety
/// `from` and `to` must be live handles; the outs writable `double`s.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_movement(
    from: *const shardkit_sharder,
    to: *const shardkit_sharder,
    samples: usize,
    out_fraction: *mut f64,
    out_minimum: *mut f64,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (from, to) = unsafe { (sharder(from, "from")?, sharder(to, "to")?) };
        let (fraction, minimum) = (
            out_ptr(out_fraction, "out_fraction")?,
            out_ptr(out_minimum, "out_minimum")?,
        );
        let m = from.movement(to, samples)?;
        // SAFETY: checked by out_ptr above.
        unsafe {
            write(fraction, m.fraction);
            write(minimum, m.minimum);
        }
        Ok(())
    })
}

/// Over `samples` synthetic keys, the highest load relative to weight over
/// the mean (`*out_peak_to_mean`, 1.0 is perfect) and the standard deviation
/// of that relative load (`*out_stddev`).
///
/// # Safety
/// `s` must be a live handle; the outs writable `double`s.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_balance(
    s: *const shardkit_sharder,
    samples: usize,
    out_peak_to_mean: *mut f64,
    out_stddev: *mut f64,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let s = unsafe { sharder(s, "s")? };
        let (peak, stddev) = (
            out_ptr(out_peak_to_mean, "out_peak_to_mean")?,
            out_ptr(out_stddev, "out_stddev")?,
        );
        let b = s.balance(samples)?;
        // SAFETY: checked by out_ptr above.
        unsafe {
            write(peak, b.peak_to_mean);
            write(stddev, b.stddev);
        }
        Ok(())
    })
}

/// A new snapshot with `n_changes` changes applied in order, built once:
/// the bulk form of add/remove/reweight/set_down. On any error (unknown
/// kind, bad name or weight, a node that is not there, removing the last
/// node) nothing is applied and `*out` is not written. `s` is unchanged.
///
/// # Safety
/// `s` must be NULL or a live sharder; `changes` must be NULL or point to
/// `n_changes` changes whose names are valid; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_apply(
    s: *const shardkit_sharder,
    changes: *const shardkit_change,
    n_changes: usize,
    out: *mut *mut shardkit_sharder,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let raw = unsafe { slice(changes, n_changes, "changes")? };
        let mut parsed = Vec::with_capacity(raw.len());
        for (i, c) in raw.iter().enumerate() {
            let what = format!("changes[{i}].name");
            // SAFETY: per the caller's contract.
            let name = unsafe { text(c.name, c.name_len, &what)? };
            parsed.push(match c.kind {
                k if k == shardkit_change_kind::Add as u32 => {
                    Change::Add(Node::new(name, c.weight)?)
                }
                k if k == shardkit_change_kind::Remove as u32 => Change::Remove(name.to_string()),
                k if k == shardkit_change_kind::Reweight as u32 => {
                    Change::Reweight(name.to_string(), c.weight)
                }
                k if k == shardkit_change_kind::Down as u32 => Change::Down(name.to_string()),
                k if k == shardkit_change_kind::Up as u32 => Change::Up(name.to_string()),
                k => {
                    return Err(Error::invalid(format!(
                        "changes[{i}].kind must be a shardkit_change_kind (1 to 5), got {k}"
                    )))
                }
            });
        }
        // SAFETY: per the caller's contract.
        unsafe { change(s, out, |s| s.apply(&parsed)) }
    })
}

/// Whether the node in `slot` is marked down (`NOT_FOUND` for an empty or
/// out-of-range slot).
///
/// # Safety
/// `s` must be NULL or a live sharder; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_is_down(
    s: *const shardkit_sharder,
    slot: u32,
    out: *mut bool,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let s = unsafe { sharder(s, "s")? };
        let out = out_ptr(out, "out")?;
        let down = s.is_down(node_in(s, slot)?.name()) == Some(true);
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, down) };
        Ok(())
    })
}
