//! Balance and movement reports: what `shardkit plan` prints and what the
//! property tests bound.

use super::Sharder;
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::collections::HashMap;

/// How evenly keys spread, relative to each node's weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Balance {
    /// Keys sampled.
    pub samples: usize,
    /// Highest load over its fair share (1.0 is perfect).
    pub peak_to_mean: f64,
    /// Lowest load over its fair share.
    pub min_to_mean: f64,
    /// Standard deviation of load over fair share.
    pub stddev: f64,
    /// Keys per node, in slot order.
    pub per_node: Vec<(String, u64)>,
}

/// How many keys change node between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct Movement {
    /// Keys sampled.
    pub samples: usize,
    /// Keys whose node (by name) differs.
    pub moved: usize,
    /// `moved / samples`.
    pub fraction: f64,
    /// The least any function must move: the share of weight that changes
    /// hands, `sum(max(0, new_share - old_share))`.
    pub minimum: f64,
}

/// The i-th synthetic key: its decimal form, so the sample does not favour
/// any hash's treatment of binary input.
fn sample_key(i: usize, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(b"key:");
    buf.extend_from_slice(i.to_string().as_bytes());
}

fn check_samples(samples: usize) -> Result<()> {
    if samples == 0 {
        return Err(Error::invalid("sample count must be positive, got 0"));
    }
    Ok(())
}

fn shares(s: &Sharder) -> HashMap<&str, f64> {
    let up: Vec<_> = s
        .nodes()
        .filter(|n| s.is_down(n.name()) == Some(false))
        .collect();
    let total: f64 = up.iter().map(|n| n.weight() as f64).sum();
    up.into_iter()
        .map(|n| (n.name(), n.weight() as f64 / total))
        .collect()
}

pub(super) fn movement(a: &Sharder, b: &Sharder, samples: usize) -> Result<Movement> {
    check_samples(samples)?;
    let moved = crate::runtime::parallel(|| {
        (0..samples)
            .into_par_iter()
            .map_init(Vec::new, |buf, i| -> Result<usize> {
                sample_key(i, buf);
                Ok((a.lookup(buf)?.name() != b.lookup(buf)?.name()) as usize)
            })
            .try_reduce(|| 0, |x, y| Ok(x + y))
    })?;
    let (old, new) = (shares(a), shares(b));
    let minimum = new
        .iter()
        .map(|(n, s)| (s - old.get(n).copied().unwrap_or(0.0)).max(0.0))
        .sum();
    Ok(Movement {
        samples,
        moved,
        fraction: moved as f64 / samples as f64,
        minimum,
    })
}

pub(super) fn balance(s: &Sharder, samples: usize) -> Result<Balance> {
    check_samples(samples)?;
    let slots = s.slot_count();
    let counts = crate::runtime::parallel(|| {
        (0..samples)
            .into_par_iter()
            .fold(
                || (Vec::new(), vec![0u64; slots], None),
                |(mut buf, mut c, err): (Vec<u8>, Vec<u64>, Option<Error>), i| {
                    sample_key(i, &mut buf);
                    let err = err.or_else(|| match s.lookup_slot(&buf) {
                        Ok(slot) => {
                            c[slot as usize] += 1;
                            None
                        }
                        Err(e) => Some(e),
                    });
                    (buf, c, err)
                },
            )
            .map(|(_, c, e)| match e {
                Some(e) => Err(e),
                None => Ok(c),
            })
            .try_reduce(
                || vec![0u64; slots],
                |mut x, y| {
                    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
                    Ok(x)
                },
            )
    })?;
    let share = shares(s);
    let mut ratios = Vec::new();
    let mut per_node = Vec::new();
    for (slot, &count) in counts.iter().enumerate() {
        if let Some(node) = s.node(slot as u32) {
            per_node.push((node.name().to_string(), count));
            if let Some(sh) = share.get(node.name()) {
                ratios.push(count as f64 / (sh * samples as f64));
            }
        }
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    let var = ratios.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / ratios.len() as f64;
    Ok(Balance {
        samples,
        peak_to_mean: ratios.iter().cloned().fold(f64::MIN, f64::max),
        min_to_mean: ratios.iter().cloned().fold(f64::MAX, f64::min),
        stddev: var.sqrt(),
        per_node,
    })
}
