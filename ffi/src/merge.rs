//! Merging leaf answers over C: the top-k merge of scored hits and
//! posting-list intersection and union, over `shardkit::merge`.
//!
//! Inputs are `nlists` borrowed arrays (`lists[i]`, `lens[i]` elements; a
//! NULL list with length 0 is empty). Results go into the caller's `out`
//! array of `out_cap` elements; `*out_len` receives the result length. When
//! `out_cap` is too small the result is `BUFFER_TOO_SMALL`, nothing is
//! written to `out`, and `*out_len` still receives the length needed (the
//! ABI's buffer convention). A capacity that always suffices: `size` for
//! top-k, the shortest list's length for an intersection, the sum of the
//! lengths for a union.
//!
//! Large inputs (at least `shardkit::merge::PAR_THRESHOLD` elements in all)
//! run in parallel on shardkit's thread pool and give exactly the serial
//! answer. All functions are pure compute: callable from any thread,
//! including shardkit callbacks.

use std::fmt::Display;

use crate::args::{copy_out, out_ptr, slice, slice_mut};
use crate::shardkit_status;
use shardkit::merge::{self, DocId, Hit};
use shardkit::Result;

/// One scored hit, as `shardkit_top_k` takes and returns it.
///
/// Layout: `score` at offset 0, `shard` at 4, `doc` at 8; 16 bytes, aligned
/// to 8, no padding (the two 4-byte fields fill the first 8 bytes), so an
/// array of hits is a packed array of 16-byte records on every platform
/// with an 8-byte-aligned `uint64_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct shardkit_hit {
    /// Relevance; higher ranks first. NaN is rejected (`INVALID_ARGUMENT`).
    pub score: f32,
    /// The shard (leaf) the hit came from; breaks score ties, lower first.
    pub shard: u32,
    /// Document id within its shard; breaks remaining ties, lower first.
    pub doc: u64,
}

// The layout the docs above promise (and Go's Hit mirrors).
const _: () = {
    assert!(std::mem::size_of::<shardkit_hit>() == 16);
    assert!(std::mem::offset_of!(shardkit_hit, score) == 0);
    assert!(std::mem::offset_of!(shardkit_hit, shard) == 4);
    assert!(std::mem::offset_of!(shardkit_hit, doc) == 8);
};

/// Borrows `nlists` C arrays described by a pointer array and a length array.
///
/// # Safety
/// `lists` and `lens` NULL (with `nlists` 0) or `nlists` readable entries;
/// each `lists[i]` NULL with `lens[i]` 0 or `lens[i]` readable `T`s, all
/// valid and unmodified for `'a`.
unsafe fn borrow_lists<'a, T>(
    lists: *const *const T,
    lens: *const usize,
    nlists: usize,
) -> Result<Vec<&'a [T]>> {
    // SAFETY: per the caller's contract.
    let (ptrs, lens) = unsafe { (slice(lists, nlists, "lists")?, slice(lens, nlists, "lens")?) };
    ptrs.iter()
        .zip(lens)
        .enumerate()
        // SAFETY: each list is valid for its length, per the caller.
        .map(|(i, (&p, &n))| unsafe { slice(p, n, format_args!("lists[{i}]")) })
        .collect()
}

/// Copies `result` into the caller's `out` with the buffer convention.
///
/// # Safety
/// `out` NULL (with `out_cap` 0) or `out_cap` writable `C`s; `out_len` from
/// `out_ptr`.
unsafe fn deliver<R: Copy, C>(
    result: &[R],
    convert: impl Fn(R) -> C,
    out: *mut C,
    out_cap: usize,
    out_len: *mut usize,
    what: impl Display,
) -> Result<()> {
    // SAFETY: per the caller's contract.
    let dst = unsafe { slice_mut(out, out_cap, "out")? };
    // SAFETY: per the caller's contract.
    unsafe { copy_out(result, convert, dst, out_len, what, "out_cap") }
}

