//! A blocking HTTP/1.1 client for tests: one request per connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// One HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked, as text (lossy UTF-8).
    pub body: String,
}

/// Sends one request to `addr` (`host:port`) on a fresh connection
/// (`Connection: close`), with `body` as `application/json`, and reads the
/// whole response. `timeout` bounds the connect and each read and write.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<Response> {
    let sock = resolve(addr)?;
    let mut s = TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    // The server closes after the response: read to EOF (bounded).
    s.take(64 << 20).read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| {
        io::Error::other(format!(
            "{method} {path} on {addr}: bad HTTP response {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(300)])
        ))
    })
}

fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{addr} resolves to no address")))
}

/// Status line, headers, then a body framed by `Content-Length`, chunks,
/// or the end of the connection.
fn parse(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status_line = head.split("\r\n").next()?;
    if !status_line.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    let rest = &raw[end + 4..];
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().ok()?;
        rest.get(..len)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    fn serve_once(answer: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).unwrap() > 0 && !line.ends_with("\r\n\r\n") {}
            (&s).write_all(answer.as_bytes()).unwrap();
            // Close only after the client has: unread request bytes would
            // make our close a reset.
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let _ = r.read_to_end(&mut Vec::new());
        });
        addr
    }

    #[test]
    fn reads_length_chunked_and_close_delimited_bodies() {
        let t = Duration::from_secs(5);
        let a = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(
            request(&a, "GET", "/", "", t).unwrap(),
            Response {
                status: 200,
                body: "hello".into()
            }
        );
        let a = serve_once(
            "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        let r = request(&a, "POST", "/x", "{}", t).unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "abcde"));
        let a = serve_once("HTTP/1.0 500 Oops\r\n\r\nall of it");
        let r = request(&a, "GET", "/", "", t).unwrap();
        assert_eq!((r.status, r.body.as_str()), (500, "all of it"));
        let a = serve_once("garbage");
        assert!(request(&a, "GET", "/", "", t).is_err());
    }
}
