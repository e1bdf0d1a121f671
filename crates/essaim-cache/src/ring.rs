//! The consistent-hash ring: each node owns many points (virtual nodes), and a point of
//! the ring belongs to the first node points found clockwise from it.
//!
//! Why virtual nodes: with one point per node the arcs differ wildly in length and a
//! node may own twice its share; with V points per node the share of each node is
//! within a few percent of 1/N for V in the hundreds. Adding a node takes over only the
//! arcs that end at its own points, about 1/(N+1) of the ring, and leaves every other
//! key where it was (the test below measures it).

use std::collections::BTreeSet;

use crate::hash::hash64;

/// Virtual nodes per node unless told otherwise.
pub const DEFAULT_VIRTUAL_NODES: u32 = 160;

/// A ring of named nodes.
#[derive(Debug, Clone)]
pub struct Ring {
    virtual_nodes: u32,
    /// Sorted by point; the index into `nodes` of the owner.
    points: Vec<(u64, usize)>,
    nodes: Vec<String>,
}

impl Ring {
    /// Returns an empty ring with `virtual_nodes` points per node (at least 1).
    pub fn new(virtual_nodes: u32) -> Self {
        Self {
            virtual_nodes: virtual_nodes.max(1),
            points: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// Returns a ring of `nodes` with the default number of virtual nodes.
    pub fn with_nodes<S: AsRef<str>>(nodes: &[S]) -> Self {
        let mut ring = Self::new(DEFAULT_VIRTUAL_NODES);
        for node in nodes {
            ring.add(node.as_ref());
        }
        ring
    }

    /// Adds `node` (no-op if present).
    pub fn add(&mut self, node: &str) {
        if self.nodes.iter().any(|known| known == node) {
            return;
        }
        self.nodes.push(node.to_owned());
        self.rebuild();
    }

    /// Removes `node` (no-op if absent).
    pub fn remove(&mut self, node: &str) {
        self.nodes.retain(|known| known != node);
        self.rebuild();
    }

    /// Returns the nodes, in the order they were added.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    fn rebuild(&mut self) {
        self.points.clear();
        for (index, node) in self.nodes.iter().enumerate() {
            for replica in 0..self.virtual_nodes {
                let point = hash64(format!("{node}#{replica}").as_bytes());
                self.points.push((point, index));
            }
        }
        // Ties (astronomically rare) are broken by node order, so every proxy agrees.
        self.points.sort_unstable();
    }

    /// Returns up to `count` distinct nodes clockwise from `point` for which `usable`
    /// holds, in ring order: the first is the point's owner.
    pub fn successors(&self, point: u64, count: usize, usable: impl Fn(&str) -> bool) -> Vec<&str> {
        let mut found: Vec<&str> = Vec::with_capacity(count);
        let mut seen = BTreeSet::new();
        if self.points.is_empty() || count == 0 {
            return found;
        }
        let start = self.points.partition_point(|(at, _)| *at < point);
        for step in 0..self.points.len() {
            let (_, index) = self.points[(start + step) % self.points.len()];
            if !seen.insert(index) {
                continue;
            }
            let node = self.nodes[index].as_str();
            if usable(node) {
                found.push(node);
                if found.len() == count {
                    break;
                }
            }
            if seen.len() == self.nodes.len() {
                break;
            }
        }
        found
    }

    /// Returns the node owning `point`, if the ring has any node.
    pub fn owner(&self, point: u64) -> Option<&str> {
        self.successors(point, 1, |_| true).first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(ring: &Ring, keys: u32) -> Vec<String> {
        (0..keys)
            .map(|key| {
                let point = hash64(format!("key-{key}").as_bytes());
                ring.owner(point).expect("the ring has nodes").to_owned()
            })
            .collect()
    }

    #[test]
    fn adding_a_node_moves_about_one_key_in_n_plus_one() {
        for nodes in [3usize, 5, 10] {
            let names: Vec<String> = (0..nodes).map(|n| format!("10.0.0.{n}:7000")).collect();
            let mut ring = Ring::with_nodes(&names);
            let before = owners(&ring, 100_000);
            ring.add("10.0.0.99:7000");
            let after = owners(&ring, 100_000);
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
            let share = moved as f64 / 100_000.0;
            let ideal = 1.0 / (nodes as f64 + 1.0);
            assert!(
                (share - ideal).abs() < ideal * 0.25,
                "{nodes} nodes: {share:.3} of the keys moved, ideal {ideal:.3}"
            );
            // Every key that moved went to the new node, none between old nodes.
            for (b, a) in before.iter().zip(&after) {
                assert!(b == a || a == "10.0.0.99:7000", "{b} -> {a}");
            }
        }
    }

    #[test]
    fn every_node_gets_about_its_share() {
        let names: Vec<String> = (0..5).map(|n| format!("node-{n}")).collect();
        let ring = Ring::with_nodes(&names);
        let owned = owners(&ring, 100_000);
        for name in &names {
            let share = owned.iter().filter(|owner| *owner == name).count() as f64 / 100_000.0;
            assert!((share - 0.2).abs() < 0.05, "{name} owns {share:.3}");
        }
    }

    #[test]
    fn successors_are_distinct_and_skip_unusable_nodes() {
        let ring = Ring::with_nodes(&["a", "b", "c", "d"]);
        for point in [0, 1 << 20, u64::MAX / 3, u64::MAX] {
            let three = ring.successors(point, 3, |_| true);
            let distinct: BTreeSet<_> = three.iter().collect();
            assert_eq!(distinct.len(), 3, "{three:?}");
            let without_first = ring.successors(point, 2, |node| node != three[0]);
            assert_eq!(without_first, &three[1..3], "the next node stands in");
        }
        assert_eq!(
            ring.successors(7, 9, |_| true).len(),
            4,
            "at most every node"
        );
        assert!(Ring::new(8).owner(7).is_none());
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let mut ring = Ring::with_nodes(&["a", "b", "c"]);
        let before = owners(&ring, 20_000);
        ring.remove("b");
        let after = owners(&ring, 20_000);
        for (b, a) in before.iter().zip(&after) {
            assert!(b == a || b == "b");
        }
    }
}
