//! The corpus file (`name<TAB>text`, one document per line) and the
//! placement of documents on shards.

use crate::{Algorithm, Error, ErrorKind, Node, Result, ShardConfig, Sharder};
use std::path::Path;

/// One document: its global id (0-based line number), name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Global id: the document's 0-based line number in the corpus file.
    pub id: u64,
    /// The name (the part before the first tab), e.g. `Genesis 1:1`.
    pub name: String,
    /// The text (everything after the first tab).
    pub text: String,
}

/// A whole corpus, in file order (so `docs[i].id == i`).
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    /// The documents, in line order.
    pub docs: Vec<Document>,
}

impl Corpus {
    /// Reads and parses a corpus file. Errors: `Io` naming the path when it
    /// cannot be read, then as [`Corpus::parse`] with the path as origin.
    pub fn load(path: impl AsRef<Path>) -> Result<Corpus> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot read corpus {}: {e}", path.display()),
            )
        })?;
        Corpus::parse(&bytes, &path.display().to_string())
    }

    /// Parses `name<TAB>text` lines (`\n` or `\r\n`; a final newline is
    /// optional). `origin` names the source in errors. Errors: `InvalidUtf8`
    /// naming the line for bytes that are not UTF-8; `InvalidArgument` for
    /// an empty corpus, or a line (empty ones included) without a tab or
    /// with an empty name.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Corpus> {
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        if body.is_empty() {
            return Err(Error::invalid(format!(
                "corpus {origin} is empty: expected one `name<TAB>text` line per document"
            )));
        }
        let mut docs = Vec::new();
        for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
            let lineno = i + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = std::str::from_utf8(raw).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidUtf8,
                    format!(
                        "corpus {origin} line {lineno}: invalid UTF-8 at byte {} of the line",
                        e.valid_up_to()
                    ),
                )
            })?;
            let Some((name, text)) = line.split_once('\t') else {
                let start: String = line.chars().take(40).collect();
                return Err(Error::invalid(format!(
                    "corpus {origin} line {lineno} has no tab: expected `name<TAB>text`, got {start:?}"
                )));
            };
            if name.is_empty() {
                return Err(Error::invalid(format!(
                    "corpus {origin} line {lineno} has an empty name before the tab"
                )));
            }
            docs.push(Document {
                id: i as u64,
                name: name.to_string(),
                text: text.to_string(),
            });
        }
        Ok(Corpus { docs })
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True when there are no documents (never for a parsed corpus).
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

/// Which shard of how many: `i/N` with `i < N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    /// This shard, `0..count`.
    pub index: u32,
    /// Number of shards, at least 1.
    pub count: u32,
}

impl ShardSpec {
    /// Checks `index < count` and `count >= 1`.
    pub fn new(index: u32, count: u32) -> Result<ShardSpec> {
        if count == 0 {
            return Err(Error::invalid(format!(
                "shard {index}/{count}: the shard count must be at least 1"
            )));
        }
        if index >= count {
            return Err(Error::invalid(format!(
                "shard {index}/{count}: the index must be below the count (shards are 0..{})",
                count - 1
            )));
        }
        Ok(ShardSpec { index, count })
    }

