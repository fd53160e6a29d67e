//! The Redis protocol (RESP2) as the proxy speaks it: reading client
//! commands, the table of commands it routes, framing backend replies, and
//! building the replies it makes itself.
//!
//! Everything here is pure: functions take bytes and return positions,
//! ranges or new bytes, so the connection code owns all buffering and I/O.
//! Client input is read the way redis-server 7 reads it (`networking.c`:
//! `processMultibulkBuffer`, `processInlineBuffer`, `sdssplitargs`), and
//! malformed input gets redis's own error text, so a client sees the same
//! answer through the proxy as from the server. Where redis has no text
//! (limits it does not have, input it silently tolerates), the proxy's own
//! text says what went wrong.
//!
//! Nothing allocates in proportion to a claimed length: a `*N` or `$N`
//! header only says how many bytes to wait for, and limits bound how many.

use std::ops::Range;

use super::parse::{find_crlf, Limits, Parse, Reject};

/// `+OK`, the reply to a command that succeeded with nothing to return.
pub(crate) const OK: &[u8] = b"+OK\r\n";
/// `+PONG`, the reply to `PING` without an argument.
pub(crate) const PONG: &[u8] = b"+PONG\r\n";
/// The null bulk string, redis's "no such key" for `GET` and `MGET`.
pub(crate) const NULL_BULK: &[u8] = b"$-1\r\n";

/// How far past `Limits::max_value` a bulk argument or reply may go. A value
/// of exactly `max_value` bytes must pass, and the point of the limit is to
/// bound buffering, not to police sizes to the byte, so a little slack keeps
/// off-by-a-few serializers (a flags or version prefix on the value) working.
const BULK_SLACK: usize = 1024;

// redis-server 7's own protocol error replies (networking.c).
const INVALID_MULTIBULK: &[u8] = b"-ERR Protocol error: invalid multibulk length\r\n";
const INVALID_BULK: &[u8] = b"-ERR Protocol error: invalid bulk length\r\n";
const TOO_BIG_MBULK: &[u8] = b"-ERR Protocol error: too big mbulk count string\r\n";
const TOO_BIG_BULK: &[u8] = b"-ERR Protocol error: too big bulk count string\r\n";
const TOO_BIG_INLINE: &[u8] = b"-ERR Protocol error: too big inline request\r\n";
const UNBALANCED_QUOTES: &[u8] = b"-ERR Protocol error: unbalanced quotes in request\r\n";

// The proxy's own texts, for input redis tolerates or has no limit for.
// redis skips the two bytes after a bulk argument without looking at them;
// a proxy that did the same would forward a desynchronised stream.
const BULK_UNTERMINATED: &[u8] = b"-ERR Protocol error: bulk argument not followed by CRLF\r\n";
// redis looks for an inline line end with strchr, which stops at a NUL, so
// such a line hangs the connection there; an answer is kinder.
const INLINE_NUL: &[u8] = b"-ERR Protocol error: NUL byte in inline request\r\n";
// Arguments are zero-copy ranges of the client's bytes; an escape sequence
// or a quote in mid-word builds an argument that is no such range.
const INLINE_UNSUPPORTED: &[u8] =
    b"-ERR Protocol error: escape sequences and mid-word quotes in inline requests are not supported by the proxy\r\n";
const INLINE_TOO_MANY: &[u8] = b"-ERR Protocol error: too many arguments in inline request\r\n";

/// One client command: where each argument lies in the buffer it was read
/// from, the command name first. The caller splits off (freezes) the
/// consumed bytes and slices them, so arguments are never copied.
///
/// An empty `args` is a command redis skips without a reply (`*0\r\n`, a
/// negative count such as `*-1\r\n`, or a blank inline line): the caller
/// consumes its bytes and sends nothing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    /// Byte ranges of the arguments within the buffer given to the parser.
    pub(crate) args: Vec<Range<usize>>,
}

impl Command {
    /// The command name as sent (any case), or empty for a skipped command.
    pub(crate) fn name<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.arg(buf, 0).unwrap_or_default()
    }

    /// Argument `i` (0 is the name), if there is one.
    pub(crate) fn arg<'a>(&self, buf: &'a [u8], i: usize) -> Option<&'a [u8]> {
        self.args.get(i).and_then(|r| buf.get(r.clone()))
    }
}

/// Reads one client command from the front of `buf`: a RESP multibulk
/// (`*N\r\n$len\r\narg\r\n...`) when the first byte is `*`, otherwise an
/// inline command (a line of space-separated, optionally quoted words,
/// ending in `\r\n` or a bare `\n`, as redis accepts from telnet).
///
/// Errors are answered with redis-server 7's own text and, like redis,
/// close the connection (`close: true`, the whole buffer consumed). Two
/// inline lines that redis would run are answered and skipped instead
/// (`close: false`, the line consumed): one with escapes or mid-word
/// quotes, whose arguments are no ranges of `buf`, and one with more than
/// `max_args` words. Where the proxy is stricter than redis it says so in
/// its own text, and also closes: a bulk not followed by CRLF (redis skips
/// two bytes unseen), a header `\r` not followed by `\n` (an invalid
/// length), a NUL in an inline line (redis waits forever), a count over
/// `max_args` or a bulk over `max_value` plus 1 KiB, and an inline line
/// over `max_line` even when its end is already in. A non-`$` where a bulk
/// header belongs is answered as soon as it arrives, not when its line
/// ends; the text is redis's. So anything accepted is canonical RESP and
/// may be forwarded byte for byte.
///
/// Each call starts from the front of `buf`; it skips bulk data by length,
/// so it costs O(arguments + header bytes), not O(bytes). A caller that
/// calls it on every small read of a command with many arguments can use
/// [`CommandScanner`], which resumes where it stopped.
pub(crate) fn parse_command(buf: &[u8], limits: &Limits) -> Parse<Command> {
    CommandScanner::default().parse(buf, limits)
}

/// A [`parse_command`] that remembers how far it got, so that a command
/// arriving a few bytes at a time is read in O(its length) overall.
///
/// Contract: between calls the caller only appends to `buf`; after any
/// result other than `Incomplete` the scanner starts afresh, and the caller
/// drops the consumed bytes from the front. A buffer shorter than one seen
/// before resets the scanner (it is then as correct as `parse_command`).
#[derive(Debug, Default)]
pub(crate) struct CommandScanner {
    /// Start of what is not yet read: the count line, the next `$` header,
    /// or the inline line.
    pos: usize,
    /// How far the line at `pos` has been searched for its end in vain.
    searched: usize,
    /// The argument count of the `*N` header, once read.
    want: Option<usize>,
    /// The arguments read so far.
    args: Vec<Range<usize>>,
}

impl CommandScanner {
    /// Reads on from where the last call stopped; see [`parse_command`].
    pub(crate) fn parse(&mut self, buf: &[u8], limits: &Limits) -> Parse<Command> {
        if self.pos > buf.len() || self.searched > buf.len() {
            *self = CommandScanner::default();
        }
        let out = match buf.first() {
            None => Parse::Incomplete,
            Some(b'*') => self.multibulk(buf, limits),
            Some(_) => self.inline(buf, limits),
        };
        if !matches!(out, Parse::Incomplete) {
            *self = CommandScanner::default();
        }
        out
    }

    /// `*N\r\n` then N times `$len\r\n<len bytes>\r\n`.
    fn multibulk(&mut self, buf: &[u8], limits: &Limits) -> Parse<Command> {
        let want = match self.want {
            Some(n) => n,
            None => {
                let cr = match scan_line(buf, 1, &mut self.searched, b'\r', limits.max_line, 1) {
                    Line::Incomplete => return Parse::Incomplete,
                    Line::TooLong => return fatal(TOO_BIG_MBULK, buf),
                    Line::End(cr) => cr,
                };
                let Some(&next) = buf.get(cr + 1) else {
                    return Parse::Incomplete;
                };
                // redis takes any byte after the `\r` as the `\n`; the proxy
                // insists, and a line that ends badly is a bad count.
                if next != b'\n' {
                    return fatal(INVALID_MULTIBULK, buf);
                }
                let Some(n) = parse_i64(&buf[1..cr]) else {
                    return fatal(INVALID_MULTIBULK, buf);
                };
                // redis skips `*0` and negative counts without a reply.
                if n <= 0 {
                    return Parse::Request(Command::default(), cr + 2);
                }
                let max = i64::try_from(limits.max_args).unwrap_or(i64::MAX);
                // redis's own ceiling is INT_MAX; the proxy's is max_args.
                if n > max || n > i64::from(i32::MAX) {
                    return fatal(INVALID_MULTIBULK, buf);
                }
                let n = n as usize;
                self.pos = cr + 2;
                self.searched = self.pos;
                self.want = Some(n);
                // The smallest argument, `$0\r\n\r\n`, takes 6 bytes: reserve
                // for what the buffer can hold, not for what the count claims.
                self.args = Vec::with_capacity(n.min((buf.len() - self.pos) / 6 + 1));
                n
            }
        };
        let max_bulk = bulk_limit(limits);
        while self.args.len() < want {
            let start = self.pos;
            match buf.get(start) {
                None => return Parse::Incomplete,
                Some(b'$') => {}
                // redis answers only once the line's `\r` is in; the text
                // is the same, so the proxy answers at once.
                Some(&got) => return fatal(expected_dollar(got), buf),
            }
            let cr = match scan_line(
                buf,
                start + 1,
                &mut self.searched,
                b'\r',
                limits.max_line,
                1,
            ) {
                Line::Incomplete => return Parse::Incomplete,
                Line::TooLong => return fatal(TOO_BIG_BULK, buf),
                Line::End(cr) => cr,
            };
            let Some(&next) = buf.get(cr + 1) else {
                return Parse::Incomplete;
            };
            if next != b'\n' {
                return fatal(INVALID_BULK, buf);
            }
            let len = match parse_i64(&buf[start + 1..cr]).map(usize::try_from) {
                Some(Ok(len)) if len <= max_bulk => len,
                _ => return fatal(INVALID_BULK, buf),
            };
            let data = cr + 2;
            let end = data.saturating_add(len);
            if buf.len() < end.saturating_add(2) {
                // A wrong byte where the `\r` belongs is an error now, not
                // after the rest of a bulk that is already over.
                if buf.len() > end && buf[end] != b'\r' {
                    return fatal(BULK_UNTERMINATED, buf);
                }
                // Skip the header next time; the data is waited for by length.
                self.searched = start;
                return Parse::Incomplete;
            }
            if &buf[end..end + 2] != b"\r\n" {
                return fatal(BULK_UNTERMINATED, buf);
            }
            self.args.push(data..end);
            self.pos = end + 2;
            self.searched = self.pos;
        }
        Parse::Request(
            Command {
                args: std::mem::take(&mut self.args),
            },
            self.pos,
        )
    }

