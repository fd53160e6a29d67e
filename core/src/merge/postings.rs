//! Intersection (galloping) and union (k-way, deduplicated) of sorted
//! posting lists of document ids.

use super::loser::{LoserTree, EXHAUSTED};
use crate::{Error, Result};
use std::fmt::Display;

/// A document id type a posting list may hold: `u32` or `u64`.
pub trait DocId: Copy + Ord + Display + Send + Sync + sealed::Sealed {
    /// Widens to the 128-bit key of the union's loser tree; never
    /// [`u128::MAX`], which marks an exhausted list.
    fn key(self) -> u128;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

impl DocId for u32 {
    #[inline(always)]
    fn key(self) -> u128 {
        self as u128
    }
}

impl DocId for u64 {
    #[inline(always)]
    fn key(self) -> u128 {
        self as u128
    }
}

/// Below this size ratio between the two lists a linear merge beats
/// galloping (each gallop costs about 2·log2(gap) probes).
const GALLOP_RATIO: usize = 8;

/// Checks that posting list `index` is strictly increasing (sorted, no
/// duplicates).
pub(crate) fn validate_postings<T: DocId>(index: usize, list: &[T]) -> Result<()> {
    match list.windows(2).position(|w| w[1] <= w[0]) {
        None => Ok(()),
        Some(p) => {
            let (a, b) = (list[p], list[p + 1]);
            let what = if a == b { "duplicate id" } else { "not sorted" };
            Err(Error::invalid(format!(
                "posting list {index} {what} at position {}: {b} follows {a} \
                 (ids must be strictly increasing)",
                p + 1
            )))
        }
    }
}

/// The ids present in every list, ascending.
///
/// Lists are intersected smallest first, so the running result only
/// shrinks; each step gallops (exponential then binary search) through the
/// larger list when the sizes are skewed, and merges linearly when they are
/// not. Every list is validated first (one linear pass).
///
/// Errors: no lists (the intersection of nothing is undefined), a list not
/// strictly increasing (names the list and position).
pub fn intersect<T: DocId>(lists: &[&[T]]) -> Result<Vec<T>> {
    if lists.is_empty() {
        return Err(Error::invalid(
            "intersection needs at least one posting list, got 0",
        ));
    }
    for (i, l) in lists.iter().enumerate() {
        validate_postings(i, l)?;
    }
    Ok(intersect_valid(lists))
}

/// [`intersect`] on lists already validated.
pub(crate) fn intersect_valid<T: DocId>(lists: &[&[T]]) -> Vec<T> {
    let mut order: Vec<&[T]> = lists.to_vec();
    order.sort_by_key(|l| l.len());
    let mut acc: Vec<T> = order[0].to_vec();
    let mut scratch = Vec::with_capacity(acc.len());
    for big in &order[1..] {
        if acc.is_empty() {
            break;
        }
        scratch.clear();
        intersect_two(&acc, big, &mut scratch);
        std::mem::swap(&mut acc, &mut scratch);
    }
    acc
}

/// Appends `small ∩ big` to `out`; `small.len() <= big.len()`.
fn intersect_two<T: DocId>(small: &[T], big: &[T], out: &mut Vec<T>) {
    if small.len().saturating_mul(GALLOP_RATIO) < big.len() {
        let mut lo = 0;
        for &x in small {
            lo = gallop(big, lo, x);
            if lo == big.len() {
                break;
            }
            if big[lo] == x {
                out.push(x);
                lo += 1;
            }
        }
    } else {
        let (mut i, mut j) = (0, 0);
        while i < small.len() && j < big.len() {
            let (a, b) = (small[i], big[j]);
            if a < b {
                i += 1;
            } else if b < a {
                j += 1;
            } else {
                out.push(a);
                i += 1;
                j += 1;
            }
        }
    }
}

/// The first index `>= lo` with `list[index] >= x` (or `list.len()`):
/// probe lo+1, lo+3, lo+7, ... then binary search the last gap, so the
/// cost is logarithmic in the distance moved, not in the list length.
#[inline]
fn gallop<T: DocId>(list: &[T], lo: usize, x: T) -> usize {
    let n = list.len();
    if lo >= n || list[lo] >= x {
        return lo;
    }
    // Invariant: list[prev] < x.
    let mut prev = lo;
    let mut step = 1;
    let mut probe = lo + 1;
    while probe < n && list[probe] < x {
        prev = probe;
        step *= 2;
        probe = prev + step;
    }
    let hi = probe.min(n);
    prev + 1 + list[prev + 1..hi].partition_point(|&v| v < x)
}

/// The ids present in any list, ascending, each once.
///
/// A k-way merge through a loser tree, dropping repeats of the last id
/// emitted. Every list is validated first (strictly increasing: an id
/// repeated within one list is an error, one present in several lists is
/// the normal case). No lists gives an empty union.
pub fn union<T: DocId>(lists: &[&[T]]) -> Result<Vec<T>> {
    for (i, l) in lists.iter().enumerate() {
        validate_postings(i, l)?;
    }
    Ok(union_valid(lists))
}

/// [`union`] on lists already validated.
pub(crate) fn union_valid<T: DocId>(lists: &[&[T]]) -> Vec<T> {
    let nonempty: Vec<&[T]> = lists.iter().copied().filter(|l| !l.is_empty()).collect();
    match nonempty.len() {
        0 => return Vec::new(),
        1 => return nonempty[0].to_vec(),
        2 => return union_two(nonempty[0], nonempty[1]),
        _ => {}
    }
    let longest = nonempty.iter().map(|l| l.len()).max().unwrap_or(0);
    let mut out: Vec<T> = Vec::with_capacity(longest);
    let mut pos = vec![0usize; nonempty.len()];
    let mut tree = LoserTree::new(nonempty.iter().map(|l| l[0].key()).collect());
    while tree.winner_key() != EXHAUSTED {
        let w = tree.winner();
        let list = nonempty[w];
        let x = list[pos[w]];
        if out.last() != Some(&x) {
            out.push(x);
        }
        pos[w] += 1;
        tree.replace_winner(list.get(pos[w]).map_or(EXHAUSTED, |v| v.key()));
    }
    out
}

/// Two validated lists: a plain two-pointer merge beats the tree here (the
/// common case of OR over two terms).
fn union_two<T: DocId>(a: &[T], b: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        if x < y {
            out.push(x);
            i += 1;
        } else if y < x {
            out.push(y);
            j += 1;
        } else {
            out.push(x);
            i += 1;
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn gallop_finds_lower_bound() {
        let list: Vec<u32> = (0..100).map(|i| i * 3).collect();
        for lo in [0usize, 1, 17, 99, 100] {
            for x in 0..310u32 {
                let want = lo.max(list.partition_point(|&v| v < x));
                assert_eq!(gallop(&list, lo, x), want, "lo {lo} x {x}");
            }
        }
    }

    #[test]
    fn intersects_skewed_and_even_lists() {
        let big: Vec<u64> = (0..10_000).map(|i| i * 2).collect();
        let small: Vec<u64> = vec![0, 3, 4, 19_998, 20_000];
        assert_eq!(intersect(&[&big, &small]).unwrap(), vec![0, 4, 19_998]);
        let a: Vec<u32> = vec![1, 2, 3, 5, 8];
        let b: Vec<u32> = vec![2, 3, 4, 8, 9];
        let c: Vec<u32> = vec![3, 8];
        assert_eq!(intersect(&[&a, &b, &c]).unwrap(), vec![3, 8]);
        assert_eq!(intersect(&[&a]).unwrap(), a);
        assert_eq!(intersect(&[&a, &[]]).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn unions_with_dedup() {
        let a: Vec<u32> = vec![1, 4, u32::MAX];
        let b: Vec<u32> = vec![0, 4, 5];
        assert_eq!(union(&[&a, &b, &[]]).unwrap(), vec![0, 1, 4, 5, u32::MAX]);
        assert_eq!(union::<u64>(&[]).unwrap(), Vec::<u64>::new());
        let c: Vec<u64> = vec![u64::MAX];
        assert_eq!(union(&[&c, &c]).unwrap(), vec![u64::MAX]);
    }

    #[test]
    fn bad_postings_are_errors_naming_list_and_position() {
        let ok: Vec<u32> = vec![1, 2];
        let dup: Vec<u32> = vec![1, 2, 2];
        let unsorted: Vec<u32> = vec![5, 3];
        for f in [intersect::<u32>, union::<u32>] {
            let e = f(&[&ok, &dup]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(
                e.message()
                    .contains("posting list 1 duplicate id at position 2"),
                "{e}"
            );
            let e = f(&[&unsorted]).unwrap_err();
            assert!(
                e.message()
                    .contains("posting list 0 not sorted at position 1: 3 follows 5"),
                "{e}"
            );
        }
        let e = intersect::<u64>(&[]).unwrap_err();
        assert!(e.message().contains("got 0"), "{e}");
    }
}
