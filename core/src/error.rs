//! The one error type of shardkit. Every binding maps [`ErrorKind`] to its own
//! idiom (C status code, Python exception class, Go sentinel error), so the
//! numeric codes are part of the public ABI: never renumber, never reuse.

use std::fmt;

/// What went wrong, coarsely. Stable across versions; see [`ErrorKind::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A value is outside what the operation accepts (weight, table size, name).
    InvalidArgument,
    /// A node set with no nodes where at least one is needed.
    EmptyNodeSet,
    /// Two nodes share a name.
    DuplicateNode,
    /// A named node (or other item) does not exist.
    NotFound,
    /// A configuration document could not be parsed or is inconsistent.
    Config,
    /// Reading or writing a file or socket failed.
    Io,
    /// Text was required and the bytes were not valid UTF-8.
    InvalidUtf8,
    /// A NULL pointer was passed where an object or buffer was required (C only).
    NullPointer,
    /// An output buffer was too small for the result (C only).
    BufferTooSmall,
    /// A panic was caught at an FFI boundary.
    Panic,
    /// No node can serve: every node is marked down, or no endpoint answers.
    Unavailable,
    /// An operation did not finish within its timeout or deadline.
    Timeout,
    /// The session's lease is gone (expired, revoked, or its local deadline
    /// passed): nothing held under it may be used any more.
    SessionLost,
    /// The caller cancelled the operation.
    Cancelled,
    /// A fencing token is no longer current: the lock or leadership it
    /// proves has passed on, so the guarded write was rejected.
    Fenced,
    /// A watch asked for history the store has already compacted away.
    Compacted,
    /// A remote peer (a scatter leaf) answered, but not with what the
    /// protocol asks for: a non-2xx status or a body that is not valid JSON
    /// of the expected shape.
    BadResponse,
}

impl ErrorKind {
    /// The stable numeric code. `0` is reserved for success in the C ABI.
    pub const fn code(self) -> u32 {
        match self {
            ErrorKind::InvalidArgument => 1,
            ErrorKind::EmptyNodeSet => 2,
            ErrorKind::DuplicateNode => 3,
            ErrorKind::NotFound => 4,
            ErrorKind::Config => 5,
            ErrorKind::Io => 6,
            ErrorKind::InvalidUtf8 => 7,
            ErrorKind::NullPointer => 8,
            ErrorKind::BufferTooSmall => 9,
            ErrorKind::Panic => 10,
            ErrorKind::Unavailable => 11,
            ErrorKind::Timeout => 12,
            ErrorKind::SessionLost => 13,
            ErrorKind::Cancelled => 14,
            ErrorKind::Fenced => 15,
            ErrorKind::Compacted => 16,
            ErrorKind::BadResponse => 17,
        }
    }

    /// A short static description of the kind, independent of the detail.
    pub const fn description(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::EmptyNodeSet => "empty node set",
            ErrorKind::DuplicateNode => "duplicate node",
            ErrorKind::NotFound => "not found",
            ErrorKind::Config => "invalid configuration",
            ErrorKind::Io => "I/O error",
            ErrorKind::InvalidUtf8 => "invalid UTF-8",
            ErrorKind::NullPointer => "NULL pointer",
            ErrorKind::BufferTooSmall => "buffer too small",
            ErrorKind::Panic => "panic caught at FFI boundary",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timed out",
            ErrorKind::SessionLost => "session lost",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Fenced => "fencing token no longer current",
            ErrorKind::Compacted => "revision compacted",
            ErrorKind::BadResponse => "bad response from a remote peer",
        }
    }

    /// Every kind, in code order (bindings generate their tables from this).
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::InvalidArgument,
        ErrorKind::EmptyNodeSet,
        ErrorKind::DuplicateNode,
        ErrorKind::NotFound,
        ErrorKind::Config,
        ErrorKind::Io,
        ErrorKind::InvalidUtf8,
        ErrorKind::NullPointer,
        ErrorKind::BufferTooSmall,
        ErrorKind::Panic,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::SessionLost,
        ErrorKind::Cancelled,
        ErrorKind::Fenced,
        ErrorKind::Compacted,
        ErrorKind::BadResponse,
    ];
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
