//! The memcached meta protocol (`mg`, `ms`, `md`, `ma`, `mn`, `me`) on the
//! wire: reading client requests and framing backend replies. Pure: no
//! I/O, no routing.
//!
//! Behaviour follows memcached 1.6.18 (`proto_text.c`), checked byte for
//! byte against the real server:
//!
//! * A line ends at the first `\n`; one `\r` before it is dropped. Tokens
//!   are split on runs of spaces only (a tab is part of a token), and the
//!   line is cut at its first NUL byte, because memcached tokenizes a C
//!   string. A meta command is a first token of exactly two bytes starting
//!   with `m`; anything else starting with `m` gets `ERROR`, or a silent
//!   hang-up when its last token starts with `HTTP/`.
//! * Every syntax error is answered here, with memcached's exact text,
//!   even when the client gave `q` (memcached always reports errors). An
//!   `ms` whose flags are bad still has its data block swallowed, as
//!   memcached does; see [`MetaParse::Swallow`].
//! * A line without `\n` after 2048 bytes, or one longer than memcached's
//!   16 KiB read buffer, makes memcached hang up without a word; so does
//!   this parser ([`Reject::fatal`] with an empty reply).
//!
//! The proxy keeps one pipelined connection per backend and matches
//! replies to requests in order, so every request it forwards must get
//! exactly one reply. The client's `q` (quiet) flag would break that:
//! [`MetaRequest::backend`] is the request without it, and [`to_client`]
//! drops the replies memcached would have hidden (see
//! [`hidden_when_quiet`]). The one case that cannot be decided from the
//! reply, `ma` with both `q` and `N`, keeps its `q` and is fenced by an
//! `mn` instead ([`Framing::Fenced`]).

use super::parse::{memchr, Limits, Parse, Reject};
use std::ops::Range;

/// A meta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaCmd {
    /// `mg`: get, touch, lease.
    Get,
    /// `ms`: every storage mode, with a data block.
    Set,
    /// `md`: delete, or mark stale (`I`).
    Delete,
    /// `ma`: increment or decrement.
    Arith,
    /// `mn`: answers `MN`. Never sent to a backend: the proxy answers it
    /// itself once every earlier reply to the client has been written.
    Noop,
    /// `me`: a human-readable dump of the item's metadata.
    Debug,
}

/// How the backend's reply to a request is framed and becomes the
/// client's reply; see [`to_client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One reply ([`reply_len`]). Forwarded, unless the client gave `q`
    /// and [`hidden_when_quiet`] says memcached would have kept quiet.
    One,
    /// The request keeps its `q` and ends with `mn\r\n`: the backend sends
    /// at most one reply, then `MN\r\n`, framed as one by
    /// [`fenced_reply_len`]. The reply, if any, is forwarded; the `MN` is
    /// the proxy's and is dropped. Used for `ma` with `q` and
    /// `N`, where memcached shows an auto-created counter's reply but hides
    /// an incremented one's, and both read `HD` (or `VA`).
    Fenced,
    /// One reply, never forwarded: the proxy's own request (see
    /// [`MetaParse::Swallow::invalidate`]).
    Discard,
}

/// One meta request, ready to route and forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetaRequest {
    /// Which command.
    pub cmd: MetaCmd,
    /// The key's bytes, for routing: base64-decoded (the way memcached
    /// decodes it, so that every spelling of a key memcached treats as one
    /// key routes alike) when the `b` flag is given. Empty for `mn`.
    pub route_key: Vec<u8>,
    /// Exactly the bytes to write to the backend: the client's request,
    /// data block included, byte for byte, except that a `q` flag token and
    /// the spaces before it are removed (so that every request gets a
    /// reply on the shared connection), or for [`Framing::Fenced`] kept and
    /// followed by `mn\r\n`.
    pub backend: Vec<u8>,
    /// The client gave `q`: memcached would have hidden some replies.
    pub quiet: bool,
    /// The request changes server state: `ms`, `md`, `ma`, and `mg` with
    /// `N` (creates the item on a miss) or `T` (updates its TTL).
    pub writes: bool,
    /// The request takes part in memcached's lease / stale-while-revalidate
    /// protocol (`N`, `R` or `I`) or uses a CAS value (`c`, `C`): it must go
    /// to the key's primary so that the `W`, `X` and `Z` answers and CAS
    /// values hold across clients.
    pub lease: bool,
    /// How to turn the backend's reply into the client's.
    pub framing: Framing,
}

/// What [`parse`] returns: a [`Parse`], or a rejected `ms` whose data
/// block memcached swallows and which the buffer does not hold whole, or
/// whose value is too large (memcached then also deletes the key).
#[derive(Debug, PartialEq)]
pub(crate) enum MetaParse {
    /// A request, a reject, or not enough bytes yet.
    Parsed(Parse<MetaRequest>),
    /// Discard `reject.consumed` bytes now (the whole buffer when `more`
    /// is not 0) and `more` bytes as they arrive, then send `reject.reply`
    /// (memcached writes its answer only once the data is swallowed; the
    /// bytes the client sees are the same either way). The connection
    /// stays open.
    Swallow {
        /// memcached's answer, and what to discard now.
        reject: Reject,
        /// What to discard as it arrives.
        more: usize,
        /// For a value over [`Limits::max_value`]: memcached, failing to
        /// allocate the item, also deletes whatever the key held (so a
        /// stale value does not outlive a failed overwrite). This `md` does
        /// the same on the key's server; its reply is dropped
        /// ([`Framing::Discard`]). Send it before the reply.
        invalidate: Option<MetaRequest>,
    },
}

// memcached's replies, as observed from memcached 1.6.18.
/// An unknown command, or a meta command without a key.
pub(crate) const ERROR: &[u8] = b"ERROR\r\n";
/// A key over 250 bytes, a bad or missing `ms` length, and more.
pub(crate) const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
/// An `ms` data block that does not end in `\r\n`.
pub(crate) const BAD_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
/// An `ms` value over the item size limit.
pub(crate) const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
/// `mg` with 20 or more tokens.
pub(crate) const MG_TOO_MANY: &[u8] = b"CLIENT_ERROR options flags are too long\r\n";
/// `ms`, `md` or `ma` with 20 or more tokens (mg's text has an `are`).
pub(crate) const TOO_MANY: &[u8] = b"CLIENT_ERROR options flags too long\r\n";
/// `mg` or `ms`: a flag given twice, or one starting with a byte >= 127.
pub(crate) const DUPLICATE_FLAG: &[u8] = b"CLIENT_ERROR duplicate flag\r\n";
/// `mg` or `ms`: an unknown flag.
pub(crate) const INVALID_FLAG: &[u8] = b"CLIENT_ERROR invalid flag\r\n";
/// `mg` or `ms`: a bad number after `N`, `T`, `R` or `C`.
pub(crate) const BAD_TOKEN: &[u8] = b"CLIENT_ERROR bad token in command line format\r\n";
/// `mg` or `ms`: a `b` key that is not base64.
pub(crate) const BAD_KEY_ENCODING: &[u8] = b"CLIENT_ERROR error decoding key\r\n";
/// `mg` or `ms`: an `M` token not of two bytes.
pub(crate) const M_LENGTH: &[u8] = b"CLIENT_ERROR incorrect length for M token\r\n";
/// `mg` or `ms`: a bad number after `J`.
pub(crate) const BAD_INITIAL: &[u8] = b"CLIENT_ERROR invalid numeric initial value\r\n";
/// `mg` or `ms`: a bad number after `D`.
pub(crate) const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta value\r\n";
/// `md` or `ma`: any flag error at all.
pub(crate) const BAD_FLAG: &[u8] = b"CLIENT_ERROR invalid or duplicate flag\r\n";
/// An `O` token over 32 bytes, flag letter included.
pub(crate) const OPAQUE_TOO_LONG: &[u8] = b"CLIENT_ERROR opaque token too long\r\n";
/// `ms` with a mode other than E, A, P, R, S.
pub(crate) const MS_BAD_MODE: &[u8] = b"CLIENT_ERROR invalid mode for ms M token\r\n";
/// `ma` with a mode other than I, +, D, -.
pub(crate) const MA_BAD_MODE: &[u8] = b"CLIENT_ERROR invalid mode for ma M token\r\n";

