//! The memcache text protocol on the wire: reading client requests and
//! framing backend replies. Pure: no I/O, no routing.
//!
//! Behaviour follows memcached 1.6 (checked against the real server by
//! `core/tests/proxy_memcache.rs`): commands are case-sensitive, tokens are
//! split on runs of spaces, a bare `\n` ends a line, an unknown or
//! ill-formed command gets `ERROR` and the connection stays open, a bad
//! number or a key over 250 bytes gets `CLIENT_ERROR bad command line
//! format`, and a storage command whose data block does not end in `\r\n`
//! gets `CLIENT_ERROR bad data chunk` after its `bytes + 2` were consumed.
//!
//! Two requests are the proxy's own: `version` (answered with shardkit's
//! version) and `quit`. `stats` and `flush_all` are parsed here and
//! answered by the dispatcher (see `mc_dispatch`).

use super::parse::{memchr, Limits, Parse, Reject};
use std::ops::Range;

/// A text-protocol command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextCmd {
    Get,
    Gets,
    Gat,
    Gats,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Delete,
    Incr,
    Decr,
    Touch,
    Version,
    Quit,
    Stats,
    FlushAll,
    Verbosity,
}

impl TextCmd {
    /// The command's name on the wire.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TextCmd::Get => "get",
            TextCmd::Gets => "gets",
            TextCmd::Gat => "gat",
            TextCmd::Gats => "gats",
            TextCmd::Set => "set",
            TextCmd::Add => "add",
            TextCmd::Replace => "replace",
            TextCmd::Append => "append",
            TextCmd::Prepend => "prepend",
            TextCmd::Cas => "cas",
            TextCmd::Delete => "delete",
            TextCmd::Incr => "incr",
            TextCmd::Decr => "decr",
            TextCmd::Touch => "touch",
            TextCmd::Version => "version",
            TextCmd::Quit => "quit",
            TextCmd::Stats => "stats",
            TextCmd::FlushAll => "flush_all",
            TextCmd::Verbosity => "verbosity",
        }
    }

    fn from_name(name: &[u8]) -> Option<TextCmd> {
        Some(match name {
            b"get" => TextCmd::Get,
            b"gets" => TextCmd::Gets,
            b"gat" => TextCmd::Gat,
            b"gats" => TextCmd::Gats,
            b"set" => TextCmd::Set,
            b"add" => TextCmd::Add,
            b"replace" => TextCmd::Replace,
            b"append" => TextCmd::Append,
            b"prepend" => TextCmd::Prepend,
            b"cas" => TextCmd::Cas,
            b"delete" => TextCmd::Delete,
            b"incr" => TextCmd::Incr,
            b"decr" => TextCmd::Decr,
            b"touch" => TextCmd::Touch,
            b"version" => TextCmd::Version,
            b"quit" => TextCmd::Quit,
            b"stats" => TextCmd::Stats,
            b"flush_all" => TextCmd::FlushAll,
            b"verbosity" => TextCmd::Verbosity,
            _ => return None,
        })
    }
}

/// One parsed request. Ranges index the request's own bytes (the prefix
/// of the buffer that [`Parse::Request`] says it took).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TextRequest {
    pub cmd: TextCmd,
    /// The keys: many for retrieval commands, one for the other keyed
    /// commands, none for the rest.
    pub keys: Vec<Range<usize>>,
    /// Everything between the command and the first key (gat's exptime),
    /// or after the key up to `noreply` (storage, delete, incr, touch), as
    /// it goes to the backend.
    pub args: Range<usize>,
    /// The client asked for no reply.
    pub noreply: bool,
    /// The data block of a storage command, its `\r\n` included.
    pub data: Option<Range<usize>>,
}

/// Consumes a storage command's data block that is too large to buffer:
/// the session discards this many more bytes as they arrive, as memcached
/// swallows an oversized value, then sends `reply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Swallow {
    pub bytes: usize,
}

const ERROR: &[u8] = b"ERROR\r\n";
const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
const BAD_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
/// memcached's reply to a value over its item size limit.
pub(crate) const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
/// How much of a line memcached reads before it gives up on a line end
/// (for anything but `get`).
const PARTIAL_LINE: usize = 2048;