    /// A line of words, split the way redis's `sdssplitargs` splits it.
    fn inline(&mut self, buf: &[u8], limits: &Limits) -> Parse<Command> {
        let lf = match scan_line(buf, 0, &mut self.searched, b'\n', limits.max_line, 2) {
            // Over the limit already, unless the last byte is a `\r` that
            // a `\n` will make part of the line end.
            Line::Incomplete if buf.len() - usize::from(buf.ends_with(b"\r")) > limits.max_line => {
                return fatal(TOO_BIG_INLINE, buf)
            }
            Line::Incomplete => return Parse::Incomplete,
            Line::TooLong => return fatal(TOO_BIG_INLINE, buf),
            Line::End(lf) => lf,
        };
        // Only one `\r` before the `\n` belongs to the line end, as in redis.
        let end = if lf > 0 && buf[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf
        };
        if end > limits.max_line {
            return fatal(TOO_BIG_INLINE, buf);
        }
        if buf[..end].contains(&0) {
            return fatal(INLINE_NUL, buf);
        }
        match split_inline(&buf[..end]) {
            Ok(args) if args.len() > limits.max_args => {
                Parse::Reject(Reject::reply(INLINE_TOO_MANY, lf + 1))
            }
            Ok(args) => Parse::Request(Command { args }, lf + 1),
            Err(Split::Unbalanced) => fatal(UNBALANCED_QUOTES, buf),
            Err(Split::NotARange) => Parse::Reject(Reject::reply(INLINE_UNSUPPORTED, lf + 1)),
        }
    }
}

/// Where the search for a line's end stands.
enum Line {
    /// The end byte is at this index.
    End(usize),
    /// Not found yet, and the line may still end within its limit.
    Incomplete,
    /// Not found within the limit.
    TooLong,
}

/// Looks for `end` in the line that starts at `start`, resuming at
/// `*searched` and recording how far it looked. The line's content may be
/// `max` bytes long, and `slack` bytes of line end may follow it (1 for a
/// `\r` that ends it, 2 for a `\n` possibly preceded by a `\r`).
fn scan_line(
    buf: &[u8],
    start: usize,
    searched: &mut usize,
    end: u8,
    max: usize,
    slack: usize,
) -> Line {
    let window = buf
        .len()
        .min(start.saturating_add(max).saturating_add(slack));
    let from = (*searched).max(start);
    if from < window {
        if let Some(i) = buf[from..window].iter().position(|&b| b == end) {
            *searched = from + i;
            return Line::End(from + i);
        }
    }
    *searched = window.max(from);
    if buf.len() >= start.saturating_add(max).saturating_add(slack) {
        Line::TooLong
    } else {
        Line::Incomplete
    }
}

/// Why an inline line could not be split into ranges.
#[derive(Debug, PartialEq)]
enum Split {
    /// An unterminated quote, or a closing quote followed by a non-space:
    /// redis's "unbalanced quotes".
    Unbalanced,
    /// A word redis accepts that is no contiguous range of the line.
    NotARange,
}

/// Splits a line the way redis's `sdssplitargs` does (blanks between words,
/// `"..."` with backslash escapes, `'...'` with `\'`), keeping each word as
/// a range of `line`. A line is a C string to redis, so NULs are refused
/// before this is called.
fn split_inline(line: &[u8]) -> Result<Vec<Range<usize>>, Split> {
    // C's isspace, which separates words; inside an unquoted word only
    // these four (and NUL) end it, so `\v` and `\f` are word bytes there.
    fn space(b: u8) -> bool {
        matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
    }
    fn ends_word(b: u8) -> bool {
        matches!(b, b' ' | b'\t' | b'\n' | b'\r')
    }
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && space(line[p]) {
            p += 1;
        }
        if p == line.len() {
            return Ok(args);
        }
        // The word's bytes so far, if they are one range of the line.
        let mut word: Option<Range<usize>> = None;
        let mut contiguous = true;
        // Appends the byte at `at` to the word, if the word stays a range.
        let take = |at: usize, word: &mut Option<Range<usize>>| match word {
            None => {
                *word = Some(at..at + 1);
                true
            }
            Some(r) if r.end == at => {
                r.end += 1;
                true
            }
            Some(_) => false,
        };
        let (mut dq, mut sq) = (false, false);
        // Where an empty quoted word (`""`) sits, should it take no bytes.
        let mut empty_at = p;
        loop {
            let c = line.get(p).copied();
            if dq {
                match c {
                    None => return Err(Split::Unbalanced),
                    Some(b'\\')
                        if line.get(p + 1) == Some(&b'x')
                            && line.get(p + 2).is_some_and(u8::is_ascii_hexdigit)
                            && line.get(p + 3).is_some_and(u8::is_ascii_hexdigit) =>
                    {
                        contiguous = false;
                        p += 4;
                    }
                    Some(b'\\') if p + 1 < line.len() => {
                        contiguous = false;
                        p += 2;
                    }
                    Some(b'"') => {
                        if line.get(p + 1).is_some_and(|&b| !space(b)) {
                            return Err(Split::Unbalanced);
                        }
                        p += 1;
                        break;
                    }
                    Some(_) => {
                        contiguous &= take(p, &mut word);
                        p += 1;
                    }
                }
            } else if sq {
                match c {
                    None => return Err(Split::Unbalanced),
                    Some(b'\\') if line.get(p + 1) == Some(&b'\'') => {
                        contiguous = false;
                        p += 2;
                    }
                    Some(b'\'') => {
                        if line.get(p + 1).is_some_and(|&b| !space(b)) {
                            return Err(Split::Unbalanced);
                        }
                        p += 1;
                        break;
                    }
                    Some(_) => {
                        contiguous &= take(p, &mut word);
                        p += 1;
                    }
                }
            } else {
                match c {
                    None => break,
                    Some(b) if ends_word(b) => {
                        p += 1;
                        break;
                    }
                    Some(b'"') => {
                        dq = true;
                        p += 1;
                        empty_at = p;
                    }
                    Some(b'\'') => {
                        sq = true;
                        p += 1;
                        empty_at = p;
                    }
                    Some(_) => {
                        contiguous &= take(p, &mut word);
                        p += 1;
                    }
                }
            }
        }
        if !contiguous {
            return Err(Split::NotARange);
        }
        args.push(word.unwrap_or(empty_at..empty_at));
    }
}

/// A fatal protocol error: redis replies, then closes the connection, so
/// the rest of the buffer goes too.
fn fatal(reply: impl Into<Vec<u8>>, buf: &[u8]) -> Parse<Command> {
    Parse::Reject(Reject::fatal(reply, buf.len()))
}

/// redis's `expected '$', got 'x'`. Like redis, a CR or LF in the reply
/// becomes a space (an error line must stay one line); so does a NUL, which
/// would cut redis's C string short.
fn expected_dollar(got: u8) -> Vec<u8> {
    let mut out = b"-ERR Protocol error: expected '$', got '".to_vec();
    out.push(match got {
        b'\r' | b'\n' | 0 => b' ',
        b => b,
    });
    out.extend_from_slice(b"'\r\n");
    out
}

/// The largest bulk string accepted, from a client or a backend.
fn bulk_limit(limits: &Limits) -> usize {
    limits.max_value.saturating_add(BULK_SLACK)
}

/// Parses a decimal integer as redis's `string2ll` does: an optional `-`,
/// no `+`, no leading zeros (but `0` itself), no blanks, no overflow.
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [b'0'] if !neg => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        // Accumulate negatively so i64::MIN parses too.
        v = v.checked_mul(10)?.checked_sub(d)?;
    }
    if neg {
        Some(v)
    } else {
        v.checked_neg()
    }
}

/// How the proxy routes a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// One key, `args[1]`, picks the server. For the few commands whose
    /// `args[1]` is no key (ZUNION, ZINTER, ZDIFF take a count there) this is
    /// still what nutcracker does: the command goes whole to one server.
    SingleKey,
    /// Keys from `args[1]` every `step` arguments (MGET, DEL, EXISTS,
    /// UNLINK, TOUCH: 1; MSET: 2, key then value), split across servers
    /// and the replies merged.
    MultiKey {
        /// Arguments per key: the key and its companions.
        step: usize,
    },
    /// EVAL/EVALSHA: `args[2]` counts the keys, the first of which,
    /// `args[3]`, picks the server; see [`eval_numkeys`].
    Eval,
    /// Answered by the proxy.
    Ping,
    /// Answered by the proxy, which then closes the connection.
    Quit,
    /// Checked against the pool's password by the proxy.
    Auth,
    /// Only database 0 exists behind a proxy; the proxy answers.
    Select,
}

