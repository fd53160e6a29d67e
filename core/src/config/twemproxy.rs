//! twemproxy (nutcracker) YAML pools, read the way nutcracker 0.5 reads them
//! (`src/nc_conf.c`), so that each pool's [`Sharder`] places every key on the
//! server nutcracker would pick.
//!
//! ```
//! use shardkit::config::twemproxy;
//! let pools = twemproxy::parse_pools(r#"
//! alpha:
//!   listen: 127.0.0.1:22121
//!   hash: fnv1a_64
//!   distribution: ketama
//!   servers:
//!    - 127.0.0.1:11211:1
//!    - 127.0.0.1:11212:1 cache-b
//! "#)?;
//! let pool = twemproxy::select_pool(pools, None)?;
//! let server = pool.sharder.lookup(b"user:42")?;
//! assert!(server.name().starts_with("127.0.0.1:1121"));
//! # Ok::<(), shardkit::Error>(())
//! ```
//!
//! What nutcracker's rules mean for the ring (all checked against the real
//! binary by `core/tests/compat_nutcracker.rs`):
//!
//! - A server entry is parsed from its end: the alias after the last space,
//!   the weight after the last `:`, then the port after the next `:`.
//! - The identity hashed onto the ring is the alias when given, else `host`
//!   when the port is 11211 (libmemcached's convention), else `host:port`.
//!   For a unix socket entry `/path:weight` it is `/path:`, colon included:
//!   nutcracker takes the address plus one byte for a port separator even
//!   when there is no port.
//! - Two servers with the same ring identity are an error, as in nutcracker.
//! - Servers are ordered as nutcracker orders them, by ring identity (shorter
//!   first, then bytewise), not as listed: nutcracker sorts them while
//!   checking for duplicates, and `modula` indexes that sorted list. The
//!   sharder's nodes come in this order.
//! - Unknown directives are an error, as in nutcracker: a misspelt
//!   `distribution` would otherwise silently change placement.

use crate::error::{Error, ErrorKind, Result};
use crate::hash::HashFn;
use crate::keysel::KeySelector;
use crate::node::{Node, MAX_WEIGHT};
use crate::shard::{Algorithm, KetamaMode, ShardConfig, Sharder};
use serde_yaml_ng::Value;
use std::collections::HashMap;
use std::path::Path;

/// The hash names nutcracker accepts for `hash:` (its `HASH_CODEC` list):
/// every shardkit hash but xxh3, in nutcracker's order.
pub const TWEMPROXY_HASH_NAMES: &[&str] = crate::hash::TWEMPROXY_HASH_NAMES;

/// The hash nutcracker uses when a pool names none (`CONF_DEFAULT_HASH`).
pub const DEFAULT_HASH: &str = "fnv1a_64";

/// libmemcached's default port: servers on it are hashed by host alone.
pub const KETAMA_DEFAULT_PORT: u16 = 11211;

/// Every pool directive nutcracker knows. Only `hash`, `hash_tag`,
/// `distribution`, `servers` and `listen` affect placement; the rest are
/// accepted and ignored. Later twemproxy releases added the last few.
const DIRECTIVES: &[&str] = &[
    "listen",
    "hash",
    "hash_tag",
    "distribution",
    "timeout",
    "backlog",
    "client_connections",
    "redis",
    "redis_auth",
    "redis_db",
    "preconnect",
    "auto_eject_hosts",
    "server_connections",
    "server_retry_timeout",
    "server_failure_limit",
    "servers",
    "tcpkeepalive",
    "reuseport",
];

/// One pool of a twemproxy configuration.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The pool's name (its top-level key).
    pub name: String,
    /// Places keys as nutcracker does for this pool. Node names are the
    /// server entries without their alias, e.g. `127.0.0.1:11211:1`.
    pub sharder: Sharder,
    /// The `listen:` address, if given.
    pub listen: Option<String>,
    /// The `hash_tag:` delimiters, if given (two characters, e.g. `{}`).
    pub hash_tag: Option<String>,
}

