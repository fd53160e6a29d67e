//! The inverted index of one shard and its BM25-scored AND/OR queries.

use super::corpus::{Corpus, Placement, ShardSpec};
use super::tokenize::tokenize;
use crate::merge::{self, Hit};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// BM25 term-frequency saturation (Lucene's and Elasticsearch's default).
pub const BM25_K1: f32 = 1.2;
/// BM25 document-length normalisation (Lucene's and Elasticsearch's default).
pub const BM25_B: f32 = 0.75;

/// How query terms combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Documents holding every term.
    #[default]
    And,
    /// Documents holding any term.
    Or,
}

impl Op {
    /// `and` or `or`.
    pub fn name(self) -> &'static str {
        match self {
            Op::And => "and",
            Op::Or => "or",
        }
    }

    /// Parses `and` / `or` (any case). Errors name the text.
    pub fn parse(text: &str) -> Result<Op> {
        match text.trim().to_ascii_lowercase().as_str() {
            "and" => Ok(Op::And),
            "or" => Ok(Op::Or),
            _ => Err(Error::invalid(format!(
                "operator {text:?} is neither \"and\" nor \"or\""
            ))),
        }
    }
}

/// A parsed query: distinct terms in first-seen order, and the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The distinct terms, tokenized as documents are.
    pub terms: Vec<String>,
    /// How they combine.
    pub op: Op,
}

impl Query {
    /// Tokenizes `text` with the document tokenizer; a term repeated in the
    /// query counts once. Errors: `InvalidArgument` naming the text when it
    /// has no terms.
    pub fn parse(text: &str, op: Op) -> Result<Query> {
        let mut terms: Vec<String> = Vec::new();
        for t in tokenize(text) {
            if !terms.contains(&t) {
                terms.push(t);
            }
        }
        if terms.is_empty() {
            return Err(Error::invalid(format!(
                "query {text:?} has no terms: it needs at least one letter or digit"
            )));
        }
        Ok(Query { terms, op })
    }
}

/// One term's postings: global doc ids ascending, with the term's count in
/// each of those documents.
#[derive(Debug, Clone, Default)]
struct Postings {
    docs: Vec<u64>,
    tfs: Vec<u32>,
}

/// Size and build figures of an index (`GET /stats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexStats {
    /// `i` of `i/N`.
    pub shard: u32,
    /// `N` of `i/N`.
    pub shards: u32,
    /// Documents in this shard.
    pub docs: u64,
    /// Distinct terms.
    pub terms: u64,
    /// Postings (term, document) pairs.
    pub postings: u64,
    /// Tokens indexed.
    pub tokens: u64,
    /// Average document length in tokens (BM25's `avgdl`).
    pub avg_doc_len: f64,
    /// Time to build the index (tokenize, invert), milliseconds; loading
    /// the file is not included.
    pub build_ms: f64,
}

/// What one shard answers to a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Matches {
    /// Number of matching documents in the shard.
    pub total: u64,
    /// The best `n` hits in merge order (score descending, doc ascending;
    /// the shard is this index's).
    pub hits: Vec<Hit>,
    /// Every match, global ids ascending, when asked for.
    pub postings: Option<Vec<u64>>,
}

/// The inverted index of shard `i/N` of a corpus.
///
/// Scores are BM25 (k1 = 1.2, b = 0.75) from this shard's own statistics
/// (document count, document frequencies, average length), as
/// Elasticsearch's default `query_then_fetch` does: there is no DFS phase
/// that first gathers global statistics. Shards placed by hash hold similar
/// samples of the corpus, so scores from different shards are comparable,
/// but only approximately: a rare term's IDF can differ noticeably between
/// shards, and the merged order can differ from a single-index order there.
#[derive(Debug, Clone)]
pub struct Index {
    spec: ShardSpec,
    /// Global ids of this shard's documents, ascending.
    ids: Vec<u64>,
    /// Names and lengths, parallel to `ids`.
    names: Vec<String>,
    lens: Vec<u32>,
    terms: HashMap<String, Postings>,
    avg_len: f32,
    tokens: u64,
    postings: u64,
    build: Duration,
}

