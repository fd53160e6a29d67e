//! The root of the distributed search: scatter a query to one leaf per
//! shard over HTTP, check each answer is the shard it is listed as, merge
//! the leaves' top hits with [`merge::top_k`](crate::merge::top_k) and
//! report the page with its coverage.

use super::protocol::{LeafAnswer, SearchRequest};
use crate::merge::{top_k, Hit};
use crate::scatter::http::{split_replicas, HttpTransport};
use crate::scatter::{Coverage, GatherOptions, HedgeConfig, Scatter, ScatterConfig};
use crate::{Error, ErrorKind, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One merged page of hits, with what it covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    /// The query text as asked.
    pub query: String,
    /// `"and"` or `"or"`.
    pub op: String,
    /// Page size asked for.
    pub k: usize,
    /// Hits skipped (paging).
    pub offset: usize,
    /// The page, in merge order (score desc, shard asc, doc asc).
    pub hits: Vec<PageHit>,
    /// Matches summed over the shards that answered.
    pub total: u64,
    /// Shards that answered, of all.
    pub coverage: PageCoverage,
    /// Whether some shard is missing from this page.
    pub degraded: bool,
    /// The shards that did not answer, and why.
    pub missing: Vec<PageMissing>,
    /// Wall time at the root, milliseconds.
    pub took_ms: f64,
}

/// One hit of a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageHit {
    /// The document's name (its first column in the corpus).
    pub name: String,
    /// Global document id (line number in the corpus).
    pub doc: u64,
    /// The shard that answered it.
    pub shard: u32,
    /// BM25 score from that shard's statistics.
    pub score: f32,
}

/// Shards that answered, of all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageCoverage {
    /// Shards whose answer is in the page.
    pub answered: usize,
    /// Shards queried.
    pub total: usize,
}

/// A shard missing from a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageMissing {
    /// Shard number.
    pub leaf: usize,
    /// The shard's replica URLs, `|`-joined.
    pub url: String,
    /// Why it is missing.
    pub error: String,
}

/// The root: a scatter over one HTTP leaf per shard (replicas allowed) and
/// the policies every query runs under. Share it across queries: the
/// hedging histograms and replica statistics learn across calls.
pub struct SearchRoot {
    scatter: Scatter<Bytes, LeafAnswer>,
    urls: Vec<Vec<String>>,
    deadline: Duration,
    coverage: Coverage,
}

impl SearchRoot {
    /// A root over `urls[i]` = shard `i`'s replica URLs (in shard order),
    /// answering within `deadline` under `coverage`, hedging across a
    /// shard's replicas when `hedge`. Errors: no shards (`EmptyNodeSet`), a
    /// bad URL, a zero deadline or a coverage the shard count cannot meet
    /// (`InvalidArgument`).
    pub fn new(
        urls: Vec<Vec<String>>,
        deadline: Duration,
        coverage: Coverage,
        hedge: bool,
    ) -> Result<SearchRoot> {
        if deadline.is_zero() {
            return Err(Error::invalid("search deadline must be positive, got 0s"));
        }
        let leaves = HttpTransport::new().leaves::<LeafAnswer>(&urls)?;
        coverage.needed(leaves.len())?;
        let config = ScatterConfig {
            hedge: hedge.then(HedgeConfig::default),
            ..ScatterConfig::default()
        };
        Ok(SearchRoot {
            scatter: Scatter::new(leaves, config)?,
            urls,
            deadline,
            coverage,
        })
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.urls.len()
    }

