//! Sharded document search, after the scatter/gather chapter of *Designing
//! Distributed Systems*: every leaf indexes one shard of a corpus, the root
//! scatters a query to all leaves and merges their top hits.
//!
//! - [`Corpus`]: the corpus file, one `name<TAB>text` document per line;
//!   a document's global id is its 0-based line number.
//! - [`Placement`]: document → shard by jump consistent hash of the name
//!   (core's [`Sharder`](crate::Sharder) over shards named `"0"`..`"N-1"`).
//! - [`tokenize`]: lowercase alphanumeric words; no stemming, no stop words.
//! - [`Index`]: one shard's inverted index (posting lists of global ids,
//!   ascending, with term frequencies and document lengths); AND queries
//!   intersect with [`merge::intersect`](crate::merge::intersect)
//!   (galloping), OR queries unite with [`merge::union`](crate::merge::union);
//!   hits are BM25-scored from the shard's local statistics (no DFS phase,
//!   see [`Index`]) and come out in the order [`merge::top_k`](crate::merge::top_k)
//!   takes.
//! - [`SearchRequest`] / [`LeafAnswer`]: the JSON protocol between root
//!   and leaves.
//! - [`SearchRoot`]: the root: scatter over HTTP leaves, merge, and a
//!   [`SearchPage`] with the hits and the coverage.
//!
//! ```
//! use shardkit::search::{Corpus, Index, Op, SearchRequest, ShardSpec};
//! let corpus = Corpus::parse(b"Gen 1:3\tLet there be light\nGen 1:4\tlight from darkness\n", "demo")?;
//! let index = Index::build(&corpus, ShardSpec::new(0, 1)?)?;
//! let answer = index.answer(&SearchRequest::new("light darkness", Op::And, 10))?;
//! assert_eq!(answer.total, 1);
//! assert_eq!(answer.hits[0].name, "Gen 1:4");
//! # Ok::<(), shardkit::Error>(())
//! ```

mod corpus;
mod index;
mod protocol;
mod root;
mod tokenize;

pub use corpus::{Corpus, Document, Placement, ShardSpec};
pub use index::{Index, IndexStats, Matches, Op, Query, BM25_B, BM25_K1};
pub use protocol::{LeafAnswer, LeafHit, SearchRequest, MAX_WINDOW};
pub use root::{parse_leaves, PageCoverage, PageHit, PageMissing, SearchPage, SearchRoot};
pub use tokenize::tokenize;