/// What [`parse`] returns beyond [`Parse`]: an oversized storage command
/// whose data must be discarded as it streams in.
#[derive(Debug, PartialEq)]
pub(crate) enum TextParse {
    Parsed(Parse<TextRequest>),
    /// Reply [`TOO_LARGE`] (unless `noreply`), after discarding `consumed`
    /// bytes now and `swallow.bytes` more as they arrive.
    TooLarge {
        consumed: usize,
        swallow: Swallow,
        noreply: bool,
    },
}

/// The end of the first line: (index of the line's last content byte + 1,
/// index just past its `\n`).
fn line_end(buf: &[u8]) -> Option<(usize, usize)> {
    let nl = memchr(b'\n', buf)?;
    let end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((end, nl + 1))
}

/// Space-separated tokens of `line[..end]`, as ranges.
fn tokens(line: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        if i > start {
            out.push(start..i);
        }
    }
    out
}

/// The first `N` tokens of a line without allocating (for reply lines,
/// read once per reply), and how many there were (at most `N`).
fn first_tokens<const N: usize>(line: &[u8]) -> ([Range<usize>; N], usize) {
    let mut out: [Range<usize>; N] = std::array::from_fn(|_| 0..0);
    let mut n = 0;
    let mut i = 0;
    while i < line.len() && n < N {
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        if i > start {
            out[n] = start..i;
            n += 1;
        }
    }
    (out, n)
}

/// memcached's `safe_strtoul`-style check: decimal digits only.
fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn parse_i64(b: &[u8]) -> Option<i64> {
    match b.split_first() {
        Some((b'-', rest)) => parse_u64(rest)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        _ => parse_u64(b).and_then(|v| i64::try_from(v).ok()),
    }
}

