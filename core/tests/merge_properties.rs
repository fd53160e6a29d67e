//! Property tests for `shardkit::merge`: on hundreds of seeded random cases
//! (0..20 lists, 0..200 elements each, many ties) the merge, intersection
//! and union equal naive references, at every offset/size, and the parallel
//! variants equal the sequential ones.

use shardkit::merge::{
    intersect, intersect_par, top_k, top_k_par, top_k_trusted, union, union_par, Hit, PAR_THRESHOLD,
};
use shardkit::ErrorKind;
// Seeded: every run checks the same cases.
use shardkit_testkit::Rng;
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// The documented order, written independently of the library's key trick.
fn order(a: &Hit, b: &Hit) -> Ordering {
    b.score
        .partial_cmp(&a.score)
        .unwrap()
        .then(a.shard.cmp(&b.shard))
        .then(a.doc.cmp(&b.doc))
}

/// A sorted random hit list. Few distinct scores, shards and docs, so ties
/// at every level of the tie-break are common; negative scores, zero of
/// both signs and infinities appear.
fn random_hits(rng: &mut Rng) -> Vec<Hit> {
    const SCORES: [f32; 8] = [
        f32::INFINITY,
        2.5,
        1.0,
        0.0,
        -0.0,
        -1.0,
        -3.75,
        f32::NEG_INFINITY,
    ];
    let n = rng.below(200) as usize;
    let mut v: Vec<Hit> = (0..n)
        .map(|_| {
            let score = if rng.below(4) == 0 {
                SCORES[rng.below(8) as usize]
            } else {
                (rng.below(10) as f32) * 0.25
            };
            Hit::new(score, rng.below(4) as u32, rng.below(30))
        })
        .collect();
    v.sort_by(order);
    v
}

/// The reference: concatenate, stable sort (equal hits keep list order),
/// slice.
fn naive(lists: &[Vec<Hit>], offset: usize, size: usize) -> Vec<Hit> {
    let mut all: Vec<Hit> = lists.iter().flatten().copied().collect();
    all.sort_by(order);
    all.into_iter().skip(offset).take(size).collect()
}

/// Hits compared by their bits as well, so `-0.0` vs `0.0` in the same slot
/// would be caught (`PartialEq` on f32 would hide it).
fn bits(v: &[Hit]) -> Vec<(u32, u32, u64)> {
    v.iter()
        .map(|h| (h.score.to_bits(), h.shard, h.doc))
        .collect()
}

#[test]
fn merge_top_k_equals_naive_at_every_offset_and_size() {
    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
    for case in 0..300 {
        let lists: Vec<Vec<Hit>> = (0..rng.below(20)).map(|_| random_hits(&mut rng)).collect();
        let refs: Vec<&[Hit]> = lists.iter().map(|l| l.as_slice()).collect();
        let total: usize = lists.iter().map(|l| l.len()).sum();
        let full = bits(&naive(&lists, 0, usize::MAX));
        assert_eq!(
            bits(&top_k(&refs, 0, usize::MAX).unwrap()),
            full,
            "case {case}"
        );
        // Every offset on small cases; on larger ones the edges plus random
        // offsets (every offset everywhere is quadratic and too slow in debug).
        let offsets: Vec<usize> = if total <= 150 {
            (0..=total + 1).collect()
        } else {
            let mut o = vec![0, 1, total - 1, total, total + 1];
            o.extend((0..20).map(|_| rng.below(total as u64) as usize));
            o
        };
        for offset in offsets {
            let size = 1 + rng.below(total as u64 + 3) as usize;
            for size in [1, size] {
                let want = &full[offset.min(total)..offset.saturating_add(size).min(total)];
                assert_eq!(
                    bits(&top_k(&refs, offset, size).unwrap()),
                    want,
                    "case {case} {offset}/{size}"
                );
                assert_eq!(
                    bits(&top_k_trusted(&refs, offset, size).unwrap()),
                    want,
                    "case {case} trusted {offset}/{size}"
                );
            }
        }
    }
}

