//! `shardkit_status`: the C face of core's error table
//! (`shardkit::ErrorKind`). The enum is written out because cbindgen reads
//! source, not macro output; `tests.rs` checks it against core's table
//! (every code, and each enumerator's name), so the two cannot drift.

use shardkit::ErrorKind;
use std::ffi::{c_char, CString};
use std::sync::OnceLock;

/// The result of every fallible call. `SHARDKIT_STATUS_OK` is 0; the other
/// codes are shardkit's stable error-kind codes and are never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum shardkit_status {
    /// Success; out-params were written.
    Ok = 0,
    /// A value is outside what the operation accepts (weight, table size, name, length).
    InvalidArgument = 1,
    /// A node set with no nodes where at least one is needed.
    EmptyNodeSet = 2,
    /// Two nodes share a name.
    DuplicateNode = 3,
    /// A named node, slot or pool does not exist.
    NotFound = 4,
    /// A configuration document could not be parsed or is inconsistent.
    Config = 5,
    /// Reading or writing a file or socket failed.
    Io = 6,
    /// Text was required and the bytes were not valid UTF-8.
    InvalidUtf8 = 7,
    /// A NULL pointer was passed where an object or a non-empty buffer was required.
    NullPointer = 8,
    /// An output buffer was too small for the result.
    BufferTooSmall = 9,
    /// A panic was caught at the boundary (a bug in shardkit: please report it).
    Panic = 10,
    /// No node can serve: every node is marked down, or no etcd endpoint answers.
    Unavailable = 11,
    /// An operation did not finish within its timeout (an acquire, a campaign).
    Timeout = 12,
    /// The session's lease is gone (expired, revoked, or its local deadline
    /// passed, or the session was closed): nothing held under it may be used.
    SessionLost = 13,
    /// The caller fired the `shardkit_cancel` the call was waiting with.
    Cancelled = 14,
    /// A fencing token is no longer current (the lock or leadership passed
    /// on, or an older token reached a fence gate): the write was rejected.
    Fenced = 15,
    /// A watch asked for history the store has already compacted away.
    Compacted = 16,
    /// A remote peer (a scatter leaf) answered with a non-2xx status or a
    /// body that is not the JSON the protocol asks for.
    BadResponse = 17,
}

impl shardkit_status {
    /// Every status, success first; the tests hold this against core's table.
    pub(crate) const ALL: [shardkit_status; 18] = [
        shardkit_status::Ok,
        shardkit_status::InvalidArgument,
        shardkit_status::EmptyNodeSet,
        shardkit_status::DuplicateNode,
        shardkit_status::NotFound,
        shardkit_status::Config,
        shardkit_status::Io,
        shardkit_status::InvalidUtf8,
        shardkit_status::NullPointer,
        shardkit_status::BufferTooSmall,
        shardkit_status::Panic,
        shardkit_status::Unavailable,
        shardkit_status::Timeout,
        shardkit_status::SessionLost,
        shardkit_status::Cancelled,
        shardkit_status::Fenced,
        shardkit_status::Compacted,
        shardkit_status::BadResponse,
    ];

    /// The status for a core error kind: the enumerator whose value is the
    /// kind's code. Core's kinds are `non_exhaustive`; a kind added there
    /// without an enumerator here fails the tests, and meanwhile maps to
    /// `INVALID_ARGUMENT` rather than to an undefined value.
    pub(crate) fn from_kind(kind: ErrorKind) -> shardkit_status {
        let code = kind.code() as usize;
        match Self::ALL.get(code) {
            Some(&s) if s as usize == code => s,
            _ => shardkit_status::InvalidArgument,
        }
    }
}

/// A status code as C passes it in. Rust must not receive an out-of-range
/// value as `shardkit_status` (that would be undefined behaviour), so inputs
/// take the raw integer; cbindgen renames it back to `shardkit_status` in the
/// header, where both are `uint32_t`.
pub type StatusCode = u32;

/// The static text of a status code: "ok" for `SHARDKIT_STATUS_OK`, the kind's
/// description for the others, and "unknown status code" for any other value.
/// The pointer stays valid for the life of the process; never free it.
#[no_mangle]
pub extern "C" fn shardkit_status_message(code: StatusCode) -> *const c_char {
    static UNKNOWN: &std::ffi::CStr = c"unknown status code";
    static TABLE: OnceLock<Vec<(u32, CString)>> = OnceLock::new();
    ffi_boundary!(or UNKNOWN.as_ptr() => {
        if code == shardkit_status::Ok as u32 {
            return c"ok".as_ptr();
        }
        // Built from core's descriptions so the text never drifts from them.
        let table = TABLE.get_or_init(|| {
            ErrorKind::ALL
                .iter()
                .map(|k| {
                    let text = CString::new(k.description()).expect("descriptions have no NUL");
                    (k.code(), text)
                })
                .collect()
        });
        table
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(UNKNOWN.as_ptr(), |(_, t)| t.as_ptr())
    })
}