impl Index {
    /// Indexes the documents of `corpus` that [`Placement`] puts on `spec`.
    pub fn build(corpus: &Corpus, spec: ShardSpec) -> Result<Index> {
        let started = Instant::now();
        let placement = Placement::new(spec.count)?;
        let mut index = Index {
            spec,
            ids: Vec::new(),
            names: Vec::new(),
            lens: Vec::new(),
            terms: HashMap::new(),
            avg_len: 0.0,
            tokens: 0,
            postings: 0,
            build: Duration::ZERO,
        };
        let mut counts: HashMap<String, u32> = HashMap::new();
        for doc in &corpus.docs {
            if placement.shard_of(&doc.name) != spec.index {
                continue;
            }
            counts.clear();
            let mut len = 0u32;
            for t in tokenize(&doc.text) {
                len += 1;
                *counts.entry(t).or_insert(0) += 1;
            }
            // Corpus order is id order, so every posting list stays sorted
            // by pushing.
            for (t, tf) in counts.drain() {
                let p = index.terms.entry(t).or_default();
                p.docs.push(doc.id);
                p.tfs.push(tf);
            }
            index.ids.push(doc.id);
            index.names.push(doc.name.clone());
            index.lens.push(len);
            index.tokens += u64::from(len);
        }
        index.postings = index.terms.values().map(|p| p.docs.len() as u64).sum();
        if !index.ids.is_empty() {
            index.avg_len = (index.tokens as f64 / index.ids.len() as f64) as f32;
        }
        index.build = started.elapsed();
        Ok(index)
    }

    /// Which shard this is.
    pub fn spec(&self) -> ShardSpec {
        self.spec
    }

    /// Documents in this shard.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no document was placed on this shard.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Global ids of this shard's documents, ascending.
    pub fn doc_ids(&self) -> &[u64] {
        &self.ids
    }

    /// The name of global document `id`, if it is in this shard.
    pub fn name(&self, id: u64) -> Option<&str> {
        let pos = self.ids.binary_search(&id).ok()?;
        Some(&self.names[pos])
    }

    /// Size and build figures.
    pub fn stats(&self) -> IndexStats {
        IndexStats {
            shard: self.spec.index,
            shards: self.spec.count,
            docs: self.ids.len() as u64,
            terms: self.terms.len() as u64,
            postings: self.postings,
            tokens: self.tokens,
            avg_doc_len: f64::from(self.avg_len),
            build_ms: self.build.as_secs_f64() * 1e3,
        }
    }

    /// The matches of `query`: the total, the best `n` hits (`n` is
    /// `offset + k` for a page, so the root can page over the merge), and,
    /// when `with_postings`, every matching id. AND intersects the posting
    /// lists (galloping, [`merge::intersect`]), OR unites them
    /// ([`merge::union`]). Errors: `n == 0`.
    pub fn search(&self, query: &Query, n: usize, with_postings: bool) -> Result<Matches> {
        if n == 0 {
            return Err(Error::invalid(
                "k = 0: a search must ask for at least one hit",
            ));
        }
        let lists: Vec<&Postings> = query
            .terms
            .iter()
            .filter_map(|t| self.terms.get(t))
            .collect();
        let missing_term = lists.len() < query.terms.len();
        let ids: Vec<&[u64]> = lists.iter().map(|p| p.docs.as_slice()).collect();
        let matched = match query.op {
            Op::And if missing_term => Vec::new(),
            Op::And => merge::intersect(&ids)?,
            Op::Or => merge::union(&ids)?,
        };
        let hits = self.top(&matched, &lists, n);
        Ok(Matches {
            total: matched.len() as u64,
            hits,
            postings: with_postings.then_some(matched),
        })
    }

