//! DDSketch: quantiles with a bounded relative error, in bounded memory, mergeable.
//!
//! A windowed p95 over a distributed stream cannot keep every value: partitions
//! summarize their part and the summaries are combined. DDSketch (Masson, Rim and Lee,
//! VLDB 2019) does this with a guarantee that suits latencies and delays, whose
//! distributions have heavy tails: every quantile it returns is within a *relative*
//! error `α` of the exact one.
//!
//! How: with `γ = (1 + α) / (1 − α)`, a positive value `x` falls in bucket
//! `i = ⌈log_γ x⌉`, which covers `(γ^(i−1), γ^i]`; the bucket is represented by
//! `2γ^i / (γ + 1)`, within `α·x` of every value it covers. Negative values use a mirror
//! store on `|x|`, and values with `|x|` below [`MIN_INDEXABLE`] count as zero. A quantile
//! `q` is the value of rank `⌊q·(n − 1)⌋` in sorted order (0-based); the sketch walks the
//! buckets to the one holding that rank, so:
//!
//! **Guarantee**: `|estimate − exact| ≤ α·|exact|` for every `q`, as long as no bucket was
//! collapsed below the exact value (estimates are also clamped to the exact min and max).
//!
//! **Memory**: each store keeps at most `max_buckets` buckets. When a store would grow
//! beyond it, its lowest buckets (the smallest magnitudes) are collapsed into the lowest
//! bucket kept, so the high quantiles — the ones a delay dashboard watches — keep their
//! guarantee. With the defaults (α = 1 %, 2048 buckets) a store spans magnitudes over a
//! ratio of `γ^2048 ≈ 6·10^17` before collapsing anything, i.e. never for delays in
//! minutes.
//!
//! **Mergeable**: buckets are a function of the value alone, so merging two sketches adds
//! their bucket counts, and `merge(sketch(a), sketch(b))` has the same buckets as
//! `sketch(a ∪ b)` — collapsing included (both keep the `max_buckets` highest buckets ever
//! seen and fold the rest into the lowest kept one).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Magnitudes below this count as zero (they would need ever more buckets).
pub const MIN_INDEXABLE: f64 = 1e-9;
/// The default relative accuracy: 1 %.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// The default bucket limit per store (positive and negative values each).
pub const DEFAULT_MAX_BUCKETS: u32 = 2048;

/// Two sketches that cannot be merged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot merge sketches of relative accuracy {left} and {right}")]
pub struct MergeError {
    /// The accuracy of the sketch merged into.
    pub left: f64,
    /// The accuracy of the other sketch.
    pub right: f64,
}

/// A DDSketch with exact count, sum, min and max alongside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DdSketch {
    alpha: f64,
    max_buckets: u32,
    /// Bucket index → count, for positive values.
    positive: BTreeMap<i32, u64>,
    /// Bucket index (of `|x|`) → count, for negative values.
    negative: BTreeMap<i32, u64>,
    zero_count: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for DdSketch {
    fn default() -> Self {
        DdSketch::new(DEFAULT_ALPHA, DEFAULT_MAX_BUCKETS)
    }
}

