//! nginx upstream server lists, for `hash $key consistent`.
//!
//! ```
//! use shardkit::config::nginx;
//! let s = nginx::parse_upstream("127.0.0.1:8081 weight=2, 127.0.0.1:8082")?;
//! let backend = s.lookup(b"/index.html?page=2")?;
//! assert!(backend.name().starts_with("127.0.0.1:808"));
//! # Ok::<(), shardkit::Error>(())
//! ```
//!
//! Entries are separated by `,`, `;` or newlines, so the `server` lines of an
//! upstream block can be pasted as they are (a leading `server` keyword is
//! accepted). Each entry is an address followed by nginx's parameters:
//!
//! - `weight=N`: 160 × N points on the ring, as nginx builds it;
//! - `down`: the node keeps its points but lookups skip it, landing on the
//!   next point's server, as nginx does;
//! - `max_fails=`, `fail_timeout=`, `max_conns=`: accepted and ignored
//!   (they govern nginx's run-time failover, not placement);
//! - `backup`: rejected, as nginx rejects it in a `hash` upstream;
//! - anything else: rejected, so a typo never changes placement silently.
//!
//! The node name, and the identity nginx hashes onto the ring, is the
//! address as written: `localhost:8081` and `127.0.0.1:8081` are different
//! rings to nginx too.
//!
//! [`parse_upstream_with`] places the same servers with any other algorithm
//! (jump, maglev, ...), for balancers that are not nginx's own `hash`.

use crate::error::{Error, ErrorKind, Result};
use crate::node::{Node, MAX_WEIGHT};
use crate::shard::{Algorithm, Change, KetamaMode, ShardConfig, Sharder};
use std::collections::HashSet;

/// One `server` entry of an upstream list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamServer {
    /// The address as written (`127.0.0.1:8081`, `backend`, `unix:/path`).
    pub address: String,
    /// `weight=`, 1 when not given.
    pub weight: u32,
    /// Whether the entry carries `down`.
    pub down: bool,
}

impl UpstreamServer {
    /// The node this server is on nginx's ring: named, and hashed, by its
    /// address as written (`down` is a lookup-time mark, not part of the node).
    pub fn node(&self) -> Result<Node> {
        Node::new(self.address.clone(), self.weight as i64)
    }
}

/// Parses an upstream list into its entries, in order. Errors are
/// [`ErrorKind::InvalidArgument`] naming the entry and the bad parameter,
/// [`ErrorKind::EmptyNodeSet`] for a list with no entries, and
/// [`ErrorKind::DuplicateNode`] for an address listed twice.
pub fn parse_servers(list: &str) -> Result<Vec<UpstreamServer>> {
    let mut out: Vec<UpstreamServer> = Vec::new();
    let mut seen = HashSet::new();
    for entry in list.split([',', ';', '\n']) {
        let mut tokens = entry.split_whitespace().peekable();
        if tokens.peek() == Some(&"server") {
            tokens.next();
        }
        let Some(address) = tokens.next() else {
            continue; // blank entry: a trailing separator or an empty line
        };
        let entry = entry.trim();
        validate_address(address, entry)?;
        let mut server = UpstreamServer {
            address: address.to_string(),
            weight: 1,
            down: false,
        };
        let mut weight_seen = false;
        for param in tokens {
            let (key, value) = match param.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (param, None),
            };
            match (key, value) {
                ("weight", Some(v)) => {
                    if weight_seen {
                        return Err(bad(entry, "weight is given twice"));
                    }
                    weight_seen = true;
                    server.weight = parse_weight(v, entry)?;
                }
                ("down", None) => server.down = true,
                ("max_fails", Some(v)) | ("max_conns", Some(v)) => {
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad(
                            entry,
                            &format!("{key} must be a non-negative integer, got {v:?}"),
                        ));
                    }
                }
                ("fail_timeout", Some(v)) => {
                    if v.is_empty() || !v.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
                        return Err(bad(
                            entry,
                            &format!("fail_timeout must be a time such as 10s, got {v:?}"),
                        ));
                    }
                }
                ("backup", None) => {
                    return Err(bad(
                        entry,
                        "\"backup\" cannot be used with hash balancing (nginx rejects it too)",
                    ))
                }
                _ => {
                    return Err(bad(
                        entry,
                        &format!(
                            "unsupported parameter {param:?}; expected weight=N, down, max_fails=N, fail_timeout=T or max_conns=N"
                        ),
                    ))
                }
            }
        }
        if !seen.insert(server.address.clone()) {
            return Err(Error::new(
                ErrorKind::DuplicateNode,
                format!(
                    "upstream server {:?} is listed more than once",
                    server.address
                ),
            ));
        }
        out.push(server);
    }
    if out.is_empty() {
        return Err(Error::new(
            ErrorKind::EmptyNodeSet,
            format!("the upstream list {list:?} has no servers"),
        ));
    }
    Ok(out)
}