/// One `servers:` entry, parsed as nutcracker parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The entry without its alias (`127.0.0.1:11211:1`): the node name.
    pub name: String,
    /// What nutcracker hashes onto the ketama ring (see the module docs).
    pub ring_id: String,
    /// The host, or the socket path for a unix socket entry.
    pub host: String,
    /// The TCP port; `None` for a unix socket.
    pub port: Option<u16>,
    /// The weight, at least 1.
    pub weight: u32,
    /// The alias (`name` in nutcracker's terms), if given.
    pub alias: Option<String>,
}

impl Server {
    /// The node this server is in a pool: named by the entry without its
    /// alias, hashed onto rings by its ring id, as nutcracker does.
    pub fn node(&self) -> Result<Node> {
        Ok(Node::new(self.name.clone(), self.weight as i64)?.with_ring_id(self.ring_id.clone()))
    }

    /// Parses `host:port:weight [alias]` or `/unix/path:weight [alias]`.
    /// Errors are [`ErrorKind::InvalidArgument`] and name the entry.
    pub fn parse(entry: &str) -> Result<Server> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "server {entry:?}: {why}; expected \"host:port:weight [alias]\" or \"/unix/path:weight [alias]\""
            ))
        };
        // nutcracker splits from the end: the alias is whatever follows the
        // last space, and everything before it must be the address.
        let (name, alias) = match entry.rfind(' ') {
            Some(i) => {
                let alias = &entry[i + 1..];
                if alias.is_empty() {
                    return Err(bad("the alias after the space is empty"));
                }
                (&entry[..i], Some(alias.to_string()))
            }
            None => (entry, None),
        };
        let (addr, weight) = name.rsplit_once(':').ok_or_else(|| bad("no \":weight\""))?;
        let weight = match atoi(weight) {
            Some(0) => return Err(bad("the weight is zero")),
            Some(w) if w <= MAX_WEIGHT as u64 => w as u32,
            Some(_) => {
                return Err(bad(&format!(
                    "the weight {weight:?} is above shardkit's limit of {MAX_WEIGHT}"
                )))
            }
            None => {
                return Err(bad(&format!(
                    "the weight {weight:?} is not a positive integer"
                )))
            }
        };
        let (host, port) = if addr.starts_with('/') {
            if addr.contains(':') {
                return Err(bad("a unix socket path cannot contain ':'"));
            }
            (addr, None)
        } else {
            let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no \":port\""))?;
            let port = match atoi(port) {
                Some(p) if (1..=65535).contains(&p) => p as u16,
                _ => {
                    return Err(bad(&format!(
                        "the port {port:?} is not an integer between 1 and 65535"
                    )))
                }
            };
            if host.is_empty() {
                return Err(bad("the host is empty"));
            }
            (host, Some(port))
        };
        let ring_id = match (&alias, port) {
            (Some(a), _) => a.clone(),
            (None, Some(KETAMA_DEFAULT_PORT)) => host.to_string(),
            // `host:port` as written (a port with leading zeros keeps them).
            (None, Some(_)) => addr.to_string(),
            // nc_conf.c takes `addrlen + 1 + portlen` bytes of the entry,
            // which for a socket path is the path and the ':' after it.
            (None, None) => format!("{host}:"),
        };
        Ok(Server {
            name: name.to_string(),
            ring_id,
            host: host.to_string(),
            port,
            weight,
            alias,
        })
    }

    /// `host:port`, or the socket path: where to connect.
    pub fn address(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

/// nutcracker's `nc_atoi`: ASCII digits only, nothing else.
fn atoi(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses every pool of a nutcracker YAML document, in document order.
/// Unparseable YAML and invalid directives are [`ErrorKind::Config`] errors
/// naming the pool, the directive and the value; two servers of a pool with
/// the same name or ring identity are [`ErrorKind::DuplicateNode`].
pub fn parse_pools(yaml: &str) -> Result<Vec<Pool>> {
    let doc: Value = serde_yaml_ng::from_str(yaml)
        .map_err(|e| Error::config(format!("cannot parse twemproxy YAML: {e}")))?;
    let map = match doc {
        Value::Mapping(m) => m,
        Value::Null => return Err(Error::config("twemproxy YAML has no pools")),
        other => {
            return Err(Error::config(format!(
                "twemproxy YAML must be a mapping of pool names to pools, got {}",
                describe(&other)
            )))
        }
    };
    if map.is_empty() {
        return Err(Error::config("twemproxy YAML has no pools"));
    }
    let mut listens: HashMap<String, String> = HashMap::new();
    let mut pools = Vec::with_capacity(map.len());
    for (key, value) in map {
        let name = scalar_text(&key).ok_or_else(|| {
            Error::config(format!(
                "a pool name must be a string, got {}",
                describe(&key)
            ))
        })?;
        let pool = parse_pool(&name, value)?;
        if let Some(listen) = &pool.listen {
            if let Some(other) = listens.insert(listen.clone(), name.clone()) {
                return Err(Error::config(format!(
                    "pools {other:?} and {name:?} have the same listen address {listen:?}"
                )));
            }
        }
        pools.push(pool);
    }
    Ok(pools)
}

/// Reads and parses a nutcracker YAML file. An unreadable file is an
/// [`ErrorKind::Io`] error naming the path; other errors are those of
/// [`parse_pools`], prefixed with the path.
pub fn load_pools(path: &Path) -> Result<Vec<Pool>> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read twemproxy config {}: {e}", path.display()),
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidUtf8,
            format!(
                "twemproxy config {} is not valid UTF-8 (at byte {})",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    parse_pools(&text)
        .map_err(|e| Error::new(e.kind(), format!("{}: {}", path.display(), e.message())))
}

/// Picks the pool named `name`, or the first pool when `name` is `None`.
/// A missing pool is [`ErrorKind::NotFound`], listing the pools there are.
pub fn select_pool(pools: Vec<Pool>, name: Option<&str>) -> Result<Pool> {
    let names = || {
        pools
            .iter()
            .map(|p| format!("{:?}", p.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        None => pools
            .into_iter()
            .next()
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "there are no pools to choose from")),
        Some(name) => {
            let found = pools.iter().position(|p| p.name == name);
            match found {
                Some(i) => Ok(pools.into_iter().nth(i).expect("index is in range")),
                None => Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no pool named {name:?}; pools: {}", names()),
                )),
            }
        }
    }
}

