//! The confusion matrix of an evaluation and the metrics read from it: accuracy, and
//! precision, recall and F1 either for one positive class (binary, as scikit-learn's
//! `pos_label`) or averaged over classes (macro, each class weighing the same).
//!
//! A ratio whose denominator is zero (no prediction of a class, say) is 0, as
//! scikit-learn reports it with `zero_division=0`.

use std::collections::{BTreeMap, BTreeSet};

/// Counts of (actual class, predicted class) over the held-out rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confusion {
    /// (actual, predicted) → rows.
    pub counts: BTreeMap<(String, String), u64>,
}

/// Precision, recall and F1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    /// Of the rows predicted in the class, the share that are.
    pub precision: f64,
    /// Of the rows in the class, the share predicted so.
    pub recall: f64,
    /// Their harmonic mean.
    pub f1: f64,
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

impl Confusion {
    /// Adds `rows` rows of class `actual` predicted as `predicted`.
    pub fn add(&mut self, actual: &str, predicted: &str, rows: u64) {
        *self
            .counts
            .entry((actual.to_string(), predicted.to_string()))
            .or_default() += rows;
    }

    /// Returns the rows evaluated.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Returns the share of rows predicted right.
    pub fn accuracy(&self) -> f64 {
        let right = self
            .counts
            .iter()
            .filter(|((actual, predicted), _)| actual == predicted)
            .map(|(_, rows)| rows)
            .sum();
        ratio(right, self.total())
    }

    /// Returns every class seen, actual or predicted.
    pub fn classes(&self) -> BTreeSet<&str> {
        self.counts
            .keys()
            .flat_map(|(actual, predicted)| [actual.as_str(), predicted.as_str()])
            .collect()
    }

    /// Returns the scores of `class` taken as the positive one.
    pub fn scores(&self, class: &str) -> ClassScores {
        let mut true_positive = 0;
        let mut predicted_positive = 0;
        let mut actual_positive = 0;
        for ((actual, predicted), rows) in &self.counts {
            if actual == class && predicted == class {
                true_positive += rows;
            }
            if predicted == class {
                predicted_positive += rows;
            }
            if actual == class {
                actual_positive += rows;
            }
        }
        let precision = ratio(true_positive, predicted_positive);
        let recall = ratio(true_positive, actual_positive);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        ClassScores {
            precision,
            recall,
            f1,
        }
    }

    /// Returns the scores averaged over classes (macro average).
    pub fn macro_scores(&self) -> ClassScores {
        let classes = self.classes();
        let count = classes.len().max(1) as f64;
        let mut sum = ClassScores {
            precision: 0.0,
            recall: 0.0,
            f1: 0.0,
        };
        for class in classes {
            let scores = self.scores(class);
            sum.precision += scores.precision;
            sum.recall += scores.recall;
            sum.f1 += scores.f1;
        }
        ClassScores {
            precision: sum.precision / count,
            recall: sum.recall / count,
            f1: sum.f1 / count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_macro_scores_match_a_hand_computed_matrix() {
        // 40 spam caught, 10 spam missed, 5 ham flagged, 45 ham passed.
        let mut confusion = Confusion::default();
        confusion.add("spam", "spam", 40);
        confusion.add("spam", "ham", 10);
        confusion.add("ham", "spam", 5);
        confusion.add("ham", "ham", 45);
        assert_eq!(confusion.total(), 100);
        assert!((confusion.accuracy() - 0.85).abs() < 1e-12);
        let spam = confusion.scores("spam");
        assert!((spam.precision - 40.0 / 45.0).abs() < 1e-12);
        assert!((spam.recall - 0.8).abs() < 1e-12);
        let f1 = 2.0 * (40.0 / 45.0) * 0.8 / (40.0 / 45.0 + 0.8);
        assert!((spam.f1 - f1).abs() < 1e-12);
        let ham = confusion.scores("ham");
        let averaged = confusion.macro_scores();
        assert!((averaged.recall - (0.8 + 0.9) / 2.0).abs() < 1e-12);
        assert!((averaged.f1 - (spam.f1 + ham.f1) / 2.0).abs() < 1e-12);
        // A class never predicted scores 0, not NaN.
        assert_eq!(confusion.scores("other").precision, 0.0);
        assert_eq!(Confusion::default().accuracy(), 0.0);
    }
}
