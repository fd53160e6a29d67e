//! Snapshot behaviour common to every algorithm.

use super::*;

fn nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| Node::named(format!("node-{i}")).unwrap())
        .collect()
}

pub(crate) fn all_algorithms() -> Vec<Algorithm> {
    ALGORITHM_NAMES
        .iter()
        .map(|n| Algorithm::from_name(n).unwrap())
        .collect()
}

#[test]
fn every_algorithm_places_on_live_nodes_and_is_deterministic() {
    for alg in all_algorithms() {
        let s = Sharder::new(nodes(7), ShardConfig::new(alg)).unwrap();
        let t = Sharder::new(nodes(7), ShardConfig::new(alg)).unwrap();
        for i in 0..1000 {
            let k = format!("k{i}");
            assert_eq!(
                s.lookup(k.as_bytes()).unwrap(),
                t.lookup(k.as_bytes()).unwrap(),
                "{alg}"
            );
        }
    }
}

#[test]
fn lookup_n_is_distinct_and_starts_with_lookup() {
    for alg in all_algorithms() {
        let s = Sharder::new(nodes(9), ShardConfig::new(alg)).unwrap();
        for i in 0..300 {
            let k = format!("k{i}");
            let r = s.lookup_n(k.as_bytes(), 9).unwrap();
            assert_eq!(r.len(), 9, "{alg}");
            let mut d = r.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), 9, "{alg}: {r:?}");
            assert_eq!(r[0], s.lookup_slot(k.as_bytes()).unwrap(), "{alg}");
            assert_eq!(&s.lookup_n(k.as_bytes(), 3).unwrap()[..], &r[..3], "{alg}");
        }
        assert_eq!(
            s.lookup_n(b"k", 0).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            s.lookup_n(b"k", 10).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}

#[test]
fn marking_down_moves_only_that_nodes_keys() {
    for alg in all_algorithms() {
        let s = Sharder::new(nodes(10), ShardConfig::new(alg)).unwrap();
        let d = s.with_down("node-3", true).unwrap();
        for i in 0..5000 {
            let k = format!("k{i}");
            let before = s.lookup(k.as_bytes()).unwrap().name().to_string();
            let after = d.lookup(k.as_bytes()).unwrap().name().to_string();
            assert_ne!(after, "node-3", "{alg}");
            if before != "node-3" {
                assert_eq!(before, after, "{alg}: key {k} moved");
            } else {
                // The next choice in the key's own order of preference.
                let pref = s.lookup_n(k.as_bytes(), 2).unwrap();
                assert_eq!(s.node(pref[1]).unwrap().name(), after, "{alg}");
            }
        }
        let up = d.with_down("node-3", false).unwrap();
        assert_eq!(up.lookup(b"x").unwrap(), s.lookup(b"x").unwrap());
    }
}

#[test]
fn all_down_is_unavailable() {
    let s = Sharder::new(nodes(2), ShardConfig::new(Algorithm::Jump)).unwrap();
    let d = s
        .apply(&[Change::Down("node-0".into()), Change::Down("node-1".into())])
        .unwrap();
    assert_eq!(d.lookup(b"k").unwrap_err().kind(), ErrorKind::Unavailable);
    let mut out = [0u32; 1];
    assert_eq!(
        d.lookup_batch(&[b"k"], &mut out).unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}

#[test]
fn failed_change_leaves_snapshot_unchanged() {
    let s = Sharder::new(
        nodes(3),
        ShardConfig::new(Algorithm::Ketama(KetamaMode::Twemproxy)),
    )
    .unwrap();
    let e = s
        .apply(&[
            Change::Remove("node-0".into()),
            Change::Remove("nope".into()),
        ])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("\"nope\""));
    assert_eq!(s.len(), 3);
    let e = s.with_added(Node::named("node-1").unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DuplicateNode);
    let e = s.with_weight("node-1", 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let one = Sharder::new(nodes(1), ShardConfig::new(Algorithm::Jump)).unwrap();
    assert_eq!(
        one.with_removed("node-0").unwrap_err().kind(),
        ErrorKind::EmptyNodeSet
    );
}

#[test]
fn unweighted_algorithms_refuse_weights() {
    let e = Sharder::new(
        vec![Node::new("a", 2).unwrap()],
        ShardConfig::new(Algorithm::Jump),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("\"a\""), "{e}");
}

#[test]
fn batch_matches_single_lookups_serial_and_parallel() {
    for alg in all_algorithms() {
        let s = Sharder::new(nodes(13), ShardConfig::new(alg)).unwrap();
        let keys: Vec<String> = (0..PARALLEL_BATCH_THRESHOLD + 100)
            .map(|i| format!("key{i}"))
            .collect();
        let mut out = vec![0u32; keys.len()];
        s.lookup_batch(&keys, &mut out).unwrap();
        for (k, o) in keys.iter().zip(&out) {
            assert_eq!(*o, s.lookup_slot(k.as_bytes()).unwrap(), "{alg}");
        }
        let mut short = vec![0u32; 3];
        assert_eq!(
            s.lookup_batch(&keys, &mut short).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}

#[test]
fn algorithm_names_round_trip_and_unknown_is_named() {
    for alg in all_algorithms() {
        assert_eq!(Algorithm::from_name(&alg.name()).unwrap(), alg);
    }
    let e = Algorithm::from_name("consistent-ish").unwrap_err();
    assert!(e.message().contains("consistent-ish"));
}

#[test]
fn live_sharder_publishes_changes() {
    let live = LiveSharder::new(Sharder::new(nodes(3), ShardConfig::new(Algorithm::Jump)).unwrap());
    let before = live.load();
    live.apply(&[Change::Add(Node::named("node-3").unwrap())])
        .unwrap();
    assert_eq!(before.len(), 3);
    assert_eq!(live.load().len(), 4);
    assert!(live.apply(&[Change::Remove("ghost".into())]).is_err());
    assert_eq!(live.load().len(), 4);
}