fn parse_pool(name: &str, value: Value) -> Result<Pool> {
    let ctx = |msg: String| Error::config(format!("pool {name:?}: {msg}"));
    let map = match value {
        Value::Mapping(m) => m,
        other => {
            return Err(ctx(format!(
                "expected a mapping of directives, got {}",
                describe(&other)
            )))
        }
    };
    let mut listen = None;
    let mut hash_name = None;
    let mut hash_tag = None;
    let mut distribution = None;
    let mut servers = None;
    for (key, value) in map {
        let key = scalar_text(&key).ok_or_else(|| {
            ctx(format!(
                "a directive must be a string, got {}",
                describe(&key)
            ))
        })?;
        let text = |v: &Value| {
            scalar_text(v)
                .ok_or_else(|| ctx(format!("{key} must be a string, got {}", describe(v))))
        };
        match key.as_str() {
            "listen" => listen = Some(text(&value)?),
            "hash" => hash_name = Some(text(&value)?),
            "hash_tag" => hash_tag = Some(text(&value)?),
            "distribution" => distribution = Some(text(&value)?),
            "servers" => servers = Some(value),
            k if DIRECTIVES.contains(&k) => {}
            other => {
                return Err(ctx(format!(
                "directive {other:?} is unknown (nutcracker rejects it too); expected one of {}",
                DIRECTIVES.join(", ")
            )))
            }
        }
    }

    let entries = match servers {
        None => {
            return Err(ctx(
                "has no servers: the \"servers\" directive is missing".into()
            ))
        }
        Some(Value::Sequence(s)) => s,
        Some(Value::Null) => return Err(ctx("has no servers: \"servers\" is empty".into())),
        Some(other) => {
            return Err(ctx(format!(
                "servers must be a list of \"host:port:weight [alias]\" entries, got {}",
                describe(&other)
            )))
        }
    };
    let mut texts = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        // libyaml hands nutcracker every scalar as text; do the same so an
        // entry YAML would read as a number still gets nutcracker's error.
        texts.push(scalar_text(entry).ok_or_else(|| {
            ctx(format!(
                "servers[{i}] must be a string \"host:port:weight [alias]\", got {}",
                describe(entry)
            ))
        })?);
    }
    let placement = Placement {
        hash: hash_name.as_deref(),
        hash_tag: hash_tag.as_deref(),
        distribution: distribution.as_deref(),
        algorithm: None,
    };
    let (sharder, _) = pool_sharder(name, &placement, &texts)?;
    Ok(Pool {
        name: name.to_string(),
        sharder,
        listen,
        hash_tag,
    })
}

