//! Ketama rings that match real peers point for point: twemproxy, nginx's
//! `hash $key consistent`, and uhashring's ketama mode. The modes differ in
//! how points are derived, how many a node gets, which of two equal points
//! wins, and whether a key on a point belongs to it or to the next one.

use super::{walk_table, Placement};
use crate::error::{Error, Result};
use crate::hash::{md5_digest, HashFn};
use crate::node::Node;
use std::fmt;

/// Which peer a ketama ring reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KetamaMode {
    /// twemproxy `distribution: ketama`: md5 points, 160 per server scaled by
    /// its share of the total weight (in `float`, as nutcracker computes it),
    /// named `host` on port 11211, else `host:port`, or the server's alias.
    Twemproxy,
    /// nginx `hash $key consistent`: crc32 points chained from
    /// `crc32(host \0 port)`, 160 × weight.
    Nginx,
    /// uhashring `HashRing(nodes, hash_fn="ketama")`: md5 points,
    /// `40 × n × weight // total` groups of four; key on a point goes past it.
    Uhashring,
}

impl KetamaMode {
    /// The key hash the peer uses.
    pub fn default_hash(&self) -> HashFn {
        match self {
            KetamaMode::Twemproxy => HashFn::Fnv1a64,
            KetamaMode::Nginx => HashFn::Crc32a,
            KetamaMode::Uhashring => HashFn::Md5,
        }
    }

    /// `twemproxy`, `nginx` or `uhashring`.
    pub fn name(&self) -> &'static str {
        match self {
            KetamaMode::Twemproxy => "twemproxy",
            KetamaMode::Nginx => "nginx",
            KetamaMode::Uhashring => "uhashring",
        }
    }

    /// Parses a mode name.
    pub fn from_name(name: &str) -> Result<KetamaMode> {
        match name.trim().to_ascii_lowercase().as_str() {
            "twemproxy" | "nutcracker" => Ok(KetamaMode::Twemproxy),
            "nginx" => Ok(KetamaMode::Nginx),
            "uhashring" => Ok(KetamaMode::Uhashring),
            _ => Err(Error::invalid(format!(
                "unknown ketama mode {name:?}; expected twemproxy, nginx or uhashring"
            ))),
        }
    }
}

impl fmt::Display for KetamaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// twemproxy formats `name-index` into an 86-byte buffer; longer names would
/// make it hash past the buffer, so they are refused rather than guessed.
const TWEMPROXY_MAX_RING_ID: usize = 80;

/// A sorted ring of 32-bit points with a top-bits index for O(1) search.
pub(crate) struct Ring {
    values: Vec<u32>,
    slots: Vec<u32>,
    /// `index[b]` = first point whose top `bits` bits are >= b.
    index: Vec<u32>,
    shift: u32,
    /// Key on a point belongs to the next point (uhashring's `bisect_right`).
    strictly_after: bool,
}

