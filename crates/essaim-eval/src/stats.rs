//! The few statistics the evaluation reports: medians over repeats, speed-up and
//! efficiency against one worker, and how evenly work was spread (max/mean and the
//! coefficient of variation).
//!
//! Pure functions over slices, so each is proved by a table of cases below. Empty input
//! and non-finite values give `None` rather than NaN: a number that reaches
//! `results.json` or a table is always a real one.

/// Returns the median of the finite values (the mean of the two middle ones for an even
/// count), or `None` when there is none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    finite.sort_by(f64::total_cmp);
    let middle = finite.len() / 2;
    let even_count = finite.len().is_multiple_of(2);
    Some(if even_count {
        (finite[middle - 1] + finite[middle]) / 2.0
    } else {
        finite[middle]
    })
}

/// Returns the arithmetic mean of the finite values, or `None` when there is none.
pub fn mean(values: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    Some(finite.iter().sum::<f64>() / finite.len() as f64)
}

/// Returns the smallest and largest finite values.
pub fn min_max(values: &[f64]) -> Option<(f64, f64)> {
    let mut finite = values.iter().copied().filter(|v| v.is_finite());
    let first = finite.next()?;
    Some(finite.fold((first, first), |(low, high), v| (low.min(v), high.max(v))))
}

/// How evenly a quantity (tasks, busy time) is spread over workers.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spread {
    /// Mean per worker.
    pub mean: f64,
    /// Largest per worker.
    pub max: f64,
    /// Largest over mean: 1 is perfect balance; with N workers, N means one did it all.
    pub max_over_mean: f64,
    /// Population standard deviation over mean: 0 is perfect balance.
    pub coefficient_of_variation: f64,
}

/// Returns the spread of `per_worker`, or `None` without workers or with a zero mean
/// (nothing to compare).
pub fn spread(per_worker: &[f64]) -> Option<Spread> {
    let mean = mean(per_worker)?;
    if mean <= 0.0 {
        return None;
    }
    let (_, max) = min_max(per_worker)?;
    let count = per_worker.iter().filter(|v| v.is_finite()).count() as f64;
    let variance = per_worker
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| (v - mean).powi(2))
        .sum::<f64>()
        / count;
    Some(Spread {
        mean,
        max,
        max_over_mean: max / mean,
        coefficient_of_variation: variance.sqrt() / mean,
    })
}

/// Returns the speed-up of `throughput` over `baseline` (the one-worker throughput), or
/// `None` when the baseline is not a positive number.
pub fn speedup(throughput: f64, baseline: f64) -> Option<f64> {
    let usable = baseline > 0.0 && baseline.is_finite() && throughput.is_finite();
    usable.then(|| throughput / baseline)
}

/// Returns the parallel efficiency: the speed-up over the number of workers (1 is
/// perfectly linear scaling).
pub fn efficiency(speedup: f64, workers: usize) -> Option<f64> {
    (workers > 0 && speedup.is_finite()).then(|| speedup / workers as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: Option<f64>, expected: f64) -> bool {
        actual.is_some_and(|value| (value - expected).abs() < 1e-9)
    }

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_two_middles() {
        assert!(close(median(&[3.0]), 3.0));
        assert!(close(median(&[5.0, 1.0, 3.0]), 3.0));
        assert!(close(median(&[4.0, 1.0, 3.0, 2.0]), 2.5));
        assert!(close(median(&[1.0, f64::NAN, 9.0, 5.0]), 5.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, f64::INFINITY]), None);
    }

    #[test]
    fn mean_and_extremes_skip_non_finite_values() {
        assert!(close(mean(&[1.0, 2.0, 6.0]), 3.0));
        assert_eq!(mean(&[]), None);
        assert_eq!(min_max(&[2.0, f64::NAN, -1.0, 7.0]), Some((-1.0, 7.0)));
        assert_eq!(min_max(&[]), None);
    }

    #[test]
    fn equal_shares_have_no_spread() {
        let even = spread(&[10.0, 10.0, 10.0, 10.0]).expect("workers with work");
        assert!((even.max_over_mean - 1.0).abs() < 1e-12);
        assert!(even.coefficient_of_variation.abs() < 1e-12);
    }

    #[test]
    fn one_worker_doing_everything_has_max_over_mean_n() {
        let lopsided = spread(&[40.0, 0.0, 0.0, 0.0]).expect("workers with work");
        assert!((lopsided.mean - 10.0).abs() < 1e-12);
        assert!((lopsided.max_over_mean - 4.0).abs() < 1e-12);
        // Population standard deviation: sqrt((30² + 3·10²) / 4) = sqrt(300).
        assert!((lopsided.coefficient_of_variation - 300f64.sqrt() / 10.0).abs() < 1e-12);
    }

    #[test]
    fn spread_of_nothing_is_none() {
        assert_eq!(spread(&[]), None);
        assert_eq!(spread(&[0.0, 0.0]), None);
    }

    #[test]
    fn speedup_and_efficiency_against_one_worker() {
        assert!(close(speedup(180.0, 100.0), 1.8));
        assert!(close(efficiency(1.8, 2), 0.9));
        assert!(close(efficiency(3.2, 4), 0.8));
        assert_eq!(speedup(100.0, 0.0), None);
        assert_eq!(speedup(f64::NAN, 100.0), None);
        assert_eq!(efficiency(2.0, 0), None);
    }
}
