//! The key hashes of twemproxy (nutcracker) `hashkit`, with its exact
//! arithmetic. nutcracker reads keys through `const char *`, so on x86 every
//! byte >= 0x80 is sign-extended before it is mixed in: `sx32`/`sx64` below
//! reproduce that, and the compatibility tests feed such bytes to the real
//! binary. Its "64-bit" FNV variants return 32 bits, and `fnv1a_64` computes
//! entirely in 32 bits.
//!
//! Checked against the sources (twitter/twemproxy `src/hashkit/*.c`) and,
//! key by key, against Debian's nutcracker 0.5.0 binary by
//! `core/tests/compat_nutcracker.rs`, with keys carrying bytes >= 0x80. Sign
//! extension reaches the result in `one_at_a_time`, the four FNV variants
//! and `hsieh` (only its 3-byte tail); `crc16` and `crc32` mask it away and
//! `md5`, `crc32a`, `murmur` and `jenkins` read unsigned bytes. The compat
//! suite fails if any of these is zero-extended instead.

use md5::{Digest, Md5};

#[inline(always)]
fn sx32(b: u8) -> u32 {
    b as i8 as i32 as u32
}

#[inline(always)]
fn sx64(b: u8) -> u64 {
    b as i8 as i64 as u64
}

const FNV_64_INIT: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_64_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV_32_INIT: u32 = 2_166_136_261;
const FNV_32_PRIME: u32 = 16_777_619;

/// twemproxy `fnv1_64`: 64-bit FNV-1 over sign-extended bytes, truncated.
pub fn fnv1_64(key: &[u8]) -> u32 {
    let mut h = FNV_64_INIT;
    for &b in key {
        h = h.wrapping_mul(FNV_64_PRIME);
        h ^= sx64(b);
    }
    h as u32
}

/// twemproxy `fnv1a_64` (its default): the 64-bit constants truncated to 32
/// bits, so it is a 32-bit FNV-1a with a different basis and prime.
pub fn fnv1a_64(key: &[u8]) -> u32 {
    let mut h = FNV_64_INIT as u32;
    for &b in key {
        h ^= sx32(b);
        h = h.wrapping_mul(FNV_64_PRIME as u32);
    }
    h
}

/// twemproxy `fnv1_32`.
pub fn fnv1_32(key: &[u8]) -> u32 {
    let mut h = FNV_32_INIT;
    for &b in key {
        h = h.wrapping_mul(FNV_32_PRIME);
        h ^= sx32(b);
    }
    h
}

/// twemproxy `fnv1a_32`.
pub fn fnv1a_32(key: &[u8]) -> u32 {
    let mut h = FNV_32_INIT;
    for &b in key {
        h ^= sx32(b);
        h = h.wrapping_mul(FNV_32_PRIME);
    }
    h
}

/// The MD5 digest of `data`.
#[inline]
pub fn md5_digest(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// twemproxy `md5`: digest bytes 0..4, little-endian.
pub fn md5(key: &[u8]) -> u32 {
    let d = md5_digest(key);
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// twemproxy `crc32`: bits 16..31 of the IEEE CRC, masked to 15 bits
/// (libmemcached's historical variant).
pub fn crc32(key: &[u8]) -> u32 {
    (crc32fast::hash(key) >> 16) & 0x7fff
}

/// twemproxy `crc32a`: the plain IEEE CRC-32, which nginx also uses.
pub fn crc32a(key: &[u8]) -> u32 {
    crc32fast::hash(key)
}

const CRC16_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 8;
        let mut j = 0;
        while j < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            j += 1;
        }
        table[i] = crc & 0xffff;
        i += 1;
    }
    table
};

/// twemproxy `crc16` as nutcracker 0.5.0 computes it: the XMODEM table, but
/// the running value is never masked to 16 bits, so the result uses up to 32.
/// (Later twemproxy sources switched to the kernel's CRC-16/ARC table and a
/// 16-bit result; the Debian 0.5.0 binary places keys with this one.)
pub fn crc16(key: &[u8]) -> u32 {
    let mut crc: u32 = 0;
    for &b in key {
        crc = (crc << 8) ^ CRC16_TABLE[(((crc >> 8) ^ sx32(b)) & 0xff) as usize];
    }
    crc
}