/// The directives of a pool that decide where keys go.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placement<'a> {
    /// `hash:` (nutcracker's default `fnv1a_64` when `None`).
    pub hash: Option<&'a str>,
    /// `hash_tag:`, two characters.
    pub hash_tag: Option<&'a str>,
    /// `distribution:` (`ketama` when `None`).
    pub distribution: Option<&'a str>,
    /// shardkit's own `algorithm:` (any [`Algorithm`] name), which replaces
    /// `distribution`; the hash then defaults to the algorithm's own.
    pub algorithm: Option<&'a str>,
}

/// Builds a pool's sharder from its placement directives and `servers:`
/// entries, as nutcracker would place keys (unless `algorithm` says
/// otherwise). Also returns the parsed servers in the sharder's node order.
/// Errors name the pool and the bad value.
pub fn pool_sharder(
    name: &str,
    placement: &Placement<'_>,
    entries: &[String],
) -> Result<(Sharder, Vec<Server>)> {
    let ctx = |msg: String| Error::config(format!("pool {name:?}: {msg}"));
    let hash_name = placement.hash.unwrap_or(DEFAULT_HASH);
    // nutcracker compares names exactly; shardkit's own hashes (xxh3) would
    // describe a pool nutcracker cannot serve, unless the pool says it is
    // shardkit's with `algorithm:`.
    if placement.algorithm.is_none() && !TWEMPROXY_HASH_NAMES.contains(&hash_name) {
        return Err(ctx(format!(
            "hash {hash_name:?} is not a twemproxy hash; expected one of {}",
            TWEMPROXY_HASH_NAMES.join(", ")
        )));
    }
    let algorithm = match (placement.algorithm, placement.distribution.unwrap_or("ketama")) {
        (Some(a), _) => Algorithm::from_name(a).map_err(|e| ctx(format!("algorithm: {}", e.message())))?,
        (None, "ketama") => Algorithm::Ketama(KetamaMode::Twemproxy),
        (None, "modula") => Algorithm::Modulo,
        (None, "random") => {
            return Err(ctx(
                "distribution \"random\" sends each request to a random server, so no sharder can reproduce it; use ketama or modula".into(),
            ))
        }
        (None, other) => {
            return Err(ctx(format!(
                "distribution {other:?} is not a twemproxy distribution; expected ketama, modula or random"
            )))
        }
    };
    let hash = match (placement.algorithm, placement.hash) {
        (Some(_), None) => algorithm.default_hash(),
        _ => HashFn::from_name(hash_name).map_err(|e| ctx(e.message().to_string()))?,
    };

    let key_selector = match placement.hash_tag {
        None => KeySelector::Whole,
        Some(tag) => KeySelector::hash_tag(tag).map_err(|_| {
            ctx(format!(
                "hash_tag must be exactly two characters (one byte each), got {tag:?}"
            ))
        })?,
    };

    if entries.is_empty() {
        return Err(ctx("has no servers: \"servers\" is empty".into()));
    }

    let mut parsed = Vec::with_capacity(entries.len());
    let mut by_name: HashMap<String, String> = HashMap::new();
    let mut by_ring_id: HashMap<String, String> = HashMap::new();
    for (i, text) in entries.iter().enumerate() {
        let text = text.as_str();
        let server =
            Server::parse(text).map_err(|e| ctx(format!("servers[{i}]: {}", e.message())))?;
        if let Some(prev) = by_ring_id.insert(server.ring_id.clone(), text.to_string()) {
            return Err(Error::new(
                ErrorKind::DuplicateNode,
                format!(
                    "pool {name:?}: servers {prev:?} and {text:?} have the same name {:?} on the ring (nutcracker rejects this too)",
                    server.ring_id
                ),
            ));
        }
        if let Some(prev) = by_name.insert(server.name.clone(), text.to_string()) {
            return Err(Error::new(
                ErrorKind::DuplicateNode,
                format!(
                    "pool {name:?}: servers {prev:?} and {text:?} are both {:?}; shardkit names nodes by the entry without its alias, so they must differ",
                    server.name
                ),
            ));
        }
        server
            .node()
            .map_err(|e| ctx(format!("servers[{i}]: {}", e.message())))?;
        parsed.push(server);
    }

    // nutcracker sorts a pool's servers by ring name (shorter first, then
    // bytewise: `string_compare`) while checking for duplicates, and keeps
    // that order: it is the order of modula's slots and breaks ketama ties.
    parsed.sort_by(|a, b| {
        let (a, b) = (a.ring_id.as_bytes(), b.ring_id.as_bytes());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    });
    let sharder = servers_sharder(name, &parsed, algorithm, hash, key_selector)?;
    Ok((sharder, parsed))
}