/// Reads one request from the front of `buf`. Lines starting with `m`
/// followed by a letter and a space or line end are meta commands; the
/// caller sends those to the meta parser first (see [`is_meta`]).
pub(crate) fn parse(buf: &[u8], limits: &Limits) -> TextParse {
    let done = |p| TextParse::Parsed(p);
    let Some((end, next)) = line_end(buf) else {
        // memcached hangs up without a word on a line that has no end after
        // 2048 bytes, unless it is a (large multi-key) get; then the line
        // limit applies.
        let multiget = buf.starts_with(b"get ") || buf.starts_with(b"gets ");
        if buf.len() > limits.max_line || (buf.len() > PARTIAL_LINE && !multiget) {
            return done(Parse::Reject(Reject::fatal(Vec::new(), buf.len())));
        }
        return done(Parse::Incomplete);
    };
    if end > limits.max_line {
        return done(Parse::Reject(Reject::fatal(Vec::new(), next)));
    }
    let line = &buf[..end];
    let toks = tokens(line);
    let Some(first) = toks.first() else {
        return done(Parse::Reject(Reject::reply(ERROR, next)));
    };
    let Some(cmd) = TextCmd::from_name(&line[first.clone()]) else {
        return done(Parse::Reject(Reject::reply(ERROR, next)));
    };
    let tok = |i: usize| &line[toks[i].clone()];
    let bad = |reply: &[u8]| done(Parse::Reject(Reject::reply(reply, next)));
    let key_ok = |r: &Range<usize>| r.len() <= limits.max_key;
    let is_noreply = |i: usize| toks.len() > i && tok(i) == b"noreply";
    let span = |from: usize, to: usize| -> Range<usize> {
        if from >= to {
            let at = toks.get(from).map_or(end, |r| r.start);
            at..at
        } else {
            toks[from].start..toks[to - 1].end
        }
    };
    let simple = |keys: Vec<Range<usize>>, args: Range<usize>, noreply: bool| {
        done(Parse::Request(
            TextRequest {
                cmd,
                keys,
                args,
                noreply,
                data: None,
            },
            next,
        ))
    };
    match cmd {
        TextCmd::Get | TextCmd::Gets => {
            if toks.len() < 2 {
                return bad(ERROR);
            }
            let keys: Vec<_> = toks[1..].to_vec();
            if !keys.iter().all(key_ok) {
                return bad(BAD_FORMAT);
            }
            simple(keys, end..end, false)
        }
        TextCmd::Gat | TextCmd::Gats => {
            if toks.len() < 3 {
                return bad(ERROR);
            }
            if parse_i64(tok(1)).is_none() {
                return bad(b"CLIENT_ERROR invalid exptime argument\r\n");
            }
            let keys: Vec<_> = toks[2..].to_vec();
            if !keys.iter().all(key_ok) {
                return bad(BAD_FORMAT);
            }
            simple(keys, toks[1].clone(), false)
        }
        TextCmd::Set
        | TextCmd::Add
        | TextCmd::Replace
        | TextCmd::Append
        | TextCmd::Prepend
        | TextCmd::Cas => {
            let want = if cmd == TextCmd::Cas { 6 } else { 5 };
            if toks.len() < want || toks.len() > want + 1 + 16 {
                return bad(ERROR);
            }
            let key = toks[1].clone();
            let noreply = is_noreply(want);
            let flags_ok = parse_u64(tok(2)).is_some_and(|f| f <= u64::from(u32::MAX));
            let exptime_ok = parse_i64(tok(3)).is_some();
            let len = parse_u64(tok(4));
            let cas_ok = cmd != TextCmd::Cas || parse_u64(tok(5)).is_some();
            let Some(len) = len.filter(|_| flags_ok && exptime_ok && cas_ok && key_ok(&key)) else {
                return bad(BAD_FORMAT);
            };
            let len = len as usize;
            if len > limits.max_value {
                // memcached swallows the value it will not store, then
                // answers; the session discards it as it streams in.
                let have = buf.len() - next;
                let total = len.saturating_add(2);
                let now = have.min(total);
                return TextParse::TooLarge {
                    consumed: next + now,
                    swallow: Swallow { bytes: total - now },
                    noreply,
                };
            }
            let need = next + len + 2;
            if buf.len() < need {
                return done(Parse::Incomplete);
            }
            if &buf[need - 2..need] != b"\r\n" {
                if noreply {
                    // memcached keeps quiet about it too.
                    return done(Parse::Reject(Reject::reply(Vec::new(), need)));
                }
                return done(Parse::Reject(Reject::reply(BAD_CHUNK, need)));
            }
            done(Parse::Request(
                TextRequest {
                    cmd,
                    keys: vec![key],
                    args: span(2, want),
                    noreply,
                    data: Some(next..need),
                },
                need,
            ))
        }
        TextCmd::Delete => {
            // delete <key> [0] [noreply]: memcached still takes a zero time.
            let n = toks.len();
            if !(2..=4).contains(&n) {
                return bad(ERROR);
            }
            let noreply = tok(n - 1) == b"noreply";
            let extra = n - 2 - usize::from(noreply);
            if extra > 1 || (extra == 1 && tok(2) != b"0") {
                return bad(
                    b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
                );
            }
            if !key_ok(&toks[1]) {
                return bad(BAD_FORMAT);
            }
            simple(vec![toks[1].clone()], span(2, 2 + extra), noreply)
        }
        TextCmd::Incr | TextCmd::Decr => {
            if toks.len() < 3 || toks.len() > 4 {
                return bad(ERROR);
            }
            if !key_ok(&toks[1]) {
                return bad(BAD_FORMAT);
            }
            if parse_u64(tok(2)).is_none() {
                return bad(b"CLIENT_ERROR invalid numeric delta argument\r\n");
            }
            simple(vec![toks[1].clone()], toks[2].clone(), is_noreply(3))
        }
        TextCmd::Touch => {
            if toks.len() < 3 || toks.len() > 4 {
                return bad(ERROR);
            }
            if !key_ok(&toks[1]) {
                return bad(BAD_FORMAT);
            }
            if parse_i64(tok(2)).is_none() {
                return bad(b"CLIENT_ERROR invalid exptime argument\r\n");
            }
            simple(vec![toks[1].clone()], toks[2].clone(), is_noreply(3))
        }
        TextCmd::Version | TextCmd::Quit => simple(Vec::new(), end..end, false),
        TextCmd::Stats | TextCmd::FlushAll | TextCmd::Verbosity => {
            let noreply = toks.len() > 1 && tok(toks.len() - 1) == b"noreply";
            let last = toks.len() - usize::from(noreply);
            simple(Vec::new(), span(1, last), noreply)
        }
    }
}

