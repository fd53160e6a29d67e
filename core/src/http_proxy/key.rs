//! Which part of a request is its shard key: the request URI by default
//! (nginx `hash $request_uri consistent`), or a header, a cookie, a query
//! argument, or the first segments of the path.
//!
//! Pure functions over a request's parts, so every rule is tested without
//! a socket.

use crate::error::{Error, Result};
use hyper::http::request::Parts;

/// Where a request's shard key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The request URI as sent (path and query): nginx's `$request_uri`.
    Uri,
    /// A request header's value (the first, if repeated).
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// A query argument's value (raw, as sent).
    Arg(String),
    /// The path's first N segments (`/users/42/photos` with 2:
    /// `/users/42`): every URI under one prefix on one backend.
    PathPrefix(usize),
}

impl KeySource {
    /// Parses `uri`, `header:NAME`, `cookie:NAME`, `arg:NAME` or
    /// `path:N`, naming the bad value otherwise.
    pub fn parse(spec: &str) -> Result<KeySource> {
        let bad = |why: &str| Error::invalid(format!("shard key {spec:?}: {why}"));
        if spec == "uri" {
            return Ok(KeySource::Uri);
        }
        let Some((kind, name)) = spec.split_once(':') else {
            return Err(bad(
                "expected uri, header:NAME, cookie:NAME, arg:NAME or path:N",
            ));
        };
        if name.is_empty() {
            return Err(bad("the name after ':' is empty"));
        }
        match kind {
            "header" => {
                hyper::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| bad("not a valid header name"))?;
                Ok(KeySource::Header(name.to_ascii_lowercase()))
            }
            "cookie" => Ok(KeySource::Cookie(name.to_string())),
            "arg" => Ok(KeySource::Arg(name.to_string())),
            "path" => match name.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(KeySource::PathPrefix(n)),
                _ => Err(bad("path:N needs N of at least 1")),
            },
            _ => Err(bad(
                "expected uri, header:NAME, cookie:NAME, arg:NAME or path:N",
            )),
        }
    }

    /// The key of a request; `None` when the request lacks it (no such
    /// header, cookie or argument): such requests hash their URI instead,
    /// so they still spread, as nginx's hash of an empty variable would not.
    pub fn key<'a>(&self, parts: &'a Parts) -> Option<&'a [u8]> {
        self.key_of(parts)
    }

    /// The key of a request, falling back to its URI.
    pub fn key_or_uri<'a>(&self, parts: &'a Parts) -> &'a [u8] {
        self.key_or_uri_of(parts)
    }

    /// [`KeySource::key`] of any request head: hyper's parts, or the
    /// direct path's parsed head, so both place a request alike.
    pub(crate) fn key_of<'a, H: RequestHead>(&self, head: &'a H) -> Option<&'a [u8]> {
        match self {
            KeySource::Uri => Some(head.request_uri().as_bytes()),
            KeySource::Header(name) => head.header_values(name).next(),
            KeySource::Cookie(name) => head
                .header_values("cookie")
                .filter_map(visible)
                .flat_map(|v| v.split(';'))
                .filter_map(|c| c.trim().split_once('='))
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_bytes()),
            KeySource::Arg(name) => {
                let (_, query) = head.request_uri().split_once('?')?;
                query
                    .split('&')
                    .filter_map(|a| a.split_once('=').or(Some((a, ""))))
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_bytes())
            }
            KeySource::PathPrefix(n) => {
                let uri = head.request_uri();
                let path = uri.split_once('?').map_or(uri, |(p, _)| p);
                // The end of the n-th segment: the n+1-th '/' (the first is
                // the leading one).
                let end = path
                    .match_indices('/')
                    .nth(*n)
                    .map_or(path.len(), |(i, _)| i);
                Some(&path.as_bytes()[..end])
            }
        }
    }

    /// [`KeySource::key_or_uri`] of any request head.
    pub(crate) fn key_or_uri_of<'a, H: RequestHead>(&self, head: &'a H) -> &'a [u8] {
        self.key_of(head)
            .unwrap_or_else(|| head.request_uri().as_bytes())
    }
}

/// A header value as text, when it is visible ASCII (as hyper's
/// `to_str` takes it), so both paths skip the same odd values.
fn visible(v: &[u8]) -> Option<&str> {
    v.iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(v).ok())
        .flatten()
}

/// What a shard key is read from: a request's URI as sent and its header
/// values by name.
pub(crate) trait RequestHead {
    /// Path and query as the client sent them (`$request_uri`).
    fn request_uri(&self) -> &str;
    /// The values of header `name` (lowercase), in order.
    fn header_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]>;
}

impl RequestHead for Parts {
    fn request_uri(&self) -> &str {
        request_uri(self)
    }

    fn header_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.headers.get_all(name).iter().map(|v| v.as_bytes())
    }
}

/// The request URI as the client sent it: path and query (`$request_uri`).
pub fn request_uri(parts: &Parts) -> &str {
    parts.uri.path_and_query().map_or("/", |p| p.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = hyper::Request::builder().uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn each_source_finds_its_key() {
        let p = parts(
            "/users/42/photos?size=big&user=ann&flag",
            &[("X-Tenant", "acme"), ("Cookie", "a=1; sid=s-9; b=2")],
        );
        let key = |spec: &str| KeySource::parse(spec).unwrap().key(&p).map(|k| k.to_vec());
        assert_eq!(
            key("uri").unwrap(),
            b"/users/42/photos?size=big&user=ann&flag"
        );
        assert_eq!(key("header:X-Tenant").unwrap(), b"acme");
        assert_eq!(key("cookie:sid").unwrap(), b"s-9");
        assert_eq!(key("arg:user").unwrap(), b"ann");
        assert_eq!(key("arg:flag").unwrap(), b"");
        assert_eq!(key("path:1").unwrap(), b"/users");
        assert_eq!(key("path:2").unwrap(), b"/users/42");
        assert_eq!(key("path:9").unwrap(), b"/users/42/photos");
        assert_eq!(key("header:x-missing"), None);
        assert_eq!(key("cookie:none"), None);
        assert_eq!(key("arg:none"), None);
        let src = KeySource::parse("header:x-missing").unwrap();
        assert_eq!(
            src.key_or_uri(&p),
            b"/users/42/photos?size=big&user=ann&flag"
        );
    }

    #[test]
    fn bad_sources_are_named() {
        for (spec, why) in [
            ("url", "expected uri"),
            ("header:", "empty"),
            ("header:bad name", "not a valid header name"),
            ("path:0", "at least 1"),
            ("path:x", "at least 1"),
            ("query:a", "expected uri"),
        ] {
            let e = KeySource::parse(spec).unwrap_err();
            assert!(e.message().contains(spec), "{e}");
            assert!(e.message().contains(why), "{spec}: {e}");
        }
    }
}
