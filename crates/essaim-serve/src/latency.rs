//! Recent latency quantiles of a leaf, mergeable across replicas.
//!
//! Hedging needs "this shard's recent p95": recent, because a replica that was slow an
//! hour ago is not slow now; mergeable, because the shard's quantile combines its
//! replicas'. A [`RecentLatency`] keeps two DDSketches (the project's own, with a 1 %
//! relative error): the window being filled and the one before. Quantiles read both, so
//! a fresh window never starts from nothing, and a value leaves the sketch after at
//! most two windows of `window` samples.
use essaim_stream::sketch::{DEFAULT_ALPHA, DEFAULT_MAX_BUCKETS, DdSketch};

/// Default samples per window.
pub const DEFAULT_WINDOW: u64 = 1000;

/// Latencies (in seconds) of the last one to two windows of requests.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentLatency {
    window: u64,
    current: DdSketch,
    previous: DdSketch,
}

impl Default for RecentLatency {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl RecentLatency {
    /// Returns an empty tracker whose windows hold `window` samples (at least 1).
    pub fn new(window: u64) -> Self {
        Self {
            window: window.max(1),
            current: new_sketch(),
            previous: new_sketch(),
        }
    }

    /// Records one latency, in seconds.
    pub fn record(&mut self, seconds: f64) {
        if self.current.count() >= self.window {
            self.previous = std::mem::replace(&mut self.current, new_sketch());
        }
        self.current.add(seconds);
    }

    /// Returns how many samples the quantiles are drawn from.
    pub fn count(&self) -> u64 {
        self.current.count() + self.previous.count()
    }

    /// Returns the recent samples as one sketch.
    pub fn sketch(&self) -> DdSketch {
        let mut merged = self.previous.clone();
        merged
            .merge(&self.current)
            .expect("both windows use the same accuracy");
        merged
    }

    /// Returns the `q`-quantile of the recent samples, in seconds, if there are any.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.sketch().quantile(q)
    }
}

fn new_sketch() -> DdSketch {
    DdSketch::new(DEFAULT_ALPHA, DEFAULT_MAX_BUCKETS)
}

/// Returns the `q`-quantile of several trackers together (say, a shard's replicas).
pub fn merged_quantile<'a>(
    trackers: impl IntoIterator<Item = &'a RecentLatency>,
    q: f64,
) -> Option<f64> {
    let mut merged = new_sketch();
    for tracker in trackers {
        merged
            .merge(&tracker.sketch())
            .expect("every tracker uses the same accuracy");
    }
    merged.quantile(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_sketch_accuracy() {
        let mut latency = RecentLatency::new(10_000);
        for millis in 1..=1000 {
            latency.record(f64::from(millis) / 1000.0);
        }
        let p95 = latency.quantile(0.95).unwrap();
        assert!((p95 - 0.950).abs() <= 0.950 * 0.011, "p95 = {p95}");
    }

    #[test]
    fn old_samples_leave_after_two_windows() {
        let mut latency = RecentLatency::new(100);
        for _ in 0..100 {
            latency.record(1.0);
        }
        for _ in 0..200 {
            latency.record(0.001);
        }
        let p99 = latency.quantile(0.99).unwrap();
        assert!(p99 < 0.0011, "the slow window is forgotten, p99 = {p99}");
        assert!(latency.count() <= 200);
    }

    #[test]
    fn replicas_merge_into_the_shard_quantile() {
        let mut fast = RecentLatency::new(1000);
        let mut slow = RecentLatency::new(1000);
        for _ in 0..90 {
            fast.record(0.001);
        }
        for _ in 0..10 {
            slow.record(0.1);
        }
        let p95 = merged_quantile([&fast, &slow], 0.95).unwrap();
        assert!((p95 - 0.1).abs() < 0.002, "p95 = {p95}");
        assert_eq!(merged_quantile([], 0.95), None);
    }
}