    /// Parses `i/N`, e.g. `0/3`. Errors name the text.
    pub fn parse(text: &str) -> Result<ShardSpec> {
        let bad = || {
            Error::invalid(format!(
                "shard {text:?} is not `i/N` (e.g. 0/3: shard 0 of 3)"
            ))
        };
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let i: u32 = i.trim().parse().map_err(|_| bad())?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        ShardSpec::new(i, n)
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Document placement: jump consistent hash of the document name over
/// shards named `"0"` .. `"N-1"`, so shard `i` is slot `i`. Every leaf and
/// any tool that needs to know where a document lives computes the same
/// answer from the name alone.
#[derive(Debug, Clone)]
pub struct Placement {
    sharder: Sharder,
}

impl Placement {
    /// Placement over `count` shards (at least 1).
    pub fn new(count: u32) -> Result<Placement> {
        if count == 0 {
            return Err(Error::invalid(
                "placement needs at least 1 shard, got 0".to_string(),
            ));
        }
        let nodes = (0..count)
            .map(|i| Node::named(i.to_string()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Placement {
            sharder: Sharder::new(nodes, ShardConfig::new(Algorithm::Jump))?,
        })
    }

    /// The shard holding the document named `name`.
    pub fn shard_of(&self, name: &str) -> u32 {
        self.sharder
            .lookup_slot(name.as_bytes())
            .expect("no shard is ever marked down here")
    }

    /// Number of shards.
    pub fn count(&self) -> u32 {
        self.sharder.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Index;

    #[test]
    fn parses_lines() {
        let c = Corpus::parse(b"a 1\tx y\r\nb\t\nc\tz\tw\n", "t").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.docs[0].name, "a 1");
        assert_eq!(c.docs[0].text, "x y");
        assert_eq!(c.docs[1].text, "");
        assert_eq!(c.docs[2].text, "z\tw");
        assert_eq!(c.docs[2].id, 2);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Corpus::parse(b"", "f.tsv").unwrap_err();
        assert!(e.message().contains("f.tsv is empty"), "{e}");
        let e = Corpus::parse(b"\n", "f.tsv").unwrap_err();
        assert!(e.message().contains("empty"), "{e}");
        let e = Corpus::parse(b"a\tb\nno tab here\n", "f.tsv").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(
            e.message().contains("f.tsv line 2 has no tab") && e.message().contains("no tab here"),
            "{e}"
        );
        let e = Corpus::parse(b"a\tb\n\nc\td\n", "f.tsv").unwrap_err();
        assert!(e.message().contains("line 2"), "{e}");
        let e = Corpus::parse(b"a\tb\nc\td\xff\n", "f.tsv").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidUtf8);
        assert!(e.message().contains("f.tsv line 2"), "{e}");
        let e = Corpus::parse(b"\tb\n", "f.tsv").unwrap_err();
        assert!(e.message().contains("line 1 has an empty name"), "{e}");
        let e = Corpus::load("/nonexistent/corpus.tsv").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.message().contains("/nonexistent/corpus.tsv"), "{e}");
    }

    #[test]
    fn shard_specs() {
        assert_eq!(
            ShardSpec::parse("1/3").unwrap(),
            ShardSpec::new(1, 3).unwrap()
        );
        assert_eq!(ShardSpec::parse("0/1").unwrap().to_string(), "0/1");
        for bad in ["3/3", "0/0", "x", "1", "-1/3", "1/x", "", "1/3/4"] {
            let e = ShardSpec::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(e.message().contains(bad.trim()), "{bad}: {e}");
        }
    }

    #[test]
    fn placement_partitions_and_balances_the_kjv() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/kjv-verses.tsv");
        let corpus = Corpus::load(path).unwrap();
        assert_eq!(corpus.len(), 31_102);
        for n in [1u32, 3, 4, 7] {
            let p = Placement::new(n).unwrap();
            let mut counts = vec![0usize; n as usize];
            for d in &corpus.docs {
                let s = p.shard_of(&d.name);
                assert!(s < n);
                counts[s as usize] += 1;
            }
            // Each document on exactly one shard: the counts add up.
            assert_eq!(counts.iter().sum::<usize>(), corpus.len());
            let fair = corpus.len() as f64 / n as f64;
            for (i, &c) in counts.iter().enumerate() {
                let off = (c as f64 - fair).abs() / fair;
                assert!(off < 0.04, "shard {i}/{n} holds {c}, fair {fair:.0}");
            }
        }
        assert!(Placement::new(0).is_err());
        // The indexes of 3 shards hold every document exactly once.
        let mut ids: Vec<u64> = (0..3)
            .flat_map(|i| {
                let index = Index::build(&corpus, ShardSpec::new(i, 3).unwrap()).unwrap();
                index.doc_ids().to_vec()
            })
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..corpus.len() as u64).collect::<Vec<_>>());
    }
}