/// Whether the line at the front of `buf` is a meta command (`mg`, `ms`,
/// `md`, `ma`, `mn`, `me`): two bytes, `m` and a letter, then a space or
/// the line end.
pub(crate) fn is_meta(buf: &[u8]) -> bool {
    buf.len() >= 3
        && buf[0] == b'm'
        && buf[1].is_ascii_lowercase()
        && matches!(buf[2], b' ' | b'\r' | b'\n')
}

/// Writes the backend's form of a keyed request: `noreply` dropped (the
/// proxy needs every reply to match replies to requests on a shared
/// connection, and swallows it for the client), whitespace normalised.
pub(crate) fn encode_one(req: &TextRequest, raw: &[u8], key: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(req.cmd.name().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    if !req.args.is_empty() {
        out.push(b' ');
        out.extend_from_slice(&raw[req.args.clone()]);
    }
    out.extend_from_slice(b"\r\n");
    if let Some(d) = &req.data {
        out.extend_from_slice(&raw[d.clone()]);
    }
}

/// Writes a retrieval request for some of the request's keys.
pub(crate) fn encode_retrieval<'a>(
    req: &TextRequest,
    raw: &[u8],
    keys: impl Iterator<Item = &'a [u8]>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(req.cmd.name().as_bytes());
    if !req.args.is_empty() {
        out.push(b' ');
        out.extend_from_slice(&raw[req.args.clone()]);
    }
    for k in keys {
        out.push(b' ');
        out.extend_from_slice(k);
    }
    out.extend_from_slice(b"\r\n");
}

/// Frames one backend reply to a text command. For retrieval commands that
/// is every `VALUE` item up to and including `END`; for the rest, one line.
/// An error line (`ERROR`, `CLIENT_ERROR`, `SERVER_ERROR`) ends any reply.
/// `Ok(None)`: incomplete. `Err`: the backend sent something that is not
/// memcached's protocol, and the connection cannot be trusted.
pub(crate) fn reply_len(
    buf: &[u8],
    retrieval: bool,
    limits: &Limits,
) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        let Some((end, next)) = line_end(&buf[at..]) else {
            if buf.len() - at > limits.max_line {
                return Err("a reply line is longer than the line limit".into());
            }
            return Ok(None);
        };
        let line = &buf[at..at + end];
        if !retrieval || line == b"END" || is_error_line(line) {
            return Ok(Some(at + next));
        }
        // VALUE <key> <flags> <bytes> [<cas>]
        let (toks, n) = first_tokens::<4>(line);
        if n < 4 || &line[toks[0].clone()] != b"VALUE" {
            return Err(format!(
                "expected VALUE or END from the backend, got {:?}",
                String::from_utf8_lossy(&line[..line.len().min(64)])
            ));
        }
        let len = parse_u64(&line[toks[3].clone()])
            .filter(|&l| l as usize <= limits.max_value.max(1 << 20) * 64)
            .ok_or_else(|| "a VALUE line with a bad length".to_string())?
            as usize;
        let need = at + next + len + 2;
        if buf.len() < need {
            return Ok(None);
        }
        if &buf[need - 2..need] != b"\r\n" {
            return Err("a VALUE's data does not end in \\r\\n".into());
        }
        at = need;
    }
}

/// Whether a reply line is one of memcached's error replies.
pub(crate) fn is_error_line(line: &[u8]) -> bool {
    line == b"ERROR" || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"SERVER_ERROR")
}

/// One `VALUE` item of a retrieval reply: its key and its whole bytes
/// (header line through the data's `\r\n`).
pub(crate) struct Item {
    pub key: Range<usize>,
    pub bytes: Range<usize>,
}

