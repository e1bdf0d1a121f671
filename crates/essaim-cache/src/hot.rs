//! Hot shards: a shard that takes far more requests than the others gets extra
//! replicas on the least-loaded nodes, and loses them once the heat has passed.
//!
//! Rates are counted per shard over a sliding window of fixed buckets
//! ([`RateWindow`]). The policy ([`HotShards::decide`]) compares each shard's rate
//! **per holder** with a threshold, `hot_factor` × the median shard's rate (and at
//! least `min_rate`, so an idle cache has no hot shard):
//!
//! ```text
//!            rate / holders > threshold            (and extras < max_extra)
//!   normal ─────────────────────────────────────▶ one more extra replica
//!     ▲                                                │
//!     │ rate / (holders − 1) < threshold × cool_ratio  │
//!     └────────── (and the extra held ≥ hold_ms) ◀─────┘  one extra dropped
//! ```
//!
//! Two thresholds and a minimum holding time are the hysteresis: an extra replica is
//! dropped only when the shard would stay well below the hot threshold without it, and
//! never within `hold_ms` of its grant, so a shard near the threshold does not flap.
//! The extra goes to the node with the least load, a node's load being the sum of
//! the rates of the shards it holds, each divided among that shard's holders.

use std::collections::{BTreeMap, VecDeque};

use crate::placement::{Placement, ShardId};

/// The knobs of the hot-shard policy.
#[derive(Debug, Clone, PartialEq)]
pub struct HotPolicy {
    /// A shard is hot when its rate per holder exceeds this many times the median
    /// shard's rate.
    pub hot_factor: f64,
    /// Requests per second below which no shard is hot.
    pub min_rate: f64,
    /// An extra is dropped when the rate per holder without it would fall under this
    /// share of the hot threshold.
    pub cool_ratio: f64,
    /// Most extra replicas per shard.
    pub max_extra: usize,
    /// Least time an extra replica is kept, in milliseconds.
    pub hold_ms: u64,
}

impl Default for HotPolicy {
    fn default() -> Self {
        Self {
            hot_factor: 4.0,
            min_rate: 20.0,
            cool_ratio: 0.5,
            max_extra: 2,
            hold_ms: 10_000,
        }
    }
}

/// A decision of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotChange {
    /// Grant `shard` an extra replica on `node`.
    Add {
        /// The shard.
        shard: ShardId,
        /// The node.
        node: String,
    },
    /// Withdraw the extra replica of `shard` on `node`.
    Drop {
        /// The shard.
        shard: ShardId,
        /// The node.
        node: String,
    },
}

/// Requests per shard over the last `buckets` × `bucket_ms` milliseconds.
#[derive(Debug, Clone)]
pub struct RateWindow {
    shards: usize,
    bucket_ms: u64,
    buckets: usize,
    /// (bucket number, counts per shard), oldest first.
    slots: VecDeque<(u64, Vec<u64>)>,
}

impl RateWindow {
    /// Returns an empty window over `shards` shards.
    pub fn new(shards: u32, bucket_ms: u64, buckets: usize) -> Self {
        Self {
            shards: shards as usize,
            bucket_ms: bucket_ms.max(1),
            buckets: buckets.max(1),
            slots: VecDeque::new(),
        }
    }

    fn advance(&mut self, now_ms: u64) {
        let bucket = now_ms / self.bucket_ms;
        while self
            .slots
            .front()
            .is_some_and(|(at, _)| *at + self.buckets as u64 <= bucket)
        {
            self.slots.pop_front();
        }
        if self.slots.back().is_none_or(|(at, _)| *at < bucket) {
            self.slots.push_back((bucket, vec![0; self.shards]));
        }
    }

    /// Counts one request to `shard` at `now_ms`.
    pub fn record(&mut self, shard: ShardId, now_ms: u64) {
        self.advance(now_ms);
        if let Some((_, counts)) = self.slots.back_mut()
            && let Some(count) = counts.get_mut(shard as usize)
        {
            *count += 1;
        }
    }

