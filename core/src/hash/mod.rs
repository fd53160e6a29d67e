//! Key hashing: xxh3-64 (the default) and the hash family of twemproxy and
//! nginx, bit for bit, so rings built here place keys where those peers do.
//!
//! Every function here is pinned by test vectors: placement must never change
//! between versions, so nothing may route through `DefaultHasher`.

pub(crate) mod prehashed;
mod twemproxy;

pub use twemproxy::*;

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A key hash function. Twemproxy's functions produce 32-bit values, widened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashFn {
    /// xxh3-64 with a seed: fast, well mixed, the default.
    Xxh3 {
        /// Seed mixed into every hash; `0` is the canonical xxh3.
        seed: u64,
    },
    /// twemproxy `one_at_a_time` (Jenkins one-at-a-time).
    OneAtATime,
    /// twemproxy `md5`: the first four digest bytes, little-endian.
    Md5,
    /// twemproxy `crc16` (XMODEM table, accumulated in 32 bits as nutcracker does).
    Crc16,
    /// twemproxy `crc32`: 15 bits of the libmemcached-style CRC.
    Crc32,
    /// twemproxy `crc32a`, which is the standard IEEE CRC-32 nginx also uses.
    Crc32a,
    /// twemproxy `fnv1_64` (64-bit state, truncated to 32 bits).
    Fnv1_64,
    /// twemproxy `fnv1a_64`, its default; it really computes in 32 bits.
    Fnv1a64,
    /// twemproxy `fnv1_32`.
    Fnv1_32,
    /// twemproxy `fnv1a_32`.
    Fnv1a32,
    /// twemproxy `hsieh` (Paul Hsieh's SuperFastHash).
    Hsieh,
    /// twemproxy `murmur` (MurmurHash2, seed `0xdeadbeef * len`).
    Murmur,
    /// twemproxy `jenkins` (Bob Jenkins' lookup3 `hashlittle`).
    Jenkins,
}

impl Default for HashFn {
    fn default() -> Self {
        HashFn::Xxh3 { seed: 0 }
    }
}

/// Every name [`HashFn::from_name`] accepts, in the order they are documented:
/// xxh3, then twemproxy's family in nutcracker's own order.
pub const HASH_NAMES: &[&str] = &[
    "xxh3",
    "one_at_a_time",
    "md5",
    "crc16",
    "crc32",
    "crc32a",
    "fnv1_64",
    "fnv1a_64",
    "fnv1_32",
    "fnv1a_32",
    "hsieh",
    "murmur",
    "jenkins",
];

/// The names of twemproxy's hashes (nutcracker's `HASH_CODEC` list).
pub const TWEMPROXY_HASH_NAMES: &[&str] = HASH_NAMES.split_at(1).1;

impl HashFn {
    /// Hashes `key`. Hot path: inlined into every lookup.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        match *self {
            HashFn::Xxh3 { seed } => xxhash_rust::xxh3::xxh3_64_with_seed(key, seed),
            HashFn::OneAtATime => one_at_a_time(key) as u64,
            HashFn::Md5 => md5(key) as u64,
            HashFn::Crc16 => crc16(key) as u64,
            HashFn::Crc32 => crc32(key) as u64,
            HashFn::Crc32a => crc32a(key) as u64,
            HashFn::Fnv1_64 => fnv1_64(key) as u64,
            HashFn::Fnv1a64 => fnv1a_64(key) as u64,
            HashFn::Fnv1_32 => fnv1_32(key) as u64,
            HashFn::Fnv1a32 => fnv1a_32(key) as u64,
            HashFn::Hsieh => hsieh(key) as u64,
            HashFn::Murmur => murmur(key) as u64,
            HashFn::Jenkins => jenkins(key) as u64,
        }
    }

    /// Parses a hash name as twemproxy writes it (`fnv1a_64`, `md5`, ...), or
    /// `xxh3` / `xxh3:SEED`. `crc32_ieee` and `nginx` are aliases of `crc32a`.
    pub fn from_name(name: &str) -> Result<HashFn> {
        let lower = name.trim().to_ascii_lowercase();
        if let Some(seed) = lower.strip_prefix("xxh3:") {
            let seed = parse_seed(seed).ok_or_else(|| {
                Error::invalid(format!(
                    "xxh3 seed must be an unsigned 64-bit integer, got {seed:?} in hash name {name:?}"
                ))
            })?;
            return Ok(HashFn::Xxh3 { seed });
        }
        Ok(match lower.as_str() {
            "xxh3" | "xxh3_64" => HashFn::Xxh3 { seed: 0 },
            "one_at_a_time" => HashFn::OneAtATime,
            "md5" => HashFn::Md5,
            "crc16" => HashFn::Crc16,
            "crc32" => HashFn::Crc32,
            "crc32a" | "crc32_ieee" | "nginx" => HashFn::Crc32a,
            "fnv1_64" => HashFn::Fnv1_64,
            "fnv1a_64" => HashFn::Fnv1a64,
            "fnv1_32" => HashFn::Fnv1_32,
            "fnv1a_32" => HashFn::Fnv1a32,
            "hsieh" => HashFn::Hsieh,
            "murmur" => HashFn::Murmur,
            "jenkins" => HashFn::Jenkins,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown hash function {name:?}; expected one of {}",
                    HASH_NAMES.join(", ")
                )))
            }
        })
    }

    /// The canonical name, accepted back by [`HashFn::from_name`].
    pub fn name(&self) -> String {
        match *self {
            HashFn::Xxh3 { seed: 0 } => "xxh3".to_string(),
            HashFn::Xxh3 { seed } => format!("xxh3:{seed}"),
            other => HASH_NAMES[other.ordinal()].to_string(),
        }
    }

    fn ordinal(&self) -> usize {
        match self {
            HashFn::Xxh3 { .. } => 0,
            HashFn::OneAtATime => 1,
            HashFn::Md5 => 2,
            HashFn::Crc16 => 3,
            HashFn::Crc32 => 4,
            HashFn::Crc32a => 5,
            HashFn::Fnv1_64 => 6,
            HashFn::Fnv1a64 => 7,
            HashFn::Fnv1_32 => 8,
            HashFn::Fnv1a32 => 9,
            HashFn::Hsieh => 10,
            HashFn::Murmur => 11,
            HashFn::Jenkins => 12,
        }
    }
}

fn parse_seed(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl fmt::Display for HashFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for HashFn {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        HashFn::from_name(s)
    }
}

/// Mixes a 64-bit value into a well-distributed 64-bit value (splitmix64's
/// finaliser). Used to derive independent per-attempt or per-node hashes from
/// one key hash; pinned, like every hash here.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in HASH_NAMES {
            let h = HashFn::from_name(name).unwrap();
            assert_eq!(&h.name(), name);
        }
        assert_eq!(
            HashFn::from_name("xxh3:42").unwrap(),
            HashFn::Xxh3 { seed: 42 }
        );
        assert_eq!(HashFn::from_name("nginx").unwrap(), HashFn::Crc32a);
    }

    #[test]
    fn unknown_name_is_named_in_error() {
        let e = HashFn::from_name("sha1").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(e.message().contains("\"sha1\""), "{}", e);
        let e = HashFn::from_name("xxh3:banana").unwrap_err();
        assert!(e.message().contains("banana"), "{}", e);
    }

    #[test]
    fn xxh3_is_pinned() {
        // Placement depends on these values: a change here moves every key.
        assert_eq!(HashFn::default().hash(b""), 0x2d06800538d394c2);
        assert_eq!(HashFn::default().hash(b"hello"), 0x9555e8555c62dcfd);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
    }
}
