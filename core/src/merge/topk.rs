//! Top-k k-way merge of per-shard hit lists with offset/size paging.

use super::loser::{LoserTree, EXHAUSTED};
use crate::{Error, Result};

/// One scored search hit as a leaf returns it.
///
/// The score is `f32`, as in Lucene: scores are relevance estimates for
/// which 24 bits of mantissa are plenty, and an `f32` score lets the merge
/// pack a whole hit into one 128-bit sort key (score, shard, doc), which is
/// what makes it fast. NaN scores are rejected. `-0.0` and `0.0` compare
/// equal (the tie then goes to shard and doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Relevance; higher ranks first. Must not be NaN.
    pub score: f32,
    /// Document id within its shard.
    pub doc: u64,
    /// The shard (leaf) the hit came from; breaks score ties, lower first.
    pub shard: u32,
}

impl Hit {
    /// Builds a hit.
    pub fn new(score: f32, shard: u32, doc: u64) -> Self {
        Hit { score, doc, shard }
    }

    /// The merge order as one integer: ascending key = score descending,
    /// then shard ascending, then doc ascending. Never [`EXHAUSTED`] for a
    /// non-NaN score (only the NaN bit pattern 0xFFFF_FFFF maps there).
    #[inline(always)]
    pub(crate) fn key(&self) -> u128 {
        ((self.score_key() as u128) << 96) | ((self.shard as u128) << 64) | self.doc as u128
    }

    /// The score part of [`Hit::key`]: ascending = score descending.
    #[inline(always)]
    pub(crate) fn score_key(&self) -> u32 {
        // -0.0 becomes 0.0, as float comparison has it (done on the bits:
        // a float add would lengthen the merge's critical path).
        let raw = self.score.to_bits();
        let bits = if raw == 0x8000_0000 { 0 } else { raw };
        // Order-preserving map from float to unsigned, then flipped so
        // that higher scores get smaller keys.
        let asc = if bits & 0x8000_0000 != 0 {
            !bits
        } else {
            bits | 0x8000_0000
        };
        !asc
    }
}

/// The hits at ranks `offset .. offset + size` of the merged order of
/// `lists` (score descending, then shard ascending, then doc ascending),
/// fewer if the lists hold fewer. Each list must already be in that order.
///
/// Every list is validated in full before merging, so an unsorted list or a
/// NaN score anywhere is an error naming the list index and position, even
/// past the part the page needs. That is the safe default, and its price is
/// one linear pass over all input (about 1.5 ns per hit on the 2-core dev
/// VM, see `examples/merge_speed.rs`): under a tenth of the cost when the
/// whole input is merged, but the dominant cost for a small page of long
/// lists, where [`top_k_trusted`] is the fast path. Equal hits are allowed
/// and keep list order.
///
/// Errors: `size == 0` (k = 0), a NaN score, a list out of order.
pub fn top_k(lists: &[&[Hit]], offset: usize, size: usize) -> Result<Vec<Hit>> {
    check_size(size)?;
    let mut pure = true;
    for (i, list) in lists.iter().enumerate() {
        pure &= validate_list(i, list)?;
    }
    Ok(merge_validated(lists, offset, size, pure))
}

/// The merge of lists already validated (sorted, no NaN); `pure` when
/// every list holds one shard's hits, which may allow 64-bit keys.
pub(crate) fn merge_validated(
    lists: &[&[Hit]],
    offset: usize,
    size: usize,
    pure: bool,
) -> Vec<Hit> {
    if pure {
        if let Some(ranks) = shard_ranks(lists) {
            return merge_by_shard(lists, &ranks, offset, size);
        }
    }
    merge::<false>(lists, offset, size).expect("an unchecked merge has no error to report")
}

/// When every list holds one shard's hits and no two lists hold the same
/// shard (what leaves answer), the merge order across lists is (score,
/// shard) and within a list it is the list's own order: the doc id never
/// decides between lists. Then a list's key packs into 64 bits: the score
/// key and the rank of its shard. Returns those ranks, or `None` when a
/// shard repeats across lists.
fn shard_ranks(lists: &[&[Hit]]) -> Option<Vec<u32>> {
    let mut shards: Vec<(u32, usize)> = lists
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.first().map(|h| (h.shard, i)))
        .collect();
    shards.sort_unstable();
    if shards.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    let mut ranks = vec![0u32; lists.len()];
    for (rank, &(_, i)) in shards.iter().enumerate() {
        ranks[i] = rank as u32;
    }
    Some(ranks)
}