impl DdSketch {
    /// Returns an empty sketch of relative accuracy `alpha` (clamped into
    /// `[0.0001, 0.5]`) keeping at most `max_buckets` (at least 16) buckets per sign.
    pub fn new(alpha: f64, max_buckets: u32) -> DdSketch {
        let alpha = if alpha.is_finite() {
            alpha.clamp(0.0001, 0.5)
        } else {
            DEFAULT_ALPHA
        };
        DdSketch {
            alpha,
            max_buckets: max_buckets.max(16),
            positive: BTreeMap::new(),
            negative: BTreeMap::new(),
            zero_count: 0,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Returns the relative accuracy α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Returns how many values were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Returns the exact sum of the values added.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Returns the exact minimum, if any value was added.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Returns the exact maximum, if any value was added.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Returns how many buckets the sketch holds (its memory, roughly 16 bytes each).
    pub fn bucket_count(&self) -> usize {
        self.positive.len() + self.negative.len()
    }

    fn ln_gamma(&self) -> f64 {
        ((1.0 + self.alpha) / (1.0 - self.alpha)).ln()
    }

    fn index(&self, magnitude: f64) -> i32 {
        // |x| ≥ MIN_INDEXABLE and finite: the index lies within ±40 000 for α ≥ 0.0001.
        (magnitude.ln() / self.ln_gamma()).ceil() as i32
    }

    fn bucket_value(&self, index: i32) -> f64 {
        let gamma = (1.0 + self.alpha) / (1.0 - self.alpha);
        (f64::from(index) * self.ln_gamma()).exp() * 2.0 / (gamma + 1.0)
    }

    /// Adds a value; returns false (and adds nothing) for NaN or infinities.
    pub fn add(&mut self, value: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if value.abs() < MIN_INDEXABLE {
            self.zero_count += 1;
            return true;
        }
        let index = self.index(value.abs());
        let store = if value > 0.0 {
            &mut self.positive
        } else {
            &mut self.negative
        };
        *store.entry(index).or_insert(0) += 1;
        collapse_lowest(store, self.max_buckets);
        true
    }

    /// Adds every value of `other` to this sketch.
    pub fn merge(&mut self, other: &DdSketch) -> Result<(), MergeError> {
        if self.alpha != other.alpha {
            return Err(MergeError {
                left: self.alpha,
                right: other.alpha,
            });
        }
        for (store, other_store) in [
            (&mut self.positive, &other.positive),
            (&mut self.negative, &other.negative),
        ] {
            for (index, count) in other_store {
                *store.entry(*index).or_insert(0) += count;
            }
            collapse_lowest(store, self.max_buckets);
        }
        self.zero_count += other.zero_count;
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        Ok(())
    }

    /// Returns the estimated `q`-quantile (`q` clamped into `[0, 1]`), or `None` when
    /// the sketch is empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || q.is_nan() {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0;
        // Most negative first: the negative store by decreasing magnitude.
        for (index, count) in self.negative.iter().rev() {
            seen += count;
            if seen > rank {
                return Some(self.clamp(-self.bucket_value(*index)));
            }
        }
        seen += self.zero_count;
        if seen > rank {
            return Some(self.clamp(0.0));
        }
        for (index, count) in &self.positive {
            seen += count;
            if seen > rank {
                return Some(self.clamp(self.bucket_value(*index)));
            }
        }
        // Unreachable when counts add up; the max is the right answer for rank n − 1.
        Some(self.max)
    }

    fn clamp(&self, estimate: f64) -> f64 {
        estimate.clamp(self.min, self.max)
    }

    /// Returns `(positive, negative, zero)` bucket counts, for tests and debugging.
    pub fn buckets(&self) -> (&BTreeMap<i32, u64>, &BTreeMap<i32, u64>, u64) {
        (&self.positive, &self.negative, self.zero_count)
    }
}

/// Folds the lowest buckets of a store into the lowest one kept until at most
/// `max_buckets` remain.
fn collapse_lowest(store: &mut BTreeMap<i32, u64>, max_buckets: u32) {
    while store.len() > max_buckets as usize {
        let Some((_, lowest_count)) = store.pop_first() else {
            return;
        };
        if let Some(mut next) = store.first_entry() {
            *next.get_mut() += lowest_count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_core::rng::SeededRng;

    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    /// Data sets that stress the guarantee: uniform, heavy-tailed (Pareto), both signs,
    /// integer delays with many ties, tiny magnitudes.
    fn random_data(rng: &mut SeededRng, shape: u64) -> Vec<f64> {
        let size = 1 + rng.below(3_000) as usize;
        (0..size)
            .map(|_| match shape {
                0 => rng.unit() * 1_000.0,
                1 => (1.0 - rng.unit()).powf(-1.0 / 1.1),
                2 => (rng.unit() - 0.3) * 1e6 * rng.unit().powi(4),
                3 => rng.below(200) as f64 - 40.0,
                _ => (rng.unit() - 0.5) * 1e-6,
            })
            .collect()
    }

    #[test]
    fn quantiles_are_within_the_relative_error_of_exact_ones() {
        const QUANTILES: [f64; 10] = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0];
        for seed in 0..300 {
            let mut rng = SeededRng::new(seed);
            let shape = seed % 5;
            let alpha = [0.01, 0.02, 0.05][(seed % 3) as usize];
            let mut data = random_data(&mut rng, shape);
            let mut sketch = DdSketch::new(alpha, DEFAULT_MAX_BUCKETS);
            for value in &data {
                assert!(sketch.add(*value));
            }
            data.sort_by(f64::total_cmp);
            for q in QUANTILES {
                let exact = exact_quantile(&data, q);
                let estimate = sketch.quantile(q).unwrap();
                // Values under MIN_INDEXABLE are reported as zero: an absolute error.
                let bound = alpha * exact.abs() * (1.0 + 1e-9) + MIN_INDEXABLE;
                assert!(
                    (estimate - exact).abs() <= bound,
                    "seed {seed} shape {shape} α {alpha} q {q}: estimate {estimate}, exact {exact}"
                );
            }
            assert_eq!(sketch.count(), data.len() as u64);
            assert_eq!(sketch.min(), data.first().copied());
            assert_eq!(sketch.max(), data.last().copied());
        }
    }

    #[test]
    fn merging_equals_sketching_the_union() {
        for seed in 0..200 {
            let mut rng = SeededRng::new(seed);
            // A small bucket limit in half the cases, to check collapsing merges too.
            let max_buckets = if seed % 2 == 0 {
                16
            } else {
                DEFAULT_MAX_BUCKETS
            };
            let left_data = random_data(&mut rng, seed % 5);
            let right_data = random_data(&mut rng, (seed + 1) % 5);
            let mut left = DdSketch::new(0.01, max_buckets);
            let mut right = DdSketch::new(0.01, max_buckets);
            let mut union = DdSketch::new(0.01, max_buckets);
            for value in &left_data {
                left.add(*value);
                union.add(*value);
            }
            for value in &right_data {
                right.add(*value);
                union.add(*value);
            }
            left.merge(&right).unwrap();
            assert_eq!(left.buckets(), union.buckets(), "seed {seed}");
            assert_eq!(
                (left.count(), left.min(), left.max()),
                (union.count(), union.min(), union.max())
            );
            assert!((left.sum() - union.sum()).abs() <= 1e-9 * union.sum().abs().max(1.0));
            for q in [0.0, 0.5, 0.95, 1.0] {
                assert_eq!(left.quantile(q), union.quantile(q), "seed {seed} q {q}");
            }
        }
    }

    #[test]
    fn collapsing_bounds_memory_and_keeps_high_quantiles_accurate() {
        let mut sketch = DdSketch::new(0.01, 64);
        let mut data: Vec<f64> = (0..100_000).map(|index| 1.0001f64.powi(index)).collect();
        for value in &data {
            sketch.add(*value);
        }
        assert!(sketch.bucket_count() <= 64);
        data.sort_by(f64::total_cmp);
        for q in [0.95, 0.99, 1.0] {
            let exact = exact_quantile(&data, q);
            let estimate = sketch.quantile(q).unwrap();
            assert!(
                (estimate - exact).abs() <= 0.01 * exact * (1.0 + 1e-9),
                "q {q}"
            );
        }
    }

    #[test]
    fn sketches_round_trip_through_serde_and_refuse_other_accuracies() {
        let mut sketch = DdSketch::default();
        for value in [-3.0, 0.0, 1.5, 1e9, 42.0] {
            sketch.add(value);
        }
        assert!(!sketch.add(f64::NAN));
        let json = serde_json::to_string(&sketch).unwrap();
        let back: DdSketch = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sketch);
        assert_eq!(back.quantile(0.5), sketch.quantile(0.5));
        assert!(sketch.merge(&DdSketch::new(0.02, 2048)).is_err());
        assert_eq!(DdSketch::default().quantile(0.5), None);
    }
}
