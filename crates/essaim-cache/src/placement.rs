//! Where a key lives: key → shard → the nodes holding that shard, and which of their
//! values may be trusted.
//!
//! A shard's **base replicas** are the R distinct nodes after its point on the ring,
//! skipping nodes marked down (the next node on the ring stands in, so a shard keeps R
//! copies for new writes while a node is away). The hot-shard policy may add **extra
//! replicas** on other nodes. Base replicas come first in [`Placement::holders`], in
//! ring order, then the extras.
//!
//! Every change of placement increases the **epoch**. A holder records the epoch since
//! which it has held the shard without interruption (`since`); writes carry the epoch
//! they were routed at as their tag, and a holder's value is trusted only if its tag is
//! at least the holder's `since`. Every write routed since then reached the holder (a
//! failed write marks the node down, which ends its stint), so a trusted value is the
//! latest written; a value left from an earlier stint (a node that was down and missed
//! writes, an extra replica dropped then granted again) reads as a miss.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::hash::hash64;
use crate::ring::Ring;

/// A shard number, below the placement's shard count.
pub type ShardId = u32;

/// Shards of a cache unless told otherwise: enough for the hot-shard policy to single
/// out one hot key's shard, few enough to list.
pub const DEFAULT_SHARDS: u32 = 64;

/// Why a placement cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    /// R is zero or above the number of nodes.
    #[error("{replicas} replicas need between 1 and {nodes} nodes (the nodes given)")]
    Replicas {
        /// Replicas asked.
        replicas: usize,
        /// Nodes given.
        nodes: usize,
    },
    /// No shard.
    #[error("a cache needs at least one shard")]
    NoShard,
    /// The same node twice, or an empty name.
    #[error("node `{node}` is empty or given twice")]
    BadNode {
        /// The node.
        node: String,
    },
}

/// One node holding one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The node.
    pub node: String,
    /// The epoch since which it holds the shard without interruption.
    pub since: u64,
    /// Whether the hot-shard policy placed it (not the ring).
    pub extra: bool,
}

/// The placement of every shard on the nodes.
#[derive(Debug, Clone)]
pub struct Placement {
    ring: Ring,
    shards: u32,
    replicas: usize,
    down: BTreeSet<String>,
    extras: BTreeMap<ShardId, BTreeSet<String>>,
    epoch: u64,
    holders: Vec<Vec<Holder>>,
}

impl Placement {
    /// Returns the placement of `shards` shards on `nodes`, each on `replicas` nodes.
    pub fn new<S: AsRef<str>>(
        nodes: &[S],
        shards: u32,
        replicas: usize,
    ) -> Result<Self, PlacementError> {
        if replicas == 0 || replicas > nodes.len() {
            return Err(PlacementError::Replicas {
                replicas,
                nodes: nodes.len(),
            });
        }
        if shards == 0 {
            return Err(PlacementError::NoShard);
        }
        let mut seen = BTreeSet::new();
        for node in nodes {
            let node = node.as_ref();
            if node.is_empty() || !seen.insert(node) {
                return Err(PlacementError::BadNode {
                    node: node.to_owned(),
                });
            }
        }
        let mut placement = Self {
            ring: Ring::with_nodes(nodes),
            shards,
            replicas,
            down: BTreeSet::new(),
            extras: BTreeMap::new(),
            epoch: 0,
            holders: vec![Vec::new(); shards as usize],
        };
        placement.recompute();
        Ok(placement)
    }

    /// Returns the shard of `key`.
    pub fn shard_of(&self, key: &str) -> ShardId {
        (hash64(key.as_bytes()) % u64::from(self.shards)) as ShardId
    }

    /// Returns the number of shards.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// Returns R, the base replicas of a shard.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Returns every node, in the order given.
    pub fn nodes(&self) -> &[String] {
        self.ring.nodes()
    }

    /// Returns the current epoch (the tag of writes routed now).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Returns whether `node` is marked down.
    pub fn is_down(&self, node: &str) -> bool {
        self.down.contains(node)
    }