/// Lists as leaves answer them: list `i` holds only shard `shards[i]`'s hits.
/// With distinct shards the merge takes its 64-bit path; with a shard
/// repeated across lists it must fall back to the full key, where the doc
/// id decides ties between lists.
#[test]
fn merge_top_k_of_one_shard_per_list_equals_naive() {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    for case in 0..300 {
        let n = 1 + rng.below(12) as usize;
        let repeat = case % 3 == 0;
        let lists: Vec<Vec<Hit>> = (0..n)
            .map(|i| {
                let shard = if repeat {
                    (i % 3) as u32
                } else {
                    (n - i) as u32 * 7
                };
                let mut l: Vec<Hit> = random_hits(&mut rng)
                    .into_iter()
                    .map(|h| Hit::new(h.score, shard, h.doc))
                    .collect();
                l.sort_by(order);
                l
            })
            .collect();
        let refs: Vec<&[Hit]> = lists.iter().map(|l| l.as_slice()).collect();
        let total: usize = lists.iter().map(|l| l.len()).sum();
        let full = bits(&naive(&lists, 0, usize::MAX));
        assert_eq!(
            bits(&top_k(&refs, 0, usize::MAX).unwrap()),
            full,
            "case {case}"
        );
        for _ in 0..10 {
            let offset = rng.below(total as u64 + 2) as usize;
            let size = 1 + rng.below(total as u64 + 2) as usize;
            let want = &full[offset.min(total)..offset.saturating_add(size).min(total)];
            assert_eq!(
                bits(&top_k(&refs, offset, size).unwrap()),
                want,
                "case {case}"
            );
            assert_eq!(
                bits(&top_k_trusted(&refs, offset, size).unwrap()),
                want,
                "case {case} trusted"
            );
        }
        // A hit of another shard deep in a list sends the trusted merge
        // back to full keys, with the same answer.
        let mut lists = lists;
        if let Some(l) = lists.iter_mut().find(|l| l.len() > 2) {
            let last = l.len() - 1;
            let h = l[last];
            l[last] = Hit::new(h.score, h.shard + 1, h.doc);
            l.sort_by(order);
            let refs: Vec<&[Hit]> = lists.iter().map(|l| l.as_slice()).collect();
            let full = bits(&naive(&lists, 0, usize::MAX));
            assert_eq!(
                bits(&top_k_trusted(&refs, 0, usize::MAX).unwrap()),
                full,
                "case {case} mixed"
            );
        }
    }
}

#[test]
fn merge_top_k_rejects_bad_input_with_clear_errors() {
    let mut rng = Rng::new(7);
    let good = random_hits(&mut rng);
    let e = top_k(&[&good], 0, 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("got 0"), "{e}");
    // A disorder deep in a list is found even when the page is the first hit.
    let mut bad: Vec<Hit> = (0..100).map(|d| Hit::new(1.0, 0, d)).collect();
    bad.swap(90, 91);
    let e = top_k(&[&good, &bad], 0, 1).unwrap_err();
    assert!(
        e.message().contains("hit list 1") && e.message().contains("position 91"),
        "{e}"
    );
    let mut nan = bad.clone();
    nan.swap(90, 91);
    nan[50].score = f32::NAN;
    let e = top_k(&[&nan], 0, 1).unwrap_err();
    assert!(
        e.message().contains("NaN") && e.message().contains("position 50"),
        "{e}"
    );
}

/// A sorted, duplicate-free random id list; small value spans make overlaps
/// between lists common.
fn random_ids(rng: &mut Rng, span: u64) -> Vec<u64> {
    let n = rng.below(200) as usize;
    let set: BTreeSet<u64> = (0..n).map(|_| rng.below(span)).collect();
    set.into_iter().collect()
}