/// The hits at ranks `offset .. offset + size` of the merged order of the
/// `nlists` hit lists (score descending, then shard ascending, then doc
/// ascending), fewer when the lists hold fewer. Each list must already be in
/// that order.
///
/// Every list is validated in full: an out-of-order list or a NaN score is
/// `INVALID_ARGUMENT` naming the list and position. Also `INVALID_ARGUMENT`
/// for `size` 0, `NULL_POINTER` for a NULL array with a nonzero length, and
/// `BUFFER_TOO_SMALL` (with `*out_len` set) when `out_cap` is below the
/// result length; `out_cap >= size` always suffices.
///
/// # Safety
/// `lists` and `lens` NULL (`nlists` 0) or `nlists` readable entries, each
/// list valid for its length; `out` NULL (`out_cap` 0) or `out_cap` writable
/// hits not overlapping the inputs; `out_len` a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_top_k(
    lists: *const *const shardkit_hit,
    lens: *const usize,
    nlists: usize,
    offset: usize,
    size: usize,
    out: *mut shardkit_hit,
    out_cap: usize,
    out_len: *mut usize,
) -> shardkit_status {
    ffi_boundary!({
        let out_len = out_ptr(out_len, "out_len")?;
        // SAFETY: per the caller's contract.
        let borrowed = unsafe { borrow_lists(lists, lens, nlists)? };
        // core's Hit has its own (Rust) layout, so the input is converted
        // once into one flat buffer and sliced back into lists.
        let total: usize = borrowed.iter().map(|l| l.len()).sum();
        let mut flat = Vec::with_capacity(total);
        for l in &borrowed {
            flat.extend(l.iter().map(|h| Hit::new(h.score, h.shard, h.doc)));
        }
        let mut start = 0;
        let views: Vec<&[Hit]> = borrowed
            .iter()
            .map(|l| {
                let v = &flat[start..start + l.len()];
                start += l.len();
                v
            })
            .collect();
        let page = merge::top_k_par(&views, offset, size)?;
        let to_c = |h: Hit| shardkit_hit {
            score: h.score,
            shard: h.shard,
            doc: h.doc,
        };
        // SAFETY: per the caller's contract; out_len checked above.
        unsafe { deliver(&page, to_c, out, out_cap, out_len, "the top-k page") }
    })
}

/// Shared body of the posting-list exports.
///
/// # Safety
/// As for the exports.
// The exports' C arguments, passed through as they are, plus the operation.
#[allow(clippy::too_many_arguments)]
unsafe fn postings<T: DocId>(
    op: fn(&[&[T]]) -> Result<Vec<T>>,
    what: &str,
    lists: *const *const T,
    lens: *const usize,
    nlists: usize,
    out: *mut T,
    out_cap: usize,
    out_len: *mut usize,
) -> Result<()> {
    let out_len = out_ptr(out_len, "out_len")?;
    // SAFETY: per the caller's contract.
    let borrowed = unsafe { borrow_lists(lists, lens, nlists)? };
    let result = op(&borrowed)?;
    // SAFETY: per the caller's contract; out_len checked above.
    unsafe { deliver(&result, |v| v, out, out_cap, out_len, what) }
}

/// The ids present in every one of the `nlists` posting lists, ascending.
/// Each list must be strictly increasing (`INVALID_ARGUMENT` naming the
/// list and position otherwise); no lists at all is `INVALID_ARGUMENT` (the
/// intersection of nothing is undefined). `out_cap` at least the shortest
/// list's length always suffices; below the result length the result is
/// `BUFFER_TOO_SMALL` with `*out_len` set.
///
/// # Safety
/// `lists` and `lens` NULL (`nlists` 0) or `nlists` readable entries, each
/// list valid for its length; `out` NULL (`out_cap` 0) or `out_cap` writable
/// ids not overlapping the inputs; `out_len` a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_intersect_u32(
    lists: *const *const u32,
    lens: *const usize,
    nlists: usize,
    out: *mut u32,
    out_cap: usize,
    out_len: *mut usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        unsafe {
            postings(
                merge::intersect_par::<u32>,
                "the intersection",
                lists,
                lens,
                nlists,
                out,
                out_cap,
                out_len,
            )
        }
    })
}

/// `shardkit_intersect_u32` over 64-bit ids.
///
/// # Safety
/// As for `shardkit_intersect_u32`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_intersect_u64(
    lists: *const *const u64,
    lens: *const usize,
    nlists: usize,
    out: *mut u64,
    out_cap: usize,
    out_len: *mut usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        unsafe {
            postings(
                merge::intersect_par::<u64>,
                "the intersection",
                lists,
                lens,
                nlists,
                out,
                out_cap,
                out_len,
            )
        }
    })
}

/// The ids present in any of the `nlists` posting lists, ascending, each
/// once. Each list must be strictly increasing (`INVALID_ARGUMENT` naming
/// the list and position otherwise); no lists gives an empty result.
/// `out_cap` at least the sum of the lengths always suffices; below the
/// result length the result is `BUFFER_TOO_SMALL` with `*out_len` set.
///
/// # Safety
/// As for `shardkit_intersect_u32`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_union_u32(
    lists: *const *const u32,
    lens: *const usize,
    nlists: usize,
    out: *mut u32,
    out_cap: usize,
    out_len: *mut usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        unsafe {
            postings(
                merge::union_par::<u32>,
                "the union",
                lists,
                lens,
                nlists,
                out,
                out_cap,
                out_len,
            )
        }
    })
}

/// `shardkit_union_u32` over 64-bit ids.
///
/// # Safety
/// As for `shardkit_intersect_u32`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_union_u64(
    lists: *const *const u64,
    lens: *const usize,
    nlists: usize,
    out: *mut u64,
    out_cap: usize,
    out_len: *mut usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        unsafe {
            postings(
                merge::union_par::<u64>,
                "the union",
                lists,
                lens,
                nlists,
                out,
                out_cap,
                out_len,
            )
        }
    })
}