/// twemproxy `one_at_a_time` (Jenkins one-at-a-time over sign-extended bytes).
pub fn one_at_a_time(key: &[u8]) -> u32 {
    let mut v: u32 = 0;
    for &b in key {
        v = v.wrapping_add(sx32(b));
        v = v.wrapping_add(v << 10);
        v ^= v >> 6;
    }
    v = v.wrapping_add(v << 3);
    v ^= v >> 11;
    v.wrapping_add(v << 15)
}

/// twemproxy `murmur`: MurmurHash2 seeded with `0xdeadbeef * len`.
pub fn murmur(key: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let len = key.len() as u32;
    let seed = 0xdead_beef_u32.wrapping_mul(len);
    let mut h = seed ^ len;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[inline(always)]
fn get16(d: &[u8]) -> u32 {
    ((d[1] as u32) << 8) + d[0] as u32
}

/// twemproxy `hsieh` (SuperFastHash with a zero initial value).
pub fn hsieh(key: &[u8]) -> u32 {
    if key.is_empty() {
        return 0;
    }
    let mut h: u32 = 0;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        h = h.wrapping_add(get16(c));
        let tmp = (get16(&c[2..]) << 11) ^ h;
        h = (h << 16) ^ tmp;
        h = h.wrapping_add(h >> 11);
    }
    let t = chunks.remainder();
    match t.len() {
        3 => {
            h = h.wrapping_add(get16(t));
            h ^= h << 16;
            h ^= sx32(t[2]) << 18;
            h = h.wrapping_add(h >> 11);
        }
        2 => {
            h = h.wrapping_add(get16(t));
            h ^= h << 11;
            h = h.wrapping_add(h >> 17);
        }
        1 => {
            h = h.wrapping_add(t[0] as u32);
            h ^= h << 10;
            h = h.wrapping_add(h >> 1);
        }
        _ => {}
    }
    h ^= h << 3;
    h = h.wrapping_add(h >> 5);
    h ^= h << 4;
    h = h.wrapping_add(h >> 17);
    h ^= h << 25;
    h.wrapping_add(h >> 6)
}

/// twemproxy `jenkins`: lookup3 `hashlittle` with initval 13.
pub fn jenkins(key: &[u8]) -> u32 {
    let init = 0xdead_beef_u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(13);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut k = key;
    while k.len() > 12 {
        a = a.wrapping_add(le32(&k[0..4]));
        b = b.wrapping_add(le32(&k[4..8]));
        c = c.wrapping_add(le32(&k[8..12]));
        jmix(&mut a, &mut b, &mut c);
        k = &k[12..];
    }
    if k.is_empty() {
        return c;
    }
    let mut tail = [0u8; 12];
    tail[..k.len()].copy_from_slice(k);
    a = a.wrapping_add(le32(&tail[0..4]));
    b = b.wrapping_add(le32(&tail[4..8]));
    c = c.wrapping_add(le32(&tail[8..12]));
    jfinal(&mut a, &mut b, &mut c);
    c
}

#[inline(always)]
fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

#[inline(always)]
fn jmix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

#[inline(always)]
fn jfinal(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_64_computes_in_32_bits_with_sign_extension() {
        assert_eq!(fnv1a_64(b""), 0x8422_2325);
        // 'a' = 0x61: (0x84222325 ^ 0x61) * 0x1b3 mod 2^32
        assert_eq!(fnv1a_64(b"a"), (0x8422_2325u32 ^ 0x61).wrapping_mul(0x1b3));
        // 0xe9 is xored in as 0xffffffe9, as nutcracker's signed char does.
        assert_eq!(
            fnv1a_64(&[0xe9]),
            (0x8422_2325u32 ^ 0xffff_ffe9).wrapping_mul(0x1b3)
        );
    }

    #[test]
    fn crc32a_is_ieee_and_crc32_is_its_15_bit_slice() {
        assert_eq!(crc32a(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b"123456789"), (0xcbf4_3926 >> 16) & 0x7fff);
    }

    #[test]
    fn crc16_table_is_xmodem() {
        assert_eq!(CRC16_TABLE[1], 0x1021);
        assert_eq!(crc16(b"123456789") & 0xffff, 0x31c3);
    }

    #[test]
    fn md5_takes_first_word_le() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(md5(b""), 0xd98c_1dd4);
    }

    #[test]
    fn jenkins_empty_is_initial_state() {
        assert_eq!(jenkins(b""), 0xdead_beef_u32.wrapping_add(13));
    }
}
