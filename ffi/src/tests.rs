//! Boundary tests: status codes, the panic boundary, the last-error protocol,
//! argument checks, and that results equal core's. The C programs in
//! tests/c cover the same ground from C, under sanitizers and valgrind.

use super::*;
use shardkit::{Algorithm, ErrorKind, Node, ShardConfig, Sharder};
use std::ffi::CStr;
use std::ptr::{null, null_mut};

fn last_error() -> String {
    let mut len = 0usize;
    // SAFETY: NULL/0 buffer asks for the length only.
    let st = unsafe { shardkit_last_error(null_mut(), 0, &mut len) };
    assert!(matches!(
        st,
        shardkit_status::Ok | shardkit_status::BufferTooSmall
    ));
    let mut buf = vec![0 as std::ffi::c_char; len + 1];
    // SAFETY: `buf` has len + 1 writable bytes.
    let st = unsafe { shardkit_last_error(buf.as_mut_ptr(), buf.len(), &mut len) };
    assert_eq!(st, shardkit_status::Ok);
    // SAFETY: shardkit_last_error NUL-terminates on OK.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_owned()
}

fn node(name: &str, weight: i64) -> shardkit_node {
    shardkit_node {
        name: name.as_ptr(),
        name_len: name.len(),
        weight,
    }
}

fn config(alg: &str, hash: &str, tag: &str) -> shardkit_config {
    shardkit_config {
        algorithm: alg.as_ptr(),
        algorithm_len: alg.len(),
        hash: hash.as_ptr(),
        hash_len: hash.len(),
        hash_tag: tag.as_ptr(),
        hash_tag_len: tag.len(),
    }
}

/// Builds a sharder through the C ABI, panicking with the last error.
fn build(nodes: &[shardkit_node], cfg: &shardkit_config) -> *mut shardkit_sharder {
    let mut out = null_mut();
    // SAFETY: valid nodes and config borrowed for the call.
    let st = unsafe { shardkit_sharder_new(nodes.as_ptr(), nodes.len(), cfg, &mut out) };
    assert_eq!(st, shardkit_status::Ok, "{}", last_error());
    assert!(!out.is_null());
    out
}

fn free(s: *mut shardkit_sharder) {
    // SAFETY: a live handle from `build`, not used again.
    unsafe { shardkit_sharder_free(s) };
}

#[test]
fn status_codes_are_core_codes() {
    for &kind in ErrorKind::ALL {
        assert_eq!(
            shardkit_status::from_kind(kind) as u32,
            kind.code(),
            "{kind:?}"
        );
        // SAFETY: static NUL-terminated text.
        let text = unsafe { CStr::from_ptr(shardkit_status_message(kind.code())) };
        assert_eq!(text.to_str().unwrap(), kind.description());
    }
    assert_eq!(shardkit_status::Ok as u32, 0);
    assert_eq!(shardkit_status::ALL.len(), ErrorKind::ALL.len() + 1);
    // SAFETY: static NUL-terminated text.
    let ok = unsafe { CStr::from_ptr(shardkit_status_message(0)) };
    assert_eq!(ok.to_str().unwrap(), "ok");
    let past = ErrorKind::ALL.len() as u32 + 1;
    for bad in [past, 999, u32::MAX] {
        // SAFETY: static NUL-terminated text.
        let t = unsafe { CStr::from_ptr(shardkit_status_message(bad)) };
        assert_eq!(t.to_str().unwrap(), "unknown status code");
    }
}

