//! Rayon-parallel variants of the merge and the posting-list operations.
//! Each returns exactly what its sequential version returns (same hits, same
//! order, same first error), and falls back to it below [`PAR_THRESHOLD`]
//! total elements, where splitting costs more than it saves. The public
//! entry points run on this process's pool ([`crate::runtime::parallel`]),
//! so they work in a forked child too.

use super::postings::{intersect_valid, union_valid, validate_postings, DocId};
use super::topk::{check_size, merge_validated, top_k, validate_list, Hit};
use crate::{Error, Result};
use rayon::prelude::*;

/// Total input elements below which the parallel variants run sequentially.
pub const PAR_THRESHOLD: usize = 1 << 16;

/// Validates every list in parallel and returns the error of the lowest
/// failing list index, as a sequential in-order pass would.
fn validate_all<L: Sync>(lists: &[L], f: impl Fn(usize, &L) -> Result<()> + Sync) -> Result<()> {
    let first: Option<(usize, Error)> = lists
        .par_iter()
        .enumerate()
        .filter_map(|(i, l)| f(i, l).err().map(|e| (i, e)))
        .min_by_key(|(i, _)| *i);
    match first {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// [`top_k`](super::top_k) in parallel: lists are split into contiguous
/// groups, each group is merged to its own top `offset + size`, and the
/// group results are merged once more. Groups are contiguous so equal hits
/// keep list order, as in the sequential merge.
///
/// What parallelises is the validation pass and the group merges; the final
/// merge is sequential over `groups × (offset + size)` hits. So it pays for
/// many long lists and a small page; when the whole input is wanted the
/// final merge redoes the work and it is no faster than [`top_k`].
pub fn top_k_par(lists: &[&[Hit]], offset: usize, size: usize) -> Result<Vec<Hit>> {
    crate::runtime::parallel(|| top_k_par_with(lists, offset, size, PAR_THRESHOLD))
}

/// [`top_k_par`] with its threshold as a parameter, so tests can drive the
/// parallel path on small inputs.
pub(crate) fn top_k_par_with(
    lists: &[&[Hit]],
    offset: usize,
    size: usize,
    threshold: usize,
) -> Result<Vec<Hit>> {
    check_size(size)?;
    let total: usize = lists.iter().map(|l| l.len()).sum();
    let threads = rayon::current_num_threads();
    if total < threshold || lists.len() < 4 || threads < 2 {
        return top_k(lists, offset, size);
    }
    // Validate in parallel; the first error in list order wins, as in a
    // sequential pass.
    let checked: Vec<Result<bool>> = lists
        .par_iter()
        .enumerate()
        .map(|(i, l)| validate_list(i, l))
        .collect();
    let mut pure = true;
    for c in checked {
        pure &= c?;
    }
    let need = offset.saturating_add(size);
    // When the page is most of the input, group merges would only be
    // merged again in full: one sequential merge is cheaper.
    if need.saturating_mul(2) >= total {
        return Ok(merge_validated(lists, offset, size, pure));
    }
    let groups = threads.min(lists.len() / 2);
    let per = lists.len().div_ceil(groups);
    // Everything was validated above and group results are sorted by
    // construction: checking again would double the cost of a page, which
    // is mostly the check.
    let partial: Vec<Vec<Hit>> = lists
        .par_chunks(per)
        .map(|g| merge_validated(g, 0, need, pure))
        .collect();
    let refs: Vec<&[Hit]> = partial.iter().map(|v| v.as_slice()).collect();
    Ok(merge_validated(&refs, offset, size, false))
}

/// The value-range cuts that split `lists` into about `parts` independent
/// pieces: piece `j` holds, from every list, the ids in
/// `[cuts[j], cuts[j+1])`. Cuts are taken at even positions of `guide`.
fn cut_points<T: DocId>(guide: &[T], parts: usize) -> Vec<T> {
    let step = guide.len().div_ceil(parts).max(1);
    guide.iter().step_by(step).skip(1).copied().collect()
}

/// The slices of every list between two cuts (`None` = unbounded).
fn pieces<'a, T: DocId>(lists: &[&'a [T]], lo: Option<T>, hi: Option<T>) -> Vec<&'a [T]> {
    lists
        .iter()
        .map(|l| {
            let a = lo.map_or(0, |lo| l.partition_point(|&v| v < lo));
            let b = hi.map_or(l.len(), |hi| l.partition_point(|&v| v < hi));
            &l[a..b]
        })
        .collect()
}

/// Runs `op` on each value-range piece in parallel and concatenates: right
/// for any operation whose result over a range only depends on the inputs
/// in that range (intersection, union).
fn by_ranges<T: DocId>(lists: &[&[T]], guide: &[T], op: fn(&[&[T]]) -> Vec<T>) -> Vec<T> {
    let cuts = cut_points(guide, rayon::current_num_threads() * 4);
    let bounds: Vec<(Option<T>, Option<T>)> = (0..=cuts.len())
        .map(|j| {
            let lo = if j == 0 { None } else { Some(cuts[j - 1]) };
            (lo, cuts.get(j).copied())
        })
        .collect();
    let parts: Vec<Vec<T>> = bounds
        .par_iter()
        .map(|&(lo, hi)| op(&pieces(lists, lo, hi)))
        .collect();
    parts.concat()
}