/// The merge over 64-bit keys (see [`shard_ranks`]); input already valid.
fn merge_by_shard(lists: &[&[Hit]], ranks: &[u32], offset: usize, size: usize) -> Vec<Hit> {
    let total: usize = lists.iter().map(|l| l.len()).sum();
    let end = offset.saturating_add(size).min(total);
    if offset >= end {
        return Vec::new();
    }
    let key =
        |h: Option<&Hit>, rank: u64| h.map_or(u64::MAX, |h| ((h.score_key() as u64) << 32) | rank);
    // Per list: what is left, its rank, and the key of the hit *after* its
    // head, computed one step early. When a list wins, its new head's key
    // is then one small load away: the hit load and the key arithmetic
    // move off the merge's critical path (winner -> next key -> replay).
    let mut rest: Vec<(&[Hit], u64, u64)> = lists
        .iter()
        .zip(ranks)
        .map(|(l, &r)| (*l, r as u64, key(l.get(1), r as u64)))
        .collect();
    let first: Vec<u64> = lists
        .iter()
        .zip(ranks)
        .map(|(l, &r)| key(l.first(), r as u64))
        .collect();
    let mut tree = LoserTree::<u64>::new(first);
    let mut out = Vec::with_capacity(end - offset);
    for rank in 0..end {
        let (list, r, next) = &mut rest[tree.winner()];
        // Every list the tree names while hits remain has a head.
        let (head, tail) = list
            .split_first()
            .expect("the winner's list is not exhausted");
        *list = tail;
        // Keys of distinct lists never tie: their shard ranks differ.
        tree.replace_winner_distinct(*next);
        *next = key(tail.get(1), *r);
        if rank >= offset {
            out.push(*head);
        }
    }
    out
}

/// The 64-bit merge of trusted input: every hit it consumes is checked.
/// NaN or disorder is the same error [`top_k`] gives, and a hit of another
/// shard than its list's first means the 64-bit order does not hold:
/// `Ok(None)`, and the caller merges on full keys instead.
fn merge_by_shard_checked(
    lists: &[&[Hit]],
    ranks: &[u32],
    offset: usize,
    size: usize,
) -> Result<Option<Vec<Hit>>> {
    let total: usize = lists.iter().map(|l| l.len()).sum();
    let end = offset.saturating_add(size).min(total);
    if offset >= end {
        return Ok(Some(Vec::new()));
    }
    for (i, l) in lists.iter().enumerate() {
        if let Some(h) = l.first().filter(|h| h.score.is_nan()) {
            return Err(nan_error(i, 0, h));
        }
    }
    let key = |h: &Hit, rank: u64| ((h.score_key() as u64) << 32) | rank;
    // u64::MAX needs score key 0xFFFF_FFFF, which only NaN maps to.
    let mut tree = LoserTree::<u64>::new(
        lists
            .iter()
            .zip(ranks)
            .map(|(l, &r)| l.first().map_or(u64::MAX, |h| key(h, r as u64)))
            .collect(),
    );
    // One remaining slice per list: the winner's next hit is one load of
    // its cursor away (a list index and a position were two).
    let mut rest: Vec<(&[Hit], u64)> = lists
        .iter()
        .zip(ranks)
        .map(|(l, &r)| (*l, r as u64))
        .collect();
    let mut out = Vec::with_capacity(end - offset);
    for rank in 0..end {
        let w = tree.winner();
        let (list, r) = &mut rest[w];
        // Every list the tree names while hits remain has a head.
        let (head, tail) = list
            .split_first()
            .expect("the winner's list is not exhausted");
        *list = tail;
        let next = match tail.first() {
            Some(h) => {
                let pos = lists[w].len() - tail.len();
                if h.score.is_nan() {
                    return Err(nan_error(w, pos, h));
                }
                if h.key() < head.key() {
                    return Err(order_error(w, pos, head, h));
                }
                if h.shard != head.shard {
                    return Ok(None);
                }
                key(h, *r)
            }
            None => u64::MAX,
        };
        // Keys of distinct lists never tie: their shard ranks differ.
        tree.replace_winner_distinct(next);
        if rank >= offset {
            out.push(*head);
        }
    }
    Ok(Some(out))
}

