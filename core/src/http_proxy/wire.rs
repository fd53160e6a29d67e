//! HTTP/1.1 heads and body framing as the proxy's direct path (`direct`)
//! reads and writes them: which requests it may take, the head it sends a
//! backend, the head it answers the client with, and where a response body
//! ends. Pure functions over bytes, fuzzed in the suite; the heads
//! themselves are parsed by httparse (hyper's own parser).

use httparse::{Header, Request, Response};

/// Headers a head may carry for the direct path to take it; one with more
/// goes to hyper's path (which takes up to 100).
pub(crate) const MAX_HEADERS: usize = 64;

/// Headers a backend's response may carry on the direct path: as many as
/// hyper's client takes, so a response answers alike on either path.
pub(crate) const MAX_RESPONSE_HEADERS: usize = 100;

/// The `Via` token the proxy adds (RFC 9110 §7.6.3).
pub(crate) const VIA: &str = "1.1 shardkit";

/// Headers that describe one connection, not the message: never passed on
/// (RFC 9110 §7.6.1), nor any the `Connection` header names.
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// What a head's `Connection` headers say.
#[derive(Default)]
struct Connection<'b> {
    close: bool,
    keep_alive: bool,
    /// Other header names it lists: hop-by-hop for this message.
    named: smallvec::SmallVec<[&'b str; 4]>,
}

fn connection<'b>(headers: &[Header<'b>]) -> Connection<'b> {
    let mut c = Connection::default();
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
    {
        let Ok(v) = std::str::from_utf8(h.value) else {
            continue;
        };
        for token in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token.eq_ignore_ascii_case("close") {
                c.close = true;
            } else if token.eq_ignore_ascii_case("keep-alive") {
                c.keep_alive = true;
            } else if !token.eq_ignore_ascii_case("content-length")
                && !token.eq_ignore_ascii_case("transfer-encoding")
            {
                // The body's framing is passed through as it is, so the
                // headers that describe it stay, whatever the list says.
                c.named.push(token);
            }
        }
    }
    c
}

impl Connection<'_> {
    /// Whether `name` is hop-by-hop in this message.
    fn drops(&self, name: &str) -> bool {
        HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
            || self.named.iter().any(|n| name.eq_ignore_ascii_case(n))
    }
}

/// A request the direct path can forward as it is: GET or HEAD, HTTP/1.1,
/// origin form, with no body, no upgrade and no expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plain {
    /// A HEAD request: its response has no body, whatever it says.
    pub(crate) head: bool,
    /// The client asked to close the connection after it.
    pub(crate) close: bool,
}

/// Whether the direct path may take `req` (`None`: hyper's path takes it).
pub(crate) fn plain(req: &Request<'_, '_>) -> Option<Plain> {
    let head = match req.method? {
        "GET" => false,
        "HEAD" => true,
        _ => return None,
    };
    // Origin form in visible ASCII without a fragment, as hyper's URI
    // parser takes it, so the shard key is the same on either path.
    let path = req.path?;
    let visible = path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'#');
    if req.version? != 1 || !path.starts_with('/') || !visible {
        return None;
    }
    for h in req.headers.iter() {
        let n = h.name;
        let bodiless_length = n.eq_ignore_ascii_case("content-length") && h.value == b"0";
        let framing_or_upgrade = n.eq_ignore_ascii_case("content-length")
            || n.eq_ignore_ascii_case("transfer-encoding")
            || n.eq_ignore_ascii_case("upgrade")
            || n.eq_ignore_ascii_case("expect");
        if framing_or_upgrade && !bodiless_length {
            return None;
        }
    }
    Some(Plain {
        head,
        close: connection(req.headers).close,
    })
}

