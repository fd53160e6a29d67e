//! # shardkit
//!
//! One engine for the serving patterns of distributed systems. This crate is
//! the core every binding (C, Python, Go, the `shardkit` binary) wraps:
//!
//! - [`hash`]: key hashes, xxh3 by default plus twemproxy's and nginx's family;
//! - [`shard`]: sharding functions over immutable node-set snapshots;
//! - [`keysel`]: hash tags and custom key extraction;
//! - [`config`]: twemproxy YAML pools and nginx upstream lists;
//! - [`lease`]: sessions, locks with fencing tokens, elections and shard
//!   ownership on etcd or an embedded store;
//! - [`scatter`]: fan-out to leaves with deadlines, hedging, coverage
//!   policies and replica choice;
//! - [`merge`]: top-k k-way merge, posting-list intersection and union;
//! - [`search`]: sharded document search (corpus, placement, BM25 inverted
//!   index, the leaf/root JSON protocol);
//! - [`fanout`]: predicted gather latency for n leaves, with and without
//!   hedging;
//! - [`proxy`]: the cache ambassador, a nutcracker drop-in for memcache and
//!   Redis with replicas, failover, reload and hot-key spreading;
//! - [`runtime`]: the one tokio runtime the bindings share.
//!
//! ```
//! use shardkit::{Algorithm, ErrorKind, Node, ShardConfig, Sharder};
//! // Maglev takes weights: cache-b gets twice cache-a's share of keys.
//! let nodes = vec![Node::new("cache-a", 1)?, Node::new("cache-b", 2)?];
//! let s = Sharder::new(nodes, ShardConfig::new(Algorithm::from_name("maglev")?))?;
//! let node = s.lookup(b"user:42")?;
//! assert!(node.name().starts_with("cache-"));
//!
//! // Jump has no weights, and says so rather than ignoring them.
//! let weighted = vec![Node::new("cache-a", 1)?, Node::new("cache-b", 2)?];
//! let e = Sharder::new(weighted, ShardConfig::new(Algorithm::Jump)).unwrap_err();
//! assert_eq!(e.kind(), ErrorKind::InvalidArgument);
//! # Ok::<(), shardkit::Error>(())
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod fanout;
pub mod hash;
pub mod http_proxy;
pub mod keysel;
pub mod lease;
pub mod merge;
pub mod node;
pub mod pipeline;
pub mod proxy;
pub mod runtime;
pub mod scatter;
pub mod search;
pub mod shard;

pub use error::{Error, ErrorKind, Result};
pub use hash::HashFn;
pub use keysel::KeySelector;
pub use node::Node;
pub use shard::{
    Algorithm, Balance, Change, KetamaMode, LiveSharder, Movement, ShardConfig, Sharder,
};

/// The crate version, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