/// Like [`top_k`], but checks order and NaN only on the hits the merge
/// consumes (the first `offset + size` in merged order plus one look-ahead
/// per list): O(k log lists) instead of O(total). Disorder beyond the
/// consumed prefix is not inspected and cannot change the answer unless the
/// list's tail holds hits that belong earlier, which is exactly the case it
/// misses. Use it only for lists from a trusted source (e.g. this process's
/// own leaves); errors it does find name the list and position as
/// [`top_k`]'s do.
pub fn top_k_trusted(lists: &[&[Hit]], offset: usize, size: usize) -> Result<Vec<Hit>> {
    check_size(size)?;
    // Leaves' lists (one shard each, shards distinct) merge on 64-bit
    // keys; the first consumed hit that breaks that sends the merge to
    // the general path, from the start.
    if lists.len() > 1 {
        if let Some(ranks) = shard_ranks(lists) {
            if let Some(out) = merge_by_shard_checked(lists, &ranks, offset, size)? {
                return Ok(out);
            }
        }
    }
    merge::<true>(lists, offset, size)
}

pub(crate) fn check_size(size: usize) -> Result<()> {
    if size == 0 {
        return Err(Error::invalid(
            "top-k size (k) must be at least 1, got 0".to_string(),
        ));
    }
    Ok(())
}

/// Checks that `list` (input number `index`) has no NaN and is in merge
/// order; returns whether all its hits share one shard.
pub(crate) fn validate_list(index: usize, list: &[Hit]) -> Result<bool> {
    // One fused pass: NaN first (it would make the key comparison
    // meaningless), then order against the previous key.
    let mut prev = 0u128;
    let shard = list.first().map_or(0, |h| h.shard);
    let mut pure = true;
    for (p, h) in list.iter().enumerate() {
        if h.score.is_nan() {
            return Err(nan_error(index, p, h));
        }
        let key = h.key();
        if key < prev {
            return Err(order_error(index, p, &list[p - 1], h));
        }
        pure &= h.shard == shard;
        prev = key;
    }
    Ok(pure)
}

fn nan_error(index: usize, pos: usize, h: &Hit) -> Error {
    Error::invalid(format!(
        "hit list {index} position {pos}: score is NaN (shard {}, doc {})",
        h.shard, h.doc
    ))
}

fn order_error(index: usize, pos: usize, prev: &Hit, h: &Hit) -> Error {
    Error::invalid(format!(
        "hit list {index} is not sorted (score desc, shard asc, doc asc) at position {pos}: \
         (score {}, shard {}, doc {}) follows (score {}, shard {}, doc {})",
        h.score, h.shard, h.doc, prev.score, prev.shard, prev.doc
    ))
}