/// memcached gives up on a line with no `\n` once it holds more than this.
const MC_PARTIAL_LINE: usize = 2048;
/// memcached's read buffer: a longer line can never be read whole.
const MC_READ_BUFFER: usize = 16384;
/// memcached's tokenizer stops after this many tokens (the last one is a
/// terminator): 23 words at most.
const MC_MAX_TOKENS: usize = 24;
/// memcached refuses a meta command of more than this many tokens
/// (terminator included): 19 words at most.
const MC_MAX_META_TOKENS: usize = 20;
/// memcached's longest opaque token, `O` included.
const MC_MAX_OPAQUE: usize = 32;
/// The fence appended to a [`Framing::Fenced`] request, and its reply.
const MN_REQUEST: &[u8] = b"mn\r\n";
const MN_REPLY: &[u8] = b"MN\r\n";

/// Reads one meta request from the front of `buf`.
///
/// The caller has seen a line starting with `m`; a line that is not a meta
/// command gets memcached's answer to unknown commands. Nothing is
/// buffered beyond `limits`: a longer line hangs up, a larger `ms` value is
/// answered and swallowed.
pub(crate) fn parse(buf: &[u8], limits: &Limits) -> MetaParse {
    let done = MetaParse::Parsed;
    let Some(nl) = memchr(b'\n', buf) else {
        if buf.len() > MC_PARTIAL_LINE.min(limits.max_line) {
            return done(Parse::Reject(Reject::fatal(Vec::new(), buf.len())));
        }
        return done(Parse::Incomplete);
    };
    let next = nl + 1;
    // memcached drops the `\r` only when the line has something before it.
    let end = if nl > 1 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    if next > MC_READ_BUFFER || end > limits.max_line {
        return done(Parse::Reject(Reject::fatal(Vec::new(), next)));
    }
    // memcached reads the line as a C string: a NUL ends it.
    let line = &buf[..memchr(0, &buf[..end]).unwrap_or(end)];
    let (toks, ntokens) = tokenize(line);
    let reject = |reply: &[u8]| done(Parse::Reject(Reject::reply(reply, next)));
    let Some(first) = toks.first().map(|r| &line[r.clone()]) else {
        return reject(ERROR);
    };
    if first.len() != 2 || first[0] != b'm' {
        if first.len() < 2 {
            return reject(ERROR);
        }
        // memcached hangs up on what looks like an HTTP request, once no
        // command matched; words starting with these letters are
        // answered ERROR before that check.
        let checked = !matches!(first[0], b'g' | b's' | b'a' | b'c' | b'i' | b'd' | b't');
        if checked && line[toks[toks.len() - 1].clone()].starts_with(b"HTTP/") {
            return done(Parse::Reject(Reject::fatal(Vec::new(), next)));
        }
        return reject(ERROR);
    }
    let req = Line {
        buf,
        line,
        toks: &toks,
        ntokens,
        next,
        limits,
    };
    match first[1] {
        b'g' => req.keyed(MetaCmd::Get),
        b's' => req.set(),
        b'd' => req.keyed(MetaCmd::Delete),
        b'a' => req.keyed(MetaCmd::Arith),
        b'e' => req.debug(),
        b'n' => done(Parse::Request(
            MetaRequest {
                cmd: MetaCmd::Noop,
                route_key: Vec::new(),
                backend: buf[..next].to_vec(),
                quiet: false,
                writes: false,
                lease: false,
                framing: Framing::One,
            },
            next,
        )),
        _ => reject(ERROR),
    }
}

/// Frames one complete backend reply to a meta request: `VA <size>
/// <flags>*\r\n<data>\r\n`, or one line (`HD`, `EN`, `NF`, `NS`, `EX`,
/// `MN`, `ME ...`, `ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`).
/// `Ok(None)`: incomplete. `Err`: not memcached's protocol; the connection
/// cannot be trusted.
pub(crate) fn reply_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, String> {
    let Some(nl) = memchr(b'\n', buf) else {
        if buf.len() > limits.max_line {
            return Err("a meta reply line is longer than the line limit".into());
        }
        return Ok(None);
    };
    if nl == 0 || buf[nl - 1] != b'\r' {
        return Err(format!(
            "a meta reply line without \\r\\n: {}",
            show(&buf[..nl])
        ));
    }
    let line = &buf[..nl - 1];
    let next = nl + 1;
    let code = status(line);
    if is_error_line(line) || matches!(code, b"HD" | b"EN" | b"NF" | b"NS" | b"EX" | b"MN" | b"ME")
    {
        return Ok(Some(next));
    }
    if code != b"VA" {
        return Err(format!("not a meta reply: {}", show(line)));
    }
    // VA <size> <flags>*: the size is plain decimal.
    let size = line[3.min(line.len())..]
        .split(|&b| b == b' ')
        .next()
        .filter(|s| !s.is_empty() && s.len() <= 19 && s.iter().all(u8::is_ascii_digit))
        .and_then(|s| std::str::from_utf8(s).ok()?.parse::<usize>().ok())
        .filter(|&s| s <= max_reply_value(limits))
        .ok_or_else(|| format!("a VA reply with a bad size: {}", show(line)))?;
    let need = next + size + 2;
    if buf.len() < need {
        return Ok(None);
    }
    if &buf[need - 2..need] != b"\r\n" {
        return Err("a VA reply's data does not end in \\r\\n".into());
    }
    Ok(Some(need))
}

/// Whether memcached, had the client's `q` reached it, would have sent
/// nothing for `reply` (one reply as framed by [`reply_len`]). Errors are
/// always sent. `mg` hides a miss (`EN`); `ms` and `md` hide `HD`; `ma`
/// hides a successful `HD` or `VA` (for `ma` with `N`, where an
/// auto-created counter's `HD` is shown, the proxy fences instead; see
/// [`Framing::Fenced`]). `mn` and `me` ignore `q`.
pub(crate) fn hidden_when_quiet(cmd: MetaCmd, reply: &[u8]) -> bool {
    let code = status(reply.strip_suffix(b"\r\n").unwrap_or(reply));
    match cmd {
        MetaCmd::Get => code == b"EN",
        MetaCmd::Set | MetaCmd::Delete => code == b"HD",
        MetaCmd::Arith => code == b"HD" || code == b"VA",
        MetaCmd::Noop | MetaCmd::Debug => false,
    }
}

/// Frames the backend's whole answer to a [`Framing::Fenced`] request:
/// at most one reply, then the fence's `MN\r\n`, as one unit. Errors as
/// [`reply_len`].
pub(crate) fn fenced_reply_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, String> {
    let Some(n) = reply_len(buf, limits)? else {
        return Ok(None);
    };
    if &buf[..n] == MN_REPLY {
        return Ok(Some(n));
    }
    let Some(m) = reply_len(&buf[n..], limits)? else {
        return Ok(None);
    };
    if &buf[n..n + m] != MN_REPLY {
        return Err(format!(
            "expected MN after a fenced reply, got {}",
            show(&buf[n..n + m])
        ));
    }
    Ok(Some(n + m))
}

/// The part of a request's framed reply (by [`reply_len`], or
/// [`fenced_reply_len`] for [`Framing::Fenced`]) that the client gets:
/// all of it, nothing (a reply memcached would have kept quiet, or the
/// proxy's own request), or a fenced reply without its `MN`.
pub(crate) fn to_client(req: &MetaRequest, reply: &[u8]) -> Range<usize> {
    match req.framing {
        Framing::One if req.quiet && hidden_when_quiet(req.cmd, reply) => 0..0,
        Framing::One => 0..reply.len(),
        Framing::Fenced => {
            0..reply
                .strip_suffix(MN_REPLY)
                .map_or(reply.len(), <[u8]>::len)
        }
        Framing::Discard => 0..0,
    }
}

/// The largest `VA` data block accepted from a backend. Values may have
/// been stored by other clients of the same memcached, whose item size
/// limit may exceed the proxy's; the text protocol's framing uses the same
/// bound.
fn max_reply_value(limits: &Limits) -> usize {
    limits.max_value.max(1 << 20).saturating_mul(64)
}

/// A reply's two-letter status code, or the empty slice when the line
/// does not start with one followed by a space or the end.
fn status(line: &[u8]) -> &[u8] {
    if line.len() >= 2 && (line.len() == 2 || line[2] == b' ') {
        &line[..2]
    } else {
        b""
    }
}

