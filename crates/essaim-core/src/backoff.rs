//! Retry delays: exponential backoff with full jitter, drawn from the seeded generator of
//! [`crate::rng`].
//!
//! Full jitter (a delay drawn uniformly in `[0, min(cap, base * 2^n)]`) spreads retries
//! of tasks that failed together, so a dependency that just recovered is not hit by a
//! thundering herd. The generator is seeded by the shell, which keeps the core
//! deterministic under simulation.

use crate::ids::Millis;
use crate::rng::SeededRng;

/// Returns the delay before retry number `failures` (1 after the first failure):
/// uniform in `[0, min(cap, base * 2^(failures-1))]`.
pub fn full_jitter_delay(rng: &mut SeededRng, failures: u32, base: Millis, cap: Millis) -> Millis {
    let exponent = failures.saturating_sub(1).min(32);
    let ceiling = base.saturating_mul(1u64 << exponent).min(cap);
    rng.up_to(ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_exponential_ceiling_and_the_cap() {
        let mut rng = SeededRng::new(7);
        for failures in 1..40 {
            for _ in 0..100 {
                let delay = full_jitter_delay(&mut rng, failures, 100, 30_000);
                let ceiling = (100u64 << (failures - 1).min(32)).min(30_000);
                assert!(delay <= ceiling, "failures {failures}: {delay} > {ceiling}");
            }
        }
    }

    #[test]
    fn delays_are_spread_not_constant() {
        let mut rng = SeededRng::new(1);
        let delays: std::collections::BTreeSet<_> = (0..50)
            .map(|_| full_jitter_delay(&mut rng, 5, 100, 30_000))
            .collect();
        assert!(
            delays.len() > 25,
            "full jitter must spread retries: {delays:?}"
        );
    }

    #[test]
    fn same_seed_same_sequence() {
        let mut first = SeededRng::new(42);
        let mut second = SeededRng::new(42);
        for _ in 0..10 {
            assert_eq!(first.next_u64(), second.next_u64());
        }
    }
}
