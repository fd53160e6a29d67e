//! `hash % total_weight` over a list where each node appears `weight` times,
//! as twemproxy's `modula` distribution lays it out.

use super::{walk_table, Placement};
use crate::error::Result;
use crate::node::Node;

pub(crate) struct Modulo {
    continuum: Vec<u32>,
}

impl Modulo {
    pub(crate) fn build(slots: &[Option<Node>]) -> Result<Modulo> {
        let mut continuum = Vec::new();
        for (i, n) in slots.iter().enumerate() {
            if let Some(n) = n {
                continuum.extend(std::iter::repeat_n(i as u32, n.weight() as usize));
            }
        }
        Ok(Modulo { continuum })
    }
}

impl Placement for Modulo {
    #[inline]
    fn locate(&self, h: u64) -> u32 {
        self.continuum[(h % self.continuum.len() as u64) as usize]
    }

    fn walk(&self, h: u64, visit: &mut dyn FnMut(u32) -> bool) {
        let start = (h % self.continuum.len() as u64) as usize;
        walk_table(&self.continuum, start, visit);
    }
}
