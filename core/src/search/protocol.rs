//! The JSON the root and the leaves exchange.
//!
//! Request (`POST /search`, to a leaf or to a root):
//! `{"q": "light darkness", "op": "and", "k": 10, "offset": 0, "postings": false}`
//! (`op` defaults to `and`, `k` to 10, `offset` to 0, `postings` to false;
//! unknown fields are rejected so a typo is an error, not a silent default).
//!
//! Leaf answer: `{"shard": 0, "shards": 3, "docs": 10368, "total": 42,
//! "hits": [{"doc": 3, "score": 4.2, "name": "Genesis 1:4"}], "postings": [..]}`
//! with the leaf's best `offset + k` hits (score descending, doc ascending),
//! so that the root's merge can cut any page out of them; `postings` only
//! when asked.

use super::index::{Index, Op, Query};
use crate::merge::Hit;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Most hits one request may reach (`offset + k`), as Elasticsearch's
/// `index.max_result_window`: deep pages cost every leaf `offset + k` hits.
pub const MAX_WINDOW: usize = 10_000;

fn default_k() -> usize {
    10
}

/// A search request, to a leaf or a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query text, tokenized as documents are.
    pub q: String,
    /// How the terms combine.
    #[serde(default)]
    pub op: Op,
    /// Page size, at least 1.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Hits to skip in the merged order.
    #[serde(default)]
    pub offset: usize,
    /// Return every matching id too (leaves only).
    #[serde(default)]
    pub postings: bool,
}

impl SearchRequest {
    /// A request for the first `k` hits of `q`.
    pub fn new(q: impl Into<String>, op: Op, k: usize) -> SearchRequest {
        SearchRequest {
            q: q.into(),
            op,
            k,
            offset: 0,
            postings: false,
        }
    }

    /// Parses a JSON body. Errors: `InvalidArgument` with serde's message
    /// (which names the bad field or value and its position).
    pub fn from_json(body: &[u8]) -> Result<SearchRequest> {
        serde_json::from_slice(body).map_err(|e| Error::invalid(format!("bad search request: {e}")))
    }

    /// Checks `k` and the window and parses the query. Errors:
    /// `InvalidArgument` for `k == 0`, `offset + k` over [`MAX_WINDOW`], or
    /// a query without terms, each naming the value.
    pub fn query(&self) -> Result<Query> {
        if self.k == 0 {
            return Err(Error::invalid(
                "k = 0: a search must ask for at least one hit",
            ));
        }
        let window = self.offset.saturating_add(self.k);
        if window > MAX_WINDOW {
            return Err(Error::invalid(format!(
                "offset {} + k {} = {window} exceeds the result window of {MAX_WINDOW}",
                self.offset, self.k
            )));
        }
        Query::parse(&self.q, self.op)
    }

    /// The request as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a request always serializes")
    }
}

/// One hit as a leaf returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafHit {
    /// Global document id (line number in the corpus).
    pub doc: u64,
    /// BM25 score from the leaf's own statistics.
    pub score: f32,
    /// The document's name.
    pub name: String,
}

/// A leaf's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafAnswer {
    /// `i` of the leaf's `i/N`.
    pub shard: u32,
    /// `N` of the leaf's `i/N`.
    pub shards: u32,
    /// Documents in the leaf's shard.
    pub docs: u64,
    /// Matching documents in the shard.
    pub total: u64,
    /// The best `offset + k` hits, score descending then doc ascending.
    pub hits: Vec<LeafHit>,
    /// Every matching id, ascending, when the request asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postings: Option<Vec<u64>>,
}

impl LeafAnswer {
    /// The hits as the merge takes them, tagged with `shard` (the position
    /// of the leaf in the root's list, which breaks score ties).
    pub fn merge_hits(&self, shard: u32) -> Vec<Hit> {
        self.hits
            .iter()
            .map(|h| Hit::new(h.score, shard, h.doc))
            .collect()
    }
}

impl Index {
    /// Answers a request as a leaf: the best `offset + k` hits with names.
    /// Errors as [`SearchRequest::query`].
    pub fn answer(&self, req: &SearchRequest) -> Result<LeafAnswer> {
        let query = req.query()?;
        let m = self.search(&query, req.offset + req.k, req.postings)?;
        let hits = m
            .hits
            .iter()
            .map(|h| LeafHit {
                doc: h.doc,
                score: h.score,
                name: self
                    .name(h.doc)
                    .expect("hits come from this shard")
                    .to_string(),
            })
            .collect();
        let spec = self.spec();
        Ok(LeafAnswer {
            shard: spec.index,
            shards: spec.count,
            docs: self.len() as u64,
            total: m.total,
            hits,
            postings: m.postings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{Corpus, ShardSpec};
    use crate::ErrorKind;

    #[test]
    fn requests_parse_with_defaults_and_reject_typos() {
        let r = SearchRequest::from_json(br#"{"q": "light"}"#).unwrap();
        assert_eq!(r, SearchRequest::new("light", Op::And, 10));
        let r =
            SearchRequest::from_json(br#"{"q":"a b","op":"or","k":3,"offset":6,"postings":true}"#)
                .unwrap();
        assert_eq!((r.op, r.k, r.offset, r.postings), (Op::Or, 3, 6, true));
        assert_eq!(SearchRequest::from_json(&r.to_json()).unwrap(), r);
        for (bad, says) in [
            (&br#"{"q":"a","kk":3}"#[..], "unknown field `kk`"),
            (br#"{"q":"a","op":"xor"}"#, "unknown variant `xor`"),
            (br#"{"k":3}"#, "missing field `q`"),
            (br#"{"q":"a","k":-1}"#, "-1"),
            (b"{not json", "key must be a string"),
        ] {
            let e = SearchRequest::from_json(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.message().contains(says), "{e}");
        }
    }

    #[test]
    fn checks_k_window_and_terms() {
        let mut r = SearchRequest::new("light", Op::And, 0);
        assert!(r.query().unwrap_err().message().contains("k = 0"));
        r.k = 10;
        r.offset = MAX_WINDOW;
        assert!(r.query().unwrap_err().message().contains("10010"));
        r.offset = 0;
        r.q = "?!".into();
        assert!(r.query().unwrap_err().message().contains("\"?!\""));
    }

    #[test]
    fn a_leaf_answers_offset_plus_k() {
        let c = Corpus::parse(b"a\tx\nb\tx y\nc\tx\nd\ty\n", "t").unwrap();
        let idx = Index::build(&c, ShardSpec::new(0, 1).unwrap()).unwrap();
        let mut r = SearchRequest::new("x", Op::And, 1);
        r.offset = 1;
        r.postings = true;
        let a = idx.answer(&r).unwrap();
        assert_eq!((a.shard, a.shards, a.docs, a.total), (0, 1, 4, 3));
        assert_eq!(a.hits.len(), 2);
        assert_eq!(a.postings, Some(vec![0, 1, 2]));
        assert!(a
            .hits
            .iter()
            .all(|h| ["a", "c", "b"].contains(&h.name.as_str())));
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<LeafAnswer>(&json).unwrap(), a);
        r.postings = false;
        let json = serde_json::to_string(&idx.answer(&r).unwrap()).unwrap();
        assert!(!json.contains("postings"), "{json}");
        assert_eq!(a.merge_hits(5)[0].shard, 5);
    }
}