/// The header's enumerators are core's table: `SHARDKIT_STATUS_` and the
/// kind's name in capitals, with the kind's code; nothing more, nothing less.
#[test]
fn header_status_enum_is_cores_table() {
    let header = include_str!("../../include/shardkit.h");
    let start = header
        .find("enum shardkit_status")
        .expect("the status enum");
    let body = &header[start..start + header[start..].find("};").unwrap()];
    let mut found: Vec<(String, u32)> = body
        .lines()
        .filter_map(|l| {
            let (name, code) = l.trim().trim_end_matches(',').split_once(" = ")?;
            let name = name.strip_prefix("SHARDKIT_STATUS_")?;
            Some((name.to_string(), code.parse().ok()?))
        })
        .collect();
    found.sort_by_key(|&(_, c)| c);
    let mut want = vec![("OK".to_string(), 0)];
    want.extend(
        ErrorKind::ALL
            .iter()
            .map(|k| (k.name().to_ascii_uppercase(), k.code())),
    );
    assert_eq!(found, want);
}

#[test]
fn version_macros_match_cargo() {
    assert_eq!(
        SHARDKIT_VERSION_MAJOR.to_string(),
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert_eq!(
        SHARDKIT_VERSION_MINOR.to_string(),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    assert_eq!(
        SHARDKIT_VERSION_PATCH.to_string(),
        env!("CARGO_PKG_VERSION_PATCH")
    );
    // SAFETY: static NUL-terminated text.
    let v = unsafe { CStr::from_ptr(shardkit_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    assert_eq!(v.to_str().unwrap(), shardkit::VERSION);
}

/// A stand-in export whose body panics, run through the same macro.
fn panicking_status(msg: &'static str) -> shardkit_status {
    ffi_boundary!({
        if !msg.is_empty() {
            panic!("{}", msg);
        }
        Ok(())
    })
}

#[test]
fn panic_becomes_status_and_detail() {
    assert_eq!(panicking_status(""), shardkit_status::Ok);
    assert_eq!(panicking_status("boom at slot 7"), shardkit_status::Panic);
    let e = last_error();
    assert!(e.contains("boom at slot 7"), "{e}");
    assert!(e.starts_with(ErrorKind::Panic.description()), "{e}");

    // The value-returning arm returns its fallback and records the detail.
    let v: usize = ffi_boundary!(or 42 => {
        if e.is_empty() { 0 } else { panic!("value arm {}", 1) }
    });
    assert_eq!(v, 42);
    assert!(last_error().contains("value arm 1"));

    // A non-string payload is still reported, not re-raised.
    let st = ffi_boundary!({
        std::panic::panic_any(17u8);
    });
    assert_eq!(st, shardkit_status::Panic);
    assert!(last_error().contains("non-string payload"));
}

#[test]
fn last_error_buffer_protocol() {
    let mut out = null_mut();
    let nodes = [node("a", 0)];
    // SAFETY: valid arguments; the weight is rejected.
    let st = unsafe { shardkit_sharder_new(nodes.as_ptr(), 1, null(), &mut out) };
    assert_eq!(st, shardkit_status::InvalidArgument);
    assert!(out.is_null(), "out must be untouched on failure");
    let full = last_error();
    assert!(full.contains("got 0") && full.contains("\"a\""), "{full}");

    // Truncated: a NUL-terminated prefix, the full length, BUFFER_TOO_SMALL.
    let mut buf = [0x55 as std::ffi::c_char; 8];
    let mut len = 0;
    // SAFETY: 8 writable bytes.
    let st = unsafe { shardkit_last_error(buf.as_mut_ptr(), buf.len(), &mut len) };
    assert_eq!(st, shardkit_status::BufferTooSmall);
    assert_eq!(len, full.len());
    // SAFETY: NUL-terminated by the call.
    let prefix = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
    assert_eq!(prefix, &full[..7]);

    // Exactly full.len() + 1 fits.
    let mut buf = vec![0 as std::ffi::c_char; full.len() + 1];
    // SAFETY: writable buffer of its length; out_len may be NULL.
    let st = unsafe { shardkit_last_error(buf.as_mut_ptr(), buf.len(), null_mut()) };
    assert_eq!(st, shardkit_status::Ok);

    // NULL with a length is refused and does not replace the detail.
    // SAFETY: exercising the NULL check.
    let st = unsafe { shardkit_last_error(null_mut(), 5, &mut len) };
    assert_eq!(st, shardkit_status::NullPointer);
    assert_eq!(last_error(), full);

    // Success leaves it as it was.
    let s = build(&[node("x", 1)], &config("jump", "", ""));
    assert_eq!(last_error(), full);
    free(s);
}

#[test]
fn truncation_respects_utf8_boundaries() {
    let name = "ñandú"; // multi-byte characters
    let nodes = [node(name, 1), node(name, 1)];
    let (mut out, cfg) = (null_mut(), config("jump", "", ""));
    // SAFETY: valid arguments; the duplicate is rejected.
    let st = unsafe { shardkit_sharder_new(nodes.as_ptr(), 2, &cfg, &mut out) };
    assert_eq!(st, shardkit_status::DuplicateNode);
    let full = last_error();
    let at = full.find('ñ').unwrap();
    // A buffer that would end inside 'ñ' (2 bytes) gets the text before it.
    let mut buf = vec![0 as std::ffi::c_char; at + 2];
    // SAFETY: writable buffer of its length.
    let st = unsafe { shardkit_last_error(buf.as_mut_ptr(), buf.len(), null_mut()) };
    assert_eq!(st, shardkit_status::BufferTooSmall);
    // SAFETY: NUL-terminated by the call.
    let prefix = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
    assert_eq!(prefix, &full[..at]);
}

#[test]
fn lookups_equal_core() {
    let names: Vec<String> = (0..17).map(|i| format!("node-{i}")).collect();
    let c_nodes: Vec<_> = names
        .iter()
        .map(|n| node(n, 1 + (n.len() as i64 % 3)))
        .collect();
    for alg in ["ketama:twemproxy", "ketama:nginx", "modulo"] {
        let s = build(&c_nodes, &config(alg, "md5", "{}"));
        let core = Sharder::new(
            names
                .iter()
                .map(|n| Node::new(n.clone(), 1 + (n.len() as i64 % 3)).unwrap())
                .collect(),
            ShardConfig::new(Algorithm::from_name(alg).unwrap())
                .with_hash(shardkit::HashFn::Md5)
                .with_key_selector(shardkit::KeySelector::hash_tag("{}").unwrap()),
        )
        .unwrap();
        for i in 0..500 {
            let key = format!("user:{{{}}}:{i}", i % 37);
            let mut slot = u32::MAX;
            // SAFETY: live handle and valid buffers.
            let st = unsafe { shardkit_sharder_lookup(s, key.as_ptr(), key.len(), &mut slot) };
            assert_eq!(st, shardkit_status::Ok);
            assert_eq!(
                slot,
                core.lookup_slot(key.as_bytes()).unwrap(),
                "{alg} {key}"
            );
        }
        free(s);
    }
}

#[test]
fn null_and_length_errors_name_the_parameter() {
    let s = build(&[node("a", 1), node("b", 1)], &config("jump", "", ""));
    let mut slot = 0u32;
    // SAFETY: exercising the NULL checks.
    unsafe {
        assert_eq!(
            shardkit_sharder_lookup(s, null(), 3, &mut slot),
            shardkit_status::NullPointer
        );
        assert!(last_error().contains("key is NULL but its length is 3"));
        assert_eq!(
            shardkit_sharder_lookup(null(), b"k".as_ptr(), 1, &mut slot),
            shardkit_status::NullPointer
        );
        assert!(last_error().contains("s is NULL"));
        assert_eq!(
            shardkit_sharder_lookup(s, b"k".as_ptr(), 1, null_mut()),
            shardkit_status::NullPointer
        );
        assert!(last_error().contains("out_slot is NULL"));
        // NULL + 0 is the empty key.
        assert_eq!(
            shardkit_sharder_lookup(s, null(), 0, &mut slot),
            shardkit_status::Ok
        );
        // A length beyond any object is refused before it is used.
        assert_eq!(
            shardkit_sharder_lookup(s, b"k".as_ptr(), usize::MAX, &mut slot),
            shardkit_status::InvalidArgument
        );
        assert!(last_error().contains("key length"));
    }
    free(s);
}

#[test]
fn invalid_utf8_is_located() {
    let bad = [b'n', b'o', 0xff, b'd'];
    let nodes = [
        node("ok", 1),
        shardkit_node {
            name: bad.as_ptr(),
            name_len: bad.len(),
            weight: 1,
        },
    ];
    let mut out = null_mut();
    // SAFETY: valid buffers.
    let st = unsafe { shardkit_sharder_new(nodes.as_ptr(), 2, null(), &mut out) };
    assert_eq!(st, shardkit_status::InvalidUtf8);
    let e = last_error();
    assert!(
        e.contains("nodes[1].name") && e.contains("byte 2 (0xff)"),
        "{e}"
    );
}

#[test]
fn packed_batch_checks_offsets() {
    let s = build(
        &[node("a", 1), node("b", 1), node("c", 1)],
        &config("jump", "", ""),
    );
    let data = b"k1k22k333";
    let mut out = [u32::MAX; 3];
    let cases: [(&[usize], &str); 3] = [
        (&[1, 2, 5, 9], "offsets[0] must be 0, got 1"),
        (
            &[0, 2, 5, 8],
            "offsets[3] (the last) must equal data_len 9, got 8",
        ),
        (&[0, 5, 2, 9], "got offsets[1] = 5 and offsets[2] = 2"),
    ];
    for (offsets, msg) in cases {
        // SAFETY: valid buffers of the given lengths.
        let st = unsafe {
            shardkit_sharder_lookup_batch_packed(
                s,
                data.as_ptr(),
                data.len(),
                offsets.as_ptr(),
                3,
                out.as_mut_ptr(),
            )
        };
        assert_eq!(st, shardkit_status::InvalidArgument);
        assert!(last_error().contains(msg), "{}", last_error());
        assert_eq!(out, [u32::MAX; 3], "nothing written on error");
    }
    let offsets = [0usize, 2, 5, 9];
    // SAFETY: valid buffers of the given lengths.
    let st = unsafe {
        shardkit_sharder_lookup_batch_packed(
            s,
            data.as_ptr(),
            data.len(),
            offsets.as_ptr(),
            3,
            out.as_mut_ptr(),
        )
    };
    assert_eq!(st, shardkit_status::Ok);
    for (i, k) in [&b"k1"[..], b"k22", b"k333"].iter().enumerate() {
        let mut one = 0;
        // SAFETY: valid buffers.
        unsafe { shardkit_sharder_lookup(s, k.as_ptr(), k.len(), &mut one) };
        assert_eq!(out[i], one);
    }
    free(s);
}

#[test]
fn clone_and_free_handle_null() {
    // SAFETY: NULL is accepted by each.
    unsafe {
        shardkit_sharder_free(null_mut());
        assert!(shardkit_sharder_clone(null()).is_null());
        assert_eq!(shardkit_sharder_len(null()), 0);
        assert_eq!(shardkit_sharder_slot_count(null()), 0);
    }
    let s = build(&[node("a", 1)], &config("jump", "", ""));
    // SAFETY: live handle.
    let c = unsafe { shardkit_sharder_clone(s) };
    free(s);
    // SAFETY: the clone outlives the original handle.
    assert_eq!(unsafe { shardkit_sharder_len(c) }, 1);
    free(c);
}

/// A handle of one type passed where another is expected is an error that
/// names both, never a misread object; a wrong-typed free frees nothing.
#[test]
fn a_handle_of_another_type_is_refused() {
    let s = build(&[node("a", 1)], &config("jump", "", ""));
    let as_lock = s.cast::<shardkit_lock>();
    // SAFETY: a live handle of another shardkit type: what is tested.
    let st = unsafe { shardkit_lock_release(as_lock) };
    assert_eq!(st, shardkit_status::InvalidArgument);
    assert_eq!(
        last_error(),
        "invalid argument: lock is not a shardkit_lock handle: it is a shardkit_sharder"
    );
    // SAFETY: as above.
    unsafe { shardkit_lock_free(as_lock) };
    assert!(last_error().contains("not a shardkit_lock handle"));
    // Still alive and usable.
    let mut slot = u32::MAX;
    // SAFETY: a live sharder handle.
    let st = unsafe { shardkit_sharder_lookup(s, b"k".as_ptr(), 1, &mut slot) };
    assert_eq!(st, shardkit_status::Ok);
    assert_eq!(slot, 0);

    let mut cancel = null_mut();
    // SAFETY: a writable out-pointer.
    assert_eq!(
        unsafe { shardkit_cancel_new(&mut cancel) },
        shardkit_status::Ok
    );
    let mut len = 0;
    // SAFETY: a live handle of another type, as above.
    let st = unsafe {
        shardkit_sharder_node_name(
            cancel.cast::<shardkit_sharder>(),
            0,
            null_mut(),
            0,
            &mut len,
        )
    };
    assert_eq!(st, shardkit_status::InvalidArgument);
    assert!(
        last_error().contains("is a shardkit_cancel"),
        "{}",
        last_error()
    );
    // SAFETY: live handles, freed once each.
    unsafe { shardkit_cancel_free(cancel) };
    free(s);
}

/// Every slot's node in one call, holes included, with the buffer
/// convention for the names.
#[test]
fn nodes_come_out_packed_by_slot() {
    let s = build(
        &[node("a", 1), node("bb", 1), node("ccc", 1)],
        &config("memento", "", ""),
    );
    let mut holed = null_mut();
    // SAFETY: a live handle and a writable out-pointer.
    let st = unsafe { shardkit_sharder_remove(s, b"bb".as_ptr(), 2, &mut holed) };
    assert_eq!(st, shardkit_status::Ok, "{}", last_error());
    // SAFETY: a live handle.
    assert_eq!(unsafe { shardkit_sharder_slot_count(holed) }, 3);

    let (mut offsets, mut weights, mut len) = ([9usize; 4], [9u32; 3], 0usize);
    // SAFETY: NULL/0 names asks for the length; the arrays are writable.
    let st = unsafe {
        shardkit_sharder_nodes(
            holed,
            null_mut(),
            0,
            offsets.as_mut_ptr(),
            4,
            weights.as_mut_ptr(),
            3,
            &mut len,
        )
    };
    assert_eq!(st, shardkit_status::BufferTooSmall);
    assert_eq!(len, 4);
    assert!(last_error().contains("names_cap is 0"), "{}", last_error());
    assert_eq!(offsets, [9; 4], "nothing but the length is written");

    let mut names = [0u8; 4];
    // SAFETY: as above, with a names buffer that fits.
    let st = unsafe {
        shardkit_sharder_nodes(
            holed,
            names.as_mut_ptr(),
            4,
            offsets.as_mut_ptr(),
            4,
            weights.as_mut_ptr(),
            3,
            &mut len,
        )
    };
    assert_eq!(st, shardkit_status::Ok, "{}", last_error());
    assert_eq!(&names, b"accc");
    assert_eq!(offsets, [0, 1, 1, 4]);
    assert_eq!(weights, [1, 0, 1]);

    // SAFETY: as above, with the wrong array lengths.
    let st = unsafe {
        shardkit_sharder_nodes(
            holed,
            names.as_mut_ptr(),
            4,
            offsets.as_mut_ptr(),
            3,
            weights.as_mut_ptr(),
            3,
            &mut len,
        )
    };
    assert_eq!(st, shardkit_status::InvalidArgument);
    assert!(last_error().contains("offsets_len 3"), "{}", last_error());
    free(holed);
    free(s);
}
