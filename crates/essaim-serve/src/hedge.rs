//! Hedged requests (Dean and Barroso, "The Tail at Scale", 2013): when a leaf has not
//! answered after about its shard's recent p95, send the same request to another
//! replica and take the first answer.
//!
//! Two decisions, both pure:
//! - **when**: [`HedgePolicy::delay`] — the shard's recent p95 (merged over its
//!   replicas), but never below `min_delay`, and `default_delay` until `min_samples`
//!   latencies are known;
//! - **whether**: a [`HedgeBudget`], a token bucket filled by `budget_share` of a token
//!   per leaf request and emptied by one token per hedge, so hedges stay at most about
//!   `budget_share` of leaf requests (default 5 %) — in an outage, when every leaf is
//!   slow, hedging cannot double the load. The bucket holds at most `max_burst` tokens.
use std::time::Duration;

use crate::latency::{RecentLatency, merged_quantile};

/// Default share of leaf requests that may be hedged: 5 %.
pub const DEFAULT_BUDGET_SHARE: f64 = 0.05;
/// Default quantile after which a request is hedged.
pub const DEFAULT_HEDGE_QUANTILE: f64 = 0.95;

/// When to hedge, and how much.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgePolicy {
    /// False turns hedging off.
    pub enabled: bool,
    /// Share of leaf requests that may be hedged (default [`DEFAULT_BUDGET_SHARE`]).
    pub budget_share: f64,
    /// The shard quantile after which to hedge (default [`DEFAULT_HEDGE_QUANTILE`]).
    pub quantile: f64,
    /// Shortest hedge delay (default 1 ms): a hedge sooner than this mostly duplicates
    /// requests that were about to answer.
    pub min_delay: Duration,
    /// The delay while fewer than `min_samples` latencies are known (default 50 ms).
    pub default_delay: Duration,
    /// Latencies needed before the quantile is trusted (default 20).
    pub min_samples: u64,
    /// Most tokens the budget holds (default 10): a burst of hedges after a calm.
    pub max_burst: f64,
}

impl Default for HedgePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            budget_share: DEFAULT_BUDGET_SHARE,
            quantile: DEFAULT_HEDGE_QUANTILE,
            min_delay: Duration::from_millis(1),
            default_delay: Duration::from_millis(50),
            min_samples: 20,
            max_burst: 10.0,
        }
    }
}

impl HedgePolicy {
    /// Returns how long to wait for a shard's first replica before hedging, from the
    /// recent latencies of the shard's replicas.
    pub fn delay<'a>(&self, replicas: impl IntoIterator<Item = &'a RecentLatency>) -> Duration {
        let replicas: Vec<&RecentLatency> = replicas.into_iter().collect();
        let samples: u64 = replicas.iter().map(|latency| latency.count()).sum();
        if samples < self.min_samples {
            return self.default_delay.max(self.min_delay);
        }
        let seconds = merged_quantile(replicas, self.quantile).unwrap_or(0.0);
        Duration::from_secs_f64(seconds.max(0.0)).max(self.min_delay)
    }
}

/// The token bucket that caps hedges at a share of leaf requests.
#[derive(Debug, Clone, PartialEq)]
pub struct HedgeBudget {
    share: f64,
    max_tokens: f64,
    tokens: f64,
}

impl HedgeBudget {
    /// Returns an empty budget for `policy`.
    pub fn new(policy: &HedgePolicy) -> Self {
        Self {
            share: policy.budget_share.clamp(0.0, 1.0),
            max_tokens: policy.max_burst.max(1.0),
            tokens: 0.0,
        }
    }

    /// Earns the share of one leaf request.
    pub fn on_leaf_request(&mut self) {
        self.tokens = (self.tokens + self.share).min(self.max_tokens);
    }

    /// Spends one token for a hedge; returns false (no hedge) when there is none.
    pub fn try_spend(&mut self) -> bool {
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_is_the_shard_p95_once_enough_is_known() {
        let policy = HedgePolicy::default();
        let mut replica = RecentLatency::new(1000);
        assert_eq!(policy.delay([&replica]), Duration::from_millis(50));
        for millis in 1..=100 {
            replica.record(f64::from(millis) / 1000.0);
        }
        let delay = policy.delay([&replica]).as_secs_f64();
        assert!((delay - 0.095).abs() < 0.002, "delay = {delay}");
    }

    #[test]
    fn the_delay_never_drops_below_the_minimum() {
        let policy = HedgePolicy::default();
        let mut replica = RecentLatency::new(1000);
        for _ in 0..100 {
            replica.record(0.000_01);
        }
        assert_eq!(policy.delay([&replica]), policy.min_delay);
    }

    #[test]
    fn hedges_stay_within_the_budget_share() {
        let policy = HedgePolicy::default();
        let mut budget = HedgeBudget::new(&policy);
        let mut hedges = 0;
        // Every request wants a hedge, as in an outage.
        for _ in 0..10_000 {
            budget.on_leaf_request();
            if budget.try_spend() {
                hedges += 1;
            }
        }
        assert!((499..=500).contains(&hedges), "hedges = {hedges}");
    }

    #[test]
    fn a_calm_period_saves_at_most_a_burst() {
        let policy = HedgePolicy::default();
        let mut budget = HedgeBudget::new(&policy);
        for _ in 0..100_000 {
            budget.on_leaf_request();
        }
        let burst = std::iter::from_fn(|| budget.try_spend().then_some(())).count();
        assert_eq!(burst, 10);
    }
}