#[test]
fn merge_intersection_and_union_equal_btreeset() {
    let mut rng = Rng::new(0xDEAD_BEEF_CAFE_F00D);
    for case in 0..400 {
        let span = 1 + rng.below(if case % 2 == 0 { 300 } else { 100_000 });
        let count = rng.below(20) as usize;
        let lists: Vec<Vec<u64>> = (0..count)
            .map(|i| {
                // Some lists are much longer than others, to exercise galloping.
                let l = random_ids(&mut rng, span);
                if i % 3 == 0 {
                    l.into_iter().take(3).collect()
                } else {
                    l
                }
            })
            .collect();
        let sets: Vec<BTreeSet<u64>> = lists.iter().map(|l| l.iter().copied().collect()).collect();
        let want_union: Vec<u64> = sets
            .iter()
            .flatten()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let refs: Vec<&[u64]> = lists.iter().map(|l| l.as_slice()).collect();
        assert_eq!(union(&refs).unwrap(), want_union, "case {case}");
        // The same lists shifted into the top of the u32 range.
        let off = u32::MAX as u64 - span;
        let lists32: Vec<Vec<u32>> = lists
            .iter()
            .map(|l| l.iter().map(|&x| (x + off) as u32).collect())
            .collect();
        let refs32: Vec<&[u32]> = lists32.iter().map(|l| l.as_slice()).collect();
        let shift = |v: Vec<u64>| -> Vec<u32> { v.into_iter().map(|x| (x + off) as u32).collect() };
        assert_eq!(
            union(&refs32).unwrap(),
            shift(want_union.clone()),
            "case {case}"
        );
        if count == 0 {
            assert_eq!(
                intersect(&refs).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
            continue;
        }
        let want: Vec<u64> = sets[0]
            .iter()
            .copied()
            .filter(|x| sets.iter().all(|s| s.contains(x)))
            .collect();
        assert_eq!(intersect(&refs).unwrap(), want, "case {case}");
        assert_eq!(intersect(&refs32).unwrap(), shift(want), "case {case}");
    }
}

#[test]
fn merge_posting_errors_name_list_and_index() {
    let ok: Vec<u64> = (0..10).collect();
    let dup: Vec<u64> = vec![0, 4, 4, 9];
    let unsorted: Vec<u64> = vec![0, 9, 4];
    let e = intersect(&[&ok, &dup]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.message()
            .contains("posting list 1 duplicate id at position 2"),
        "{e}"
    );
    let e = union(&[&ok, &ok, &unsorted]).unwrap_err();
    assert!(
        e.message()
            .contains("posting list 2 not sorted at position 2: 4 follows 9"),
        "{e}"
    );
}

/// Above the threshold the public parallel functions take the parallel
/// path (when rayon has 2+ threads; forced splits on small inputs are unit
/// tested in the crate) and must equal the sequential ones.
#[test]
fn merge_parallel_equals_sequential_above_threshold() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    let mut rng = Rng::new(99);
    let per = PAR_THRESHOLD / 8 + 1;
    let lists: Vec<Vec<Hit>> = (0..16)
        .map(|s| {
            let mut v: Vec<Hit> = (0..per)
                .map(|_| Hit::new(rng.below(50) as f32, s % 5, rng.below(1000)))
                .collect();
            v.sort_by(order);
            v
        })
        .collect();
    let refs: Vec<&[Hit]> = lists.iter().map(|l| l.as_slice()).collect();
    let ids: Vec<Vec<u64>> = (0..6)
        .map(|i| {
            let mut v: Vec<u64> = (0..per * (i + 1)).map(|_| rng.below(1 << 20)).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let id_refs: Vec<&[u64]> = ids.iter().map(|l| l.as_slice()).collect();
    pool.install(|| {
        for (offset, size) in [(0, 10), (0, usize::MAX), (12_345, 1000), (per * 16 - 5, 10)] {
            assert_eq!(
                bits(&top_k_par(&refs, offset, size).unwrap()),
                bits(&top_k(&refs, offset, size).unwrap())
            );
        }
        assert_eq!(
            intersect_par(&id_refs).unwrap(),
            intersect(&id_refs).unwrap()
        );
        assert_eq!(
            intersect_par(&id_refs[1..3]).unwrap(),
            intersect(&id_refs[1..3]).unwrap()
        );
        assert_eq!(union_par(&id_refs).unwrap(), union(&id_refs).unwrap());
    });
}
