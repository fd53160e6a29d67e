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

#[test]
fn fast_mod_is_exact() {
    let divisors = [
        1u32,
        2,
        3,
        7,
        271,
        65_537,
        1 << 24,
        16_777_259,
        u32::MAX - 4,
        u32::MAX,
    ];
    for &d in &divisors {
        let f = FastMod::new(d);
        for i in 0..20_000u64 {
            let x = mix64(i);
            assert_eq!(f.reduce(x) as u64, x % d as u64, "{x} % {d}");
        }
        for x in [
            0,
            1,
            d as u64 - 1,
            d as u64,
            d as u64 + 1,
            u64::MAX,
            u64::MAX - 1,
        ] {
            assert_eq!(f.reduce(x) as u64, x % d as u64, "{x} % {d}");
        }
    }
}

#[test]
fn new_algorithm_names_parse_and_round_trip() {
    let cases: &[(&str, Algorithm, &str)] = &[
        ("jumpback", Algorithm::JumpBack, "jumpback"),
        ("rendezvous", Algorithm::Rendezvous, "rendezvous"),
        ("HRW", Algorithm::Rendezvous, "rendezvous"),
        ("maglev", Algorithm::Maglev { table_size: 65_537 }, "maglev"),
        (
            "maglev:65537",
            Algorithm::Maglev { table_size: 65_537 },
            "maglev",
        ),
        (
            "maglev:251",
            Algorithm::Maglev { table_size: 251 },
            "maglev:251",
        ),
        (
            "bounded",
            Algorithm::BoundedLoad {
                load_factor: 1.25,
                partitions: 65_537,
            },
            "bounded",
        ),
        (
            "bounded:1.1",
            Algorithm::BoundedLoad {
                load_factor: 1.1,
                partitions: 65_537,
            },
            "bounded:1.1",
        ),
        (
            "bounded:2:271",
            Algorithm::BoundedLoad {
                load_factor: 2.0,
                partitions: 271,
            },
            "bounded:2:271",
        ),
        ("memento", Algorithm::Memento, "memento"),
        ("memento:jump", Algorithm::Memento, "memento"),
        (
            "memento:jumpback",
            Algorithm::MementoJumpBack,
            "memento:jumpback",
        ),
    ];
    for (name, alg, canonical) in cases {
        assert_eq!(Algorithm::from_name(name).unwrap(), *alg, "{name}");
        assert_eq!(alg.name(), *canonical);
        assert_eq!(Algorithm::from_name(canonical).unwrap(), *alg);
    }
    for name in ["jumpback:3", "rendezvous:x", "memento:ring"] {
        let e = Algorithm::from_name(name).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains(name), "{e}");
    }
}

#[test]
fn invalid_parameters_are_named() {
    for (name, shown) in [
        ("maglev:65536", "65536"),
        ("maglev:0", "0"),
        ("maglev:1", "1"),
        ("maglev:16777261", "16777261"),
        ("maglev:-7", "-7"),
        ("maglev:big", "big"),
        ("bounded:1", "1"),
        ("bounded:0.9", "0.9"),
        ("bounded:NaN", "NaN"),
        ("bounded:inf", "inf"),
        ("bounded:x", "x"),
        ("bounded:1.25:0", "0"),
        ("bounded:1.25:-3", "-3"),
        ("bounded:1.25:99999999", "99999999"),
    ] {
        let e = Algorithm::from_name(name).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{name}");
        assert!(
            e.message().contains(&format!("got {shown}"))
                || e.message().contains(&format!("got \"{shown}\"")),
            "{name}: {e}"
        );
    }
    assert!(Algorithm::from_name("maglev:65536")
        .unwrap_err()
        .message()
        .contains("prime"));
}