/// Builds the sharder nginx's `hash $key consistent` uses for this list:
/// `ketama:nginx`, crc32 keys, node names as written. `down` entries are
/// marked down. Errors are those of [`parse_servers`].
pub fn parse_upstream(list: &str) -> Result<Sharder> {
    parse_upstream_with(list, Algorithm::Ketama(KetamaMode::Nginx))
}

/// Builds a sharder over this list's servers placed by `algorithm` with its
/// default hash, so an nginx upstream can be balanced by any algorithm
/// (a Lua balancer, say) while its servers are written the nginx way.
/// Node names are the addresses as written, `weight=` is the node weight and
/// `down` entries are marked down; with `ketama:nginx` this is
/// [`parse_upstream`]. Errors are those of [`parse_servers`], plus
/// [`ErrorKind::InvalidArgument`] naming the server when `algorithm` takes
/// no weights (jump, jumpback, memento) and an entry has `weight=` above 1.
pub fn parse_upstream_with(list: &str, algorithm: Algorithm) -> Result<Sharder> {
    let servers = parse_servers(list)?;
    let nodes = servers
        .iter()
        .map(UpstreamServer::node)
        .collect::<Result<Vec<_>>>()?;
    let sharder = Sharder::new(nodes, ShardConfig::new(algorithm))?;
    let down: Vec<Change> = servers
        .iter()
        .filter(|s| s.down)
        .map(|s| Change::Down(s.address.clone()))
        .collect();
    if down.is_empty() {
        Ok(sharder)
    } else {
        sharder.apply(&down)
    }
}

fn bad(entry: &str, why: &str) -> Error {
    Error::invalid(format!("upstream server {entry:?}: {why}"))
}

fn parse_weight(v: &str, entry: &str) -> Result<u32> {
    match v.parse::<u64>() {
        Ok(w) if (1..=MAX_WEIGHT as u64).contains(&w) && v.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(w as u32)
        }
        _ => Err(bad(
            entry,
            &format!("weight must be an integer between 1 and {MAX_WEIGHT}, got {v:?}"),
        )),
    }
}