impl Ring {
    pub(crate) fn build(mode: KetamaMode, slots: &[Option<Node>]) -> Result<Ring> {
        let mut points: Vec<(u32, u32)> = Vec::new();
        let live: Vec<(u32, &Node)> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i as u32, n)))
            .collect();
        let total: u64 = live.iter().map(|(_, n)| n.weight() as u64).sum();
        let count = live.len();
        match mode {
            KetamaMode::Twemproxy => {
                for &(slot, node) in &live {
                    let id = node.ring_id();
                    if id.len() > TWEMPROXY_MAX_RING_ID {
                        return Err(Error::invalid(format!(
                            "twemproxy hashes at most {TWEMPROXY_MAX_RING_ID} bytes of a server name, got {} bytes in {id:?}",
                            id.len()
                        )));
                    }
                    let per_server = twemproxy_points(node.weight(), total as u32, count as u32);
                    md5_points(&mut points, id, per_server / 4, slot);
                }
            }
            KetamaMode::Uhashring => {
                for &(slot, node) in &live {
                    let groups = 40 * count as u64 * node.weight() as u64 / total;
                    md5_points(&mut points, node.ring_id(), groups as u32, slot);
                }
            }
            KetamaMode::Nginx => {
                for &(slot, node) in &live {
                    let (host, port) = nginx_host_port(node.ring_id());
                    let mut base = crc32fast::Hasher::new();
                    base.update(host.as_bytes());
                    base.update(b"\0");
                    base.update(port.as_bytes());
                    let mut prev: u32 = 0;
                    for _ in 0..node.weight() as u64 * 160 {
                        let mut h = base.clone();
                        h.update(&prev.to_le_bytes());
                        prev = h.finalize();
                        points.push((prev, slot));
                    }
                }
            }
        }
        if points.is_empty() {
            return Err(Error::invalid(format!(
                "ketama:{mode} gives no node any point on the ring (weights too small beside the total)"
            )));
        }
        // Stable, as glibc's merge-sort qsort is: equal points keep node order.
        points.sort_by_key(|p| p.0);
        match mode {
            // uhashring stores points in a dict: the last node written wins.
            KetamaMode::Uhashring => {
                let mut out: Vec<(u32, u32)> = Vec::with_capacity(points.len());
                for p in points {
                    match out.last_mut() {
                        Some(last) if last.0 == p.0 => *last = p,
                        _ => out.push(p),
                    }
                }
                points = out;
            }
            // nginx dedups keeping the first; twemproxy keeps duplicates but
            // its lower-bound search always lands on the first: the same.
            KetamaMode::Nginx | KetamaMode::Twemproxy => points.dedup_by_key(|p| p.0),
        }
        Ok(Ring::from_points(points, mode == KetamaMode::Uhashring))
    }

    fn from_points(points: Vec<(u32, u32)>, strictly_after: bool) -> Ring {
        let values: Vec<u32> = points.iter().map(|p| p.0).collect();
        let slots: Vec<u32> = points.iter().map(|p| p.1).collect();
        let bits = (usize::BITS - values.len().leading_zeros()).clamp(4, 16);
        let shift = 32 - bits;
        let buckets = 1usize << bits;
        let mut index = Vec::with_capacity(buckets + 1);
        let mut i = 0usize;
        for b in 0..buckets as u64 {
            let start = (b << shift) as u32;
            while i < values.len() && values[i] < start {
                i += 1;
            }
            index.push(i as u32);
        }
        index.push(values.len() as u32);
        Ring {
            values,
            slots,
            index,
            shift,
            strictly_after,
        }
    }

    /// Index of the point that owns `h` (before wrapping).
    #[inline]
    fn position(&self, h: u32) -> usize {
        let b = (h >> self.shift) as usize;
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        let window = &self.values[lo..hi];
        let off = if self.strictly_after {
            window.partition_point(|&v| v <= h)
        } else {
            window.partition_point(|&v| v < h)
        };
        lo + off
    }

    /// Number of points on the ring.
    #[cfg(test)]
    pub(crate) fn point_count(&self) -> usize {
        self.values.len()
    }
}

impl Placement for Ring {
    #[inline]
    fn locate(&self, h: u64) -> u32 {
        let p = self.position(h as u32);
        if p == self.values.len() {
            self.slots[0]
        } else {
            self.slots[p]
        }
    }

    fn walk(&self, h: u64, visit: &mut dyn FnMut(u32) -> bool) {
        walk_table(&self.slots, self.position(h as u32), visit);
    }
}

/// Points for one twemproxy server, reproducing nutcracker's `float` maths:
/// `floorf((float)(pct * 160 / 4 * (float)n + 0.0000000001)) * 4`, where the
/// addend is a `double` literal and so promotes the sum to `double`.
pub(crate) fn twemproxy_points(weight: u32, total_weight: u32, live: u32) -> u32 {
    let pct = weight as f32 / total_weight as f32;
    let t: f32 = pct * 160.0f32 / 4.0f32 * live as f32;
    let d: f64 = t as f64 + 0.000_000_000_1f64;
    ((d as f32).floor() * 4.0f32) as u32
}