/// Writes the head sent to the backend for `req` (a [`plain`] one): its
/// request line and headers without hop-by-hop ones, `X-Forwarded-For`
/// with `client` appended to the chain, `X-Forwarded-Proto: http` unless an
/// earlier proxy set it, and this hop in `Via`.
pub(crate) fn request_head(out: &mut Vec<u8>, req: &Request<'_, '_>, client: &str) {
    let conn = connection(req.headers);
    out.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut proto = false;
    for h in req.headers.iter() {
        if conn.drops(h.name)
            || h.name.eq_ignore_ascii_case("x-forwarded-for")
            || h.name.eq_ignore_ascii_case("via")
        {
            continue;
        }
        proto |= h.name.eq_ignore_ascii_case("x-forwarded-proto");
        header(out, h.name, h.value);
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    for h in named(req.headers, "x-forwarded-for") {
        out.extend_from_slice(h.value);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !proto {
        out.extend_from_slice(b"X-Forwarded-Proto: http\r\n");
    }
    via(out, req.headers);
    out.extend_from_slice(b"\r\n");
}

/// How a response's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (a HEAD response, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked: ends with its last chunk and trailers ([`Chunked`]).
    Chunked,
    /// Until the backend closes the connection.
    Close,
}

/// What a backend's response head says of the body after it and of the
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The body's framing.
    pub(crate) framing: Framing,
    /// Whether the backend keeps the connection open after it.
    pub(crate) keep_alive: bool,
}

/// The framing of `resp`'s body (to a HEAD request when `head`); an error
/// names a Content-Length that is not one.
pub(crate) fn answer(resp: &Response<'_, '_>, head: bool) -> Result<Answer, String> {
    let conn = connection(resp.headers);
    let mut keep_alive = match resp.version {
        Some(1) => !conn.close,
        _ => conn.keep_alive && !conn.close,
    };
    let code = resp.code.unwrap_or(0);
    if head || (100..200).contains(&code) || code == 204 || code == 304 {
        return Ok(Answer {
            framing: Framing::Empty,
            keep_alive,
        });
    }
    if let Some(te) = named(resp.headers, "transfer-encoding").last() {
        // Chunked only when it is the final coding; with a Content-Length
        // beside it the message is suspect, so the connection is not kept.
        let last = te.value.rsplit(|&b| b == b',').next().unwrap_or_default();
        let chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
        if !chunked || named(resp.headers, "content-length").next().is_some() {
            keep_alive = false;
        }
        return Ok(Answer {
            framing: if chunked {
                Framing::Chunked
            } else {
                Framing::Close
            },
            keep_alive,
        });
    }
    let mut length = None;
    for h in named(resp.headers, "content-length") {
        for v in h.value.split(|&b| b == b',') {
            let n = std::str::from_utf8(v.trim_ascii())
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u64>().ok());
            match (n, length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(l)) if n == l => {}
                _ => {
                    return Err(format!(
                        "invalid Content-Length {:?}",
                        String::from_utf8_lossy(h.value)
                    ))
                }
            }
        }
    }
    Ok(match length {
        Some(n) => Answer {
            framing: Framing::Length(n),
            keep_alive,
        },
        None => Answer {
            framing: Framing::Close,
            keep_alive: false,
        },
    })
}