/// What the proxy knows of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spec {
    /// How it is routed.
    pub(crate) kind: Kind,
    /// redis's arity, the name counted: `n` means exactly n arguments,
    /// `-n` at least n.
    pub(crate) arity: i32,
}

impl Spec {
    /// Whether `argc` arguments (the name included) suit the command, by
    /// redis's arity rule and, for a multi-key command with companions
    /// (MSET), whole groups of them: redis answers an odd MSET with its
    /// wrong-number-of-arguments error too.
    pub(crate) fn arity_ok(&self, argc: usize) -> bool {
        let n = i64::try_from(argc).unwrap_or(i64::MAX);
        let arity = i64::from(self.arity);
        let count_ok = if arity >= 0 { n == arity } else { n >= -arity };
        let groups_ok = match self.kind {
            Kind::MultiKey { step } if step > 1 => argc > 0 && (argc - 1) % step == 0,
            _ => true,
        };
        count_ok && groups_ok
    }
}

/// A command's [`Spec`], by its name in any case; `None` for a command the
/// proxy does not route (answer it with [`unsupported`]).
pub(crate) fn command_spec(name: &[u8]) -> Option<Spec> {
    // The longest name in the table is GEORADIUSBYMEMBER (17 bytes).
    let mut upper = [0u8; 24];
    let upper = upper.get_mut(..name.len())?;
    upper.copy_from_slice(name);
    upper.make_ascii_uppercase();
    let upper: &[u8] = upper;
    COMMANDS
        .binary_search_by(|(n, _)| n.as_bytes().cmp(upper))
        .ok()
        .map(|i| COMMANDS[i].1)
}

/// Shorthands for the table.
const fn single(arity: i32) -> Spec {
    Spec {
        kind: Kind::SingleKey,
        arity,
    }
}

/// A multi-key command with `step` arguments per key.
const fn multi(step: usize, arity: i32) -> Spec {
    Spec {
        kind: Kind::MultiKey { step },
        arity,
    }
}

/// A command the proxy handles by its kind.
const fn special(kind: Kind, arity: i32) -> Spec {
    Spec { kind, arity }
}

/// Every command nutcracker 0.5 routes for redis (`nc_redis.c`), with the
/// arity redis-server 7 reports for it (`COMMAND INFO`), plus SELECT, which
/// the proxy answers. Sorted by name for the binary search.
///
/// nutcracker 0.5 routes EXISTS by its first key; here it is multi-key, like
/// DEL, so `EXISTS a b` counts keys on every server. PFCOUNT, PFMERGE, the
/// set and sorted-set *STORE/combination commands, COPY, LMOVE, RPOPLPUSH,
/// SMOVE and the like go whole to the server of their first key, as in
/// nutcracker. COMMAND and LOLWUT, which nutcracker sends to some server,
/// are left out.
const COMMANDS: &[(&str, Spec)] = &[
    ("APPEND", single(3)),
    ("AUTH", special(Kind::Auth, -2)),
    ("BITCOUNT", single(-2)),
    ("BITFIELD", single(-2)),
    ("BITPOS", single(-3)),
    ("COPY", single(-3)),
    ("DECR", single(2)),
    ("DECRBY", single(3)),
    ("DEL", multi(1, -2)),
    ("DUMP", single(2)),
    ("EVAL", special(Kind::Eval, -3)),
    ("EVALSHA", special(Kind::Eval, -3)),
    ("EXISTS", multi(1, -2)),
    ("EXPIRE", single(-3)),
    ("EXPIREAT", single(-3)),
    ("GEOADD", single(-5)),
    ("GEODIST", single(-4)),
    ("GEOHASH", single(-2)),
    ("GEOPOS", single(-2)),
    ("GEORADIUS", single(-6)),
    ("GEORADIUSBYMEMBER", single(-5)),
    ("GEOSEARCH", single(-7)),
    ("GEOSEARCHSTORE", single(-8)),
    ("GET", single(2)),
    ("GETBIT", single(3)),
    ("GETDEL", single(2)),
    ("GETEX", single(-2)),
    ("GETRANGE", single(4)),
    ("GETSET", single(3)),
    ("HDEL", single(-3)),
    ("HEXISTS", single(3)),
    ("HGET", single(3)),
    ("HGETALL", single(2)),
    ("HINCRBY", single(4)),
    ("HINCRBYFLOAT", single(4)),
    ("HKEYS", single(2)),
    ("HLEN", single(2)),
    ("HMGET", single(-3)),
    ("HMSET", single(-4)),
    ("HRANDFIELD", single(-2)),
    ("HSCAN", single(-3)),
    ("HSET", single(-4)),
    ("HSETNX", single(4)),
    ("HSTRLEN", single(3)),
    ("HVALS", single(2)),
    ("INCR", single(2)),
    ("INCRBY", single(3)),
    ("INCRBYFLOAT", single(3)),
    ("LINDEX", single(3)),
    ("LINSERT", single(5)),
    ("LLEN", single(2)),
    ("LMOVE", single(5)),
    ("LPOP", single(-2)),
    ("LPOS", single(-3)),
    ("LPUSH", single(-3)),
    ("LPUSHX", single(-3)),
    ("LRANGE", single(4)),
    ("LREM", single(4)),
    ("LSET", single(4)),
    ("LTRIM", single(4)),
    ("MGET", multi(1, -2)),
    ("MOVE", single(3)),
    ("MSET", multi(2, -3)),
    ("PERSIST", single(2)),
    ("PEXPIRE", single(-3)),
    ("PEXPIREAT", single(-3)),
    ("PFADD", single(-2)),
    ("PFCOUNT", single(-2)),
    ("PFMERGE", single(-2)),
    ("PING", special(Kind::Ping, -1)),
    ("PSETEX", single(4)),
    ("PTTL", single(2)),
    ("QUIT", special(Kind::Quit, -1)),
    ("RESTORE", single(-4)),
    ("RPOP", single(-2)),
    ("RPOPLPUSH", single(3)),
    ("RPUSH", single(-3)),
    ("RPUSHX", single(-3)),
    ("SADD", single(-3)),
    ("SCARD", single(2)),
    ("SDIFF", single(-2)),
    ("SDIFFSTORE", single(-3)),
    ("SELECT", special(Kind::Select, 2)),
    ("SET", single(-3)),
    ("SETBIT", single(4)),
    ("SETEX", single(4)),
    ("SETNX", single(3)),
    ("SETRANGE", single(4)),
    ("SINTER", single(-2)),
    ("SINTERSTORE", single(-3)),
    ("SISMEMBER", single(3)),
    ("SMEMBERS", single(2)),
    ("SMISMEMBER", single(-3)),
    ("SMOVE", single(4)),
    ("SORT", single(-2)),
    ("SPOP", single(-2)),
    ("SRANDMEMBER", single(-2)),
    ("SREM", single(-3)),
    ("SSCAN", single(-3)),
    ("STRLEN", single(2)),
    ("SUNION", single(-2)),
    ("SUNIONSTORE", single(-3)),
    ("TOUCH", multi(1, -2)),
    ("TTL", single(2)),
    ("TYPE", single(2)),
    ("UNLINK", multi(1, -2)),
    ("ZADD", single(-4)),
    ("ZCARD", single(2)),
    ("ZCOUNT", single(4)),
    ("ZDIFF", single(-3)),
    ("ZDIFFSTORE", single(-4)),
    ("ZINCRBY", single(4)),
    ("ZINTER", single(-3)),
    ("ZINTERSTORE", single(-4)),
    ("ZLEXCOUNT", single(4)),
    ("ZMSCORE", single(-3)),
    ("ZPOPMAX", single(-2)),
    ("ZPOPMIN", single(-2)),
    ("ZRANDMEMBER", single(-2)),
    ("ZRANGE", single(-4)),
    ("ZRANGEBYLEX", single(-4)),
    ("ZRANGEBYSCORE", single(-4)),
    ("ZRANGESTORE", single(-5)),
    ("ZRANK", single(3)),
    ("ZREM", single(-3)),
    ("ZREMRANGEBYLEX", single(4)),
    ("ZREMRANGEBYRANK", single(4)),
    ("ZREMRANGEBYSCORE", single(4)),
    ("ZREVRANGE", single(-4)),
    ("ZREVRANGEBYLEX", single(-4)),
    ("ZREVRANGEBYSCORE", single(-4)),
    ("ZREVRANK", single(3)),
    ("ZSCAN", single(-3)),
    ("ZSCORE", single(3)),
    ("ZUNION", single(-3)),
    ("ZUNIONSTORE", single(-4)),
];