/// Splits a complete retrieval reply (as framed by [`reply_len`]) into its
/// items. `Err` holds the reply's final line when it is an error.
pub(crate) fn items(reply: &[u8]) -> Result<Vec<Item>, Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((end, next)) = line_end(&reply[at..]) {
        let line = &reply[at..at + end];
        if line == b"END" {
            break;
        }
        let (toks, n) = first_tokens::<4>(line);
        if n < 4 || &line[toks[0].clone()] != b"VALUE" {
            return Err(at..at + next);
        }
        let len = parse_u64(&line[toks[3].clone()]).unwrap_or(0) as usize;
        let stop = (at + next + len + 2).min(reply.len());
        out.push(Item {
            key: at + toks[1].start..at + toks[1].end,
            bytes: at..stop,
        });
        at = stop;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits::default()
    }

    fn req(buf: &[u8]) -> (TextRequest, usize) {
        match parse(buf, &lim()) {
            TextParse::Parsed(Parse::Request(r, n)) => (r, n),
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn reject(buf: &[u8]) -> Reject {
        match parse(buf, &lim()) {
            TextParse::Parsed(Parse::Reject(r)) => r,
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn multi_get_keys_and_spaces() {
        let b = b"get  a   bb c\r\nrest";
        let (r, n) = req(b);
        assert_eq!(n, 15);
        assert_eq!(r.cmd, TextCmd::Get);
        let keys: Vec<&[u8]> = r.keys.iter().map(|k| &b[k.clone()]).collect();
        assert_eq!(keys, vec![&b"a"[..], b"bb", b"c"]);
        let (r, _) = req(b"gat 10 x y\n");
        assert_eq!(r.keys.len(), 2);
        let mut out = Vec::new();
        encode_retrieval(&r, b"gat 10 x y\n", [&b"y"[..]].into_iter(), &mut out);
        assert_eq!(out, b"gat 10 y\r\n");
    }

    #[test]
    fn storage_waits_for_data_and_drops_noreply() {
        let b = b"set k 1 0 3 noreply\r\nabc\r\n";
        assert_eq!(
            parse(&b[..b.len() - 1], &lim()),
            TextParse::Parsed(Parse::Incomplete)
        );
        let (r, n) = req(b);
        assert_eq!(n, b.len());
        assert!(r.noreply);
        let mut out = Vec::new();
        encode_one(&r, b, b"k", &mut out);
        assert_eq!(out, b"set k 1 0 3\r\nabc\r\n");
        let c = b"cas k 0 0 1 99\r\nx\r\n";
        let (r, _) = req(c);
        let mut out = Vec::new();
        encode_one(&r, c, b"k", &mut out);
        assert_eq!(out, c);
    }

    #[test]
    fn memcached_error_replies() {
        assert_eq!(reject(b"bogus\r\n").reply, ERROR);
        assert_eq!(reject(b"get\r\n").reply, ERROR);
        assert_eq!(reject(b"\r\n").reply, ERROR);
        assert_eq!(reject(b"GET a\r\n").reply, ERROR);
        assert_eq!(reject(b"cas a 0 0 1\r\n").reply, ERROR);
        let long = [b"get ".to_vec(), vec![b'k'; 251], b"\r\n".to_vec()].concat();
        assert_eq!(reject(&long).reply, BAD_FORMAT);
        assert_eq!(reject(b"set k 0 0 x\r\n").reply, BAD_FORMAT);
        assert_eq!(reject(b"set k 0 0 -1\r\n").reply, BAD_FORMAT);
        assert_eq!(
            reject(b"incr n abc\r\n").reply,
            b"CLIENT_ERROR invalid numeric delta argument\r\n"
        );
        assert_eq!(
            reject(b"delete k 5\r\n").reply,
            &b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"[..]
        );
        let r = reject(b"set k 0 0 3\r\nabcd\r\n");
        assert_eq!((r.reply.as_slice(), r.consumed), (BAD_CHUNK, 18));
        let r = reject(b"set k 0 0 1 noreply\r\nxy\r\n");
        assert!(r.reply.is_empty());
        assert!(!r.close);
        let (r, _) = req(b"delete k 0 noreply\r\n");
        assert!(r.noreply);
    }

    #[test]
    fn oversized_values_are_swallowed_not_buffered() {
        let lim = Limits {
            max_value: 10,
            ..Limits::default()
        };
        let b = b"set k 0 0 100\r\n0123456789";
        match parse(b, &lim) {
            TextParse::TooLarge {
                consumed, swallow, ..
            } => {
                assert_eq!(consumed, b.len());
                assert_eq!(swallow.bytes, 92);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn framing_backend_replies() {
        let r = b"VALUE a 0 1\r\nx\r\nVALUE b 5 2 77\r\nyz\r\nEND\r\nSTORED\r\n";
        let n = reply_len(r, true, &lim()).unwrap().unwrap();
        assert_eq!(n, r.len() - 8);
        for cut in 0..n {
            assert_eq!(reply_len(&r[..cut], true, &lim()).unwrap(), None, "{cut}");
        }
        let it = items(&r[..n]).unwrap();
        assert_eq!(it.len(), 2);
        assert_eq!(&r[it[1].key.clone()], b"b");
        assert_eq!(
            reply_len(b"SERVER_ERROR x\r\n", true, &lim()).unwrap(),
            Some(16)
        );
        assert_eq!(reply_len(b"STORED\r\n", false, &lim()).unwrap(), Some(8));
        assert!(reply_len(b"HELLO\r\n", true, &lim()).is_err());
    }

    #[test]
    fn meta_lines_are_recognised() {
        assert!(is_meta(b"mg foo v\r\n"));
        assert!(is_meta(b"mn\r\n"));
        assert!(!is_meta(b"mget\r\n"));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Requests that parse, to mutate.
        const SEEDS: &[&[u8]] = &[
            b"get a b c\r\n",
            b"gets k\r\n",
            b"gat 10 x y\r\n",
            b"set k 1 0 3 noreply\r\nabc\r\n",
            b"cas k 0 0 1 99\r\nx\r\n",
            b"append k 0 0 2\r\nab\r\n",
            b"delete k 0 noreply\r\n",
            b"incr n 5\r\n",
            b"touch k 10\r\n",
            b"flush_all 0\r\n",
            b"version\r\n",
        ];

        fn small() -> Limits {
            Limits {
                max_key: 250,
                max_value: 64,
                max_line: 128,
                max_args: 16,
            }
        }

        /// Whatever the bytes, parsing never panics, never claims more than
        /// the buffer (or, for an oversized value, more than it says it
        /// will swallow), and ranges stay inside what it consumed.
        fn check(buf: &[u8]) {
            match parse(buf, &small()) {
                TextParse::Parsed(Parse::Incomplete) => {
                    // Never waits for more than a line plus a bounded value.
                    assert!(
                        buf.len() <= small().max_line + small().max_value + 2
                            || buf.contains(&b'\n')
                    );
                }
                TextParse::Parsed(Parse::Request(r, n)) => {
                    assert!(n <= buf.len() && n > 0);
                    for k in &r.keys {
                        assert!(k.end <= n && k.len() <= 250);
                    }
                    assert!(r.args.end <= n);
                    if let Some(d) = &r.data {
                        assert!(d.end == n);
                    }
                }
                TextParse::Parsed(Parse::Reject(r)) => {
                    assert!(r.consumed <= buf.len() && r.consumed > 0);
                }
                TextParse::TooLarge { consumed, .. } => assert!(consumed <= buf.len()),
            }
            let _ = reply_len(buf, true, &small());
            let _ = reply_len(buf, false, &small());
            if let Ok(Some(n)) = reply_len(buf, true, &small()) {
                let _ = items(&buf[..n]);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
                check(&buf);
            }

            #[test]
            fn mutated_requests(
                seed in 0..SEEDS.len(),
                edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
                cut in any::<usize>(),
            ) {
                let mut buf = SEEDS[seed].to_vec();
                for (at, b) in edits {
                    let i = at % buf.len();
                    buf[i] = b;
                }
                buf.truncate(cut % (buf.len() + 1));
                check(&buf);
            }

            #[test]
            fn every_split_of_a_pipeline_parses_the_same(cut in 0..200usize) {
                let all: Vec<u8> = SEEDS.concat();
                let cut = cut % all.len();
                // A prefix either parses a request wholly inside it or waits.
                if let TextParse::Parsed(Parse::Request(_, n)) = parse(&all[..cut], &Limits::default()) {
                    let TextParse::Parsed(Parse::Request(_, m)) = parse(&all, &Limits::default()) else {
                        panic!("the whole pipeline does not parse");
                    };
                    prop_assert_eq!(n, m);
                }
            }
        }
    }
}