    /// Returns every shard's rate in requests per second at `now_ms`.
    pub fn rates(&mut self, now_ms: u64) -> Vec<f64> {
        self.advance(now_ms);
        let seconds = (self.bucket_ms * self.buckets as u64) as f64 / 1000.0;
        let mut rates = vec![0.0; self.shards];
        for (_, counts) in &self.slots {
            for (rate, count) in rates.iter_mut().zip(counts) {
                *rate += *count as f64 / seconds;
            }
        }
        rates
    }
}

/// The policy and the grant times of the extras it decided.
#[derive(Debug, Clone)]
pub struct HotShards {
    policy: HotPolicy,
    granted_at_ms: BTreeMap<(ShardId, String), u64>,
}

impl HotShards {
    /// Returns the policy with no extra granted.
    pub fn new(policy: HotPolicy) -> Self {
        Self {
            policy,
            granted_at_ms: BTreeMap::new(),
        }
    }

    /// Returns the policy.
    pub fn policy(&self) -> &HotPolicy {
        &self.policy
    }

    /// Returns the changes to make to `placement` given the shards' `rates` at
    /// `now_ms`: at most one per shard. The caller applies them all.
    pub fn decide(&mut self, rates: &[f64], placement: &Placement, now_ms: u64) -> Vec<HotChange> {
        let threshold = (self.policy.hot_factor * median(rates)).max(self.policy.min_rate);
        let mut load = node_loads(rates, placement);
        let mut by_heat: Vec<ShardId> = (0..placement.shards()).collect();
        by_heat.sort_by(|a, b| rates[*b as usize].total_cmp(&rates[*a as usize]));
        let mut changes = Vec::new();
        for shard in by_heat {
            let rate = rates[shard as usize];
            let holders = placement.holders(shard);
            let count = holders.len() as f64;
            let extras = placement.extras(shard);
            if count > 0.0 && rate / count > threshold && extras.len() < self.policy.max_extra {
                let coolest = load
                    .iter()
                    .filter(|(node, _)| {
                        !placement.is_down(node) && !holders.iter().any(|h| &h.node == *node)
                    })
                    .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(b.0)))
                    .map(|(node, _)| node.clone());
                if let Some(node) = coolest {
                    *load.entry(node.clone()).or_default() += rate / (count + 1.0);
                    self.granted_at_ms.insert((shard, node.clone()), now_ms);
                    changes.push(HotChange::Add { shard, node });
                }
            } else if !extras.is_empty()
                && (count <= 1.0 || rate / (count - 1.0) < threshold * self.policy.cool_ratio)
            {
                let held_long_enough = |node: &String| {
                    let granted = self.granted_at_ms.get(&(shard, node.clone()));
                    granted.is_none_or(|at| now_ms.saturating_sub(*at) >= self.policy.hold_ms)
                };
                if let Some(node) = extras.into_iter().find(held_long_enough) {
                    self.granted_at_ms.remove(&(shard, node.clone()));
                    changes.push(HotChange::Drop { shard, node });
                }
            }
        }
        changes
    }
}

/// Returns each node's load: the rates of the shards it holds, each divided among its
/// holders.
pub fn node_loads(rates: &[f64], placement: &Placement) -> BTreeMap<String, f64> {
    let mut load: BTreeMap<String, f64> = placement
        .nodes()
        .iter()
        .map(|node| (node.clone(), 0.0))
        .collect();
    for shard in 0..placement.shards() {
        let holders = placement.holders(shard);
        for holder in holders {
            *load.entry(holder.node.clone()).or_default() +=
                rates[shard as usize] / holders.len() as f64;
        }
    }
    load
}

