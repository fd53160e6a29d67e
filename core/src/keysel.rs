//! Key selection: which part of a key is hashed. Hash tags let related keys
//! (`user:{42}:name`, `user:{42}:mail`) land on one shard.

use crate::error::{Error, Result};
use std::fmt;
use std::sync::Arc;

/// A custom extractor: given the whole key, returns the byte range to hash.
/// An out-of-range result is clamped to the key.
pub type Extractor = Arc<dyn Fn(&[u8]) -> std::ops::Range<usize> + Send + Sync>;

/// Chooses the bytes of a key that are hashed.
#[derive(Clone, Default)]
pub enum KeySelector {
    /// The whole key.
    #[default]
    Whole,
    /// twemproxy / Redis Cluster hash tags: the bytes between the first
    /// `open` and the first `close` after it, when that span is non-empty;
    /// otherwise the whole key.
    HashTag {
        /// Opening delimiter, e.g. `{`.
        open: u8,
        /// Closing delimiter, e.g. `}`.
        close: u8,
    },
    /// A caller-supplied extractor.
    Custom(Extractor),
}

impl KeySelector {
    /// Hash tags with the given two delimiters, as twemproxy's `hash_tag: "{}"`.
    pub fn hash_tag(delims: &str) -> Result<KeySelector> {
        let b = delims.as_bytes();
        if b.len() != 2 {
            return Err(Error::invalid(format!(
                "hash_tag must be exactly two single-byte delimiters, got {delims:?}"
            )));
        }
        Ok(KeySelector::HashTag {
            open: b[0],
            close: b[1],
        })
    }

    /// The bytes of `key` that are hashed.
    #[inline]
    pub fn select<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        match self {
            KeySelector::Whole => key,
            KeySelector::HashTag { open, close } => {
                if let Some(s) = memchr(*open, key) {
                    if let Some(len) = memchr(*close, &key[s + 1..]) {
                        if len > 0 {
                            return &key[s + 1..s + 1 + len];
                        }
                    }
                }
                key
            }
            KeySelector::Custom(f) => {
                let r = f(key);
                let end = r.end.min(key.len());
                let start = r.start.min(end);
                &key[start..end]
            }
        }
    }
}

#[inline]
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

impl fmt::Debug for KeySelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySelector::Whole => f.write_str("Whole"),
            KeySelector::HashTag { open, close } => {
                write!(
                    f,
                    "HashTag({:?})",
                    format!("{}{}", *open as char, *close as char)
                )
            }
            KeySelector::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_follow_twemproxy_rules() {
        let s = KeySelector::hash_tag("{}").unwrap();
        assert_eq!(s.select(b"user:{42}:name"), b"42");
        assert_eq!(s.select(b"{}abc"), b"{}abc"); // empty tag: whole key
        assert_eq!(s.select(b"a{b"), b"a{b"); // unclosed: whole key
        assert_eq!(s.select(b"a}b{c}"), b"c"); // close before open is ignored
        assert_eq!(s.select(b"{a}{b}"), b"a"); // first tag wins
    }

    #[test]
    fn bad_delimiters_are_named() {
        let e = KeySelector::hash_tag("{").unwrap_err();
        assert!(e.message().contains("\"{\""));
    }

    #[test]
    fn custom_extractor_is_clamped() {
        let s = KeySelector::Custom(Arc::new(|k: &[u8]| 2..k.len() + 10));
        assert_eq!(s.select(b"abcd"), b"cd");
    }
}
