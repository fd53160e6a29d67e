//! What every protocol parser of the proxy returns, and the limits they
//! enforce. A parser reads from the front of a client's buffer and never
//! allocates in proportion to what a length field claims: it waits for the
//! bytes to arrive, up to a limit, and rejects anything larger.

/// The outcome of reading one request from the front of a buffer.
#[derive(Debug, PartialEq)]
pub(crate) enum Parse<T> {
    /// The buffer holds only part of a request; read more and try again.
    Incomplete,
    /// A whole request, and how many bytes of the buffer it took.
    Request(T, usize),
    /// Bad input, answered the way the real server answers it.
    Reject(Reject),
}

/// A request the proxy answers with an error instead of forwarding.
#[derive(Debug, PartialEq, Eq, Clone)]
pub(crate) struct Reject {
    /// The reply to send, complete with its line ending
    /// (`CLIENT_ERROR bad command line format\r\n`, `-ERR ...\r\n`).
    pub reply: Vec<u8>,
    /// How many bytes of the buffer to discard (the bad line, and for a
    /// storage command whose data block is malformed, what the real server
    /// would also skip).
    pub consumed: usize,
    /// Whether the real server hangs up after this reply.
    pub close: bool,
}

impl Reject {
    /// A reply that keeps the connection open.
    pub(crate) fn reply(reply: impl Into<Vec<u8>>, consumed: usize) -> Reject {
        Reject {
            reply: reply.into(),
            consumed,
            close: false,
        }
    }

    /// A reply after which the connection is closed.
    pub(crate) fn fatal(reply: impl Into<Vec<u8>>, consumed: usize) -> Reject {
        Reject {
            reply: reply.into(),
            consumed,
            close: true,
        }
    }
}

/// Sizes the parsers refuse to exceed. A request over a limit is rejected
/// as the real server rejects it, before its bytes are buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, in bytes (memcached: 250).
    pub max_key: usize,
    /// Largest value, in bytes (memcached's default item size: 1 MiB).
    pub max_value: usize,
    /// Longest command line, in bytes, data blocks excluded. A multi-key
    /// `get` of many keys is one line, so this bounds keys per request.
    pub max_line: usize,
    /// Most arguments in one RESP command.
    pub max_args: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_key: 250,
            max_value: 1 << 20,
            max_line: 64 * 1024,
            max_args: 64 * 1024,
        }
    }
}

/// The position of the first `\r\n` in `buf`, if any.
pub(crate) fn find_crlf(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr(b'\n', &buf[from..]) {
        let at = from + i;
        if at > 0 && buf[at - 1] == b'\r' {
            return Some(at - 1);
        }
        from = at + 1;
    }
    None
}

/// The position of the first `\n` in `buf` (memcached accepts a bare `\n`
/// as a line end in the text protocol).
pub(crate) fn memchr(needle: u8, buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == needle)
}