/// The sharder over `servers` (already in nutcracker's order): also how
/// the proxy rebuilds a pool without its ejected servers, as nutcracker
/// rebuilds its continuum from the live ones.
pub fn servers_sharder(
    name: &str,
    servers: &[Server],
    algorithm: Algorithm,
    hash: HashFn,
    key_selector: KeySelector,
) -> Result<Sharder> {
    let nodes = servers
        .iter()
        .map(Server::node)
        .collect::<Result<Vec<_>>>()?;
    let mut config = ShardConfig::new(algorithm)
        .with_hash(hash)
        .with_key_selector(key_selector);
    // nutcracker's server_pool_hash: an empty key, or a pool of one server,
    // hashes to 0 without calling the hash function.
    config.empty_key_hashes_to_zero = true;
    Sharder::new(nodes, config)
        .map_err(|e| Error::new(e.kind(), format!("pool {name:?}: {}", e.message())))
}

/// The text of a scalar as nutcracker sees it: YAML scalars are all text to
/// libyaml, so a number or boolean is its literal.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  distribution: ketama
  timeout: 400
  redis: false
  auto_eject_hosts: false
  server_retry_timeout: 2000
  server_failure_limit: 1
  servers:
   - 127.0.0.1:11211:1
   - 127.0.0.2:11212:2 beta-cache
beta:
  listen: 127.0.0.1:22122
  hash: md5
  hash_tag: "{}"
  servers:
   - 10.0.0.1:11211:1 one
   - 10.0.0.2:11211:1 two
gamma:
  listen: 127.0.0.1:22123
  distribution: modula
  servers:
   - /tmp/mc.sock:3
   - 10.0.0.3:11211:1