/// [`intersect`](super::intersect) in parallel, split by value ranges cut
/// from the smallest list.
pub fn intersect_par<T: DocId>(lists: &[&[T]]) -> Result<Vec<T>> {
    crate::runtime::parallel(|| intersect_par_with(lists, PAR_THRESHOLD))
}

pub(crate) fn intersect_par_with<T: DocId>(lists: &[&[T]], threshold: usize) -> Result<Vec<T>> {
    let total: usize = lists.iter().map(|l| l.len()).sum();
    if lists.is_empty() || total < threshold || rayon::current_num_threads() < 2 {
        return super::intersect(lists);
    }
    validate_all(lists, |i, l| validate_postings(i, l))?;
    let smallest = lists.iter().min_by_key(|l| l.len()).copied().unwrap_or(&[]);
    Ok(by_ranges(lists, smallest, intersect_valid))
}

/// [`union`](super::union) in parallel, split by value ranges cut from the
/// largest list.
pub fn union_par<T: DocId>(lists: &[&[T]]) -> Result<Vec<T>> {
    crate::runtime::parallel(|| union_par_with(lists, PAR_THRESHOLD))
}

pub(crate) fn union_par_with<T: DocId>(lists: &[&[T]], threshold: usize) -> Result<Vec<T>> {
    let total: usize = lists.iter().map(|l| l.len()).sum();
    if total < threshold || rayon::current_num_threads() < 2 {
        return super::union(lists);
    }
    validate_all(lists, |i, l| validate_postings(i, l))?;
    let largest = lists.iter().max_by_key(|l| l.len()).copied().unwrap_or(&[]);
    Ok(by_ranges(lists, largest, union_valid))
}

#[cfg(test)]
mod tests {
    //! The parallel paths forced on small random inputs (threshold 0, a
    //! 4-thread pool even on a 2-core machine) must equal the sequential
    //! functions exactly, errors included.
    use super::*;
    use crate::merge::{intersect, union};

    // Seeded, so the random inputs are the same every run.
    use shardkit_testkit::Rng;

    fn hits(rng: &mut Rng, shard: u32) -> Vec<Hit> {
        let n = rng.below(120) as usize;
        let mut v: Vec<Hit> = (0..n)
            .map(|_| Hit::new(rng.below(6) as f32 * 0.5, shard, rng.below(40)))
            .collect();
        v.sort_by_key(|h| h.key());
        v
    }

    fn ids(rng: &mut Rng) -> Vec<u64> {
        let n = rng.below(300) as usize;
        let span = 1 + rng.below(600);
        let mut v: Vec<u64> = (0..n).map(|_| rng.below(span)).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn parallel_equals_sequential_on_forced_splits() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        pool.install(|| {
            let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
            for case in 0..150 {
                let n = rng.below(12) as u32;
                // Shards distinct across lists (the 64-bit path) in half
                // the cases, repeated in the other half.
                let shard = |s: u32| if case % 2 == 0 { s } else { s % 3 };
                let lists: Vec<Vec<Hit>> = (0..n).map(|s| hits(&mut rng, shard(s))).collect();
                let refs: Vec<&[Hit]> = lists.iter().map(|l| l.as_slice()).collect();
                let offset = rng.below(200) as usize;
                let size = 1 + rng.below(200) as usize;
                assert_eq!(
                    top_k_par_with(&refs, offset, size, 0),
                    top_k(&refs, offset, size),
                    "case {case}"
                );
                let lists: Vec<Vec<u64>> = (0..1 + rng.below(8)).map(|_| ids(&mut rng)).collect();
                let refs: Vec<&[u64]> = lists.iter().map(|l| l.as_slice()).collect();
                assert_eq!(
                    intersect_par_with(&refs, 0),
                    intersect(&refs),
                    "case {case}"
                );
                assert_eq!(union_par_with(&refs, 0), union(&refs), "case {case}");
                let small: Vec<Vec<u32>> = lists
                    .iter()
                    .map(|l| l.iter().map(|&x| x as u32).collect())
                    .collect();
                let refs: Vec<&[u32]> = small.iter().map(|l| l.as_slice()).collect();
                assert_eq!(
                    intersect_par_with(&refs, 0),
                    intersect(&refs),
                    "case {case}"
                );
                assert_eq!(union_par_with(&refs, 0), union(&refs), "case {case}");
            }
        });
    }

    #[test]
    fn parallel_reports_the_same_first_error() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        pool.install(|| {
            let good: Vec<Hit> = (0..10).map(|d| Hit::new(1.0, 0, d)).collect();
            let mut bad1 = good.clone();
            bad1.swap(3, 4);
            let mut bad2 = good.clone();
            bad2[7].score = f32::NAN;
            let lists: Vec<&[Hit]> = vec![&good, &good, &bad1, &good, &bad2, &good];
            let seq = top_k(&lists, 0, 5).unwrap_err();
            assert!(seq.message().contains("hit list 2"), "{seq}");
            assert_eq!(top_k_par_with(&lists, 0, 5, 0).unwrap_err(), seq);
            let ids: Vec<u32> = (0..50).collect();
            let dup: Vec<u32> = vec![1, 1];
            let lists: Vec<&[u32]> = vec![&ids, &ids, &dup, &ids, &[3, 2]];
            assert_eq!(intersect_par_with(&lists, 0), intersect(&lists));
            assert_eq!(union_par_with(&lists, 0), union(&lists));
            assert!(union(&lists)
                .unwrap_err()
                .message()
                .contains("posting list 2"));
        });
    }
}
