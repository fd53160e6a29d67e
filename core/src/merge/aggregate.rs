//! Merging per-shard counts and aggregates (hit counts, document
//! frequencies, facet counts). Counts add; an overflow is an error rather
//! than a wrapped total.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fmt::Debug;

/// The sum of per-shard counts (e.g. total hits). Errors on `u64` overflow.
pub fn sum_counts(counts: &[u64]) -> Result<u64> {
    counts.iter().enumerate().try_fold(0u64, |acc, (i, &c)| {
        acc.checked_add(c).ok_or_else(|| {
            Error::invalid(format!(
                "count overflow: adding {c} from shard {i} to {acc} exceeds u64"
            ))
        })
    })
}

/// Per-key sums of per-shard count maps (term document frequencies, facet
/// counts). Errors on `u64` overflow, naming the key.
pub fn merge_count_maps(maps: &[BTreeMap<String, u64>]) -> Result<BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (i, m) in maps.iter().enumerate() {
        for (k, &c) in m {
            let slot = out.entry(k.clone()).or_insert(0);
            *slot = slot.checked_add(c).ok_or_else(|| overflow(k, c, i))?;
        }
    }
    Ok(out)
}

fn overflow(key: &impl Debug, c: u64, shard: usize) -> Error {
    Error::invalid(format!(
        "count overflow for key {key:?}: adding {c} from shard {shard} exceeds u64"
    ))
}

/// Per-key sums of per-shard `(key, count)` lists, each sorted by key with
/// no key twice; the result is sorted the same way. The wire-friendly form
/// of [`merge_count_maps`].
///
/// Errors: a list not strictly increasing by key (names list and
/// position), a `u64` overflow.
pub fn merge_sorted_counts<K: Ord + Clone + Debug>(lists: &[&[(K, u64)]]) -> Result<Vec<(K, u64)>> {
    for (i, l) in lists.iter().enumerate() {
        if let Some(p) = l.windows(2).position(|w| w[1].0 <= w[0].0) {
            return Err(Error::invalid(format!(
                "count list {i} not strictly increasing by key at position {}: {:?} follows {:?}",
                p + 1,
                l[p + 1].0,
                l[p].0
            )));
        }
    }
    // Few lists of modest length: a BTreeMap keeps this short and exact.
    let mut acc: BTreeMap<&K, u64> = BTreeMap::new();
    for (i, l) in lists.iter().enumerate() {
        for (k, c) in l.iter() {
            let slot = acc.entry(k).or_insert(0);
            *slot = slot.checked_add(*c).ok_or_else(|| overflow(k, *c, i))?;
        }
    }
    Ok(acc.into_iter().map(|(k, c)| (k.clone(), c)).collect())
}

/// The `n` largest entries of a merged count map, count descending then key
/// ascending (the usual facet display order). Errors on `n == 0`.
pub fn top_counts(counts: &BTreeMap<String, u64>, n: usize) -> Result<Vec<(String, u64)>> {
    if n == 0 {
        return Err(Error::invalid("top_counts n must be at least 1, got 0"));
    }
    let mut v: Vec<(&String, u64)> = counts.iter().map(|(k, &c)| (k, c)).collect();
    // BTreeMap iteration is key-ascending, so a stable sort by count
    // descending leaves keys ascending within equal counts.
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    Ok(v.into_iter().take(n).map(|(k, c)| (k.clone(), c)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, c)| (k.to_string(), *c)).collect()
    }

    #[test]
    fn sums_and_overflow() {
        assert_eq!(sum_counts(&[]).unwrap(), 0);
        assert_eq!(sum_counts(&[3, 4, 5]).unwrap(), 12);
        let e = sum_counts(&[1, u64::MAX]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("shard 1"), "{e}");
    }

    #[test]
    fn merges_maps_and_takes_top() {
        let m =
            merge_count_maps(&[map(&[("a", 2), ("b", 1)]), map(&[("b", 4), ("c", 2)])]).unwrap();
        assert_eq!(m, map(&[("a", 2), ("b", 5), ("c", 2)]));
        assert_eq!(
            top_counts(&m, 2).unwrap(),
            vec![("b".to_string(), 5), ("a".to_string(), 2)]
        );
        assert!(top_counts(&m, 0).is_err());
        let e = merge_count_maps(&[map(&[("x", u64::MAX)]), map(&[("x", 1)])]).unwrap_err();
        assert!(e.message().contains("\"x\""), "{e}");
    }

    #[test]
    fn merges_sorted_pairs() {
        let a = [("a", 1u64), ("c", 2)];
        let b = [("b", 3u64), ("c", 4)];
        assert_eq!(
            merge_sorted_counts(&[&a[..], &b[..]]).unwrap(),
            vec![("a", 1), ("b", 3), ("c", 6)]
        );
        let bad = [("c", 1u64), ("c", 2)];
        let e = merge_sorted_counts(&[&a[..], &bad[..]]).unwrap_err();
        assert!(
            e.message().contains("count list 1") && e.message().contains("position 1"),
            "{e}"
        );
    }
}