"#;

    fn err(yaml: &str) -> Error {
        parse_pools(yaml).unwrap_err()
    }

    fn pool(body: &str) -> String {
        format!("p:\n  listen: 127.0.0.1:22121\n{body}")
    }

    #[test]
    fn pools_come_in_document_order_with_their_settings() {
        let pools = parse_pools(SAMPLE).unwrap();
        let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta", "gamma"]);

        let a = &pools[0];
        assert_eq!(a.listen.as_deref(), Some("127.0.0.1:22121"));
        assert_eq!(
            a.sharder.algorithm(),
            Algorithm::Ketama(KetamaMode::Twemproxy)
        );
        assert_eq!(a.sharder.hash_fn(), HashFn::Fnv1a64);
        assert!(a.sharder.config().empty_key_hashes_to_zero);
        let nodes: Vec<(&str, &str, u32)> = a
            .sharder
            .nodes()
            .map(|n| (n.name(), n.ring_id(), n.weight()))
            .collect();
        assert_eq!(
            nodes,
            [
                ("127.0.0.1:11211:1", "127.0.0.1", 1),
                ("127.0.0.2:11212:2", "beta-cache", 2)
            ]
        );

        let b = &pools[1];
        assert_eq!(b.sharder.hash_fn(), HashFn::Md5);
        assert_eq!(b.hash_tag.as_deref(), Some("{}"));
        // Keys sharing a tag share a server.
        let x = b
            .sharder
            .lookup(b"user:{42}:name")
            .unwrap()
            .name()
            .to_string();
        let y = b.sharder.lookup(b"{42}:mail").unwrap().name().to_string();
        assert_eq!(x, y);

        let g = &pools[2];
        assert_eq!(g.sharder.algorithm(), Algorithm::Modulo);
        assert_eq!(g.sharder.hash_fn(), HashFn::Fnv1a64);
        let ids: Vec<&str> = g.sharder.nodes().map(|n| n.ring_id()).collect();
        // Sorted as nutcracker sorts: shorter ring names first.
        assert_eq!(ids, ["10.0.0.3", "/tmp/mc.sock:"]);
    }

    #[test]
    fn servers_are_ordered_as_nutcracker_sorts_them() {
        let p = &parse_pools(&pool(
            "  distribution: modula\n  servers:\n   - b:11211:1\n   - a:11212:1\n   - a:11211:2\n   - c:1:1 zz\n   - 9:11211:1\n",
        ))
        .unwrap()[0];
        let ids: Vec<&str> = p.sharder.nodes().map(|n| n.ring_id()).collect();
        assert_eq!(ids, ["9", "a", "b", "zz", "a:11212"]);
        // modula indexes that order, each server repeated weight times.
        let total: u64 = p.sharder.nodes().map(|n| n.weight() as u64).sum();
        let expected = |h: u64| match h % total {
            0 => "9:11211:1",
            1 | 2 => "a:11211:2",
            3 => "b:11211:1",
            4 => "c:1:1",
            _ => "a:11212:1",
        };
        for i in 0..200 {
            let k = format!("key{i}");
            let h = p.sharder.key_hash(k.as_bytes());
            assert_eq!(
                p.sharder.lookup(k.as_bytes()).unwrap().name(),
                expected(h),
                "{k}"
            );
        }
    }

    #[test]
    fn defaults_are_ketama_and_fnv1a_64() {
        let p = &parse_pools(&pool("  servers:\n   - 127.0.0.1:11212:1\n")).unwrap()[0];
        assert_eq!(
            p.sharder.algorithm(),
            Algorithm::Ketama(KetamaMode::Twemproxy)
        );
        assert_eq!(p.sharder.hash_fn(), HashFn::Fnv1a64);
        assert_eq!(p.hash_tag, None);
    }

    #[test]
    fn every_twemproxy_hash_name_is_accepted() {
        for h in TWEMPROXY_HASH_NAMES {
            let p = &parse_pools(&pool(&format!(
                "  hash: {h}\n  servers:\n   - 127.0.0.1:11212:1\n"
            )))
            .unwrap()[0];
            assert_eq!(&p.sharder.hash_fn().name(), h);
        }
    }

    #[test]
    fn server_entries_follow_nc_conf() {
        let s = Server::parse("127.0.0.1:11211:1").unwrap();
        assert_eq!(
            s,
            Server {
                name: "127.0.0.1:11211:1".into(),
                ring_id: "127.0.0.1".into(),
                host: "127.0.0.1".into(),
                port: Some(11211),
                weight: 1,
                alias: None,
            }
        );
        assert_eq!(s.address(), "127.0.0.1:11211");
        let s = Server::parse("cache.local:22122:7 shard-7").unwrap();
        assert_eq!(
            (s.name.as_str(), s.ring_id.as_str(), s.weight),
            ("cache.local:22122:7", "shard-7", 7)
        );
        assert_eq!(Server::parse("h:11212:1").unwrap().ring_id, "h:11212");
        // The bytes as written are hashed, leading zeros included.
        assert_eq!(Server::parse("h:011212:1").unwrap().ring_id, "h:011212");
        let s = Server::parse("/var/run/mc.sock:2 sock").unwrap();
        assert_eq!((s.port, s.ring_id.as_str()), (None, "sock"));
        assert_eq!(s.address(), "/var/run/mc.sock");
        assert_eq!(
            Server::parse("/var/run/mc.sock:2").unwrap().ring_id,
            "/var/run/mc.sock:"
        );
    }

    #[test]
    fn bad_server_entries_name_the_value() {
        for (entry, needle) in [
            ("127.0.0.1:11211", "no \":port\""), // its port is read as the weight
            ("127.0.0.1", "no \":weight\""),
            ("127.0.0.1:11211:0", "weight is zero"),
            ("127.0.0.1:11211:-1", "\"-1\""),
            ("127.0.0.1:11211:x", "\"x\""),
            ("127.0.0.1:11211:1.5", "\"1.5\""),
            ("127.0.0.1:11211:99999999", "99999999"),
            ("127.0.0.1:0:1", "\"0\""),
            ("127.0.0.1:65536:1", "\"65536\""),
            ("127.0.0.1:port:1", "\"port\""),
            (":11211:1", "host is empty"),
            ("127.0.0.1:11211:1 ", "alias"),
            ("/tmp/a:b.sock:1", "cannot contain ':'"),
        ] {
            let e = Server::parse(entry).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{entry}");
            assert!(e.message().contains(needle), "{entry}: {e}");
            assert!(e.message().contains(&format!("{entry:?}")), "{entry}: {e}");
        }
    }

    #[test]
    fn bad_entries_in_a_pool_name_pool_index_and_value() {
        let e = err(&pool(
            "  servers:\n   - 127.0.0.1:11212:1\n   - 127.0.0.1:11213:0\n",
        ));
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("pool \"p\""), "{e}");
        assert!(e.message().contains("servers[1]"), "{e}");
        assert!(e.message().contains("127.0.0.1:11213:0"), "{e}");
        let e = err(&pool("  servers:\n   - 42\n"));
        assert!(
            e.message().contains("servers[0]") && e.message().contains("42"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_yaml_carries_the_parser_message() {
        let bad = "alpha:\n  servers: [127.0.0.1:11211:1\n";
        let parser_msg = serde_yaml_ng::from_str::<Value>(bad)
            .unwrap_err()
            .to_string();
        let e = err(bad);
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains(&parser_msg), "{e}");
        assert!(e.message().contains("cannot parse twemproxy YAML"), "{e}");
    }

    #[test]
    fn document_shape_errors() {
        assert!(err("").message().contains("no pools"));
        assert!(err("{}").message().contains("no pools"));
        assert!(err("- a\n- b\n").message().contains("a list"));
        let e = err("p: 3\n");
        assert!(
            e.message().contains("pool \"p\"") && e.message().contains("number 3"),
            "{e}"
        );
        let e = err("p:\n  listen: 127.0.0.1:1\n");
        assert!(e.message().contains("no servers"), "{e}");
        let e = err(&pool("  servers:\n"));
        assert!(e.message().contains("no servers"), "{e}");
        let e = err(&pool("  servers: []\n"));
        assert!(e.message().contains("no servers"), "{e}");
        let e = err(&pool("  servers: 127.0.0.1:11211:1\n"));
        assert!(e.message().contains("must be a list"), "{e}");
        let e = err(&pool("  hash: [md5]\n  servers:\n   - 127.0.0.1:11211:1\n"));
        assert!(e.message().contains("hash must be a string"), "{e}");
    }

    #[test]
    fn bad_directives_name_pool_field_and_value() {
        let cases = [
            ("  hash: sha1\n", "hash \"sha1\""),
            ("  hash: xxh3\n", "hash \"xxh3\""),
            ("  hash: MD5\n", "hash \"MD5\""),
            (
                "  distribution: rendezvous\n",
                "distribution \"rendezvous\"",
            ),
            ("  distribution: random\n", "no sharder can reproduce"),
            ("  hash_tag: \"{\"\n", "hash_tag"),
            ("  hash_tag: \"{}}\"\n", "\"{}}\""),
            (
                "  distrbution: modula\n",
                "directive \"distrbution\" is unknown",
            ),
        ];
        for (line, needle) in cases {
            let e = err(&pool(&format!(
                "{line}  servers:\n   - 127.0.0.1:11211:1\n"
            )));
            assert_eq!(e.kind(), ErrorKind::Config, "{line}");
            assert!(e.message().contains("pool \"p\""), "{line}: {e}");
            assert!(e.message().contains(needle), "{line}: {e}");
        }
    }

    #[test]
    fn duplicates_are_rejected() {
        // Same ring name: nutcracker's "servers with same name".
        let e = err(&pool(
            "  servers:\n   - 127.0.0.1:11211:1\n   - 127.0.0.1:11211:2\n",
        ));
        assert_eq!(e.kind(), ErrorKind::DuplicateNode);
        assert!(e.message().contains("\"127.0.0.1\""), "{e}");
        let e = err(&pool(
            "  servers:\n   - 10.0.0.1:11211:1 a\n   - 10.0.0.2:11211:1 a\n",
        ));
        assert_eq!(e.kind(), ErrorKind::DuplicateNode);
        assert!(e.message().contains("\"a\""), "{e}");
        // Same entry under two aliases: nutcracker allows it, shardkit's node
        // names would collide.
        let e = err(&pool(
            "  servers:\n   - 10.0.0.1:11211:1 a\n   - 10.0.0.1:11211:1 b\n",
        ));
        assert_eq!(e.kind(), ErrorKind::DuplicateNode);
        assert!(e.message().contains("10.0.0.1:11211:1"), "{e}");
        // Duplicate listen addresses, as nutcracker checks.
        let e = err("a:\n  listen: x:1\n  servers: [\"h:2:1\"]\nb:\n  listen: x:1\n  servers: [\"h:2:1\"]\n");
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("\"x:1\""), "{e}");
        // Duplicate pool names are duplicate YAML keys.
        let e = err("a:\n  servers: [\"h:2:1\"]\na:\n  servers: [\"h:3:1\"]\n");
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn alias_too_long_for_nutcracker_keeps_its_kind_and_names_pool() {
        let alias = "a".repeat(100);
        let e = err(&pool(&format!(
            "  servers:\n   - 127.0.0.1:11211:1 {alias}\n   - 127.0.0.1:11212:1\n"
        )));
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("pool \"p\""), "{e}");
    }

    #[test]
    fn select_pool_by_name_or_first() {
        let first = select_pool(parse_pools(SAMPLE).unwrap(), None).unwrap();
        assert_eq!(first.name, "alpha");
        let g = select_pool(parse_pools(SAMPLE).unwrap(), Some("gamma")).unwrap();
        assert_eq!(g.name, "gamma");
        let e = select_pool(parse_pools(SAMPLE).unwrap(), Some("delta")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.message().contains("\"delta\"") && e.message().contains("\"beta\""),
            "{e}"
        );
        assert_eq!(
            select_pool(Vec::new(), None).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn load_pools_reports_io_and_path() {
        let dir = std::env::temp_dir().join(format!("shardkit-twemproxy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.yml");
        let e = load_pools(&missing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.message().contains("missing.yml"), "{e}");

        let good = dir.join("good.yml");
        std::fs::write(&good, SAMPLE).unwrap();
        assert_eq!(load_pools(&good).unwrap().len(), 3);

        let bad = dir.join("bad.yml");
        std::fs::write(&bad, "p:\n  hash: nope\n  servers: [\"h:1:1\"]\n").unwrap();
        let e = load_pools(&bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.message().contains("bad.yml") && e.message().contains("\"nope\""),
            "{e}"
        );

        let binary = dir.join("binary.yml");
        std::fs::write(&binary, b"p:\n  listen: \xff\n").unwrap();
        assert_eq!(
            load_pools(&binary).unwrap_err().kind(),
            ErrorKind::InvalidUtf8
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_sample_config_parses() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/compat/nutcracker.sample.yml");
        let pools = load_pools(&path).unwrap();
        let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["sessions", "users", "counters"]);
        assert_eq!(pools[1].hash_tag.as_deref(), Some("{}"));
        assert_eq!(pools[2].sharder.algorithm(), Algorithm::Modulo);
        let users = select_pool(pools, Some("users")).unwrap();
        let a = users
            .sharder
            .lookup(b"user:{42}:name")
            .unwrap()
            .name()
            .to_string();
        assert_eq!(users.sharder.lookup(b"user:{42}:mail").unwrap().name(), a);
        assert!(users
            .sharder
            .nodes()
            .all(|n| n.ring_id().starts_with("users-")));
    }

    #[test]
    fn single_server_and_empty_keys_hash_to_zero() {
        let p = &parse_pools(&pool("  servers:\n   - 127.0.0.1:11212:1\n")).unwrap()[0];
        assert_eq!(p.sharder.key_hash(b"anything"), 0);
        let two = &parse_pools(&pool("  servers:\n   - a:1:1\n   - b:1:1\n")).unwrap()[0];
        assert_eq!(two.sharder.key_hash(b""), 0);
        assert_ne!(two.sharder.key_hash(b"k"), 0);
    }
}
