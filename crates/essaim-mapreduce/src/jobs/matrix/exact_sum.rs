//! Exact sums of floats, rounded once: the sums of the matrix jobs (`matvec`,
//! `rownorms`, `cosine`) do not depend on the order their terms arrive in, the number of
//! reducers or the splits, which is what makes a combiner legal and a rerun give the
//! same bits.
//!
//! Shewchuk's algorithm, as Python's `math.fsum`: the running sum is kept as a short list
//! of non-overlapping floats whose exact sum is the exact sum of the terms, and only the
//! final [`ExactSum::total`] rounds. The partials themselves can travel between tasks
//! ([`ExactSum::partials`]) and be added into another sum without losing anything.

/// A sum of finite values whose exact total is finite but an intermediate float is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IntermediateOverflow;

/// An exact sum of floats: Shewchuk's non-overlapping partials, as in Python's
/// `math.fsum` (whose handling of specials and final rounding this follows). The short
/// names `x` and `y` are those of that source, so the two can be compared line by line.
#[derive(Debug, Default, Clone)]
pub(crate) struct ExactSum {
    /// Non-overlapping, increasing in magnitude; their exact sum is the exact sum of
    /// the finite values added.
    partials: Vec<f64>,
    /// Sum of the infinities and NaNs added (NaN when they cancel or any was NaN).
    special_sum: f64,
    /// Sum of the infinities added (NaN when +inf and -inf were both added).
    infinity_sum: f64,
}

impl ExactSum {
    /// Adds a value. Fails when a finite intermediate overflows (Python raises too).
    pub(crate) fn add(&mut self, value: f64) -> Result<(), IntermediateOverflow> {
        let mut x = value;
        let mut kept = 0;
        for index in 0..self.partials.len() {
            let mut y = self.partials[index];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let high = x + y;
            let low = y - (high - x);
            if low != 0.0 {
                self.partials[kept] = low;
                kept += 1;
            }
            x = high;
        }
        self.partials.truncate(kept);
        if x == 0.0 {
            return Ok(());
        }
        if x.is_finite() {
            self.partials.push(x);
            return Ok(());
        }
        if value.is_finite() {
            return Err(IntermediateOverflow);
        }
        if value.is_infinite() {
            self.infinity_sum += value;
        }
        self.special_sum += value;
        // Specials decide the result; the finite partials no longer matter.
        self.partials.clear();
        Ok(())
    }

    /// Values whose exact sum is the exact sum so far: the partials, or the special
    /// value when an infinity or NaN was added.
    pub(crate) fn partials(&self) -> Vec<f64> {
        if self.special_sum != 0.0 {
            return vec![self.total()];
        }
        self.partials.clone()
    }

    /// The exact sum, correctly rounded to the nearest float (ties to even).
    pub(crate) fn total(&self) -> f64 {
        if self.special_sum != 0.0 {
            return if self.infinity_sum.is_nan() {
                f64::NAN
            } else {
                self.special_sum
            };
        }
        let partials = &self.partials;
        let mut remaining = partials.len();
        let Some(&last) = partials.last() else {
            return 0.0;
        };
        remaining -= 1;
        let mut high = last;
        let mut low = 0.0;
        // Add partials from the largest down until the sum becomes inexact.
        while remaining > 0 {
            let x = high;
            remaining -= 1;
            let y = partials[remaining];
            high = x + y;
            let y_rounded = high - x;
            low = y - y_rounded;
            if low != 0.0 {
                break;
            }
        }
        // Half-way case: make the rounding of `high + low` see the partials below.
        if remaining > 0 {
            let next = partials[remaining - 1];
            let same_sign = (low < 0.0 && next < 0.0) || (low > 0.0 && next > 0.0);
            if same_sign {
                let y = low * 2.0;
                let x = high + y;
                let y_rounded = x - high;
                if y == y_rounded {
                    high = x;
                }
            }
        }
        high
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact_sum(values: &[f64]) -> f64 {
        let mut sum = ExactSum::default();
        for value in values {
            sum.add(*value).unwrap();
        }
        sum.total()
    }

    #[test]
    fn exact_sums_are_correctly_rounded_in_any_order() {
        assert_eq!(exact_sum(&[1e16, 1.0, -1e16]), 1.0);
        assert_eq!(exact_sum(&[0.1; 10]), 1.0);
        // Python raises too: the exact total is finite but an intermediate is not.
        let mut overflowing = ExactSum::default();
        overflowing.add(1e308).unwrap();
        assert!(overflowing.add(1e308).is_err());
        assert_eq!(exact_sum(&[]), 0.0);
        // Python: math.fsum([1, 1e100, 1, -1e100] * 10000) == 20000.0
        let many: Vec<f64> = [1.0, 1e100, 1.0, -1e100].repeat(10_000);
        assert_eq!(exact_sum(&many), 20000.0);
        let mut reversed = many.clone();
        reversed.reverse();
        assert_eq!(exact_sum(&reversed), 20000.0);
        assert!(exact_sum(&[f64::INFINITY, 1.0]).is_infinite());
        assert!(exact_sum(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
        assert!(exact_sum(&[f64::NAN, 1.0]).is_nan());
        // Ties to even across partials: 1 + 2^-53 + 2^-106 rounds up.
        let tiny = f64::EPSILON / 2.0;
        assert_eq!(exact_sum(&[1.0, tiny, tiny * tiny]), 1.0 + f64::EPSILON);
    }

    #[test]
    fn partial_sums_add_up_to_the_same_exact_total() {
        let values: Vec<f64> = (1..200).map(|index| 1.0 / f64::from(index)).collect();
        let mut combined = ExactSum::default();
        for chunk in values.chunks(17) {
            let mut partial = ExactSum::default();
            for value in chunk {
                partial.add(*value).unwrap();
            }
            for value in partial.partials() {
                combined.add(value).unwrap();
            }
        }
        assert_eq!(combined.total(), exact_sum(&values));
    }
}