/// Writes the head the client gets for `resp`: its status, its headers
/// without hop-by-hop ones, this hop in `Via`, the shard that answered
/// (`shard`: header name and value) when asked for, and `Connection:
/// close` when the client's connection ends after it.
pub(crate) fn response_head(
    out: &mut Vec<u8>,
    resp: &Response<'_, '_>,
    shard: Option<(&str, &str)>,
    close: bool,
) {
    let conn = connection(resp.headers);
    // With Transfer-Encoding the body is framed by it: a Content-Length
    // beside it is removed (RFC 9112 §6.3), so nothing downstream can
    // frame the message otherwise.
    let chunked = named(resp.headers, "transfer-encoding").next().is_some();
    out.extend_from_slice(b"HTTP/1.1 ");
    // Three digits, as received ("000" too: httparse takes any three).
    out.extend_from_slice(format!("{:03}", resp.code.unwrap_or(502)).as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        if conn.drops(h.name)
            || h.name.eq_ignore_ascii_case("via")
            || (chunked && h.name.eq_ignore_ascii_case("content-length"))
            || shard.is_some_and(|(n, _)| h.name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        header(out, h.name, h.value);
    }
    via(out, resp.headers);
    if let Some((name, value)) = shard {
        header(out, name, value.as_bytes());
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a whole response of the proxy's own (its 502 and 504): the
/// status, and a line saying why as its body (left out for a HEAD
/// request, whose Content-Length still counts it).
pub(crate) fn own_response(out: &mut Vec<u8>, status: u16, why: &str, head: bool, close: bool) {
    let reason = match status {
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "",
    };
    let body = own_body(why);
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\nvia: {VIA}\r\ncontent-length: {}\r\n{}\r\n",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        )
        .as_bytes(),
    );
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
}

/// The body of the proxy's own answers, on either path.
pub(crate) fn own_body(why: &str) -> String {
    format!("shardkit http-proxy: {why}\n")
}

/// Why the proxy answered 502 or 504 itself: one wording for both paths
/// (hyper's and the direct one), which tests and operators match on.
pub(crate) mod why {
    use std::time::Duration;

    /// The ring placed the key nowhere (every node down).
    pub(crate) fn no_ring(e: impl std::fmt::Display) -> String {
        format!("no backend can take this request: {e}")
    }

    /// No backend on the key's list could be reached; why for each.
    pub(crate) fn unreached(failed: &[String]) -> String {
        format!("no backend could be reached: {}", failed.join("; "))
    }

    /// The backend took the request and gave no response head in time.
    pub(crate) fn timed_out(backend: &str, timeout: Duration) -> String {
        format!(
            "backend {backend} did not answer within {} ms",
            timeout.as_millis()
        )
    }

    /// The backend's connection failed with the request on its way.
    pub(crate) fn mid_request(backend: &str, e: impl std::fmt::Display) -> String {
        format!("backend {backend} failed mid-request: {e}")
    }
}

fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `Via` with the earlier hops (every `Via` header, in order) and this one.
fn via(out: &mut Vec<u8>, headers: &[Header<'_>]) {
    out.extend_from_slice(b"Via: ");
    for h in named(headers, "via").filter(|h| !h.value.is_empty()) {
        out.extend_from_slice(h.value);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(VIA.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn named<'h, 'b>(
    headers: &'h [Header<'b>],
    name: &'static str,
) -> impl Iterator<Item = &'h Header<'b>> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
}

/// Finds the end of a chunked body as it streams past (RFC 9112 §7.1):
/// chunk sizes, extensions, data, the last chunk and trailers, so the proxy
/// knows when a response is over and its backend connection free again,
/// while passing the bytes on untouched.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunked {
    state: State,
    /// Data bytes left in the current chunk, or the size being read.
    size: u64,
    digits: u8,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// Reading a chunk size's hex digits.
    #[default]
    Size,
    /// After the size: extensions up to CR.
    Extension,
    /// The LF ending a size line.
    SizeLf,
    /// Chunk data.
    Data,
    /// The CR, then the LF, after a chunk's data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    LineStart,
    /// Inside a trailer line, up to CR.
    Trailer,
    /// The LF ending a trailer line.
    TrailerLf,
    /// The LF of the final empty line.
    EndLf,
    /// The body is over.
    Done,
}

impl Chunked {
    /// Takes the next bytes of the body: `Some(n)` when it ends after the
    /// first `n` of them (what follows is not this body's), `None` when
    /// all were part of it and more is to come. An error says what is not
    /// chunked encoding.
    pub(crate) fn advance(&mut self, bytes: &[u8]) -> Result<Option<usize>, String> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        // 16 hex digits fill a u64; more is no size we
                        // would ever pass on.
                        if self.digits == 16 {
                            return Err("chunk size over 16 hex digits".into());
                        }
                        self.size = self.size << 4 | (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.digits += 1;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => self.state = State::Extension,
                    b'\r' if self.digits > 0 => self.state = State::SizeLf,
                    _ => return Err(format!("byte {b:#04x} in a chunk size")),
                },
                State::Extension => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => return Err("bare LF in a chunk extension".into()),
                    _ => {}
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(format!("byte {b:#04x} after a chunk size's CR"));
                    }
                    self.state = if self.size == 0 {
                        State::LineStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let take = (bytes.len() - i).min(self.size.min(usize::MAX as u64) as usize);
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr if b == b'\r' => self.state = State::DataLf,
                State::DataLf if b == b'\n' => {
                    self.state = State::Size;
                    self.digits = 0;
                }
                State::DataCr | State::DataLf => {
                    return Err(format!("byte {b:#04x} where a chunk's CRLF belongs"))
                }
                State::LineStart => {
                    self.state = if b == b'\r' {
                        State::EndLf
                    } else {
                        State::Trailer
                    }
                }
                State::Trailer => match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\n' => return Err("bare LF in a trailer".into()),
                    _ => {}
                },
                State::TrailerLf if b == b'\n' => self.state = State::LineStart,
                State::EndLf if b == b'\n' => {
                    self.state = State::Done;
                    return Ok(Some(i + 1));
                }
                State::TrailerLf | State::EndLf => {
                    return Err(format!("byte {b:#04x} after a trailer's CR"))
                }
                State::Done => return Ok(Some(i)),
            }
            i += 1;
        }
        Ok((self.state == State::Done).then_some(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_req(raw: &[u8], f: impl FnOnce(&Request<'_, '_>)) {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = Request::new(&mut hs);
        assert!(req.parse(raw).unwrap().is_complete());
        f(&req)
    }

    fn parse_resp(raw: &[u8], f: impl FnOnce(&Response<'_, '_>)) {
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = Response::new(&mut hs);
        assert!(resp.parse(raw).unwrap().is_complete());
        f(&resp)
    }

    #[test]
    fn only_bodiless_gets_and_heads_are_plain() {
        let cases: [(&[u8], Option<Plain>); 11] = [
            (
                b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
                Some(Plain {
                    head: false,
                    close: false,
                }),
            ),
            (
                b"HEAD /a HTTP/1.1\r\nConnection: Close\r\n\r\n",
                Some(Plain {
                    head: true,
                    close: true,
                }),
            ),
            (
                b"GET /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                Some(Plain {
                    head: false,
                    close: false,
                }),
            ),
            (b"GET /a HTTP/1.1\r\nContent-Length: 5\r\n\r\n", None),
            (
                b"GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                None,
            ),
            (
                b"GET /a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
                None,
            ),
            (b"GET /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", None),
            (b"GET /a HTTP/1.0\r\n\r\n", None),
            (b"POST /a HTTP/1.1\r\n\r\n", None),
            (b"GET http://h/a HTTP/1.1\r\n\r\n", None),
            (b"GET /a#frag HTTP/1.1\r\n\r\n", None),
        ];
        for (raw, want) in cases {
            parse_req(raw, |r| {
                assert_eq!(plain(r), want, "{}", String::from_utf8_lossy(raw))
            });
        }
    }

    #[test]
    fn the_backend_head_carries_forwarding_headers_and_no_hop_by_hop_ones() {
        let raw = b"GET /k?x=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 10.0.0.1\r\nVia: 1.0 edge\r\nX-Kept: yes\r\n\r\n";
        parse_req(raw, |r| {
            let mut out = Vec::new();
            request_head(&mut out, r, "127.0.0.9");
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "GET /k?x=1 HTTP/1.1\r\nHost: h\r\nX-Kept: yes\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.9\r\nX-Forwarded-Proto: http\r\nVia: 1.0 edge, 1.1 shardkit\r\n\r\n"
            );
        });
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let a = |raw: &[u8], head: bool| {
            let mut got = None;
            parse_resp(raw, |r| got = Some(answer(r, head)));
            got.unwrap()
        };
        let ok = |framing, keep_alive| {
            Ok(Answer {
                framing,
                keep_alive,
            })
        };
        assert_eq!(
            a(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            ok(Framing::Length(5), true)
        );
        assert_eq!(
            a(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            ok(Framing::Empty, true)
        );
        assert_eq!(
            a(b"HTTP/1.1 204 No Content\r\n\r\n", false),
            ok(Framing::Empty, true)
        );
        assert_eq!(
            a(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false
            ),
            ok(Framing::Chunked, true)
        );
        assert_eq!(
            a(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false),
            ok(Framing::Close, false)
        );
        assert_eq!(
            a(b"HTTP/1.1 200 OK\r\n\r\n", false),
            ok(Framing::Close, false)
        );
        assert_eq!(
            a(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false
            ),
            ok(Framing::Length(1), false)
        );
        assert_eq!(
            a(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false),
            ok(Framing::Length(1), false)
        );
        assert_eq!(
            a(
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                false
            ),
            ok(Framing::Length(1), true)
        );
        assert_eq!(
            a(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n", false),
            ok(Framing::Length(3), true)
        );
        let e = a(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            false,
        )
        .unwrap_err();
        assert!(e.contains("\"4\""), "{e}");
        let e = a(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false).unwrap_err();
        assert!(e.contains("\"-1\""), "{e}");
    }

    #[test]
    fn the_client_head_drops_hop_by_hop_headers_and_names_the_shard() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Shard: forged\r\nContent-Length: 2\r\nVia: 1.1 origin\r\n\r\n";
        parse_resp(raw, |r| {
            let mut out = Vec::new();
            response_head(&mut out, r, Some(("X-Shard", "127.0.0.1:1")), true);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVia: 1.1 origin, 1.1 shardkit\r\nX-Shard: 127.0.0.1:1\r\nConnection: close\r\n\r\n"
            );
        });
    }

    #[test]
    fn a_content_length_beside_transfer_encoding_is_removed() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
        parse_resp(raw, |r| {
            let mut out = Vec::new();
            response_head(&mut out, r, None, false);
            let text = String::from_utf8(out).unwrap();
            assert!(
                !text.to_ascii_lowercase().contains("content-length"),
                "{text}"
            );
            assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
        });
    }

    #[test]
    fn a_chunked_body_ends_after_its_trailers() {
        let body = b"5;ext=1\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        let mut c = Chunked::default();
        assert_eq!(c.advance(body), Ok(Some(body.len() - 4)));
        // Byte by byte, the same end.
        let mut c = Chunked::default();
        let ends: Vec<_> = body
            .iter()
            .map(|b| c.advance(std::slice::from_ref(b)).unwrap())
            .collect();
        assert_eq!(ends.iter().position(|e| e.is_some()), Some(body.len() - 5));
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"\r\n",
            b"11111111111111111\r\n",
            b"0\r\n\r\r",
        ] {
            assert!(
                Chunked::default().advance(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Heads that parse, to mutate.
        const SEEDS: &[&[u8]] = &[
            b"GET /a?b=1 HTTP/1.1\r\nHost: h\r\nCookie: s=1\r\n\r\n",
            b"HEAD / HTTP/1.1\r\nConnection: close, x\r\nx: 1\r\nVia: 1.0 a\r\n\r\n",
            b"GET /x HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nContent-Length: 0\r\n\r\n",
        ];
        const RESPONSES: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.0 404 Not Found\r\nConnection: keep-alive, te\r\n\r\n",
            b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n",
        ];

        /// Whatever the bytes: no panic; a plain request's backend head
        /// parses back as a complete request with the same method and
        /// target; a response's client head parses back too.
        fn check_request(buf: &[u8]) {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = Request::new(&mut hs);
            if let Ok(httparse::Status::Complete(_)) = req.parse(buf) {
                if plain(&req).is_some() {
                    let mut out = Vec::new();
                    request_head(&mut out, &req, "127.0.0.1");
                    let mut hs2 = [httparse::EMPTY_HEADER; MAX_HEADERS + 4];
                    let mut again = Request::new(&mut hs2);
                    assert_eq!(again.parse(&out).ok().map(|s| s.is_complete()), Some(true));
                    assert_eq!(again.method, req.method);
                    assert_eq!(again.path, req.path);
                }
            }
        }

        fn check_response(buf: &[u8]) {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = Response::new(&mut hs);
            if let Ok(httparse::Status::Complete(n)) = resp.parse(buf) {
                let a = answer(&resp, false);
                let mut out = Vec::new();
                response_head(&mut out, &resp, Some(("x-shard", "s")), true);
                let mut hs2 = [httparse::EMPTY_HEADER; MAX_HEADERS + 4];
                let mut again = Response::new(&mut hs2);
                assert_eq!(
                    again.parse(&out).ok().map(|s| s.is_complete()),
                    Some(true),
                    "{:?} -> {:?}",
                    String::from_utf8_lossy(buf),
                    String::from_utf8_lossy(&out)
                );
                if let Ok(Answer {
                    framing: Framing::Chunked,
                    ..
                }) = a
                {
                    if let Ok(Some(end)) = Chunked::default().advance(&buf[n..]) {
                        assert!(end <= buf.len() - n);
                    }
                }
            }
        }

        /// A valid chunked encoding of `data` cut into `sizes`.
        fn encode(data: &[u8], sizes: &[usize], trailers: bool) -> Vec<u8> {
            let mut out = Vec::new();
            let mut rest = data;
            for &s in sizes {
                if rest.is_empty() {
                    break;
                }
                let (a, b) = rest.split_at(s.clamp(1, rest.len()));
                out.extend_from_slice(format!("{:x};e=v\r\n", a.len()).as_bytes());
                out.extend_from_slice(a);
                out.extend_from_slice(b"\r\n");
                rest = b;
            }
            if !rest.is_empty() {
                out.extend_from_slice(format!("{:X}\r\n", rest.len()).as_bytes());
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n");
            if trailers {
                out.extend_from_slice(b"X-T: 1\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out
        }

        #[test]
        fn every_seed_passes_the_checks_unmutated() {
            for r in RESPONSES {
                check_response(r);
            }
            for q in SEEDS {
                check_request(q);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
                check_request(&buf);
                check_response(&buf);
                let mut c = Chunked::default();
                if let Ok(Some(n)) = c.advance(&buf) {
                    prop_assert!(n <= buf.len());
                }
            }

            #[test]
            fn mutated_heads(seed in 0..SEEDS.len(), at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
                let mut buf = SEEDS[seed].to_vec();
                let i = at % buf.len();
                buf[i] = byte;
                check_request(&buf);
                check_request(&buf[..cut % (buf.len() + 1)]);
                let mut r = RESPONSES[seed % RESPONSES.len()].to_vec();
                let j = at % r.len();
                r[j] = byte;
                check_response(&r);
            }

            #[test]
            fn a_chunked_body_ends_where_it_ends_however_it_is_cut(
                data in proptest::collection::vec(any::<u8>(), 0..2000),
                sizes in proptest::collection::vec(1usize..600, 0..8),
                trailers in any::<bool>(),
                cuts in proptest::collection::vec(any::<usize>(), 0..6),
            ) {
                let mut enc = encode(&data, &sizes, trailers);
                let len = enc.len();
                enc.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
                let mut points: Vec<usize> = cuts.iter().map(|c| c % (enc.len() + 1)).collect();
                points.push(0);
                points.push(enc.len());
                points.sort_unstable();
                points.dedup();
                let mut c = Chunked::default();
                let mut end = None;
                for w in points.windows(2) {
                    if let Some(n) = c.advance(&enc[w[0]..w[1]]).unwrap() {
                        end = Some(w[0] + n);
                        break;
                    }
                }
                prop_assert_eq!(end, Some(len));
            }
        }
    }
}