/// The merge itself. With `CHECK`, every hit read is checked for NaN and
/// order against its predecessor in the same list.
fn merge<const CHECK: bool>(lists: &[&[Hit]], offset: usize, size: usize) -> Result<Vec<Hit>> {
    let total: usize = lists.iter().map(|l| l.len()).sum();
    let end = offset.saturating_add(size).min(total);
    if offset >= end {
        return Ok(Vec::new());
    }
    // A single list needs no tournament; the slice is the answer.
    if lists.len() == 1 {
        if CHECK {
            // Validate what we return plus nothing more: the prefix.
            validate_list(0, &lists[0][..end])?;
        }
        return Ok(lists[0][offset..end].to_vec());
    }
    let mut pos = vec![0usize; lists.len()];
    let mut keys = Vec::with_capacity(lists.len());
    for (i, l) in lists.iter().enumerate() {
        keys.push(match l.first() {
            Some(h) => {
                if CHECK && h.score.is_nan() {
                    return Err(nan_error(i, 0, h));
                }
                h.key()
            }
            None => EXHAUSTED,
        });
    }
    let mut tree = LoserTree::new(keys);
    let mut out = Vec::with_capacity(end - offset);
    for rank in 0..end {
        let w = tree.winner();
        let list = lists[w];
        let p = pos[w];
        if rank >= offset {
            out.push(list[p]);
        }
        let next = p + 1;
        pos[w] = next;
        let key = match list.get(next) {
            Some(h) => {
                let key = h.key();
                if CHECK {
                    if h.score.is_nan() {
                        return Err(nan_error(w, next, h));
                    }
                    if key < tree.winner_key() {
                        return Err(order_error(w, next, &list[p], h));
                    }
                }
                key
            }
            None => EXHAUSTED,
        };
        tree.replace_winner(key);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn h(score: f32, shard: u32, doc: u64) -> Hit {
        Hit::new(score, shard, doc)
    }

    #[test]
    fn key_orders_scores_descending_across_signs() {
        let scores = [
            f32::INFINITY,
            3.5,
            1.0,
            0.0,
            -0.0,
            -1.0,
            -7.25,
            f32::NEG_INFINITY,
        ];
        for w in scores.windows(2) {
            assert!(h(w[0], 0, 0).key() <= h(w[1], 0, 0).key(), "{w:?}");
        }
        assert_eq!(h(0.0, 1, 2).key(), h(-0.0, 1, 2).key());
        assert!(h(1.0, 0, 9).key() < h(1.0, 1, 0).key());
        assert!(h(1.0, 1, 0).key() < h(1.0, 1, 1).key());
        assert!(h(f32::NEG_INFINITY, u32::MAX, u64::MAX).key() < EXHAUSTED);
    }

    #[test]
    fn merges_with_tie_break_and_paging() {
        let a = [h(3.0, 1, 5), h(2.0, 1, 1), h(1.0, 1, 0)];
        let b = [h(3.0, 0, 9), h(2.0, 0, 7)];
        let c: [Hit; 0] = [];
        let all = top_k(&[&a, &b, &c], 0, 100).unwrap();
        assert_eq!(
            all,
            vec![
                h(3.0, 0, 9),
                h(3.0, 1, 5),
                h(2.0, 0, 7),
                h(2.0, 1, 1),
                h(1.0, 1, 0)
            ]
        );
        assert_eq!(top_k(&[&a, &b, &c], 1, 2).unwrap(), all[1..3].to_vec());
        assert!(top_k(&[&a, &b], 5, 3).unwrap().is_empty());
        assert!(top_k(&[], 0, 3).unwrap().is_empty());
        assert_eq!(top_k(&[&a], 1, 1).unwrap(), vec![a[1]]);
        assert_eq!(top_k(&[&a, &b], usize::MAX, 1).unwrap(), vec![]);
        assert_eq!(top_k(&[&a, &b], 4, usize::MAX).unwrap(), vec![a[2]]);
    }

    #[test]
    fn k_zero_is_an_error() {
        let a = [h(1.0, 0, 0)];
        for f in [top_k, top_k_trusted] {
            let e = f(&[&a], 0, 0).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.message().contains("got 0"), "{e}");
        }
    }

    #[test]
    fn unsorted_list_is_an_error_naming_list_and_position() {
        let a = [h(3.0, 0, 0)];
        let b = [h(5.0, 1, 0), h(4.0, 1, 1), h(4.5, 1, 2)];
        let e = top_k(&[&a, &b], 0, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("hit list 1"), "{e}");
        assert!(e.message().contains("position 2"), "{e}");
        // The trusted variant finds it only when it consumes that far.
        assert_eq!(top_k_trusted(&[&a, &b], 0, 1).unwrap(), vec![b[0]]);
        let e = top_k_trusted(&[&a, &b], 0, 3).unwrap_err();
        assert!(
            e.message().contains("hit list 1") && e.message().contains("position 2"),
            "{e}"
        );
        // Tie-break order within equal scores is checked too.
        let c = [h(1.0, 0, 5), h(1.0, 0, 4)];
        let e = top_k(&[&c], 0, 1).unwrap_err();
        assert!(
            e.message().contains("hit list 0") && e.message().contains("position 1"),
            "{e}"
        );
    }

    #[test]
    fn nan_score_is_an_error() {
        let a = [h(3.0, 0, 0), h(f32::NAN, 0, 1)];
        for f in [top_k, top_k_trusted] {
            let e = f(&[&a, &a], 0, 10).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(
                e.message().contains("NaN") && e.message().contains("position 1"),
                "{e}"
            );
        }
        let b = [h(f32::NAN, 2, 7)];
        let e = top_k_trusted(&[&a, &b], 0, 1).unwrap_err();
        assert!(e.message().contains("hit list 1 position 0"), "{e}");
    }
}