    /// One search: scatter, check each answer is the shard it is listed
    /// as (a leaf listed out of order is missing, not merged wrongly),
    /// merge, and build the page.
    ///
    /// Errors: a bad request (`InvalidArgument`, before anything is sent),
    /// and when too few shards answered, the scatter's `Timeout` or
    /// `Unavailable` naming each missing shard's URLs.
    pub async fn search(&self, req: &SearchRequest) -> Result<SearchPage> {
        let started = Instant::now();
        // Bad requests fail here, not N times at the leaves.
        req.query()?;
        if req.postings {
            return Err(Error::invalid(
                "postings: true is for leaves (each returns its shard's match list); \
                 the root returns merged hits only",
            ));
        }
        let body = Bytes::from(req.to_json());
        let opts = GatherOptions::within(self.deadline).with_coverage(self.coverage);
        let got = self.scatter.gather(&body, &opts).await?;
        let n = self.urls.len();
        let mut missing: Vec<(usize, Error)> = got.missing;
        let mut answers: Vec<(usize, LeafAnswer)> = Vec::new();
        for (i, a) in got.answers {
            if a.shard as usize != i || a.shards as usize != n {
                missing.push((
                    i,
                    Error::new(
                        ErrorKind::BadResponse,
                        format!(
                            "leaf {} serves shard {}/{} but is listed as shard {i}/{n}: \
                             list the leaves in shard order",
                            self.urls[i].join("|"),
                            a.shard,
                            a.shards
                        ),
                    ),
                ));
            } else {
                answers.push((i, a));
            }
        }
        missing.sort_by_key(|(i, _)| *i);
        if answers.len() < self.coverage.needed(n)? {
            let detail: Vec<String> = missing
                .iter()
                .map(|(i, e)| format!("shard {i} ({}): {e}", self.urls[*i].join("|")))
                .collect();
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "coverage {}/{n} does not meet the policy; missing: {}",
                    answers.len(),
                    detail.join("; ")
                ),
            ));
        }
        let lists: Vec<Vec<Hit>> = answers
            .iter()
            .map(|(i, a)| a.merge_hits(*i as u32))
            .collect();
        let refs: Vec<&[Hit]> = lists.iter().map(Vec::as_slice).collect();
        let page = top_k(&refs, req.offset, req.k)?;
        let names: HashMap<(u32, u64), &str> = answers
            .iter()
            .flat_map(|(i, a)| {
                a.hits
                    .iter()
                    .map(move |h| ((*i as u32, h.doc), h.name.as_str()))
            })
            .collect();
        let hits = page
            .iter()
            .map(|h| PageHit {
                name: names[&(h.shard, h.doc)].to_string(),
                doc: h.doc,
                shard: h.shard,
                score: h.score,
            })
            .collect();
        let answered = answers.len();
        Ok(SearchPage {
            query: req.q.clone(),
            op: req.op.name().to_string(),
            k: req.k,
            offset: req.offset,
            hits,
            total: answers.iter().map(|(_, a)| a.total).sum(),
            coverage: PageCoverage { answered, total: n },
            degraded: answered < n,
            missing: missing
                .iter()
                .map(|(i, e)| PageMissing {
                    leaf: *i,
                    url: self.urls[*i].join("|"),
                    error: e.to_string(),
                })
                .collect(),
            // Microseconds are plenty; more digits are noise.
            took_ms: (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        })
    }
}

/// Splits a leaf list (`,` between shards, `|` between a shard's
/// replicas) into shards of replica URLs; a bare `host:port` becomes
/// `http://host:port/search`. Errors name the empty or ambiguous item.
pub fn parse_leaves(list: &str) -> Result<Vec<Vec<String>>> {
    list.split(',')
        .enumerate()
        .map(|(i, item)| {
            split_replicas(i, item)
                .map_err(|e| Error::invalid(format!("leaves {list:?}: {}", e.message())))?
                .into_iter()
                .map(|r| {
                    if r.contains("://") {
                        Ok(r)
                    } else if r.contains('/') {
                        Err(Error::invalid(format!(
                            "leaf {r:?} has a path but no scheme; write \
                             http://{r} or a bare host:port"
                        )))
                    } else {
                        Ok(format!("http://{r}/search"))
                    }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_parse() {
        let got = parse_leaves("127.0.0.1:1, http://h:2/x|127.0.0.1:3").unwrap();
        assert_eq!(
            got,
            vec![
                vec!["http://127.0.0.1:1/search".to_string()],
                vec![
                    "http://h:2/x".to_string(),
                    "http://127.0.0.1:3/search".to_string()
                ],
            ]
        );
        for bad in ["", "a:1,,b:2", "a:1|", "a:1/search"] {
            let e = parse_leaves(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn bad_roots_are_refused() {
        let urls = || vec![vec!["http://127.0.0.1:9/search".to_string()]];
        let e = SearchRoot::new(urls(), Duration::ZERO, Coverage::RequireAll, false)
            .err()
            .unwrap();
        assert!(e.message().contains("deadline"), "{e}");
        let e = SearchRoot::new(urls(), Duration::from_secs(1), Coverage::AtLeast(2), false)
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        let e = SearchRoot::new(vec![], Duration::from_secs(1), Coverage::RequireAll, false)
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::EmptyNodeSet, "{e}");
    }
}
