//! Closures put in path order through a bitmap of every known store path's
//! rank, instead of sorting each closure. Kept while the generation
//! benchmark shows it pays (see benches/README.md).

use crate::store::db::{NixDb, NodeId};

/// Every known store path's position in path order, so that each unit's
/// closure is put in order through a bitmap instead of a sort (sorting each
/// closure cost as much as the rest of rendering it).
#[derive(Default)]
pub struct PathOrder {
    /// Node → its position among all known store paths sorted by path.
    ranks: Vec<u32>,
    /// The nodes by rank: `by_rank[ranks[node]] == node`.
    by_rank: Vec<NodeId>,
    /// A bitmap of ranks, reused from unit to unit.
    bits: Vec<u64>,
}

impl PathOrder {
    pub fn of(db: &NixDb) -> PathOrder {
        PathOrder::from_ranks(db.path_ranks())
    }

    fn from_ranks(ranks: Vec<u32>) -> PathOrder {
        let mut by_rank = vec![0; ranks.len()];
        for (node, &rank) in ranks.iter().enumerate() {
            by_rank[rank as usize] = node as NodeId;
        }
        PathOrder {
            ranks,
            by_rank,
            bits: Vec::new(),
        }
    }

    /// `nodes` in path order. (A node no rank was given to cannot occur:
    /// ranks are made after every closure is resolved; it would come last.)
    /// Each node's rank, by node (see [`NixDb::path_ranks`]).
    pub fn ranks(&self) -> &[u32] {
        &self.ranks
    }

    pub fn sort(&mut self, nodes: impl Iterator<Item = NodeId>) -> Vec<NodeId> {
        let (ranks, by_rank, bits) = (&self.ranks, &self.by_rank, &mut self.bits);
        bits.clear();
        bits.resize(ranks.len().div_ceil(64), 0);
        let mut unranked = Vec::new();
        let mut count = 0;
        for node in nodes {
            count += 1;
            match ranks.get(node as usize) {
                Some(&rank) => bits[rank as usize / 64] |= 1 << (rank % 64),
                None => unranked.push(node),
            }
        }
        let mut order = Vec::with_capacity(count);
        for (index, &word) in bits.iter().enumerate() {
            let mut word = word;
            while word != 0 {
                order.push(by_rank[index * 64 + word.trailing_zeros() as usize]);
                word &= word - 1;
            }
        }
        unranked.sort_unstable();
        order.extend(unranked);
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_come_out_by_rank_and_unranked_ones_last_in_node_order() {
        // Node 0 is the third path in path order, node 1 the first, ...
        let mut order = PathOrder::from_ranks(vec![2, 0, 1]);
        assert_eq!(order.sort([0, 1, 2].into_iter()), vec![1, 2, 0]);
        // Reused from unit to unit: nothing of the last sort is left over.
        assert_eq!(order.sort([5, 0, 4].into_iter()), vec![0, 4, 5]);
        assert_eq!(order.sort(std::iter::empty()), Vec::<NodeId>::new());
        // Ranks past one word of the bitmap: node i is the (99 - i)th path.
        let mut order = PathOrder::from_ranks((0..100).rev().collect());
        assert_eq!(
            order.sort([0, 120, 50, 99, 63, 64].into_iter()),
            vec![99, 64, 63, 50, 0, 120]
        );
    }
}