    /// Returns the live holders of `shard`: base replicas in ring order, then extras.
    pub fn holders(&self, shard: ShardId) -> &[Holder] {
        self.holders
            .get(shard as usize)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Returns the extra replicas granted to `shard` (live or not).
    pub fn extras(&self, shard: ShardId) -> Vec<String> {
        self.extras
            .get(&shard)
            .map(|nodes| nodes.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Returns whether a value of `shard` tagged `tag` and read from `node` is current.
    pub fn trusts(&self, shard: ShardId, node: &str, tag: u64) -> bool {
        self.holders(shard)
            .iter()
            .any(|holder| holder.node == node && tag >= holder.since)
    }

    /// Marks `node` down (skipped) or up again; returns whether anything changed.
    pub fn set_down(&mut self, node: &str, down: bool) -> bool {
        if !self.nodes().iter().any(|known| known == node) {
            return false;
        }
        let changed = if down {
            self.down.insert(node.to_owned())
        } else {
            self.down.remove(node)
        };
        if changed {
            self.recompute();
        }
        changed
    }

    /// Grants `shard` an extra replica on `node`; returns whether anything changed.
    pub fn add_extra(&mut self, shard: ShardId, node: &str) -> bool {
        if shard >= self.shards || !self.nodes().iter().any(|known| known == node) {
            return false;
        }
        let changed = self
            .extras
            .entry(shard)
            .or_default()
            .insert(node.to_owned());
        if changed {
            self.recompute();
        }
        changed
    }

    /// Withdraws the extra replica of `shard` on `node`; returns whether anything changed.
    pub fn drop_extra(&mut self, shard: ShardId, node: &str) -> bool {
        let Some(nodes) = self.extras.get_mut(&shard) else {
            return false;
        };
        let changed = nodes.remove(node);
        if nodes.is_empty() {
            self.extras.remove(&shard);
        }
        if changed {
            self.recompute();
        }
        changed
    }

    /// Recomputes every shard's holders under a new epoch, keeping the `since` of the
    /// holders that hold their shard still.
    fn recompute(&mut self) {
        self.epoch += 1;
        for shard in 0..self.shards {
            let point = hash64(format!("shard-{shard}").as_bytes());
            let base: Vec<String> = self
                .ring
                .successors(point, self.replicas, |node| !self.down.contains(node))
                .into_iter()
                .map(str::to_owned)
                .collect();
            let extras: Vec<String> = self
                .extras
                .get(&shard)
                .into_iter()
                .flatten()
                .filter(|node| !self.down.contains(*node) && !base.contains(*node))
                .cloned()
                .collect();
            let previous = &self.holders[shard as usize];
            let since = |node: &str| {
                previous
                    .iter()
                    .find(|holder| holder.node == node)
                    .map_or(self.epoch, |holder| holder.since)
            };
            let mut holders: Vec<Holder> = Vec::with_capacity(base.len() + extras.len());
            for (nodes, extra) in [(base, false), (extras, true)] {
                for node in nodes {
                    holders.push(Holder {
                        since: since(&node),
                        node,
                        extra,
                    });
                }
            }
            self.holders[shard as usize] = holders;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Placement {
        Placement::new(&["a", "b", "c"], 16, 2).expect("a valid placement")
    }

    #[test]
    fn every_shard_is_on_r_distinct_nodes() {
        let placement = Placement::new(&["a", "b", "c", "d", "e"], 64, 3).unwrap();
        for shard in 0..64 {
            let nodes: BTreeSet<&str> = placement
                .holders(shard)
                .iter()
                .map(|holder| holder.node.as_str())
                .collect();
            assert_eq!(nodes.len(), 3, "shard {shard}");
        }
    }

    #[test]
    fn a_down_node_is_replaced_and_its_old_values_are_not_trusted_back() {
        let mut placement = three();
        let shard = (0..16)
            .find(|shard| placement.holders(*shard)[0].node == "a")
            .expect("a owns some shard");
        let written_before = placement.epoch();
        assert!(placement.trusts(shard, "a", written_before));
        assert!(placement.set_down("a", true));
        let holders: Vec<&str> = placement
            .holders(shard)
            .iter()
            .map(|holder| holder.node.as_str())
            .collect();
        assert_eq!(holders.len(), 2, "a stand-in keeps two copies: {holders:?}");
        assert!(!holders.contains(&"a"));
        // The surviving replica keeps its values.
        let survivor = holders[0];
        assert!(placement.trusts(shard, survivor, written_before));
        assert!(placement.set_down("a", false));
        assert!(
            !placement.trusts(shard, "a", written_before),
            "a missed writes while down"
        );
        assert!(placement.trusts(shard, "a", placement.epoch()));
    }

    #[test]
    fn an_extra_replica_dropped_and_granted_again_starts_afresh() {
        let mut placement = three();
        let shard = 3;
        let outsider = ["a", "b", "c"]
            .into_iter()
            .find(|node| !placement.holders(shard).iter().any(|h| h.node == *node))
            .expect("two of three nodes hold a shard");
        assert!(placement.add_extra(shard, outsider));
        let granted = placement.epoch();
        assert_eq!(placement.holders(shard).len(), 3);
        assert!(placement.holders(shard)[2].extra);
        assert!(placement.trusts(shard, outsider, granted));
        assert!(placement.drop_extra(shard, outsider));
        assert!(!placement.trusts(shard, outsider, granted));
        assert!(placement.add_extra(shard, outsider));
        assert!(!placement.trusts(shard, outsider, granted), "an old value");
        assert!(!placement.add_extra(shard, outsider), "already there");
        assert!(!placement.add_extra(shard, "nobody"), "unknown node");
    }

    #[test]
    fn bad_placements_are_refused() {
        assert!(matches!(
            Placement::new(&["a"], 8, 2),
            Err(PlacementError::Replicas { .. })
        ));
        assert!(matches!(
            Placement::new(&["a", "a"], 8, 2),
            Err(PlacementError::BadNode { .. })
        ));
        assert_eq!(
            Placement::new(&["a", "b"], 0, 2).err(),
            Some(PlacementError::NoShard)
        );
    }

    #[test]
    fn keys_spread_over_shards() {
        let placement = three();
        let used: BTreeSet<ShardId> = (0..1000)
            .map(|key| placement.shard_of(&format!("k{key}")))
            .collect();
        assert_eq!(used.len(), 16);
    }
}