    /// Scores every matched doc and keeps the best `n` in merge order.
    fn top(&self, matched: &[u64], lists: &[&Postings], n: usize) -> Vec<Hit> {
        let total = self.ids.len() as f32;
        let idf: Vec<f32> = lists
            .iter()
            .map(|p| {
                let df = p.docs.len() as f32;
                // Lucene's BM25 IDF: never negative, even for a term in
                // most documents.
                (1.0 + (total - df + 0.5) / (df + 0.5)).ln()
            })
            .collect();
        // One cursor per list: matched ids ascend, so each list is walked
        // once in total.
        let mut cursor = vec![0usize; lists.len()];
        let mut pos = 0usize;
        let mut hits: Vec<Hit> = Vec::with_capacity(matched.len());
        for &doc in matched {
            pos += self.ids[pos..].partition_point(|&d| d < doc);
            let norm = BM25_K1 * (1.0 - BM25_B + BM25_B * self.lens[pos] as f32 / self.avg_len);
            let mut score = 0.0f32;
            for (j, p) in lists.iter().enumerate() {
                let c = &mut cursor[j];
                *c += p.docs[*c..].partition_point(|&d| d < doc);
                if p.docs.get(*c) == Some(&doc) {
                    let tf = p.tfs[*c] as f32;
                    score += idf[j] * tf * (BM25_K1 + 1.0) / (tf + norm);
                }
            }
            hits.push(Hit::new(score, self.spec.index, doc));
        }
        let order = |a: &Hit, b: &Hit| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc));
        if hits.len() > n {
            hits.select_nth_unstable_by(n - 1, order);
            hits.truncate(n);
        }
        hits.sort_unstable_by(order);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::top_k;
    use crate::ErrorKind;
    use std::collections::BTreeSet;

    // Seeded, so the random inputs are the same every run.
    use shardkit_testkit::Rng;

    const WORDS: [&str; 12] = [
        "alpha", "beta", "gamma", "delta", "Alpha", "EPS", "zeta", "eta", "theta", "iota", "kappa",
        "lambda",
    ];

    fn random_corpus(rng: &mut Rng, docs: usize) -> Corpus {
        let mut text = String::new();
        for i in 0..docs {
            text.push_str(&format!("doc {i}\t"));
            let len = rng.below(12);
            for _ in 0..len {
                // Skewed: low words are common, high words rare.
                let w = rng
                    .below(WORDS.len() as u64)
                    .min(rng.below(WORDS.len() as u64));
                text.push_str(WORDS[w as usize]);
                text.push_str(if rng.below(3) == 0 { ", " } else { " " });
            }
            text.push('\n');
        }
        Corpus::parse(text.as_bytes(), "random").unwrap()
    }

    /// The reference: scan every document of the corpus.
    fn brute(corpus: &Corpus, q: &Query) -> BTreeSet<u64> {
        corpus
            .docs
            .iter()
            .filter(|d| {
                let words: BTreeSet<String> = tokenize(&d.text).collect();
                match q.op {
                    Op::And => q.terms.iter().all(|t| words.contains(t)),
                    Op::Or => q.terms.iter().any(|t| words.contains(t)),
                }
            })
            .map(|d| d.id)
            .collect()
    }

    #[test]
    fn shards_match_a_full_scan() {
        let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
        for round in 0..40 {
            let docs = 1 + rng.below(120) as usize;
            let corpus = random_corpus(&mut rng, docs);
            let n = 1 + rng.below(4) as u32;
            let shards: Vec<Index> = (0..n)
                .map(|i| Index::build(&corpus, ShardSpec::new(i, n).unwrap()).unwrap())
                .collect();
            // The shards partition the corpus.
            let mut all: Vec<u64> = shards.iter().flat_map(|s| s.doc_ids().to_vec()).collect();
            all.sort_unstable();
            assert_eq!(all, (0..corpus.len() as u64).collect::<Vec<_>>());
            for _ in 0..10 {
                let nterms = 1 + rng.below(3) as usize;
                let text: Vec<&str> = (0..nterms)
                    .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
                    .collect();
                for op in [Op::And, Op::Or] {
                    let q = Query::parse(&text.join(" "), op).unwrap();
                    let want = brute(&corpus, &q);
                    let mut got = BTreeSet::new();
                    let mut lists = Vec::new();
                    let mut total = 0;
                    for s in &shards {
                        let m = s.search(&q, 1000, true).unwrap();
                        let p = m.postings.unwrap();
                        assert_eq!(m.total as usize, p.len());
                        assert!(p.windows(2).all(|w| w[0] < w[1]));
                        assert_eq!(m.hits.len(), p.len(), "n above total returns all");
                        total += m.total;
                        got.extend(p);
                        lists.push(m.hits);
                    }
                    assert_eq!(got, want, "round {round} {q:?}");
                    assert_eq!(total as usize, want.len());
                    // Every shard's hits are in the merge's order.
                    let refs: Vec<&[Hit]> = lists.iter().map(Vec::as_slice).collect();
                    let merged = top_k(&refs, 0, 1000).unwrap();
                    let ids: BTreeSet<u64> = merged.iter().map(|h| h.doc).collect();
                    assert_eq!(ids, want);
                    // A short page is the prefix of the long one.
                    for s in &shards {
                        let long = s.search(&q, 1000, false).unwrap();
                        let short = s.search(&q, 3, false).unwrap();
                        assert!(short.postings.is_none());
                        assert_eq!(short.total, long.total);
                        assert_eq!(short.hits[..], long.hits[..short.hits.len()]);
                        assert_eq!(short.hits.len(), long.hits.len().min(3));
                    }
                }
            }
        }
    }

    fn one(lines: &str) -> Index {
        let c = Corpus::parse(lines.as_bytes(), "t").unwrap();
        Index::build(&c, ShardSpec::new(0, 1).unwrap()).unwrap()
    }

    #[test]
    fn bm25_orders_sensibly() {
        let idx = one("a\tlight light light darkness\n\
             b\tlight darkness in verse\n\
             c\tlight upon the earth\n\
             d\tdarkness only on it\n\
             e\tlight and many other words in a very long verse here\n\
             f\tsomething else entirely here\n");
        let q = Query::parse("light", Op::Or).unwrap();
        let m = idx.search(&q, 10, false).unwrap();
        let docs: Vec<u64> = m.hits.iter().map(|h| h.doc).collect();
        // More occurrences first, a long document last, the equal pair in
        // doc order.
        assert_eq!(docs, [0, 1, 2, 4]);
        assert_eq!(m.hits[1].score, m.hits[2].score);
        // Matching both terms beats matching one.
        let q = Query::parse("light darkness", Op::Or).unwrap();
        let m = idx.search(&q, 10, false).unwrap();
        assert_eq!(m.total, 5);
        assert!(
            m.hits[..2].iter().all(|h| h.doc == 0 || h.doc == 1),
            "{m:?}"
        );
        assert!(m.hits.iter().all(|h| h.score > 0.0 && h.shard == 0));
        // A rarer term weighs more: "darkness" (3 docs) over "light" (4).
        let l = idx
            .search(&Query::parse("light", Op::Or).unwrap(), 9, false)
            .unwrap();
        let d = idx
            .search(&Query::parse("darkness", Op::Or).unwrap(), 9, false)
            .unwrap();
        let score = |m: &Matches, doc| m.hits.iter().find(|h| h.doc == doc).unwrap().score;
        assert!(score(&d, 1) > score(&l, 1));
        // Equal scores tie-break by doc ascending.
        let idx = one("a\tx\nb\tx\nc\tx\nd\ty\n");
        let m = idx
            .search(&Query::parse("x", Op::And).unwrap(), 2, false)
            .unwrap();
        assert_eq!(m.total, 3);
        assert_eq!(m.hits.iter().map(|h| h.doc).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn and_with_an_unknown_term_is_empty() {
        let idx = one("a\tx y\nb\ty\n");
        let m = idx
            .search(&Query::parse("x zzz", Op::And).unwrap(), 5, true)
            .unwrap();
        assert_eq!((m.total, m.hits.len()), (0, 0));
        assert_eq!(m.postings, Some(vec![]));
        let m = idx
            .search(&Query::parse("x zzz", Op::Or).unwrap(), 5, true)
            .unwrap();
        assert_eq!(m.postings, Some(vec![0]));
        assert_eq!(idx.name(1), Some("b"));
        assert_eq!(idx.name(7), None);
    }

    #[test]
    fn bad_queries_are_errors() {
        let e = Query::parse("  -- !! ", Op::And).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("\"  -- !! \""), "{e}");
        let q = Query::parse("Light LIGHT darkness", Op::And).unwrap();
        assert_eq!(q.terms, ["light", "darkness"]);
        let e = one("a\tx\n").search(&q, 0, false).unwrap_err();
        assert!(e.message().contains("k = 0"), "{e}");
        assert_eq!(Op::parse("OR").unwrap(), Op::Or);
        assert!(Op::parse("xor").unwrap_err().message().contains("\"xor\""));
    }
}