/// The number of keys of an EVAL/EVALSHA whose arity is checked, at least
/// one: the first key, `args[3]`, routes it. Otherwise the reply to send:
/// redis's own text for a bad count, and the proxy's for a script with no
/// key, which has no server to go to (nutcracker refuses it too).
pub(crate) fn eval_numkeys(buf: &[u8], cmd: &Command) -> Result<usize, Vec<u8>> {
    let name = cmd.name(buf);
    let Some(count) = cmd.arg(buf, 2) else {
        return Err(wrong_arity(name));
    };
    let Some(n) = parse_i64(count) else {
        return Err(b"-ERR value is not an integer or out of range\r\n".to_vec());
    };
    let args = i64::try_from(cmd.args.len()).unwrap_or(i64::MAX);
    if n > args - 3 {
        return Err(b"-ERR Number of keys can't be greater than number of args\r\n".to_vec());
    }
    if n < 0 {
        return Err(b"-ERR Number of keys can't be negative\r\n".to_vec());
    }
    if n == 0 {
        let mut out = b"-ERR ".to_vec();
        push_line(&mut out, &name.to_ascii_lowercase());
        out.extend_from_slice(b" with 0 keys is not supported by the proxy\r\n");
        return Err(out);
    }
    Ok(n as usize)
}

/// The reply to a command the proxy does not route:
/// `-ERR unknown or unsupported command 'name'`, the name shown lossily and
/// cut to 128 bytes (it is client input, of any length and bytes).
pub(crate) fn unsupported(name: &[u8]) -> Vec<u8> {
    let shown = String::from_utf8_lossy(&name[..name.len().min(128)]);
    let mut out = b"-ERR unknown or unsupported command '".to_vec();
    push_line(&mut out, shown.as_bytes());
    out.extend_from_slice(b"'\r\n");
    out
}

/// redis's reply to a command with the wrong number of arguments:
/// `-ERR wrong number of arguments for 'get' command`, the name in lower
/// case as redis 7 prints it.
pub(crate) fn wrong_arity(name: &[u8]) -> Vec<u8> {
    let shown = String::from_utf8_lossy(&name[..name.len().min(128)]).to_lowercase();
    let mut out = b"-ERR wrong number of arguments for '".to_vec();
    push_line(&mut out, shown.as_bytes());
    out.extend_from_slice(b"' command\r\n");
    out
}