/// Catches what nginx would refuse to parse as an address, so a parameter in
/// the address position (`weight=2 host:80`) is reported, not hashed.
fn validate_address(address: &str, entry: &str) -> Result<()> {
    if let Some(path) = address.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(bad(entry, "the unix socket path is empty"));
        }
        return Ok(());
    }
    if address.contains('=') || address.contains('/') {
        return Err(bad(
            entry,
            &format!("{address:?} is not an address; expected host[:port] or unix:/path first"),
        ));
    }
    // A port is whatever follows the last ':' outside an IPv6 bracket.
    let port = match (address.rfind(':'), address.rfind(']')) {
        (Some(c), Some(b)) if c < b => None,
        (Some(c), _) => Some(&address[c + 1..]),
        (None, _) => None,
    };
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !ok {
            return Err(bad(
                entry,
                &format!("port {port:?} is not an integer between 1 and 65535"),
            ));
        }
        if address.len() == port.len() + 1 {
            return Err(bad(entry, "the host is empty"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_weights_and_server_keyword() {
        let list = "server 127.0.0.1:8081 weight=2;\n127.0.0.1:8082, 127.0.0.1:8083 weight=5 max_fails=3 fail_timeout=10s max_conns=0\n\n";
        let servers = parse_servers(list).unwrap();
        assert_eq!(
            servers,
            [
                UpstreamServer {
                    address: "127.0.0.1:8081".into(),
                    weight: 2,
                    down: false
                },
                UpstreamServer {
                    address: "127.0.0.1:8082".into(),
                    weight: 1,
                    down: false
                },
                UpstreamServer {
                    address: "127.0.0.1:8083".into(),
                    weight: 5,
                    down: false
                },
            ]
        );
        let s = parse_upstream(list).unwrap();
        assert_eq!(s.algorithm(), Algorithm::Ketama(KetamaMode::Nginx));
        assert_eq!(s.hash_fn(), crate::HashFn::Crc32a);
        let names: Vec<(&str, &str, u32)> = s
            .nodes()
            .map(|n| (n.name(), n.ring_id(), n.weight()))
            .collect();
        assert_eq!(
            names,
            [
                ("127.0.0.1:8081", "127.0.0.1:8081", 2),
                ("127.0.0.1:8082", "127.0.0.1:8082", 1),
                ("127.0.0.1:8083", "127.0.0.1:8083", 5)
            ]
        );
    }

    #[test]
    fn other_address_forms_are_kept_as_written() {
        let s = parse_servers("backend, [::1]:8080, [::1], unix:/tmp/up.sock").unwrap();
        let a: Vec<&str> = s.iter().map(|s| s.address.as_str()).collect();
        assert_eq!(a, ["backend", "[::1]:8080", "[::1]", "unix:/tmp/up.sock"]);
    }

    #[test]
    fn down_keeps_points_and_skips_the_node() {
        let up = parse_upstream("a:1, b:2, c:3").unwrap();
        let down = parse_upstream("a:1, b:2 down, c:3").unwrap();
        assert_eq!(down.is_down("b:2"), Some(true));
        let mut moved = 0;
        for i in 0..2000 {
            let k = format!("/k/{i}");
            let before = up.lookup(k.as_bytes()).unwrap().name();
            let after = down.lookup(k.as_bytes()).unwrap().name();
            assert_ne!(after, "b:2");
            if before != "b:2" {
                assert_eq!(before, after, "{k} moved though its node is up");
            } else {
                moved += 1;
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn errors_name_entry_and_value() {
        let cases = [
            ("a:1 weight=0", "\"0\""),
            ("a:1 weight=-2", "\"-2\""),
            ("a:1 weight=x", "\"x\""),
            ("a:1 weight=", "\"\""),
            ("a:1 weight=+3", "\"+3\""),
            ("a:1 weight=2 weight=3", "twice"),
            ("a:1 backup", "backup"),
            ("a:1 resolve", "\"resolve\""),
            ("a:1 down=1", "\"down=1\""),
            ("a:1 max_fails=x", "\"x\""),
            ("a:1 fail_timeout=", "fail_timeout"),
            ("weight=2 a:1", "not an address"),
            ("a:http", "\"http\""),
            ("a:0", "\"0\""),
            ("a:70000", "\"70000\""),
            (":80", "host is empty"),
            ("unix:", "path is empty"),
        ];
        for (list, needle) in cases {
            let e = parse_upstream(list).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{list}: {e}");
            assert!(e.message().contains(needle), "{list}: {e}");
            assert!(e.message().contains(&format!("{list:?}")), "{list}: {e}");
        }
    }

    #[test]
    fn any_algorithm_places_as_the_same_nodes_would() {
        let list = "127.0.0.1:8081 weight=2, 127.0.0.1:8082; 127.0.0.1:8083 max_fails=1";
        for name in crate::shard::ALGORITHM_NAMES {
            let alg = Algorithm::from_name(name).unwrap();
            let weights = if alg.weighted() { [2, 1, 1] } else { [1, 1, 1] };
            let list = if alg.weighted() {
                list.to_string()
            } else {
                list.replace(" weight=2", "")
            };
            let s = parse_upstream_with(&list, alg).unwrap();
            assert_eq!(s.algorithm(), alg);
            let nodes = ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"]
                .iter()
                .zip(weights)
                .map(|(n, w)| Node::new(*n, w).unwrap())
                .collect();
            let plain = Sharder::new(nodes, ShardConfig::new(alg)).unwrap();
            for i in 0..500 {
                let k = format!("/k/{i}");
                assert_eq!(
                    s.lookup(k.as_bytes()).unwrap().name(),
                    plain.lookup(k.as_bytes()).unwrap().name(),
                    "{name}: {k}"
                );
            }
        }
        let nginx = parse_upstream(list).unwrap();
        let with = parse_upstream_with(list, Algorithm::Ketama(KetamaMode::Nginx)).unwrap();
        for i in 0..500 {
            let k = format!("/k/{i}");
            assert_eq!(
                nginx.lookup(k.as_bytes()).unwrap().name(),
                with.lookup(k.as_bytes()).unwrap().name()
            );
        }
    }

    #[test]
    fn upstream_with_marks_down_and_refuses_weights_it_cannot_place() {
        let s = parse_upstream_with("a:1, b:2 down, c:3", Algorithm::Rendezvous).unwrap();
        assert_eq!(s.is_down("b:2"), Some(true));
        for i in 0..200 {
            assert_ne!(
                s.lookup(format!("/k/{i}").as_bytes()).unwrap().name(),
                "b:2"
            );
        }
        let e = parse_upstream_with("a:1 weight=3, b:2", Algorithm::Jump).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("\"a:1\""), "{e}");
        assert!(e.message().contains("weight 3"), "{e}");
        let e = parse_upstream_with("a:1 weight=0", Algorithm::Jump).unwrap_err();
        assert!(e.message().contains("\"0\""), "{e}");
    }

    #[test]
    fn empty_and_duplicate_lists() {
        for list in ["", " , ;\n", "server ;"] {
            let e = parse_upstream(list).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::EmptyNodeSet, "{list:?}");
        }
        let e = parse_upstream("a:1, b:1 weight=2, a:1").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DuplicateNode);
        assert!(e.message().contains("\"a:1\""), "{e}");
    }
}
