//! The one error type of shardkit. Every binding maps [`ErrorKind`] to its own
//! idiom (C status code, Python exception class, Go sentinel error), so the
//! numeric codes are part of the public ABI: never renumber, never reuse.
//!
//! Each kind is declared once, in the table below: its code, its name, a
//! short description and a longer doc. The C header's `shardkit_status`, the
//! Go sentinels and the Python classes are checked against this table by
//! their tests (C: `ffi/src/tests.rs`; Go: `go/errors_test.go`; Python:
//! `python/tests/test_errors.py`), and take their text from it at run time.

use std::fmt;

/// Declares [`ErrorKind`] and its table from one line per kind:
/// `Variant = code, "name", "description", "doc"`.
macro_rules! error_kinds {
    ($($variant:ident = $code:literal, $name:literal, $desc:literal, $doc:literal;)+) => {
        /// What went wrong, coarsely. Stable across versions; see
        /// [`ErrorKind::code`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $(
                #[doc = $doc]
                $variant,
            )+
        }

        impl ErrorKind {
            /// Every kind, in code order (bindings check their tables against it).
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant),+];

            /// The stable numeric code. `0` is reserved for success in the C ABI.
            pub const fn code(self) -> u32 {
                match self { $(ErrorKind::$variant => $code,)+ }
            }

            /// The kind's stable snake_case name (`"invalid_argument"`): the C
            /// enumerator is `SHARDKIT_STATUS_` and this in capitals.
            pub const fn name(self) -> &'static str {
                match self { $(ErrorKind::$variant => $name,)+ }
            }

            /// A short static description of the kind, independent of the
            /// detail: the prefix of every message of this kind.
            pub const fn description(self) -> &'static str {
                match self { $(ErrorKind::$variant => $desc,)+ }
            }

            /// A sentence or two on when this kind is returned: the
            /// docstring of the bindings' classes.
            pub const fn doc(self) -> &'static str {
                match self { $(ErrorKind::$variant => $doc,)+ }
            }

            /// The kind with this code, if any.
            pub const fn from_code(code: u32) -> Option<ErrorKind> {
                match code {
                    $($code => Some(ErrorKind::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

error_kinds! {
    InvalidArgument = 1, "invalid_argument", "invalid argument",
        "A value is outside what the operation accepts (a weight, a table size, a name, a length).";
    EmptyNodeSet = 2, "empty_node_set", "empty node set",
        "A node set with no nodes where at least one is needed.";
    DuplicateNode = 3, "duplicate_node", "duplicate node",
        "Two nodes (or shards, or workers) share a name.";
    NotFound = 4, "not_found", "not found",
        "A named node, slot, pool or lease does not exist.";
    Config = 5, "config", "invalid configuration",
        "A configuration document could not be parsed or is inconsistent.";
    Io = 6, "io", "I/O error",
        "Reading or writing a file or socket failed.";
    InvalidUtf8 = 7, "invalid_utf8", "invalid UTF-8",
        "Text was required and the bytes were not valid UTF-8.";
    NullPointer = 8, "null_pointer", "NULL pointer",
        "A NULL pointer was passed where an object or a non-empty buffer was required (C only).";
    BufferTooSmall = 9, "buffer_too_small", "buffer too small",
        "An output buffer was too small for the result (C only).";
    Panic = 10, "panic", "panic caught at FFI boundary",
        "A panic was caught at a language boundary: a bug in shardkit, please report it.";
    Unavailable = 11, "unavailable", "unavailable",
        "No node can serve: every node is marked down, or no endpoint answers.";
    Timeout = 12, "timeout", "timed out",
        "An operation did not finish within its timeout or deadline (an acquire, a campaign, a request).";
    SessionLost = 13, "session_lost", "session lost",
        "The session's lease is gone (expired, revoked, its local deadline passed, or the session was closed): nothing held under it may be used any more.";
    Cancelled = 14, "cancelled", "cancelled",
        "The caller cancelled the operation while it waited.";
    Fenced = 15, "fenced", "fencing token no longer current",
        "A fencing token is no longer current: the lock, leadership or shard it proves has passed on (or a newer token reached a fence gate), so the guarded write was refused.";
    Compacted = 16, "compacted", "revision compacted",
        "A watch asked for history the store has already compacted away.";
    BadResponse = 17, "bad_response", "bad response from a remote peer",
        "A remote peer (a scatter leaf) answered, but not with what the protocol asks for: a non-2xx status or a body that is not valid JSON of the expected shape.";
}

/// An error with its kind and a message that names the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// `Result` with shardkit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an error of `kind` with a message naming what was wrong.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// Shorthand for [`ErrorKind::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    /// The coarse kind, stable across versions.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The detailed message (no kind prefix).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.description(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_nonzero() {
        let mut codes: Vec<u32> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        assert!(codes.iter().all(|&c| c != 0));
        // Contiguous from 1, so bindings can walk the codes until one is unknown.
        assert_eq!(codes, (1..=ErrorKind::ALL.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn table_round_trips_and_names_are_c_identifiers() {
        let mut names = std::collections::HashSet::new();
        for &k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(k.code()), Some(k));
            assert!(names.insert(k.name()), "{k:?}: name repeated");
            assert!(
                k.name()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{k:?}: {:?} is not snake_case",
                k.name()
            );
            assert!(!k.description().is_empty() && !k.doc().is_empty(), "{k:?}");
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::from_code(ErrorKind::ALL.len() as u32 + 1), None);
    }

    #[test]
    fn display_carries_kind_and_detail() {
        let e = Error::invalid("weight must be positive, got 0 for node \"a\"");
        assert_eq!(
            e.to_string(),
            "invalid argument: weight must be positive, got 0 for node \"a\""
        );
    }
}
