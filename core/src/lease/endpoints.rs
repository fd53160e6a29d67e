//! Endpoint lists as operators write them (`host:port` or `http://host:port`,
//! comma-separated, on a flag or in `SHARDKIT_ENDPOINTS`).

use crate::error::{Error, Result};

/// The environment variable read when no endpoints are given explicitly.
pub const ENDPOINTS_ENV: &str = "SHARDKIT_ENDPOINTS";

/// Parses a comma-separated endpoint list into `http://host:port` URLs.
///
/// Empty entries between commas are ignored, so `a:1,` is fine; a list with
/// no endpoint at all is an error (callers that mean "embedded store" pass
/// nothing instead of an empty list). TLS (`https://`) is refused by name
/// rather than silently spoken in plaintext.
pub fn parse_endpoints(list: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for raw in list.split(',') {
        let item = raw.trim();
        if item.is_empty() {
            continue;
        }
        let hostport = if let Some(rest) = item.strip_prefix("http://") {
            rest.trim_end_matches('/')
        } else if item.starts_with("https://") {
            return Err(Error::invalid(format!(
                "endpoint {item:?}: TLS endpoints are not supported; use http://host:port"
            )));
        } else if item.contains("://") {
            return Err(Error::invalid(format!(
                "endpoint {item:?}: unknown scheme; use host:port or http://host:port"
            )));
        } else {
            item
        };
        let (host, port) = hostport.rsplit_once(':').ok_or_else(|| {
            Error::invalid(format!("endpoint {item:?} has no port; use host:port"))
        })?;
        let host_ok = !host.is_empty()
            && !host.contains('/')
            && !host.chars().any(|c| c.is_whitespace() || c.is_control());
        if !host_ok {
            return Err(Error::invalid(format!(
                "endpoint {item:?} has an invalid host {host:?}"
            )));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => {
                return Err(Error::invalid(format!(
                    "endpoint {item:?} has an invalid port {port:?} (1..65535)"
                )))
            }
        }
        out.push(format!("http://{hostport}"));
    }
    if out.is_empty() {
        return Err(Error::invalid(format!(
            "endpoint list {list:?} names no endpoint; use host:port[,host:port...]"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_forms() {
        assert_eq!(
            parse_endpoints("127.0.0.1:2379, http://localhost:2380/,").unwrap(),
            vec!["http://127.0.0.1:2379", "http://localhost:2380"]
        );
        assert_eq!(
            parse_endpoints("[::1]:2379").unwrap(),
            vec!["http://[::1]:2379"]
        );
    }

    #[test]
    fn rejects_bad_entries_by_name() {
        for (bad, needle) in [
            ("", "names no endpoint"),
            (" , ", "names no endpoint"),
            ("localhost", "no port"),
            ("localhost:0", "invalid port \"0\""),
            ("localhost:99999", "invalid port"),
            ("localhost:abc", "invalid port \"abc\""),
            ("https://x:1", "TLS"),
            ("unix://x:1", "unknown scheme"),
            (":2379", "invalid host"),
        ] {
            let e = parse_endpoints(bad).unwrap_err();
            assert!(e.message().contains(needle), "{bad:?}: {e}");
        }
    }
}