/// An error reply, `-ERR msg\r\n`, or `-msg\r\n` when `msg` starts with a
/// `-` or with one of redis's error codes followed by a space or nothing
/// (`WRONGTYPE ...`, `NOAUTH ...`, `ERR ...`; see [`ERROR_CODES`]). A known
/// list, not "any upper-case word", so a message that starts with a command
/// name (`SELECT 1 is not supported`) still gets its `ERR`. CR and LF in
/// `msg` become spaces so the reply stays one line, as redis does with its
/// own errors.
pub(crate) fn error(msg: &str) -> Vec<u8> {
    let (has_code, msg) = match msg.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => {
            let word = msg.split(' ').next().unwrap_or_default();
            (ERROR_CODES.contains(&word), msg)
        }
    };
    let mut out = Vec::with_capacity(msg.len() + 7);
    out.push(b'-');
    if !has_code {
        out.extend_from_slice(b"ERR ");
    }
    push_line(&mut out, msg.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// The error codes redis-server 7 starts its error replies with.
const ERROR_CODES: &[&str] = &[
    "ERR",
    "WRONGTYPE",
    "NOAUTH",
    "WRONGPASS",
    "NOPERM",
    "NOPROTO",
    "NOSCRIPT",
    "BUSY",
    "BUSYKEY",
    "BUSYGROUP",
    "NOGROUP",
    "LOADING",
    "MISCONF",
    "OOM",
    "READONLY",
    "EXECABORT",
    "MASTERDOWN",
    "NOREPLICAS",
    "MOVED",
    "ASK",
    "TRYAGAIN",
    "CROSSSLOT",
    "CLUSTERDOWN",
    "UNKILLABLE",
    "NOTBUSY",
    "UNBLOCKED",
];

/// Appends `text` with CR and LF turned into spaces, so that client bytes
/// echoed in a status or error line cannot end it early.
fn push_line(out: &mut Vec<u8>, text: &[u8]) {
    out.extend(text.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
}

/// Appends a command as a RESP multibulk, the form every server reads.
pub(crate) fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    let payload: usize = args.iter().map(|a| a.len() + 16).sum();
    out.reserve(payload + 16);
    array_header(args.len(), out);
    for arg in args {
        bulk(arg, out);
    }
}

/// Appends an integer reply, `:n\r\n`.
pub(crate) fn integer(n: i64, out: &mut Vec<u8>) {
    out.push(b':');
    if n < 0 {
        out.push(b'-');
    }
    push_decimal(n.unsigned_abs(), out);
    out.extend_from_slice(b"\r\n");
}

/// Appends an array header, `*n\r\n`; the n elements follow.
pub(crate) fn array_header(n: usize, out: &mut Vec<u8>) {
    out.push(b'*');
    push_decimal(n as u64, out);
    out.extend_from_slice(b"\r\n");
}

/// Appends a bulk string, `$len\r\ndata\r\n`.
pub(crate) fn bulk(data: &[u8], out: &mut Vec<u8>) {
    out.push(b'$');
    push_decimal(data.len() as u64, out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal without a heap allocation.
fn push_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The length of the one complete reply at the front of `buf` (a status
/// `+`, error `-`, integer `:`, bulk `$` including `$-1`, or array `*`
/// including `*-1` and arrays nested to any depth), `None` while it is
/// incomplete, `Err` when the bytes are no RESP2 reply, and the backend
/// connection can no longer be trusted.
///
/// Nesting is counted, not recursed into, so any depth is safe. Bulk data
/// is skipped by length; a bulk longer than `max_value` (plus a little
/// slack) or a line longer than `max_line` is an error. Each call starts
/// from the front, O(elements + line bytes); a caller that calls it on each
/// small read of a large array can use [`ReplyScanner`], which resumes.
pub(crate) fn reply_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, String> {
    ReplyScanner::default().advance(buf, limits)
}

/// A [`reply_len`] that remembers how far it got, so that a reply arriving
/// a few bytes at a time is framed in O(its length) overall.
///
/// Contract: between calls the caller only appends to `buf`; after a result
/// other than `Ok(None)` the scanner starts afresh for the next reply. A
/// buffer shorter than one seen before resets the scanner.
#[derive(Debug, Default)]
pub(crate) struct ReplyScanner {
    /// Start of the next element not yet framed.
    pos: usize,
    /// How far the line at `pos` has been searched for its end in vain.
    searched: usize,
    /// Elements still to frame, 1 for the reply itself plus every array
    /// element announced and not yet framed; 0 before the first call.
    pending: u64,
}

impl ReplyScanner {
    /// Frames on from where the last call stopped; see [`reply_len`].
    pub(crate) fn advance(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, String> {
        if self.pos > buf.len() || self.searched > buf.len() {
            *self = ReplyScanner::default();
        }
        let out = self.frame(buf, limits);
        if !matches!(out, Ok(None)) {
            *self = ReplyScanner::default();
        }
        out
    }

    fn frame(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, String> {
        if self.pending == 0 {
            self.pending = 1;
        }
        let max_bulk = bulk_limit(limits);
        while self.pending > 0 {
            let start = self.pos;
            let Some(&kind) = buf.get(start) else {
                return Ok(None);
            };
            if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
                return Err(format!(
                    "invalid reply type byte {:?} at offset {start}",
                    char::from(kind)
                ));
            }
            // The line is everything up to the first CRLF: resume the search
            // one byte back in case the `\r` came in the last read.
            let window = buf
                .len()
                .min(start.saturating_add(limits.max_line).saturating_add(3));
            let from = self.searched.saturating_sub(1).max(start + 1);
            let cr = match buf.get(from..window).and_then(find_crlf) {
                Some(i) => from + i,
                None if window == buf.len()
                    && buf.len() < start.saturating_add(limits.max_line).saturating_add(3) =>
                {
                    self.searched = buf.len();
                    return Ok(None);
                }
                None => return Err(format!("reply line at offset {start} exceeds max_line")),
            };
            let line = &buf[start + 1..cr];
            let mut next = cr + 2;
            match kind {
                b':' => {
                    parse_i64(line).ok_or_else(|| bad_number("integer", line))?;
                }
                b'$' => match parse_i64(line) {
                    Some(-1) => {}
                    Some(n) if n >= 0 && usize::try_from(n).is_ok_and(|n| n <= max_bulk) => {
                        let end = next.saturating_add(n as usize);
                        if buf.len() < end.saturating_add(2) {
                            if buf.len() > end && buf[end] != b'\r' {
                                return Err(format!("bulk at offset {start} not followed by CRLF"));
                            }
                            // Wait by length; the header is rescanned, briefly.
                            self.searched = start;
                            return Ok(None);
                        }
                        if &buf[end..end + 2] != b"\r\n" {
                            return Err(format!("bulk at offset {start} not followed by CRLF"));
                        }
                        next = end + 2;
                    }
                    Some(n) if n >= 0 => {
                        return Err(format!("bulk of {n} bytes exceeds max_value"));
                    }
                    _ => return Err(bad_number("bulk length", line)),
                },
                b'*' => match parse_i64(line) {
                    Some(-1) => {}
                    Some(n) if n >= 0 => {
                        // Counting elements instead of recursing: any nesting
                        // depth costs no stack.
                        self.pending = self
                            .pending
                            .checked_add(n as u64)
                            .ok_or_else(|| "array lengths overflow".to_string())?;
                    }
                    _ => return Err(bad_number("array length", line)),
                },
                _ => {} // `+` and `-` lines carry text.
            }
            self.pending -= 1;
            self.pos = next;
            self.searched = next;
        }
        Ok(Some(self.pos))
    }
}

/// The error for a number field that is not one.
fn bad_number(what: &str, line: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&line[..line.len().min(32)]);
    format!("invalid {what} {shown:?} in reply")
}

/// Limits for framing a reply already known to be complete: it is in
/// memory, so there is nothing left to bound.
const UNBOUNDED: Limits = Limits {
    max_key: usize::MAX,
    max_value: usize::MAX,
    max_line: usize::MAX,
    max_args: usize::MAX,
};

/// The byte range of each top-level element of a complete array reply (as
/// framed by [`reply_len`]), in order: how an MGET split across servers is
/// put back together in the order the client asked. A null array (`*-1`),
/// a reply that is not an array, or one with bytes left over is an error.
pub(crate) fn array_elements(reply: &[u8]) -> Result<Vec<Range<usize>>, String> {
    if reply.first() != Some(&b'*') {
        return Err("reply is not an array".to_string());
    }
    let cr = find_crlf(reply).ok_or_else(|| "array header incomplete".to_string())?;
    let line = &reply[1..cr];
    let n = match parse_i64(line) {
        Some(n) if n >= 0 => n as u64,
        Some(-1) => return Err("null array".to_string()),
        _ => return Err(bad_number("array length", line)),
    };
    let mut pos = cr + 2;
    // Every element takes at least 3 bytes (`+\r\n`): reserve for what the
    // reply holds, not for what the header claims.
    let room = (reply.len() - pos) / 3;
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(usize::MAX).min(room));
    for _ in 0..n {
        let len = reply_len(&reply[pos..], &UNBOUNDED)?
            .ok_or_else(|| "array reply incomplete".to_string())?;
        out.push(pos..pos + len);
        pos += len;
    }
    if pos != reply.len() {
        return Err(format!("{} bytes after the array", reply.len() - pos));
    }
    Ok(out)
}

/// The value of an integer reply (`:n\r\n`), such as DEL's count; `None`
/// for any other reply.
pub(crate) fn integer_value(reply: &[u8]) -> Option<i64> {
    let body = reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    parse_i64(body)
}

/// Whether a reply is an error (`-...`).
pub(crate) fn is_error(reply: &[u8]) -> bool {
    reply.first() == Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits::default()
    }

    /// Small limits, so that tests reach them with short inputs.
    fn tight() -> Limits {
        Limits {
            max_key: 8,
            max_value: 16,
            max_line: 24,
            max_args: 4,
        }
    }

    /// The arguments of the command at the front of `buf`, and its length.
    fn parsed(buf: &[u8]) -> (Vec<Vec<u8>>, usize) {
        match parse_command(buf, &limits()) {
            Parse::Request(cmd, n) => (
                cmd.args.iter().map(|r| buf[r.clone()].to_vec()).collect(),
                n,
            ),
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
        }
    }

    /// The reject for `buf`, as (reply text, close).
    fn rejected(buf: &[u8], limits: &Limits) -> (String, bool) {
        match parse_command(buf, limits) {
            Parse::Reject(r) => {
                assert!(r.consumed <= buf.len());
                (String::from_utf8_lossy(&r.reply).into_owned(), r.close)
            }
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
        }
    }

    fn words(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    fn encoded(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_command(args, &mut out);
        out
    }

    #[test]
    fn multibulk_command() {
        let buf = b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n";
        assert_eq!(parsed(buf), (words(&["GET", "foo"]), buf.len()));
        let (cmd, _) = match parse_command(buf, &limits()) {
            Parse::Request(c, n) => (c, n),
            _ => unreachable!(),
        };
        assert_eq!(cmd.name(buf), b"GET");
        assert_eq!(cmd.arg(buf, 1), Some(&b"foo"[..]));
        assert_eq!(cmd.arg(buf, 2), None);
    }

    #[test]
    fn pipelined_commands_parse_one_at_a_time() {
        let buf =
            b"*1\r\n$4\r\nPING\r\nget a\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*0\r\nQUIT\n";
        let mut pos = 0;
        let mut seen = Vec::new();
        while pos < buf.len() {
            let (args, n) = parsed(&buf[pos..]);
            seen.push(args);
            pos += n;
        }
        assert_eq!(pos, buf.len());
        assert_eq!(
            seen,
            vec![
                words(&["PING"]),
                words(&["get", "a"]),
                words(&["SET", "k", ""]),
                vec![],
                words(&["QUIT"]),
            ]
        );
    }

    #[test]
    fn bulk_arguments_are_binary_safe() {
        let value: &[u8] = b"a\r\nb\0c*1\r\n$3\r\n\xff";
        let buf = encoded(&[b"SET", b"k\r\n", value]);
        let (args, n) = parsed(&buf);
        assert_eq!(n, buf.len());
        assert_eq!(
            args,
            vec![b"SET".to_vec(), b"k\r\n".to_vec(), value.to_vec()]
        );
    }

    #[test]
    fn every_split_of_a_command_is_incomplete() {
        let buf = b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$10\r\n0123456789\r\n";
        for k in 0..buf.len() {
            assert_eq!(
                parse_command(&buf[..k], &limits()),
                Parse::Incomplete,
                "split {k}"
            );
        }
        let inline = b"set  \"a b\" 'c'\r\n";
        for k in 0..inline.len() {
            assert_eq!(
                parse_command(&inline[..k], &limits()),
                Parse::Incomplete,
                "split {k}"
            );
        }
        assert_eq!(parsed(inline).0, words(&["set", "a b", "c"]));
    }

    #[test]
    fn scanner_resumes_byte_by_byte() {
        let buf = b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$10\r\n0123456789\r\nPING\r\n";
        let mut scanner = CommandScanner::default();
        let mut k = 0;
        let first = loop {
            k += 1;
            match scanner.parse(&buf[..k], &limits()) {
                Parse::Incomplete => continue,
                other => break other,
            }
        };
        assert_eq!(first, parse_command(buf, &limits()));
        let Parse::Request(_, n) = first else {
            unreachable!()
        };
        assert_eq!(n, k);
        // Afresh for the next command, in the buffer after the first.
        let rest = &buf[n..];
        let second = (1..=rest.len())
            .map(|k| scanner.parse(&rest[..k], &limits()))
            .find(|p| !matches!(p, Parse::Incomplete));
        assert_eq!(
            second,
            Some(Parse::Request(
                Command {
                    args: std::iter::once(0..4).collect()
                },
                6
            ))
        );
        // A shorter buffer than last time (a broken contract) still works.
        let mut s = CommandScanner::default();
        assert_eq!(s.parse(&buf[..20], &limits()), Parse::Incomplete);
        assert_eq!(
            s.parse(b"PING\r\n", &limits()),
            parse_command(b"PING\r\n", &limits())
        );
    }

    #[test]
    fn empty_commands_are_skipped() {
        for buf in [
            &b"*0\r\n"[..],
            b"*-1\r\n",
            b"*-5\r\n",
            b"\r\n",
            b"\n",
            b"   \r\n",
            b"\t \x0b\n",
        ] {
            assert_eq!(
                parse_command(buf, &limits()),
                Parse::Request(Command::default(), buf.len()),
                "{buf:?}"
            );
        }
    }

    #[test]
    fn inline_commands_split_like_redis() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"PING\r\n", &["PING"]),
            (b"PING\n", &["PING"]),
            (b"get foo\r\n", &["get", "foo"]),
            (b"  get \t foo  \r\n", &["get", "foo"]),
            (b"set \"a b\" c\r\n", &["set", "a b", "c"]),
            (b"set 'a\tb' \"\"\r\n", &["set", "a\tb", ""]),
            (b"echo ''\n", &["echo", ""]),
            (b"echo ab\"\"\n", &["echo", "ab"]),
            (b"echo \"a\rb\"\r\n", &["echo", "a\rb"]),
            // Only space, tab, CR and LF end an unquoted word.
            (b"echo a\x0bb\r\n", &["echo", "a\x0bb"]),
            (b"echo a\rb\r\n", &["echo", "a", "b"]),
            (b"\x0bPING\r\n", &["PING"]),
            // Only one CR belongs to the line end.
            (b"echo a\r\r\n", &["echo", "a"]),
            (b"$3\r\n", &["$3"]),
        ];
        for (buf, want) in cases {
            assert_eq!(
                parsed(buf),
                (words(want), buf.len()),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn inline_errors() {
        let unbalanced = "-ERR Protocol error: unbalanced quotes in request\r\n";
        for buf in [
            &b"get \"a\r\n"[..],
            b"get 'a\r\n",
            b"get \"a\"b\r\n",
            b"get 'a'b\n",
            b"get \"a\\\"\r\n",
        ] {
            assert_eq!(
                rejected(buf, &limits()),
                (unbalanced.into(), true),
                "{buf:?}"
            );
        }
        // Escapes and quotes in mid-word build arguments that are no range of
        // the buffer: answered, skipped, and the connection goes on.
        for buf in [
            &b"get \"a\\x41\"\r\n"[..],
            b"get \"a\\nb\"\r\n",
            b"get 'it\\'s'\r\n",
            b"get a\"b c\"\r\n",
            b"get a\x0c\"b\"\r\n",
        ] {
            let Parse::Reject(r) = parse_command(buf, &limits()) else {
                panic!("{buf:?}")
            };
            assert_eq!(r.reply, INLINE_UNSUPPORTED, "{buf:?}");
            assert_eq!((r.consumed, r.close), (buf.len(), false));
        }
        let (text, close) = rejected(b"get a\0b\r\n", &limits());
        assert_eq!((text.as_bytes(), close), (INLINE_NUL, true));
        let (text, close) = rejected(b"a b c d e\r\n", &tight());
        assert_eq!((text.as_bytes(), close), (INLINE_TOO_MANY, false));
        assert!(matches!(
            parse_command(b"a b c d\r\n", &tight()),
            Parse::Request(..)
        ));
    }

    #[test]
    fn inline_line_limit() {
        let too_big = (
            "-ERR Protocol error: too big inline request\r\n".to_string(),
            true,
        );
        let t = tight();
        // 24 bytes of content is the most, with or without its line end yet.
        let line = "x".repeat(24);
        assert!(matches!(
            parse_command(format!("{line}\r\n").as_bytes(), &t),
            Parse::Request(..)
        ));
        assert_eq!(parse_command(line.as_bytes(), &t), Parse::Incomplete);
        assert_eq!(
            parse_command(format!("{line}\r").as_bytes(), &t),
            Parse::Incomplete
        );
        assert_eq!(rejected(format!("{line}x").as_bytes(), &t), too_big);
        assert_eq!(rejected(format!("{line}x\r\n").as_bytes(), &t), too_big);
        assert_eq!(rejected(format!("{line}\rx").as_bytes(), &t), too_big);
        assert_eq!(rejected("y".repeat(70_000).as_bytes(), &limits()), too_big);
    }

    #[test]
    fn multibulk_errors_match_redis() {
        let mbulk = "-ERR Protocol error: invalid multibulk length\r\n";
        let bulk = "-ERR Protocol error: invalid bulk length\r\n";
        let cases: &[(&[u8], &str)] = &[
            (b"*abc\r\n", mbulk),
            (b"*01\r\n", mbulk),
            (b"*+1\r\n", mbulk),
            (b"*-0\r\n", mbulk),
            (b"*\r\n", mbulk),
            (b"*1 \r\n", mbulk),
            (b"*3000000000\r\n", mbulk),
            (b"*2147483648\r\n", mbulk),
            (b"*99999999999999999999\r\n", mbulk),
            (b"*1\rx$4\r\nPING\r\n", mbulk),
            (b"*1\r\n$-1\r\n", bulk),
            (b"*1\r\n$abc\r\n", bulk),
            (b"*1\r\n$04\r\nPING\r\n", bulk),
            (b"*1\r\n$-0\r\n", bulk),
            (b"*1\r\n$\r\n", bulk),
            (b"*1\r\n$4 \r\nPING\r\n", bulk),
            (b"*1\r\n$4\rxPING\r\n", bulk),
            (b"*1\r\n$2000000000\r\n", bulk),
            (
                b"*1\r\nx\r\n",
                "-ERR Protocol error: expected '$', got 'x'\r\n",
            ),
            (b"*1\r\nx", "-ERR Protocol error: expected '$', got 'x'\r\n"),
            (
                b"*1\r\n\r\r\n",
                "-ERR Protocol error: expected '$', got ' '\r\n",
            ),
            (
                b"*1\r\n\n",
                "-ERR Protocol error: expected '$', got ' '\r\n",
            ),
            (
                b"*2\r\n$3\r\nGET\r\n:1\r\n",
                "-ERR Protocol error: expected '$', got ':'\r\n",
            ),
            (
                b"*1\r\n$4\r\nPINGxx",
                "-ERR Protocol error: bulk argument not followed by CRLF\r\n",
            ),
            (
                b"*1\r\n$4\r\nPINGx",
                "-ERR Protocol error: bulk argument not followed by CRLF\r\n",
            ),
            (
                b"*1\r\n$4\r\nPING\rx",
                "-ERR Protocol error: bulk argument not followed by CRLF\r\n",
            ),
        ];
        for (buf, want) in cases {
            assert_eq!(
                rejected(buf, &limits()),
                (want.to_string(), true),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
        // Raw bytes are shown as they are, as redis shows them.
        let Parse::Reject(r) = parse_command(b"*1\r\n\xff4\r\n", &limits()) else {
            panic!()
        };
        assert_eq!(
            r.reply,
            b"-ERR Protocol error: expected '$', got '\xff'\r\n"
        );
    }

    #[test]
    fn header_line_limits() {
        let t = tight();
        let digits = "1".repeat(25);
        assert_eq!(
            rejected(format!("*{digits}").as_bytes(), &t),
            (
                "-ERR Protocol error: too big mbulk count string\r\n".into(),
                true
            )
        );
        assert_eq!(
            rejected(format!("*1\r\n${digits}").as_bytes(), &t),
            (
                "-ERR Protocol error: too big bulk count string\r\n".into(),
                true
            )
        );
        // Up to the limit it waits for the line end.
        assert_eq!(
            parse_command(format!("*{}", &digits[..24]).as_bytes(), &t),
            Parse::Incomplete
        );
    }

    #[test]
    fn argument_and_size_limits() {
        let t = tight();
        let mbulk = (
            "-ERR Protocol error: invalid multibulk length\r\n".to_string(),
            true,
        );
        assert_eq!(rejected(b"*5\r\n", &t), mbulk);
        assert_eq!(parse_command(b"*4\r\n", &t), Parse::Incomplete);
        // Values up to max_value and a little over pass; more does not.
        let max = bulk_limit(&t);
        let big = vec![b'v'; max];
        assert!(matches!(
            parse_command(&encoded(&[b"SET", b"k", &big]), &t),
            Parse::Request(..)
        ));
        assert_eq!(
            rejected(
                format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", max + 1).as_bytes(),
                &t
            ),
            ("-ERR Protocol error: invalid bulk length\r\n".into(), true)
        );
        // A long key is the router's business, not the parser's.
        let key = vec![b'k'; 100];
        assert!(matches!(
            parse_command(&encoded(&[b"GET", &key]), &t),
            Parse::Request(..)
        ));
    }

    #[test]
    fn huge_claimed_lengths_allocate_nothing() {
        let mbulk = (
            "-ERR Protocol error: invalid multibulk length\r\n".to_string(),
            true,
        );
        assert_eq!(rejected(b"*2147483647\r\n", &limits()), mbulk);
        assert_eq!(
            rejected(b"*1\r\n$2000000000\r\n", &limits()),
            ("-ERR Protocol error: invalid bulk length\r\n".into(), true)
        );
        // With no limits to speak of, the claims are only waited for, and
        // nothing is reserved for them.
        let open = UNBOUNDED;
        let mut s = CommandScanner::default();
        assert_eq!(s.parse(b"*2147483647\r\n", &open), Parse::Incomplete);
        assert!(s.args.capacity() <= 1);
        assert_eq!(rejected(b"*2147483648\r\n", &open), mbulk);
        let mut s = CommandScanner::default();
        assert_eq!(
            s.parse(b"*1\r\n$2000000000\r\nab", &open),
            Parse::Incomplete
        );
        assert!(s.args.capacity() <= 3);
        assert_eq!(
            s.parse(b"*1\r\n$9223372036854775807\r\nab", &open),
            Parse::Incomplete
        );
        assert_eq!(reply_len(b"$2000000000\r\nab", &open), Ok(None));
        assert_eq!(reply_len(b"*2147483647\r\n:1\r\n", &open), Ok(None));
        assert_eq!(
            array_elements(b"*2147483647\r\n:1\r\n"),
            Err("array reply incomplete".into())
        );
    }

    #[test]
    fn command_table() {
        let names: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "sorted and unique, for the binary search");
        // Every command nutcracker 0.5 routes for redis (nc_message.h),
        // COMMAND and LOLWUT aside.
        let nutcracker = "APPEND AUTH BITCOUNT BITFIELD BITPOS COPY DECR DECRBY DEL DUMP EVAL \
            EVALSHA EXISTS EXPIRE EXPIREAT GEOADD GEODIST GEOHASH GEOPOS GEORADIUS \
            GEORADIUSBYMEMBER GEOSEARCH GEOSEARCHSTORE GET GETBIT GETDEL GETEX GETRANGE GETSET \
            HDEL HEXISTS HGET HGETALL HINCRBY HINCRBYFLOAT HKEYS HLEN HMGET HMSET HRANDFIELD \
            HSCAN HSET HSETNX HSTRLEN HVALS INCR INCRBY INCRBYFLOAT LINDEX LINSERT LLEN LMOVE \
            LPOP LPOS LPUSH LPUSHX LRANGE LREM LSET LTRIM MGET MOVE MSET PERSIST PEXPIRE \
            PEXPIREAT PFADD PFCOUNT PFMERGE PING PSETEX PTTL QUIT RESTORE RPOP RPOPLPUSH RPUSH \
            RPUSHX SADD SCARD SDIFF SDIFFSTORE SET SETBIT SETEX SETNX SETRANGE SINTER \
            SINTERSTORE SISMEMBER SMEMBERS SMISMEMBER SMOVE SORT SPOP SRANDMEMBER SREM SSCAN \
            STRLEN SUNION SUNIONSTORE TOUCH TTL TYPE UNLINK ZADD ZCARD ZCOUNT ZDIFF ZDIFFSTORE \
            ZINCRBY ZINTER ZINTERSTORE ZLEXCOUNT ZMSCORE ZPOPMAX ZPOPMIN ZRANDMEMBER ZRANGE \
            ZRANGEBYLEX ZRANGEBYSCORE ZRANGESTORE ZRANK ZREM ZREMRANGEBYLEX ZREMRANGEBYRANK \
            ZREMRANGEBYSCORE ZREVRANGE ZREVRANGEBYLEX ZREVRANGEBYSCORE ZREVRANK ZSCAN ZSCORE \
            ZUNION ZUNIONSTORE";
        for name in nutcracker.split_whitespace() {
            assert!(command_spec(name.as_bytes()).is_some(), "{name}");
            assert!(
                command_spec(name.to_lowercase().as_bytes()).is_some(),
                "{name}"
            );
        }
        assert_eq!(
            names.len(),
            nutcracker.split_whitespace().count() + 1,
            "plus SELECT"
        );
        // Every key-taking command has room for its key at args[1].
        for (name, spec) in COMMANDS {
            if matches!(spec.kind, Kind::SingleKey | Kind::MultiKey { .. }) {
                assert!(!spec.arity_ok(1), "{name}");
                assert!(spec.arity.abs() >= 2, "{name}");
            }
        }
    }

    #[test]
    fn command_lookup() {
        let get = command_spec(b"gEt").unwrap();
        assert_eq!(
            get,
            Spec {
                kind: Kind::SingleKey,
                arity: 2
            }
        );
        assert!(get.arity_ok(2) && !get.arity_ok(1) && !get.arity_ok(3));
        for name in ["MGET", "DEL", "EXISTS", "UNLINK", "TOUCH"] {
            assert_eq!(
                command_spec(name.as_bytes()).unwrap().kind,
                Kind::MultiKey { step: 1 }
            );
        }
        let mset = command_spec(b"mset").unwrap();
        assert_eq!(mset.kind, Kind::MultiKey { step: 2 });
        assert!(mset.arity_ok(3) && mset.arity_ok(5));
        assert!(!mset.arity_ok(2) && !mset.arity_ok(4) && !mset.arity_ok(0));
        let del = command_spec(b"DEL").unwrap();
        assert!(del.arity_ok(2) && del.arity_ok(100) && !del.arity_ok(1));
        assert_eq!(command_spec(b"evalsha").unwrap().kind, Kind::Eval);
        assert_eq!(command_spec(b"Ping").unwrap().kind, Kind::Ping);
        assert!(command_spec(b"ping").unwrap().arity_ok(1));
        assert_eq!(command_spec(b"quit").unwrap().kind, Kind::Quit);
        assert_eq!(command_spec(b"auth").unwrap().kind, Kind::Auth);
        assert_eq!(command_spec(b"select").unwrap().kind, Kind::Select);
        assert_eq!(command_spec(b"pfmerge").unwrap().kind, Kind::SingleKey);
        for name in [
            &b"KEYS"[..],
            b"FLUSHALL",
            b"CONFIG",
            b"MULTI",
            b"",
            b"GETT",
            b"GE",
            b"\xffGET",
        ] {
            assert_eq!(command_spec(name), None, "{name:?}");
        }
        assert_eq!(command_spec(&[b'A'; 1000]), None);
    }

    #[test]
    fn command_errors() {
        assert_eq!(
            unsupported(b"keys"),
            b"-ERR unknown or unsupported command 'keys'\r\n"
        );
        let long = unsupported(&[b'x'; 1000]);
        assert_eq!(
            long.len(),
            b"-ERR unknown or unsupported command ''\r\n".len() + 128
        );
        assert_eq!(
            unsupported(b"a\r\nb\xff"),
            "-ERR unknown or unsupported command 'a  b\u{fffd}'\r\n".as_bytes()
        );
        assert_eq!(
            wrong_arity(b"GET"),
            b"-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(
            wrong_arity(b"mset"),
            b"-ERR wrong number of arguments for 'mset' command\r\n"
        );
    }

    #[test]
    fn eval_keys() {
        let run = |args: &[&[u8]]| {
            let buf = encoded(args);
            let Parse::Request(cmd, _) = parse_command(&buf, &limits()) else {
                panic!()
            };
            eval_numkeys(&buf, &cmd).map_err(|e| String::from_utf8(e).unwrap())
        };
        assert_eq!(run(&[b"EVAL", b"return 1", b"2", b"a", b"b", b"x"]), Ok(2));
        assert_eq!(run(&[b"EVALSHA", b"abc", b"1", b"a"]), Ok(1));
        assert_eq!(
            run(&[b"EVAL", b"s", b"x", b"a"]),
            Err("-ERR value is not an integer or out of range\r\n".into())
        );
        assert_eq!(
            run(&[b"EVAL", b"s", b"01", b"a"]),
            Err("-ERR value is not an integer or out of range\r\n".into())
        );
        assert_eq!(
            run(&[b"EVAL", b"s", b"3", b"a"]),
            Err("-ERR Number of keys can't be greater than number of args\r\n".into())
        );
        assert_eq!(
            run(&[b"EVAL", b"s", b"-1"]),
            Err("-ERR Number of keys can't be negative\r\n".into())
        );
        assert_eq!(
            run(&[b"eval", b"s", b"0"]),
            Err("-ERR eval with 0 keys is not supported by the proxy\r\n".into())
        );
        assert_eq!(
            run(&[b"EVAL", b"s"]),
            Err("-ERR wrong number of arguments for 'eval' command\r\n".into())
        );
    }

    #[test]
    fn builders() {
        assert_eq!(error("boom"), b"-ERR boom\r\n");
        assert_eq!(error("Protocol error: x"), b"-ERR Protocol error: x\r\n");
        assert_eq!(
            error("WRONGTYPE Operation against a key"),
            b"-WRONGTYPE Operation against a key\r\n"
        );
        assert_eq!(error("ERR already"), b"-ERR already\r\n");
        assert_eq!(
            error("-NOAUTH Authentication required."),
            b"-NOAUTH Authentication required.\r\n"
        );
        assert_eq!(error("NOAUTH"), b"-NOAUTH\r\n");
        assert_eq!(error("A b"), b"-ERR A b\r\n");
        assert_eq!(
            error("SELECT 1 is not supported"),
            b"-ERR SELECT 1 is not supported\r\n"
        );
        assert_eq!(error("EVAL needs a key"), b"-ERR EVAL needs a key\r\n");
        assert_eq!(error("ERRATA x"), b"-ERR ERRATA x\r\n");
        assert_eq!(error("two\r\nlines"), b"-ERR two  lines\r\n");
        let mut out = Vec::new();
        integer(0, &mut out);
        integer(-42, &mut out);
        integer(i64::MIN, &mut out);
        integer(i64::MAX, &mut out);
        assert_eq!(
            out,
            b":0\r\n:-42\r\n:-9223372036854775808\r\n:9223372036854775807\r\n"
        );
        let mut out = Vec::new();
        array_header(3, &mut out);
        bulk(b"a\r\n", &mut out);
        bulk(b"", &mut out);
        out.extend_from_slice(NULL_BULK);
        assert_eq!(out, b"*3\r\n$3\r\na\r\n\r\n$0\r\n\r\n$-1\r\n");
        assert_eq!(reply_len(&out, &limits()), Ok(Some(out.len())));
        assert_eq!(encoded(&[b"GET", b"k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(encoded(&[]), b"*0\r\n");
        assert_eq!((OK, PONG), (&b"+OK\r\n"[..], &b"+PONG\r\n"[..]));
    }

    #[test]
    fn replies_are_framed() {
        let cases: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR bad thing\r\n",
            b"-WRONGTYPE\r\n",
            b":0\r\n",
            b":-12\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"$5\r\na\r\nb\r\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n",
            b"*2\r\n*2\r\n+a\r\n*0\r\n*1\r\n*-1\r\n",
        ];
        for case in cases {
            assert_eq!(reply_len(case, &limits()), Ok(Some(case.len())), "{case:?}");
            for k in 0..case.len() {
                assert_eq!(
                    reply_len(&case[..k], &limits()),
                    Ok(None),
                    "{case:?} at {k}"
                );
            }
            // A pipelined reply after it does not count.
            let two = [*case, b"+OK\r\n"].concat();
            assert_eq!(reply_len(&two, &limits()), Ok(Some(case.len())));
        }
    }

    #[test]
    fn garbage_replies_are_errors() {
        for bad in [
            &b"?\r\n"[..],
            b"hello\r\n",
            b":abc\r\n",
            b": 1\r\n",
            b":\r\n",
            b"$-2\r\n",
            b"$x\r\n",
            b"$3\r\nabcd\r\n",
            b"$3\r\nabc\n\n",
            b"*-2\r\n",
            b"*1\r\n?",
            b"*2\r\n:1\r\n!\r\n",
            b"$99999999999999999999\r\n",
        ] {
            assert!(reply_len(bad, &limits()).is_err(), "{bad:?}");
        }
        let t = tight();
        assert!(reply_len(format!("+{}", "x".repeat(30)).as_bytes(), &t).is_err());
        assert_eq!(
            reply_len(format!("+{}", "x".repeat(24)).as_bytes(), &t),
            Ok(None)
        );
        assert!(reply_len(format!("${}\r\n", bulk_limit(&t) + 1).as_bytes(), &t).is_err());
    }

    #[test]
    fn deep_nesting_is_counted_not_recursed() {
        let depth = 1_000_000;
        let mut buf = b"*1\r\n".repeat(depth);
        assert_eq!(reply_len(&buf, &limits()), Ok(None));
        buf.extend_from_slice(b":1\r\n");
        assert_eq!(reply_len(&buf, &limits()), Ok(Some(buf.len())));
        let elements = array_elements(&buf).unwrap();
        assert_eq!(elements, vec![4..buf.len()]);
    }

    #[test]
    fn reply_scanner_resumes() {
        let reply = b"*3\r\n$5\r\nhello\r\n*2\r\n:1\r\n$-1\r\n+done\r\n+next\r\n";
        let mut scanner = ReplyScanner::default();
        let mut got = None;
        for k in 0..=reply.len() {
            match scanner.advance(&reply[..k], &limits()) {
                Ok(None) => continue,
                other => {
                    got = Some((other, k));
                    break;
                }
            }
        }
        let first = reply.len() - b"+next\r\n".len();
        assert_eq!(got, Some((Ok(Some(first)), first)));
        // Afresh for the next reply.
        assert_eq!(scanner.advance(&reply[first..], &limits()), Ok(Some(7)));
    }

    #[test]
    fn mget_replies_split_into_elements() {
        let reply = b"*4\r\n$1\r\na\r\n$-1\r\n*2\r\n:1\r\n+x\r\n$3\r\n\r\n\n\r\n";
        let got = array_elements(reply).unwrap();
        let parts: Vec<&[u8]> = got.iter().map(|r| &reply[r.clone()]).collect();
        assert_eq!(
            parts,
            vec![
                &b"$1\r\na\r\n"[..],
                b"$-1\r\n",
                b"*2\r\n:1\r\n+x\r\n",
                b"$3\r\n\r\n\n\r\n"
            ]
        );
        assert_eq!(array_elements(b"*0\r\n"), Ok(vec![]));
        assert!(array_elements(b"*-1\r\n").is_err());
        assert!(array_elements(b"+OK\r\n").is_err());
        assert!(array_elements(b"*1\r\n:1\r\n:2\r\n").is_err());
        assert!(array_elements(b"*2\r\n:1\r\n").is_err());
        assert!(array_elements(b"*x\r\n").is_err());
        assert!(array_elements(b"*1").is_err());
    }

    #[test]
    fn integers_and_errors() {
        assert_eq!(integer_value(b":3\r\n"), Some(3));
        assert_eq!(integer_value(b":-3\r\n"), Some(-3));
        assert_eq!(integer_value(b":3"), None);
        assert_eq!(integer_value(b"+3\r\n"), None);
        assert_eq!(integer_value(b":x\r\n"), None);
        assert_eq!(integer_value(b""), None);
        assert!(is_error(b"-ERR x\r\n"));
        assert!(!is_error(b"+OK\r\n"));
        assert!(!is_error(b""));
    }

    #[test]
    fn numbers_parse_like_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"1a",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }

    /// The checks every parse result must pass, whatever the input.
    fn check_command(buf: &[u8], out: &Parse<Command>) {
        match out {
            Parse::Incomplete => {}
            Parse::Request(cmd, n) => {
                assert!(*n > 0 && *n <= buf.len());
                for r in &cmd.args {
                    assert!(r.start <= r.end && r.end <= *n);
                }
            }
            Parse::Reject(r) => {
                assert!(r.consumed > 0 && r.consumed <= buf.len());
                assert!(r.reply.starts_with(b"-ERR ") && r.reply.ends_with(b"\r\n"));
                assert_eq!(r.reply.iter().filter(|&&b| b == b'\n').count(), 1);
            }
        }
    }

    /// Bytes with the protocol's own characters over-represented.
    fn protocol_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => prop::sample::select(&b"*$\r\n0123456789- \"'\\:+x"[..]),
            1 => any::<u8>(),
        ];
        prop::collection::vec(byte, 0..max)
    }

    /// A valid command, encoded, with its arguments.
    fn command() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 1..5).prop_map(|args| {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            (encoded(&refs), args)
        })
    }

    /// A valid reply, encoded.
    fn reply() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            "[a-z ]{0,6}".prop_map(|s| format!("+{s}\r\n").into_bytes()),
            "[A-Z]{1,4} [a-z]{0,4}".prop_map(|s| format!("-{s}\r\n").into_bytes()),
            any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(|d| {
                let mut out = Vec::new();
                bulk(&d, &mut out);
                out
            }),
            Just(b"$-1\r\n".to_vec()),
            Just(b"*-1\r\n".to_vec()),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop::collection::vec(inner, 0..4).prop_map(|items| {
                let mut out = Vec::new();
                array_header(items.len(), &mut out);
                items.iter().for_each(|i| out.extend_from_slice(i));
                out
            })
        })
    }

    /// Flips, inserts and deletes a few bytes.
    fn mutate(mut buf: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
        for &(at, op, byte) in edits {
            if buf.is_empty() {
                buf.push(byte);
                continue;
            }
            let at = at % buf.len();
            match op % 3 {
                0 => buf[at] = byte,
                1 => buf.insert(at, byte),
                _ => {
                    buf.remove(at);
                }
            }
        }
        buf
    }

    /// Parses every prefix of `buf` one-shot and with one scanner fed the
    /// growing buffer: the first prefix that decides decides for good.
    fn check_prefixes(buf: &[u8], limits: &Limits) {
        let mut scanner = CommandScanner::default();
        let mut decided: Option<(usize, Parse<Command>)> = None;
        for k in 0..=buf.len() {
            let once = parse_command(&buf[..k], limits);
            check_command(&buf[..k], &once);
            match &decided {
                None => {
                    assert_eq!(scanner.parse(&buf[..k], limits), once, "scanner at {k}");
                    if once != Parse::Incomplete {
                        decided = Some((k, once));
                    }
                }
                Some((_, first)) => match (first, &once) {
                    (Parse::Request(..), _) => assert_eq!(&once, first, "at {k}"),
                    (Parse::Reject(a), Parse::Reject(b)) => {
                        assert_eq!((&a.reply, a.close), (&b.reply, b.close), "at {k}");
                        if !a.close {
                            assert_eq!(a.consumed, b.consumed);
                        }
                    }
                    _ => panic!("decided {first:?}, then {once:?} at {k}"),
                },
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(buf in protocol_bytes(96)) {
            for l in [limits(), tight()] {
                check_command(&buf, &parse_command(&buf, &l));
                if let Ok(Some(n)) = reply_len(&buf, &l) {
                    prop_assert!(n > 0 && n <= buf.len());
                }
                if let Ok(elements) = array_elements(&buf) {
                    prop_assert!(elements.iter().all(|r| r.end <= buf.len()));
                }
                let _ = integer_value(&buf);
            }
        }

        #[test]
        fn prefixes_decide_once(buf in protocol_bytes(40)) {
            check_prefixes(&buf, &limits());
            check_prefixes(&buf, &tight());
        }

        #[test]
        fn mutated_commands_never_panic(
            (buf, _) in command(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
        ) {
            let buf = mutate(buf, &edits);
            check_prefixes(&buf, &limits());
            check_command(&buf, &parse_command(&buf, &tight()));
        }

        #[test]
        fn commands_round_trip_at_every_split((buf, args) in command()) {
            for k in 0..buf.len() {
                prop_assert_eq!(parse_command(&buf[..k], &limits()), Parse::Incomplete);
            }
            let Parse::Request(cmd, n) = parse_command(&buf, &limits()) else {
                panic!("not parsed: {buf:?}")
            };
            prop_assert_eq!(n, buf.len());
            let got: Vec<Vec<u8>> = cmd.args.iter().map(|r| buf[r.clone()].to_vec()).collect();
            prop_assert_eq!(got, args);
            // Pipelined after another command, it parses the same.
            let two = [&b"PING\r\n"[..], &buf].concat();
            let (_, first) = parsed(&two);
            prop_assert_eq!(parse_command(&two[first..], &limits()), Parse::Request(cmd, n));
        }

        #[test]
        fn inline_words_round_trip(
            name in "[a-zA-Z]{1,6}",
            rest in prop::collection::vec("[a-zA-Z0-9$*:]{1,6}|\"[a-z ]{0,5}\"|'[a-z\t]{0,5}'", 0..6),
        ) {
            let words: Vec<String> = std::iter::once(name).chain(rest).collect();
            let line = format!("{}\r\n", words.join(" "));
            let (args, n) = parsed(line.as_bytes());
            prop_assert_eq!(n, line.len());
            let want: Vec<Vec<u8>> = words
                .iter()
                .map(|w| w.trim_matches(|c| c == '"' || c == '\'').as_bytes().to_vec())
                .collect();
            prop_assert_eq!(args, want);
        }

        #[test]
        fn replies_frame_at_every_split(buf in reply()) {
            for k in 0..buf.len() {
                prop_assert_eq!(reply_len(&buf[..k], &limits()), Ok(None));
            }
            prop_assert_eq!(reply_len(&buf, &limits()), Ok(Some(buf.len())));
            let mut scanner = ReplyScanner::default();
            for k in 0..buf.len() {
                prop_assert_eq!(scanner.advance(&buf[..k], &limits()), Ok(None));
            }
            prop_assert_eq!(scanner.advance(&buf, &limits()), Ok(Some(buf.len())));
            if buf[0] == b'*' && buf[1] != b'-' {
                let elements = array_elements(&buf).unwrap();
                let mut pos = buf.iter().position(|&b| b == b'\n').unwrap() + 1;
                for r in elements {
                    prop_assert_eq!(r.start, pos);
                    pos = r.end;
                }
                prop_assert_eq!(pos, buf.len());
            }
        }

        #[test]
        fn mutated_replies_never_panic(
            buf in reply(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
        ) {
            let buf = mutate(buf, &edits);
            let mut scanner = ReplyScanner::default();
            let mut decided = None;
            for k in 0..=buf.len() {
                let once = reply_len(&buf[..k], &limits());
                if let Ok(Some(n)) = once {
                    prop_assert!(n > 0 && n <= k);
                }
                if decided.is_none() {
                    prop_assert_eq!(scanner.advance(&buf[..k], &limits()), once.clone());
                    if once != Ok(None) {
                        decided = Some(once);
                    }
                } else {
                    prop_assert_eq!(&once, decided.as_ref().unwrap());
                }
            }
        }
    }
}