#[test]
fn table_sizes_are_checked_against_the_node_count() {
    let e = Sharder::new(
        nodes(12),
        ShardConfig::new(Algorithm::Maglev { table_size: 11 }),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(
        e.message().contains("got 11") && e.message().contains("12"),
        "{e}"
    );
    // Built directly, the enum is validated at build time too.
    let e = Sharder::new(
        nodes(3),
        ShardConfig::new(Algorithm::Maglev { table_size: 0 }),
    )
    .unwrap_err();
    assert!(e.message().contains("got 0"), "{e}");
    let ok = Sharder::new(
        nodes(11),
        ShardConfig::new(Algorithm::Maglev { table_size: 11 }),
    )
    .unwrap();
    // Growing past the table is refused, and the old snapshot still serves.
    let e = ok.with_added(Node::named("node-11").unwrap()).unwrap_err();
    assert!(e.message().contains("got 11"), "{e}");
    assert_eq!(ok.len(), 11);
    let bounded = |c: f64, p: u32| Algorithm::BoundedLoad {
        load_factor: c,
        partitions: p,
    };
    let e = Sharder::new(nodes(5), ShardConfig::new(bounded(1.25, 4))).unwrap_err();
    assert!(
        e.message().contains("got 4") && e.message().contains('5'),
        "{e}"
    );
    let e = Sharder::new(nodes(5), ShardConfig::new(bounded(f64::NAN, 100))).unwrap_err();
    assert!(e.message().contains("got NaN"), "{e}");
    let e = Sharder::new(nodes(5), ShardConfig::new(bounded(1.0, 100))).unwrap_err();
    assert!(e.message().contains("got 1"), "{e}");
}

#[test]
fn memento_removal_leaves_a_hole_and_add_refills_the_newest() {
    let s = Sharder::new(nodes(6), ShardConfig::new(Algorithm::Memento)).unwrap();
    let r = s
        .with_removed("node-2")
        .unwrap()
        .with_removed("node-4")
        .unwrap();
    assert_eq!(r.slot_count(), 6);
    assert_eq!(r.len(), 4);
    assert!(r.node(2).is_none() && r.node(4).is_none());
    assert_eq!(r.slot_of("node-5"), Some(5));
    let a = r.with_added(Node::named("x").unwrap()).unwrap();
    assert_eq!(a.slot_of("x"), Some(4));
    let b = a.with_added(Node::named("y").unwrap()).unwrap();
    assert_eq!(b.slot_of("y"), Some(2));
    let c = b.with_added(Node::named("z").unwrap()).unwrap();
    assert_eq!(c.slot_of("z"), Some(6));
    // Removing and re-adding in one change set is the identity on slots.
    let same = s
        .apply(&[
            Change::Remove("node-3".into()),
            Change::Add(Node::named("node-3").unwrap()),
        ])
        .unwrap();
    for i in 0..2000 {
        let k = format!("k{i}");
        assert_eq!(
            same.lookup(k.as_bytes()).unwrap(),
            s.lookup(k.as_bytes()).unwrap()
        );
    }
}

#[test]
fn memento_equals_jump_and_jumpback_variant_equals_jumpback() {
    for (m, base) in [
        (Algorithm::Memento, Algorithm::Jump),
        (Algorithm::MementoJumpBack, Algorithm::JumpBack),
    ] {
        let a = Sharder::new(nodes(23), ShardConfig::new(m)).unwrap();
        let b = Sharder::new(nodes(23), ShardConfig::new(base)).unwrap();
        // Removing the last node is the base algorithm's own removal.
        let (a2, b2) = (
            a.with_removed("node-22").unwrap(),
            b.with_removed("node-22").unwrap(),
        );
        for i in 0..3000 {
            let k = format!("k{i}");
            assert_eq!(
                a.lookup(k.as_bytes()).unwrap(),
                b.lookup(k.as_bytes()).unwrap()
            );
            assert_eq!(
                a2.lookup(k.as_bytes()).unwrap(),
                b2.lookup(k.as_bytes()).unwrap()
            );
        }
    }
}

#[test]
fn name_based_placement_does_not_depend_on_list_order() {
    for name in [
        "rendezvous",
        "maglev",
        "bounded",
        "ketama:twemproxy",
        "ketama:nginx",
    ] {
        let alg = Algorithm::from_name(name).unwrap();
        let fwd = Sharder::new(nodes(17), ShardConfig::new(alg)).unwrap();
        let mut rev_nodes = nodes(17);
        rev_nodes.reverse();
        let rev = Sharder::new(rev_nodes, ShardConfig::new(alg)).unwrap();
        for i in 0..3000 {
            let k = format!("k{i}");
            assert_eq!(
                fwd.lookup(k.as_bytes()).unwrap(),
                rev.lookup(k.as_bytes()).unwrap(),
                "{name}: {k}"
            );
        }
    }
}

#[test]
fn new_algorithms_refuse_or_accept_weights_as_documented() {
    for alg in [
        Algorithm::JumpBack,
        Algorithm::Memento,
        Algorithm::MementoJumpBack,
    ] {
        assert!(!alg.weighted());
        let e = Sharder::new(
            vec![Node::named("a").unwrap(), Node::new("b", 3).unwrap()],
            ShardConfig::new(alg),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(
            e.message().contains("\"b\"") && e.message().contains('3'),
            "{e}"
        );
        let s = Sharder::new(nodes(3), ShardConfig::new(alg)).unwrap();
        assert_eq!(
            s.with_weight("node-1", 2).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
    for name in ["rendezvous", "maglev", "bounded"] {
        let alg = Algorithm::from_name(name).unwrap();
        assert!(alg.weighted());
        Sharder::new(
            vec![Node::named("a").unwrap(), Node::new("b", 3).unwrap()],
            ShardConfig::new(alg),
        )
        .unwrap();
    }
}

#[test]
fn placement_through_the_sharder_is_pinned() {
    // Key bytes -> slot through the default hash, for every new algorithm:
    // a change here moves keys for every user.
    let keys: Vec<String> = (0..8).map(|i| format!("user:{i}")).collect();
    let cases: &[(&str, [u32; 8])] = &[
        ("jumpback", [3, 0, 8, 3, 7, 8, 2, 8]),
        ("rendezvous", [0, 0, 6, 9, 0, 2, 4, 3]),
        ("maglev", [3, 7, 1, 0, 0, 8, 3, 0]),
        ("bounded", [2, 9, 5, 9, 8, 8, 2, 3]),
        ("memento", [9, 1, 9, 7, 8, 3, 6, 2]),
        ("memento:jumpback", [3, 0, 8, 3, 7, 8, 2, 8]),
    ];
    for (name, want) in cases {
        let s = Sharder::new(
            nodes(10),
            ShardConfig::new(Algorithm::from_name(name).unwrap()),
        )
        .unwrap();
        let got: Vec<u32> = keys
            .iter()
            .map(|k| s.lookup_slot(k.as_bytes()).unwrap())
            .collect();
        assert_eq!(&got[..], &want[..], "{name}");
    }
}

#[test]
fn default_algorithm_parses() {
    let alg = Algorithm::from_name(DEFAULT_ALGORITHM).unwrap();
    assert_eq!(alg, Algorithm::Maglev { table_size: 65_537 });
    assert!(ALGORITHM_NAMES.contains(&DEFAULT_ALGORITHM));
}