/// Whether a reply line is one of memcached's error replies.
fn is_error_line(line: &[u8]) -> bool {
    line == b"ERROR"
        || line.starts_with(b"ERROR ")
        || line.starts_with(b"CLIENT_ERROR")
        || line.starts_with(b"SERVER_ERROR")
}

/// A short printable form of bytes, for error messages.
fn show(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(&b[..b.len().min(64)]))
}

/// memcached's `tokenize_command`: words split on runs of spaces, at most
/// 23 of them (the rest of the line is left unread). Returns the words and
/// memcached's `ntokens`, which counts a terminator too.
fn tokenize(line: &[u8]) -> (Vec<Range<usize>>, usize) {
    let mut toks = Vec::with_capacity(MC_MAX_TOKENS - 1);
    let mut start = 0;
    for (i, &b) in line.iter().enumerate() {
        if b == b' ' {
            if start != i {
                toks.push(start..i);
                if toks.len() == MC_MAX_TOKENS - 1 {
                    let n = toks.len() + 1;
                    return (toks, n);
                }
            }
            start = i + 1;
        }
    }
    if start != line.len() {
        toks.push(start..line.len());
    }
    let n = toks.len() + 1;
    (toks, n)
}

/// What the flags of a meta command ask for (memcached's `_meta_flags`,
/// the parts the proxy needs).
#[derive(Default)]
struct Flags {
    /// `q`.
    quiet: bool,
    /// `N`: create on a miss.
    vivify: bool,
    /// `T`: a new TTL.
    ttl: bool,
    /// `N`, `R` or `I`.
    lease: bool,
    /// The byte after `M`.
    mode: Option<u8>,
    /// The key, base64-decoded, when `b` was given.
    decoded: Option<Vec<u8>>,
}

/// memcached's `_meta_flag_preparse`, from word `start` on: the first
/// unknown or repeated flag stops it; any other error is noted, and the
/// last error's text is the one memcached sends.
fn preparse(line: &[u8], toks: &[Range<usize>], start: usize) -> Result<Flags, &'static [u8]> {
    let mut seen = [false; 127];
    let mut flags = Flags::default();
    let mut error: Option<&'static [u8]> = None;
    let key = &line[toks[1].clone()];
    for tok in &toks[start..] {
        let tok = &line[tok.clone()];
        let (o, arg) = (tok[0], &tok[1..]);
        if usize::from(o) >= seen.len() || seen[usize::from(o)] {
            return Err(DUPLICATE_FLAG);
        }
        seen[usize::from(o)] = true;
        match o {
            b'b' => match base64_decode(key) {
                Some(k) => flags.decoded = Some(k),
                None => error = Some(BAD_KEY_ENCODING),
            },
            b'N' | b'T' | b'R' => {
                if safe_strtol(arg).is_none() {
                    error = Some(BAD_TOKEN);
                }
                flags.vivify |= o == b'N';
                flags.ttl |= o == b'T';
                flags.lease |= o != b'T';
            }
            b'l' | b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'f' | b'v' | b'h' | b'u' => {}
            // A CAS value is one server's: asking for it pins the request
            // to the key's first server, like a lease.
            b'c' => flags.lease = true,
            b'q' => flags.quiet = true,
            // A bad client-flags number is an error without a text of its
            // own: the last one set (or "bad command line format") is sent.
            b'F' => {
                if safe_strtoul(arg).is_none() {
                    error = Some(error.unwrap_or(BAD_FORMAT));
                }
            }
            b'C' => {
                if safe_strtoull(arg).is_none() {
                    error = Some(BAD_TOKEN);
                }
                flags.lease = true;
            }
            b'M' => {
                if tok.len() == 2 {
                    flags.mode = Some(tok[1]);
                } else {
                    error = Some(M_LENGTH);
                }
            }
            b'J' => {
                if safe_strtoull(arg).is_none() {
                    error = Some(BAD_INITIAL);
                }
            }
            b'D' => {
                if safe_strtoull(arg).is_none() {
                    error = Some(BAD_DELTA);
                }
            }
            b'I' => flags.lease = true,
            _ => return Err(INVALID_FLAG),
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(flags),
    }
}

/// A request line, tokenized, and what the parsers need along with it.
struct Line<'a> {
    buf: &'a [u8],
    /// The command as memcached sees it: no line end, cut at a NUL.
    line: &'a [u8],
    toks: &'a [Range<usize>],
    ntokens: usize,
    /// Just past the line's `\n`.
    next: usize,
    limits: &'a Limits,
}

impl Line<'_> {
    fn reject(&self, reply: &[u8]) -> MetaParse {
        MetaParse::Parsed(Parse::Reject(Reject::reply(reply, self.next)))
    }

    fn word(&self, i: usize) -> &[u8] {
        &self.line[self.toks[i].clone()]
    }

    /// Whether any flag from word `start` on is an opaque over memcached's
    /// limit.
    fn long_opaque(&self, start: usize) -> bool {
        (start..self.toks.len())
            .any(|i| self.word(i)[0] == b'O' && self.word(i).len() > MC_MAX_OPAQUE)
    }

    /// `mg`, `md` and `ma`: a key and flags, no data.
    fn keyed(&self, cmd: MetaCmd) -> MetaParse {
        if self.ntokens < 3 {
            return self.reject(ERROR);
        }
        if self.word(1).len() > self.limits.max_key {
            return self.reject(BAD_FORMAT);
        }
        if self.ntokens > MC_MAX_META_TOKENS {
            return self.reject(if cmd == MetaCmd::Get {
                MG_TOO_MANY
            } else {
                TOO_MANY
            });
        }
        let flags = match preparse(self.line, self.toks, 2) {
            Ok(f) => f,
            // md and ma have one text for every flag error.
            Err(e) => return self.reject(if cmd == MetaCmd::Get { e } else { BAD_FLAG }),
        };
        if cmd == MetaCmd::Arith && !matches!(flags.mode, None | Some(b'I' | b'+' | b'D' | b'-')) {
            return self.reject(MA_BAD_MODE);
        }
        // md checks opaques before touching the item, so answering here
        // changes nothing. mg and ma check them only after their lookup
        // (mg's T or N, ma's arithmetic, have happened by then): those go
        // to the backend, which sends the error itself.
        if cmd == MetaCmd::Delete && self.long_opaque(2) {
            return self.reject(OPAQUE_TOO_LONG);
        }
        let writes = match cmd {
            MetaCmd::Get => flags.vivify || flags.ttl,
            _ => true,
        };
        self.request(cmd, 2, flags, writes, self.next)
    }

    /// `ms <key> <datalen> <flags>*\r\n<data>\r\n`.
    fn set(&self) -> MetaParse {
        if self.ntokens < 3 {
            return self.reject(ERROR);
        }
        // Errors up to the length's check leave the data block unread, to
        // be taken for commands.
        if self.word(1).len() > self.limits.max_key || self.ntokens == 3 {
            return self.reject(BAD_FORMAT);
        }
        if self.ntokens > MC_MAX_META_TOKENS {
            return self.reject(TOO_MANY);
        }
        let len = match safe_strtol(self.word(2)) {
            Some(n) if (0..=i32::MAX - 2).contains(&n) => n as usize,
            _ => return self.reject(BAD_FORMAT),
        };
        // From here on memcached swallows `len + 2` bytes after an error.
        let total = self.next + len + 2;
        let flags = match preparse(self.line, self.toks, 3) {
            Ok(f) => f,
            Err(e) => return self.swallow(e, total, None),
        };
        if !matches!(flags.mode, None | Some(b'E' | b'A' | b'P' | b'R' | b'S')) {
            return self.swallow(MS_BAD_MODE, total, None);
        }
        if self.long_opaque(3) {
            return self.swallow(OPAQUE_TOO_LONG, total, None);
        }
        if len > self.limits.max_value {
            let invalidate = self.invalidate(&flags);
            return self.swallow(TOO_LARGE, total, Some(invalidate));
        }
        if self.buf.len() < total {
            return MetaParse::Parsed(Parse::Incomplete);
        }
        if &self.buf[total - 2..total] != b"\r\n" {
            // Always reported, q or not; the data block is consumed.
            return MetaParse::Parsed(Parse::Reject(Reject::reply(BAD_CHUNK, total)));
        }
        self.request(MetaCmd::Set, 3, flags, true, total)
    }

    /// `me <key> [b]`: no flags but a `b` right after the key, no `q`.
    fn debug(&self) -> MetaParse {
        if self.ntokens < 3 || self.word(1).len() > self.limits.max_key {
            return self.reject(BAD_FORMAT);
        }
        let key = self.word(1);
        let route_key = if self.toks.len() > 2 && self.word(2) == b"b" {
            match base64_decode(key) {
                Some(k) => k,
                None => return self.reject(BAD_FORMAT),
            }
        } else {
            key.to_vec()
        };
        MetaParse::Parsed(Parse::Request(
            MetaRequest {
                cmd: MetaCmd::Debug,
                route_key,
                backend: self.buf[..self.next].to_vec(),
                quiet: false,
                writes: false,
                lease: false,
                framing: Framing::One,
            },
            self.next,
        ))
    }

    /// Answers `reply` after memcached's swallow of the bytes up to
    /// `total`.
    fn swallow(&self, reply: &[u8], total: usize, invalidate: Option<MetaRequest>) -> MetaParse {
        if self.buf.len() >= total && invalidate.is_none() {
            return MetaParse::Parsed(Parse::Reject(Reject::reply(reply, total)));
        }
        let now = self.buf.len().min(total);
        MetaParse::Swallow {
            reject: Reject::reply(reply, now),
            more: total - now,
            invalidate,
        }
    }

    /// The `md` that does what memcached does to a key whose new value
    /// could not be allocated: delete the old one.
    fn invalidate(&self, flags: &Flags) -> MetaRequest {
        let key = self.word(1);
        let mut backend = Vec::with_capacity(key.len() + 8);
        backend.extend_from_slice(b"md ");
        backend.extend_from_slice(key);
        if flags.decoded.is_some() {
            backend.extend_from_slice(b" b");
        }
        backend.extend_from_slice(b"\r\n");
        MetaRequest {
            cmd: MetaCmd::Delete,
            route_key: self.route_key(flags),
            backend,
            quiet: false,
            writes: true,
            lease: false,
            framing: Framing::Discard,
        }
    }

    fn route_key(&self, flags: &Flags) -> Vec<u8> {
        flags
            .decoded
            .clone()
            .unwrap_or_else(|| self.word(1).to_vec())
    }

    /// A request of `self.buf[..end]` whose flags start at word `start`.
    fn request(
        &self,
        cmd: MetaCmd,
        start: usize,
        flags: Flags,
        writes: bool,
        end: usize,
    ) -> MetaParse {
        let raw = &self.buf[..end];
        let fenced = cmd == MetaCmd::Arith && flags.quiet && flags.vivify;
        let backend = if fenced {
            [raw, MN_REQUEST].concat()
        } else if flags.quiet {
            // Drop the q word and the spaces before it; flags are never
            // the first words, so there always are some.
            let q = (start..self.toks.len())
                .map(|i| self.toks[i].clone())
                .find(|r| self.line[r.start] == b'q')
                .expect("preparse saw a q");
            let mut from = q.start;
            while self.line[from - 1] == b' ' {
                from -= 1;
            }
            [&raw[..from], &raw[q.end..]].concat()
        } else {
            raw.to_vec()
        };
        MetaParse::Parsed(Parse::Request(
            MetaRequest {
                cmd,
                route_key: self.route_key(&flags),
                backend,
                quiet: flags.quiet,
                writes,
                lease: flags.lease,
                framing: if fenced {
                    Framing::Fenced
                } else {
                    Framing::One
                },
            },
            end,
        ))
    }
}

