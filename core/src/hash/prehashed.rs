//! A hasher for maps and sets keyed by a hash already (an xxh3 of the real
//! key): hashing it again would only cost time.

use std::hash::{BuildHasherDefault, Hasher};

/// Passes a `u64` key through as its own hash.
#[derive(Default)]
pub(crate) struct PreHashed(u64);

/// The `BuildHasher` of maps keyed by hashes.
pub(crate) type BuildPreHashed = BuildHasherDefault<PreHashed>;

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in so it still hashes.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