/// `groups` md5 digests of `id-0`, `id-1`, ...; four points from each.
fn md5_points(points: &mut Vec<(u32, u32)>, id: &str, groups: u32, slot: u32) {
    let mut buf = String::with_capacity(id.len() + 11);
    for g in 0..groups {
        buf.clear();
        buf.push_str(id);
        buf.push('-');
        buf.push_str(&g.to_string());
        let d = md5_digest(buf.as_bytes());
        for a in 0..4 {
            let v = u32::from_le_bytes([d[4 * a], d[4 * a + 1], d[4 * a + 2], d[4 * a + 3]]);
            points.push((v, slot));
        }
    }
}

/// nginx splits a server at its last `:` (after a `unix:` prefix, none).
fn nginx_host_port(server: &str) -> (&str, &str) {
    if server.len() >= 5 && server.as_bytes()[..5].eq_ignore_ascii_case(b"unix:") {
        return (&server[5..], "");
    }
    match server.rfind(':') {
        Some(i) => (&server[..i], &server[i + 1..]),
        None => (server, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(names: &[(&str, i64)]) -> Vec<Option<Node>> {
        names
            .iter()
            .map(|(n, w)| Some(Node::new(*n, *w).unwrap()))
            .collect()
    }

    #[test]
    fn twemproxy_point_counts() {
        // Equal weights should give 160 each, but float rounding costs some
        // counts a group of four: 1/25 * 160 / 4 * 25 is 39.99999f.
        assert_eq!(twemproxy_points(1, 25, 25), 156);
        for n in 1..=200 {
            assert!([156, 160].contains(&twemproxy_points(1, n, n)), "n={n}");
        }
        // Unequal weights scale by share of the total.
        assert_eq!(twemproxy_points(2, 3, 2), 212);
        assert_eq!(twemproxy_points(1, 3, 2), 104);
    }

    #[test]
    fn modes_have_expected_point_counts() {
        let s = slots(&[("a:1", 1), ("b:2", 2)]);
        let r = Ring::build(KetamaMode::Nginx, &s).unwrap();
        assert!(r.point_count() <= 480 && r.point_count() > 470);
        let r = Ring::build(KetamaMode::Uhashring, &s).unwrap();
        // 40*2*1//3 = 26 and 40*2*2//3 = 53 groups of four.
        assert!(r.point_count() <= (26 + 53) * 4);
    }

    #[test]
    fn index_search_matches_plain_binary_search() {
        let s = slots(&[("n1", 1), ("n2", 3), ("n3", 2)]);
        for mode in [
            KetamaMode::Twemproxy,
            KetamaMode::Uhashring,
            KetamaMode::Nginx,
        ] {
            let r = Ring::build(mode, &s).unwrap();
            let mut x: u32 = 12345;
            for _ in 0..20_000 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let want = if r.strictly_after {
                    r.values.partition_point(|&v| v <= x)
                } else {
                    r.values.partition_point(|&v| v < x)
                };
                assert_eq!(r.position(x), want);
            }
            for &v in &r.values {
                assert_eq!(r.locate(v as u64), r.slots[r.position(v) % r.values.len()]);
            }
        }
    }

    #[test]
    fn nginx_splits_at_last_colon() {
        assert_eq!(nginx_host_port("127.0.0.1:8081"), ("127.0.0.1", "8081"));
        assert_eq!(nginx_host_port("[::1]:80"), ("[::1]", "80"));
        assert_eq!(nginx_host_port("unix:/tmp/s"), ("/tmp/s", ""));
        assert_eq!(nginx_host_port("backend"), ("backend", ""));
    }
}