/// memcached's `base64_decode`, whose leniency decides which keys are one
/// key: bytes outside the alphabet are skipped, padding is required, and
/// decoding stops after the first padded block. `None` where memcached
/// fails (it returns 0 bytes). The `base64` crate rejects much of what
/// memcached accepts, so the routing key would differ from the stored key.
fn base64_decode(src: &[u8]) -> Option<Vec<u8>> {
    const INVALID: u8 = 0x80;
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        b'=' => 0,
        _ => INVALID,
    };
    let count = src.iter().filter(|&&c| value(c) != INVALID).count();
    if count == 0 || count % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(count / 4 * 3);
    let mut block = [0u8; 4];
    let mut n = 0;
    let mut pad = 0;
    for &c in src {
        let v = value(c);
        if v == INVALID {
            continue;
        }
        if c == b'=' {
            pad += 1;
        }
        block[n] = v;
        n += 1;
        if n == 4 {
            out.push((block[0] << 2) | (block[1] >> 4));
            out.push((block[1] << 4) | (block[2] >> 2));
            out.push((block[2] << 6) | block[3]);
            n = 0;
            if pad > 0 {
                if pad > 2 {
                    return None;
                }
                out.truncate(out.len() - pad);
                break;
            }
        }
    }
    Some(out)
}

/// C's `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C's `strtol`/`strtoul` on a token (64-bit `long`): leading white
/// space, a sign, decimal digits. Returns (negative, magnitude, bytes
/// read), `None` without digits or when the magnitude overflows 64 bits.
/// Only white space may follow the digits, as memcached's `safe_*`
/// functions require.
fn c_number(s: &[u8]) -> Option<(bool, u64)> {
    let mut i = s.iter().take_while(|&&b| is_c_space(b)).count();
    let negative = s.get(i) == Some(&b'-');
    if matches!(s.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &d in &s[i..i + digits] {
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(d - b'0'))?;
    }
    match s.get(i + digits) {
        None => Some((negative, magnitude)),
        Some(&b) if is_c_space(b) => Some((negative, magnitude)),
        Some(_) => None,
    }
}

/// memcached's `safe_strtol`: a 64-bit `strtol`, then truncated to 32
/// bits (memcached stores it in an `int32_t`), so `4294967298` reads as 2.
fn safe_strtol(s: &[u8]) -> Option<i32> {
    let (negative, magnitude) = c_number(s)?;
    let value = if negative {
        // strtol accepts down to -2^63.
        if magnitude > 1 << 63 {
            return None;
        }
        0i64.wrapping_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()?
    };
    Some(value as i32)
}

/// memcached's `safe_strtoull`: C's `strtoull` (which negates a `-`
/// number modulo 2^64), refusing results that look negative as signed
/// when the token has a `-`.
fn safe_strtoull(s: &[u8]) -> Option<u64> {
    let (negative, magnitude) = c_number(s)?;
    let value = if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    };
    if (value as i64) < 0 && s.contains(&b'-') {
        return None;
    }
    Some(value)
}

