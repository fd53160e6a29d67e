//! A loser tree (tournament tree) over `u128` keys, the engine of every k-way
//! merge here. A binary heap does about 2·log2(k) comparisons per pop (sift
//! down compares both children); a loser tree replays one leaf-to-root path,
//! log2(k) comparisons, and never moves the keys themselves.

/// Key of an exhausted input in a `u128` tree. Callers guarantee no real
/// key equals it.
pub(crate) const EXHAUSTED: u128 = u128::MAX;

/// A key the tree can order: 128 bits for the general merge, 64 when the
/// merge can pack its order into one machine word (a single-instruction
/// compare and conditional move per match instead of a two-word one).
/// Callers mark an exhausted input with the type's `MAX`.
pub(crate) trait TreeKey: Copy + Ord {}

impl TreeKey for u128 {}

impl TreeKey for u64 {}

/// Tournament over `keys.len()` inputs. `loser[n]` for internal node `n`
/// (1..k) holds the input that lost the match at `n`; `loser[0]` holds the
/// overall winner. Input `i` sits at virtual node `k + i`, so any `k`, not
/// only powers of two, gives a complete tree.
pub(crate) struct LoserTree<K: TreeKey = u128> {
    keys: Vec<K>,
    loser: Vec<u32>,
}

impl<K: TreeKey> LoserTree<K> {
    /// Builds the tree over the current key of every input (use
    /// [`EXHAUSTED`] for an empty one). `keys` must not be empty.
    pub(crate) fn new(keys: Vec<K>) -> Self {
        debug_assert!(!keys.is_empty());
        let k = keys.len();
        let mut tree = LoserTree {
            keys,
            loser: vec![0; k],
        };
        let winner = tree.build(1);
        tree.loser[0] = winner;
        tree
    }

    /// Plays the matches below `node` and returns their winner.
    fn build(&mut self, node: usize) -> u32 {
        let k = self.keys.len();
        if node >= k {
            return (node - k) as u32;
        }
        let a = self.build(2 * node);
        let b = self.build(2 * node + 1);
        if self.beats(a, b) {
            self.loser[node] = b;
            a
        } else {
            self.loser[node] = a;
            b
        }
    }

    /// Whether input `a` comes before input `b`: smaller key, and on equal
    /// keys the lower input index, so the merge is stable.
    fn beats(&self, a: u32, b: u32) -> bool {
        let (ka, kb) = (self.keys[a as usize], self.keys[b as usize]);
        ka < kb || (ka == kb && a < b)
    }

    /// The input holding the smallest current key.
    #[inline(always)]
    pub(crate) fn winner(&self) -> usize {
        self.loser[0] as usize
    }

    /// The smallest current key ([`EXHAUSTED`] once every input is).
    #[inline(always)]
    pub(crate) fn winner_key(&self) -> K {
        self.keys[self.loser[0] as usize]
    }

    /// [`LoserTree::replace_winner`] for keys that never tie except as the
    /// exhausted mark (which input wins a tie of two exhausted ones does
    /// not matter): without the tie-break each match is one compare and
    /// its moves, a third of the work on the merge's critical path.
    #[inline(always)]
    pub(crate) fn replace_winner_distinct(&mut self, key: K) {
        let k = self.keys.len();
        let mut w = self.loser[0];
        let mut kw = key;
        self.keys[w as usize] = key;
        let mut node = (w as usize + k) / 2;
        while node > 0 {
            let l = self.loser[node];
            let kl = self.keys[l as usize];
            let l_wins = kl < kw;
            self.loser[node] = if l_wins { w } else { l };
            w = if l_wins { l } else { w };
            kw = if l_wins { kl } else { kw };
            node /= 2;
        }
        self.loser[0] = w;
    }

    /// Replaces the winner's key (its next element, or [`EXHAUSTED`]) and
    /// replays its path to the root.
    #[inline(always)]
    pub(crate) fn replace_winner(&mut self, key: K) {
        let k = self.keys.len();
        let mut w = self.loser[0];
        let mut kw = key;
        self.keys[w as usize] = key;
        let mut node = (w as usize + k) / 2;
        // Branch-free matches: in a real merge who wins each match is close
        // to a coin flip, and a mispredicted branch per level costs more
        // than the comparison itself, so the outcome selects values
        // (conditional moves) instead of steering control flow.
        while node > 0 {
            let l = self.loser[node];
            let kl = self.keys[l as usize];
            let l_wins = (kl < kw) | ((kl == kw) & (l < w));
            self.loser[node] = if l_wins { w } else { l };
            w = if l_wins { l } else { w };
            kw = if l_wins { kl } else { kw };
            node /= 2;
        }
        self.loser[0] = w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_in_key_order_for_every_width() {
        for k in 1..=9usize {
            let lists: Vec<Vec<u128>> = (0..k)
                .map(|i| (0..5).map(|j| (j * k + (k - 1 - i)) as u128).collect())
                .collect();
            let mut pos = vec![0usize; k];
            let mut tree = LoserTree::new(lists.iter().map(|l| l[0]).collect());
            let mut out = Vec::new();
            while tree.winner_key() != EXHAUSTED {
                let w = tree.winner();
                out.push(lists[w][pos[w]]);
                pos[w] += 1;
                tree.replace_winner(lists[w].get(pos[w]).copied().unwrap_or(EXHAUSTED));
            }
            let expected: Vec<u128> = (0..(5 * k) as u128).collect();
            assert_eq!(out, expected, "k = {k}");
        }
    }
}