/// Returns the median of `values` (0 for none).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 nodes, 16 shards, 2 replicas each.
    fn placement() -> Placement {
        Placement::new(&["a", "b", "c", "d"], 16, 2).expect("a valid placement")
    }

    fn apply(placement: &mut Placement, changes: &[HotChange]) {
        for change in changes {
            match change {
                HotChange::Add { shard, node } => assert!(placement.add_extra(*shard, node)),
                HotChange::Drop { shard, node } => assert!(placement.drop_extra(*shard, node)),
            }
        }
    }

    /// Every shard at 10 req/s but `hot` at `heat`.
    fn rates(hot: ShardId, heat: f64) -> Vec<f64> {
        (0..16)
            .map(|s| if s == hot { heat } else { 10.0 })
            .collect()
    }

    #[test]
    fn even_or_idle_traffic_makes_no_shard_hot() {
        let mut placement = placement();
        let mut policy = HotShards::new(HotPolicy::default());
        assert!(policy.decide(&[100.0; 16], &placement, 0).is_empty());
        // 30× the median but under min_rate: idle noise.
        let mut idle = vec![0.5; 16];
        idle[3] = 15.0;
        assert!(policy.decide(&idle, &placement, 0).is_empty());
        apply(&mut placement, &[]);
    }

    #[test]
    fn a_hot_shard_gets_extras_on_the_least_loaded_nodes_up_to_the_cap() {
        let mut placement = placement();
        let mut policy = HotShards::new(HotPolicy::default());
        let heat = rates(5, 1000.0);
        let base: Vec<String> = placement
            .holders(5)
            .iter()
            .map(|h| h.node.clone())
            .collect();
        let first = policy.decide(&heat, &placement, 0);
        assert_eq!(first.len(), 1, "{first:?}");
        let HotChange::Add { shard: 5, node } = &first[0] else {
            panic!("{first:?}")
        };
        assert!(
            !base.contains(node),
            "an extra goes to a node without the shard"
        );
        let loads = node_loads(&heat, &placement);
        let outsiders: Vec<(&String, &f64)> =
            loads.iter().filter(|(n, _)| !base.contains(*n)).collect();
        let least = outsiders.iter().min_by(|a, b| a.1.total_cmp(b.1)).unwrap();
        assert_eq!(node, least.0, "the least-loaded outsider: {loads:?}");
        apply(&mut placement, &first);
        let second = policy.decide(&heat, &placement, 1000);
        apply(&mut placement, &second);
        assert_eq!(placement.holders(5).len(), 4);
        assert!(
            policy.decide(&heat, &placement, 2000).is_empty(),
            "cap reached"
        );
    }

    #[test]
    fn extras_are_dropped_after_the_heat_passes_without_flapping() {
        let mut placement = placement();
        let mut policy = HotShards::new(HotPolicy::default());
        let added = policy.decide(&rates(5, 200.0), &placement, 0);
        apply(&mut placement, &added);
        assert_eq!(placement.holders(5).len(), 3);
        // 200/3 = 67 > threshold 40: nothing; the shard stays between the thresholds.
        assert!(
            policy
                .decide(&rates(5, 100.0), &placement, 60_000)
                .is_empty()
        );
        // Heat gone, but within the holding time: kept.
        assert!(policy.decide(&rates(5, 10.0), &placement, 5_000).is_empty());
        let dropped = policy.decide(&rates(5, 10.0), &placement, 20_000);
        assert!(matches!(
            dropped.as_slice(),
            [HotChange::Drop { shard: 5, .. }]
        ));
        apply(&mut placement, &dropped);
        assert_eq!(placement.holders(5).len(), 2);
        assert!(placement.extras(5).is_empty());
    }

    #[test]
    fn the_window_forgets_old_requests() {
        let mut window = RateWindow::new(4, 1000, 5);
        for ms in 0..1000 {
            window.record(2, ms);
        }
        assert_eq!(
            window.rates(1000)[2],
            200.0,
            "1000 requests over a 5 s window"
        );
        assert_eq!(window.rates(4999)[2], 200.0);
        assert_eq!(window.rates(5000)[2], 0.0);
        assert_eq!(window.rates(5000)[1], 0.0);
        window.record(9, 5000); // an unknown shard is ignored
    }

    #[test]
    fn the_median_of_even_and_odd_lists() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