/// memcached's `safe_strtoul`: the same as [`safe_strtoull`] with a 64-bit
/// `long`, then truncated to 32 bits.
fn safe_strtoul(s: &[u8]) -> Option<u32> {
    safe_strtoull(s).map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lim() -> Limits {
        Limits::default()
    }

    fn req(buf: &[u8]) -> (MetaRequest, usize) {
        match parse(buf, &lim()) {
            MetaParse::Parsed(Parse::Request(r, n)) => (r, n),
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn reject(buf: &[u8]) -> Reject {
        match parse(buf, &lim()) {
            MetaParse::Parsed(Parse::Reject(r)) => r,
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    /// The reply memcached 1.6.18 sent for `buf` (observed live), and
    /// whether the connection stayed open.
    fn answers(buf: &[u8], reply: &[u8]) {
        let r = reject(buf);
        assert_eq!(
            (String::from_utf8_lossy(&r.reply), r.close),
            (String::from_utf8_lossy(reply), false),
            "{:?}",
            String::from_utf8_lossy(buf)
        );
    }

    #[test]
    fn mg_passes_flags_through_and_routes_by_key() {
        let b = b"mg foo k Oab f s t c v\r\nmg next\r\n";
        let (r, n) = req(b);
        assert_eq!(n, 24);
        assert_eq!(r.cmd, MetaCmd::Get);
        assert_eq!(r.route_key, b"foo");
        assert_eq!(r.backend, &b[..24]);
        // `c` asks for a CAS value: one server's, so it pins like a lease.
        assert!(!r.quiet && !r.writes && r.lease);
        assert_eq!(r.framing, Framing::One);
        // Flags in any order, runs of spaces, a bare \n.
        let b = b"mg   foo    v  Oxyz   k \n";
        let (r, n) = req(b);
        assert_eq!(
            (n, r.backend.as_slice(), r.route_key.as_slice()),
            (b.len(), &b[..], &b"foo"[..])
        );
        // memcached skips leading spaces too.
        assert_eq!(req(b"  mg foo v\r\n").0.route_key, b"foo");
    }

    #[test]
    fn writes_and_leases() {
        let (r, _) = req(b"mg k N30 v\r\n");
        assert!(r.writes && r.lease);
        let (r, _) = req(b"mg k T30\r\n");
        assert!(r.writes && !r.lease);
        let (r, _) = req(b"mg k R30 v c\r\n");
        assert!(!r.writes && r.lease);
        let (r, _) = req(b"md k I T30\r\n");
        assert!(r.writes && r.lease);
        let (r, _) = req(b"md k\r\n");
        assert!(r.writes && !r.lease);
        let (r, _) = req(b"ms k 1 I C5\r\nx\r\n");
        assert!(r.writes && r.lease);
        let (r, _) = req(b"ma k D5 MD\r\n");
        assert!(r.writes && !r.lease);
        assert_eq!(r.cmd, MetaCmd::Arith);
    }

    #[test]
    fn ms_waits_for_its_data_block() {
        let b = b"ms foo 5 T0 F3 c k Ox\r\nhello\r\nmn\r\n";
        let whole = b.len() - 4;
        for cut in 0..whole {
            assert_eq!(
                parse(&b[..cut], &lim()),
                MetaParse::Parsed(Parse::Incomplete),
                "{cut}"
            );
        }
        let (r, n) = req(b);
        assert_eq!(n, whole);
        assert_eq!(r.cmd, MetaCmd::Set);
        assert_eq!(r.backend, &b[..whole]);
        assert_eq!(r.route_key, b"foo");
        // A zero-length value still has its \r\n; a bare \n ends the line.
        let (r, n) = req(b"ms z 0\n\r\n");
        assert_eq!((n, r.backend.len()), (9, 9));
    }

    #[test]
    fn q_is_stripped_and_nothing_else_changes() {
        for (client, backend) in [
            (&b"mg foo q v\r\n"[..], &b"mg foo v\r\n"[..]),
            (b"mg foo v q\r\n", b"mg foo v\r\n"),
            (b"mg foo  v   q  k\r\n", b"mg foo  v  k\r\n"),
            (b"mg foo qxyz\n", b"mg foo\n"),
            (b"md foo q Oa\r\n", b"md foo Oa\r\n"),
            (b"ma foo q v D3\r\n", b"ma foo v D3\r\n"),
            (b"ms foo 2 T0 q c\r\nhi\r\n", b"ms foo 2 T0 c\r\nhi\r\n"),
            // memcached reads no further than a NUL; the rest goes as is.
            (b"mg foo q\x00 junk\r\n", b"mg foo\x00 junk\r\n"),
        ] {
            let (r, n) = req(client);
            assert_eq!(n, client.len());
            assert!(r.quiet);
            assert_eq!(r.framing, Framing::One);
            assert_eq!(
                String::from_utf8_lossy(&r.backend),
                String::from_utf8_lossy(backend)
            );
        }
        // me and mn have no q flag: memcached answers them regardless.
        let (r, _) = req(b"me foo q\r\n");
        assert!(!r.quiet);
        assert_eq!(r.backend, b"me foo q\r\n");
        let (r, _) = req(b"mn q\r\n");
        assert_eq!(
            (r.cmd, r.quiet, r.route_key.len()),
            (MetaCmd::Noop, false, 0)
        );
    }

    #[test]
    fn ma_with_q_and_n_is_fenced() {
        let (r, _) = req(b"ma cnt q N0 J5\r\n");
        assert!(r.quiet && r.writes && r.lease);
        assert_eq!(r.framing, Framing::Fenced);
        assert_eq!(r.backend, b"ma cnt q N0 J5\r\nmn\r\n");
        // Incremented (memcached hid it) or created (memcached showed it).
        for (backend, framed, client) in [
            (&b"MN\r\nHD\r\n"[..], 4, &b""[..]),
            (b"HD c5\r\nMN\r\n", 11, b"HD c5\r\n"),
            (b"VA 1\r\n5\r\nMN\r\n", 13, b"VA 1\r\n5\r\n"),
            (
                b"CLIENT_ERROR opaque token too long\r\nMN\r\n",
                40,
                b"CLIENT_ERROR opaque token too long\r\n",
            ),
        ] {
            let n = fenced_reply_len(backend, &lim()).unwrap().unwrap();
            assert_eq!(n, framed);
            assert_eq!(&backend[to_client(&r, &backend[..n])], client);
            for cut in 0..n {
                assert_eq!(fenced_reply_len(&backend[..cut], &lim()).unwrap(), None);
            }
        }
        assert!(fenced_reply_len(b"HD\r\nHD\r\n", &lim()).is_err());
    }

    #[test]
    fn base64_keys_route_by_their_bytes() {
        let (r, _) = req(b"mg YmluAGtleQ== b k v\r\n");
        assert_eq!(r.route_key, b"bin\x00key");
        assert_eq!(r.backend, b"mg YmluAGtleQ== b k v\r\n");
        let (r, _) = req(b"ms cGxhaW4= 2 b\r\nhi\r\n");
        assert_eq!(r.route_key, b"plain");
        // memcached's decoder skips stray bytes, ignores what follows the
        // padding and the unused bits: all of these are the key "plain".
        for k in [&b"cGxh!!aW4="[..], b"cGxhaW4=QUJD", b"cGxhaW5="] {
            let line = [b"mg ", k, b" b v\r\n"].concat();
            assert_eq!(req(&line).0.route_key, b"plain");
        }
        assert_eq!(req(b"mg A=BC b\r\n").0.route_key, [0, 0]);
        // me decodes only when b is the word right after the key.
        assert_eq!(req(b"me cGxhaW4= b\r\n").0.route_key, b"plain");
        assert_eq!(req(b"me cGxhaW4= x b\r\n").0.route_key, b"cGxhaW4=");
        assert_eq!(req(b"me abc x b\r\n").0.route_key, b"abc");
    }

    #[test]
    fn base64_decoder_matches_memcached() {
        // Observed: keys memcached re-encoded in its `k` answers.
        assert_eq!(base64_decode(b"AA=="), Some(vec![0]));
        assert_eq!(base64_decode(b"YmluAGtleQ=="), Some(b"bin\x00key".to_vec()));
        for bad in [
            &b"abc"[..],
            b"cGxhaW4",
            b"QQ===",
            b"====",
            b"A===",
            b"ab-_",
            b"",
        ] {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
    }

    // Replies memcached 1.6.18 gave, observed live (each followed by `mn`
    // to see where the reply ended and that the connection stayed open).
    // One case a line reads better than rustfmt's four.
    #[rustfmt::skip]
    const OBSERVED: &[(&[u8], &[u8])] = &[
        (b"m\r\n", b"ERROR\r\n"),
        (b"mg\r\n", b"ERROR\r\n"),
        (b"mg   \r\n", b"ERROR\r\n"),
        (b"ms\r\n", b"ERROR\r\n"),
        (b"md\r\n", b"ERROR\r\n"),
        (b"ma\r\n", b"ERROR\r\n"),
        (b"me\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"mx foo\r\n", b"ERROR\r\n"),
        (b"mgx foo\r\n", b"ERROR\r\n"),
        (b"mx foo HTTP/1.1\r\n", b"ERROR\r\n"),
        (b"mg\tk v\r\n", b"ERROR\r\n"),
        (b"ms k\r\nhi\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"ms k x\r\nhi\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"ms k -1\r\nhi\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"ms k 2x\r\nhi\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"ms k 2147483646\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"ms k 99999999999999999999\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"mg k v c f s t k l h u O1 T0 N0 R0 P L I C1 F1\r\n", b"CLIENT_ERROR options flags are too long\r\n"),
        (b"md k q I T0 C1 O1 k b2 P L F1 N1 R1 J1 D1 M1 v c f\r\n", b"CLIENT_ERROR options flags too long\r\n"),
        (b"ma k q I T0 C1 O1 k P L F1 N1 R1 J1 D1 MI v c f s\r\n", b"CLIENT_ERROR options flags too long\r\n"),
        (b"ms k 2 I T0 O1 k P L F1 N1 R1 J1 D1 MS v c f s t\r\n", b"CLIENT_ERROR options flags too long\r\n"),
        (b"mg k v v\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
        (b"mg k O1 O2\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
        (b"mg k \xffx\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
        (b"mg k \x7f\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
        (b"mg k !\r\n", b"CLIENT_ERROR invalid flag\r\n"),
        (b"mg k x\r\n", b"CLIENT_ERROR invalid flag\r\n"),
        (b"mg k N\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"mg k Nx\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"mg k Tx\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"mg k Rx\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"mg k Cx\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"mg k C-1\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"mg k T99999999999999999999\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"mg k C18446744073709551616\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"mg k Fx\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"mg k F-4294967295\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"mg k F18446744073709551616\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"mg k MEE\r\n", b"CLIENT_ERROR incorrect length for M token\r\n"),
        (b"mg k Jx\r\n", b"CLIENT_ERROR invalid numeric initial value\r\n"),
        (b"mg k Dx\r\n", b"CLIENT_ERROR invalid numeric delta value\r\n"),
        (b"mg k Fx Nx\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"mg k Nx Fx\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"mg k Nx Jx\r\n", b"CLIENT_ERROR invalid numeric initial value\r\n"),
        (b"mg k Jx !\r\n", b"CLIENT_ERROR invalid flag\r\n"),
        (b"mg abc b\r\n", b"CLIENT_ERROR error decoding key\r\n"),
        (b"mg cGxhaW4 b v k\r\n", b"CLIENT_ERROR error decoding key\r\n"),
        (b"mg QQ=== b v k\r\n", b"CLIENT_ERROR error decoding key\r\n"),
        (b"mg ab-_ b v k\r\n", b"CLIENT_ERROR error decoding key\r\n"),
        (b"mg abc b Nx\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"mg abc Nx b\r\n", b"CLIENT_ERROR error decoding key\r\n"),
        (b"mg abc b !\r\n", b"CLIENT_ERROR invalid flag\r\n"),
        (b"mg AAAA b b\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
        (b"md abc b\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        (b"ma abc b\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        (b"me abc b\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"md k !\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        (b"md k q q\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        (b"md k Nx\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        (b"md k Oooooooooooooooooooooooooooooooooo\r\n", b"CLIENT_ERROR opaque token too long\r\n"),
        (b"ma k !\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        (b"ma k Dx\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        (b"ma k Jx\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        (b"ma k D-1\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        (b"ma k MII\r\n", b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        (b"ma k MX\r\n", b"CLIENT_ERROR invalid mode for ma M token\r\n"),
    ];

    /// `ms` errors found after the length: memcached swallows the data
    /// block (observed: the `hi` was not answered with `ERROR`).
    #[rustfmt::skip]
    const OBSERVED_SWALLOWED: &[(&[u8], &[u8])] = &[
        (b"ms k 2 !\r\nhi\r\n", b"CLIENT_ERROR invalid flag\r\n"),
        (b"ms k 2 T1 T2\r\nhi\r\n", b"CLIENT_ERROR duplicate flag\r\n"),
        (b"ms k 2 Fx\r\nhi\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"ms k 2 F-1\r\nhi\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"ms k 2 Tx\r\nhi\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"ms k 2 Cx\r\nhi\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"ms k 2 C-1\r\nhi\r\n", b"CLIENT_ERROR bad token in command line format\r\n"),
        (b"ms k 2 MX\r\nhi\r\n", b"CLIENT_ERROR invalid mode for ms M token\r\n"),
        (b"ms k 2 Me\r\nhi\r\n", b"CLIENT_ERROR invalid mode for ms M token\r\n"),
        (b"ms k 2 MEE\r\nhi\r\n", b"CLIENT_ERROR incorrect length for M token\r\n"),
        (b"ms k 2 M\r\nhi\r\n", b"CLIENT_ERROR incorrect length for M token\r\n"),
        (b"ms k 2 Ooooooooooooooooooooooooooooooooo\r\nhi\r\n", b"CLIENT_ERROR opaque token too long\r\n"),
        (b"ms k 2 Ooooooooooooooooooooooooooooooooo MX\r\nhi\r\n", b"CLIENT_ERROR invalid mode for ms M token\r\n"),
        (b"ms k 2 Fx Ooooooooooooooooooooooooooooooooo\r\nhi\r\n", b"CLIENT_ERROR bad command line format\r\n"),
        (b"ms k 2 q !\r\nab\r\n", b"CLIENT_ERROR invalid flag\r\n"),
        (b"ms abc 2 b\r\nhi\r\n", b"CLIENT_ERROR error decoding key\r\n"),
        // Bad data chunks: `len + 2` bytes consumed, the rest is commands
        // (memcached answered the `\n` after `hiX\r` with ERROR).
        (b"ms k 2\r\nhiX\r", b"CLIENT_ERROR bad data chunk\r\n"),
        (b"ms k 2\r\nh\r\nm", b"CLIENT_ERROR bad data chunk\r\n"),
        (b"ms k 2\r\nhi\nm", b"CLIENT_ERROR bad data chunk\r\n"),
        (b"ms k 2 q\r\nhiXY", b"CLIENT_ERROR bad data chunk\r\n"),
    ];

    #[test]
    fn rejects_with_memcacheds_exact_replies() {
        for (buf, reply) in OBSERVED {
            answers(buf, reply);
            // The line only: a data block after a bad `ms` length is not
            // swallowed.
            let line = memchr(b'\n', buf).unwrap() + 1;
            assert_eq!(reject(buf).consumed, line, "{buf:?}");
        }
        for (buf, reply) in OBSERVED_SWALLOWED {
            answers(buf, reply);
            assert_eq!(reject(buf).consumed, buf.len(), "{buf:?}");
        }
        // Errors up to ms's length leave the data block to be read as a
        // command (observed: `hi` was answered with ERROR).
        let b = b"ms k x\r\nhi\r\n";
        assert_eq!(reject(b).consumed, 8);
        let b = b"ms k 2 a b c d e f g h i j l m n o p r s\r\nhi\r\n";
        assert_eq!(reject(b).consumed, b.len() - 4);
        // Keys: 250 bytes is fine, 251 is not, for every command.
        let k250 = vec![b'k'; 250];
        let k251 = vec![b'k'; 251];
        assert_eq!(
            req(&[b"mg ", &k250[..], b" v\r\n"].concat()).0.route_key,
            k250
        );
        for cmd in [&b"mg"[..], b"md", b"ma", b"me"] {
            answers(&[cmd, b" ", &k251[..], b"\r\n"].concat(), BAD_FORMAT);
        }
        let b = [b"ms ", &k251[..], b" 2\r\nhi\r\n"].concat();
        answers(&b, BAD_FORMAT);
        assert_eq!(reject(&b).consumed, b.len() - 4);
        // The limit applies to the key as sent, base64 or not: 252
        // encoded bytes (189 decoded) are too many, 248 are fine.
        let enc = |n| {
            let mut s = Vec::new();
            for _ in 0..n / 3 {
                s.extend_from_slice(b"eHh4");
            }
            s
        };
        answers(&[b"mg ", &enc(189)[..], b" b v\r\n"].concat(), BAD_FORMAT);
        assert_eq!(
            req(&[b"mg ", &enc(186)[..], b" b v\r\n"].concat())
                .0
                .route_key,
            vec![b'x'; 186]
        );
    }

    #[test]
    fn accepted_like_memcached() {
        // Each of these memcached answered normally (observed).
        for b in [
            &b"mg k v c f s t k l h u O1 q T0 N0 R0 P L\r\n"[..],
            b"mg k I C1 F1 ME D1 J1 P L\r\n",
            b"mg k Oooooooooooooooooooooooooooooooo\r\n",
            b"mg k T1099511627776\r\n",
            b"mg k C18446744073709551615\r\n",
            b"mg k C-0\r\n",
            b"mg k F-18446744073709551615\r\n",
            b"mg k T+5\r\n",
            b"mg k T-5\r\n",
            b"mg k T\t5 v\r\n",
            b"mg k v\x00 !!! zz\r\n",
            b"mg k v\rx\r\n",
            b"mg k v\r\r\n",
            b"mg k\tv\r\n",
            b"md k v\r\n",
            b"ma k D-18446744073709551615\r\n",
            b"me k zzz !\r\n",
            b"me k a b c d e f g h i j l m n o p r s t u v w x y z\r\n",
            // mg and ma check opaques after their lookup (and its side
            // effects): the backend answers those.
            b"mg k O000000000000000000000000000000000\r\n",
            b"ma k O000000000000000000000000000000000\r\n",
        ] {
            req(b);
        }
        // ms lengths as memcached reads them: through a 64-bit strtol,
        // then into 32 bits.
        for (b, len) in [
            (&b"ms k 4294967298\r\nhi\r\n"[..], 2),
            (b"ms k +2\r\nhi\r\n", 2),
            (b"ms k 2\t\r\nhi\r\n", 2),
            (b"ms k \t2\r\nhi\r\n", 2),
            (b"ms k 2\x0bzz\r\nhi\r\n", 2),
            (b"ms k -0\r\n\r\n", 0),
        ] {
            let (r, n) = req(b);
            assert_eq!((n, r.backend.as_slice()), (b.len(), b), "{len}");
        }
        assert_eq!(req(b"ms k 2 F4294967296\r\nhi\r\n").1, 24);
    }

    #[test]
    fn unreadable_lines_hang_up_silently() {
        // memcached closed these connections without a reply (observed).
        for b in [&b"mget foo HTTP/1.1\r\n"[..], b"mgetx a HTTP/\r\n"] {
            let r = reject(b);
            assert!(r.close && r.reply.is_empty(), "{b:?}");
        }
        answers(b"mgetx a HTTPx\r\n", ERROR);
        // The tokenizer stops at 23 words: the HTTP/ word is not seen.
        let mut b = b"mget ".to_vec();
        for _ in 0..30 {
            b.extend_from_slice(b"a ");
        }
        b.extend_from_slice(b"HTTP/1.1\r\n");
        answers(&b, ERROR);
        // 2049 bytes without a newline: closed. 2048: wait.
        let partial = [&b"mg k"[..], &[b' '; 2045]].concat();
        assert!(reject(&partial).close);
        assert_eq!(
            parse(&partial[..2048], &lim()),
            MetaParse::Parsed(Parse::Incomplete)
        );
        // A 3000 (16000) byte line read whole was served; 17000 closed.
        let line = |n: usize| [&b"mg k"[..], &vec![b' '; n], b"v\r\n"].concat();
        assert_eq!(req(&line(3000)).0.backend, line(3000));
        assert_eq!(req(&line(16000)).1, 16007);
        assert!(reject(&line(17000)).close);
        // A proxy with a smaller line limit closes sooner.
        let small = Limits {
            max_line: 100,
            ..lim()
        };
        assert!(matches!(
            parse(&line(200), &small),
            MetaParse::Parsed(Parse::Reject(Reject { close: true, .. }))
        ));
    }

    #[test]
    fn oversized_values_are_answered_and_swallowed() {
        let lim = Limits {
            max_value: 10,
            ..Limits::default()
        };
        let b = b"ms bigkey 100 T0\r\n0123456789";
        match parse(b, &lim) {
            MetaParse::Swallow {
                reject,
                more,
                invalidate,
            } => {
                assert_eq!(reject.reply, TOO_LARGE);
                assert!(!reject.close);
                assert_eq!(reject.consumed, b.len());
                assert_eq!(more, 92);
                let inv = invalidate.unwrap();
                assert_eq!(inv.backend, b"md bigkey\r\n");
                assert_eq!(inv.route_key, b"bigkey");
                assert_eq!(inv.framing, Framing::Discard);
            }
            other => panic!("{other:?}"),
        }
        // Shown with q too (observed), and a b key is deleted as b.
        match parse(b"ms Ymln 100 q b\r\n", &lim) {
            MetaParse::Swallow {
                reject,
                more,
                invalidate,
            } => {
                assert_eq!(
                    (reject.reply.as_slice(), reject.consumed, more),
                    (TOO_LARGE, 17, 102)
                );
                let inv = invalidate.unwrap();
                assert_eq!(
                    (inv.backend.as_slice(), inv.route_key.as_slice()),
                    (&b"md Ymln b\r\n"[..], &b"big"[..])
                );
            }
            other => panic!("{other:?}"),
        }
        // A flag error with a large length is swallowed the same way, with
        // nothing deleted (memcached finds the error before allocating).
        match parse(b"ms k 2000000 !\r\n", &Limits::default()) {
            MetaParse::Swallow {
                reject,
                more,
                invalidate,
            } => {
                assert_eq!((reject.reply.as_slice(), more), (INVALID_FLAG, 2_000_002));
                assert_eq!(invalidate, None);
            }
            other => panic!("{other:?}"),
        }
        // memcached reads the length as 32 bits: this swallows 4 bytes.
        let r = reject(b"ms k 4294967298 !\r\nhi\r\n");
        assert_eq!((r.reply.as_slice(), r.consumed), (INVALID_FLAG, 23));
    }

    #[test]
    fn pipelined_requests() {
        let b: &[u8] = b"ms p1 3\r\nabc\r\nms p2 2 q\r\nde\r\nmg p1 v\r\nmg p2 v q\r\nmg p3 q v\r\nmn\r\nme p1\r\nmd p1 q\r\nma n N0 q\r\n";
        let mut at = 0;
        let mut got = Vec::new();
        while at < b.len() {
            let (r, n) = req(&b[at..]);
            got.push((r.cmd, String::from_utf8_lossy(&r.backend).into_owned()));
            at += n;
        }
        let want = [
            (MetaCmd::Set, "ms p1 3\r\nabc\r\n"),
            (MetaCmd::Set, "ms p2 2\r\nde\r\n"),
            (MetaCmd::Get, "mg p1 v\r\n"),
            (MetaCmd::Get, "mg p2 v\r\n"),
            (MetaCmd::Get, "mg p3 v\r\n"),
            (MetaCmd::Noop, "mn\r\n"),
            (MetaCmd::Debug, "me p1\r\n"),
            (MetaCmd::Delete, "md p1\r\n"),
            (MetaCmd::Arith, "ma n N0 q\r\nmn\r\n"),
        ];
        let want: Vec<_> = want.iter().map(|(c, s)| (*c, s.to_string())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn every_split_point_is_incomplete_or_the_same() {
        let reqs: &[&[u8]] = &[
            b"mg foo q k v Oab\r\n",
            b"ms foo 5 q T0\r\nhello\r\n",
            b"md foo q\r\n",
            b"ma cnt q N0\r\n",
            b"me Zm9v b\r\n",
            b"mn\r\n",
            b"ms foo 2\r\nhiX\r\n",
            b"mg k !\r\n",
        ];
        for whole in reqs {
            let full = parse(whole, &lim());
            for cut in 0..whole.len() {
                let p = parse(&whole[..cut], &lim());
                assert!(
                    p == MetaParse::Parsed(Parse::Incomplete) || p == full,
                    "{whole:?} at {cut}: {p:?}"
                );
            }
            let mut more = whole.to_vec();
            more.extend_from_slice(b"mg next v\r\n");
            assert_eq!(parse(&more, &lim()), full);
        }
    }

    /// The quiet table observed live: for each command and reply, whether
    /// memcached sent it when the request carried q.
    #[test]
    fn quiet_hides_what_memcached_hides() {
        let table: &[(MetaCmd, &[u8], bool)] = &[
            (MetaCmd::Get, b"EN\r\n", true),
            (MetaCmd::Get, b"EN kk Oa\r\n", true),
            (MetaCmd::Get, b"HD\r\n", false),
            (MetaCmd::Get, b"HD kgk\r\n", false),
            (MetaCmd::Get, b"VA 2\r\nhi\r\n", false),
            (MetaCmd::Get, b"VA 0 W\r\n\r\n", false),
            (
                MetaCmd::Get,
                b"CLIENT_ERROR opaque token too long\r\n",
                false,
            ),
            (MetaCmd::Set, b"HD\r\n", true),
            (MetaCmd::Set, b"HD c5 kk\r\n", true),
            (MetaCmd::Set, b"NS\r\n", false),
            (MetaCmd::Set, b"EX\r\n", false),
            (MetaCmd::Set, b"NF\r\n", false),
            (
                MetaCmd::Set,
                b"SERVER_ERROR object too large for cache\r\n",
                false,
            ),
            (MetaCmd::Delete, b"HD\r\n", true),
            (MetaCmd::Delete, b"NF\r\n", false),
            (MetaCmd::Delete, b"EX\r\n", false),
            (MetaCmd::Arith, b"HD\r\n", true),
            (MetaCmd::Arith, b"VA 1\r\n7\r\n", true),
            (MetaCmd::Arith, b"NF\r\n", false),
            (MetaCmd::Arith, b"EX\r\n", false),
            (
                MetaCmd::Arith,
                b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
                false,
            ),
            (MetaCmd::Debug, b"EN\r\n", false),
            (MetaCmd::Noop, b"MN\r\n", false),
        ];
        for (cmd, reply, hidden) in table {
            assert_eq!(hidden_when_quiet(*cmd, reply), *hidden, "{cmd:?} {reply:?}");
        }
        let (r, _) = req(b"mg miss q v\r\n");
        assert_eq!(to_client(&r, b"EN\r\n"), 0..0);
        assert_eq!(to_client(&r, b"VA 1\r\nx\r\n"), 0..9);
        let (r, _) = req(b"mg miss v\r\n");
        assert_eq!(to_client(&r, b"EN\r\n"), 0..4);
        let (r, _) = req(b"md k q\r\n");
        assert_eq!(to_client(&r, b"HD\r\n"), 0..0);
        assert_eq!(to_client(&r, b"NF\r\n"), 0..4);
    }

    #[test]
    fn frames_backend_replies() {
        let l = lim();
        for r in [
            &b"HD\r\n"[..],
            b"HD c6 kk1 Ox\r\n",
            b"EN\r\n",
            b"NF\r\n",
            b"NS\r\n",
            b"EX\r\n",
            b"MN\r\n",
            b"ME hit exp=-1 la=2 cas=2 fetch=yes cls=1 size=64\r\n",
            b"ERROR\r\n",
            b"CLIENT_ERROR bad data chunk\r\n",
            b"SERVER_ERROR out of memory storing object\r\n",
            b"VA 2 khit Oab f0 s2 t-1\r\nhi\r\n",
            b"VA 0 W\r\n\r\n",
            b"EN kk\r\r\n",
        ] {
            assert_eq!(reply_len(r, &l).unwrap(), Some(r.len()), "{r:?}");
            let mut more = r.to_vec();
            more.extend_from_slice(b"HD\r\n");
            assert_eq!(reply_len(&more, &l).unwrap(), Some(r.len()));
            for cut in 0..r.len() {
                assert_eq!(reply_len(&r[..cut], &l).unwrap(), None, "{r:?} at {cut}");
            }
        }
        for bad in [
            &b"HELLO\r\n"[..],
            b"HD\n",
            b"HDX\r\n",
            b"VA x\r\nhi\r\n",
            b"VA\r\n",
            b"VA 2\r\nhiX\r\n",
            b"VA 99999999999999999999\r\n",
            b"STORED\r\n",
        ] {
            assert!(reply_len(bad, &l).is_err(), "{bad:?}");
        }
        let long = vec![b'H'; l.max_line + 1];
        assert!(reply_len(&long, &l).is_err());
    }

    /// memcached's base64 encoder, to build keys for the fuzzer.
    fn encode(bytes: &[u8]) -> Vec<u8> {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        for c in bytes.chunks(3) {
            let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                out.push(if i <= c.len() {
                    T[(n >> (18 - 6 * i)) as usize & 63]
                } else {
                    b'='
                });
            }
        }
        out
    }

    fn check_parse(buf: &[u8], limits: &Limits) {
        let bound = limits.max_line + limits.max_value + 8;
        match parse(buf, limits) {
            MetaParse::Parsed(Parse::Incomplete) => {}
            MetaParse::Parsed(Parse::Request(r, n)) => {
                assert!(n > 0 && n <= buf.len());
                assert!(r.backend.len() <= n + MN_REQUEST.len() && r.backend.len() <= bound);
                assert!(r.route_key.len() <= limits.max_key);
                if r.framing == Framing::One && r.quiet {
                    assert!(r.backend.len() < n);
                }
            }
            MetaParse::Parsed(Parse::Reject(r)) => {
                assert!(r.consumed > 0 && r.consumed <= buf.len());
                assert!(r.reply.len() <= 64);
            }
            MetaParse::Swallow {
                reject,
                more,
                invalidate,
            } => {
                assert!(reject.consumed > 0 && reject.consumed <= buf.len());
                assert!(more == 0 || reject.consumed == buf.len());
                assert!(more > 0 || invalidate.is_some());
                if let Some(inv) = invalidate {
                    assert!(inv.backend.len() <= limits.max_key + 8);
                }
            }
        }
    }

    fn mutate(mut b: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
        for &(at, op, byte) in edits {
            if b.is_empty() {
                b.push(byte);
                continue;
            }
            let at = at % b.len();
            match op % 4 {
                0 => b[at] = byte,
                1 => b.insert(at, byte),
                2 => {
                    b.remove(at);
                }
                _ => b.truncate(at),
            }
        }
        b
    }

    const SEEDS: &[&[u8]] = &[
        b"mg foo q k v Oab N30 T5 R3 c f s t h l u\r\n",
        b"ms foo 5 q T0 F3 C9 I MS b\r\nhello\r\n",
        b"md Zm9v b q I T30 C1 k O1\r\n",
        b"ma cnt q N0 J5 D7 MD v c t\r\n",
        b"me Zm9v b\r\n",
        b"mn\r\n",
        b"mget foo HTTP/1.1\r\n",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let small = Limits { max_key: 8, max_value: 16, max_line: 64, max_args: 4 };
            let mut m = buf.clone();
            m.insert(0, b'm');
            for limits in [lim(), small] {
                check_parse(&buf, &limits);
                check_parse(&m, &limits);
                if let Ok(Some(n)) = reply_len(&buf, &limits) {
                    prop_assert!(n <= buf.len());
                }
            }
        }

        #[test]
        fn mutated_requests_never_panic(
            seed in 0..SEEDS.len(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), prop_oneof![
                Just(b' '), Just(b'\r'), Just(b'\n'), Just(b'q'), Just(b'0'), Just(b'='), Just(b'O'), Just(0u8), any::<u8>()
            ]), 0..6),
        ) {
            let buf = mutate(SEEDS[seed].to_vec(), &edits);
            let small = Limits { max_key: 3, max_value: 4, max_line: 20, max_args: 4 };
            for limits in [lim(), small] {
                check_parse(&buf, &limits);
                for cut in 0..buf.len() {
                    check_parse(&buf[..cut], &limits);
                }
            }
        }

        #[test]
        fn mutated_replies_never_panic(
            seed in 0..4usize,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..5),
        ) {
            let seeds: [&[u8]; 4] = [b"VA 5 c3 kfoo\r\nhello\r\n", b"HD Oab\r\n", b"ME k exp=-1\r\n", b"CLIENT_ERROR x\r\n"];
            let buf = mutate(seeds[seed].to_vec(), &edits);
            let small = Limits { max_key: 3, max_value: 4, max_line: 20, max_args: 4 };
            for limits in [lim(), small] {
                if let Ok(Some(n)) = reply_len(&buf, &limits) {
                    prop_assert!(n <= buf.len());
                }
                if let Ok(Some(n)) = fenced_reply_len(&buf, &limits) {
                    prop_assert!(n <= buf.len());
                    let (r, _) = req(b"ma n q N0\r\n");
                    prop_assert!(to_client(&r, &buf[..n]).end <= n);
                }
            }
        }

        #[test]
        fn base64_keys_round_trip(key in proptest::collection::vec(any::<u8>(), 1..150)) {
            let enc = encode(&key);
            prop_assert_eq!(base64_decode(&enc), Some(key.clone()));
            let line = [&b"mg "[..], &enc, b" b q v\r\n"].concat();
            let (r, n) = req(&line);
            prop_assert_eq!(n, line.len());
            prop_assert_eq!(r.route_key, key);
            prop_assert_eq!(r.backend, [&b"mg "[..], &enc, b" b v\r\n"].concat());
        }
    }
}
