//! The one seeded pseudo-random generator of essaim (SplitMix64); not for cryptography.
//!
//! It lives in the core because the scheduler's retry jitter and the deterministic
//! simulation need it, and both must replay exactly from a seed. Everything else that
//! wants reproducible randomness — test inputs printed by seed, generated data sets,
//! worker jitter — uses this one too, so a sequence means the same thing everywhere and
//! no crate carries a copy.

/// Returns SplitMix64's output for the state `value`: a fast, well-mixed function of a
/// counter (`SeededRng::new(value).next_u64()` without the state).
pub fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small, fast, seeded pseudo-random generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// Returns a generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let output = mix(self.state);
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        output
    }

    /// Returns a value uniformly drawn in `0..=max`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        self.next_u64() % (max + 1)
    }

    /// Returns a value in `0..bound` (`bound` ≥ 1; the tiny modulo bias is harmless for
    /// test inputs and jitter).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// Returns true with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        denominator > 0 && self.next_u64() % denominator < numerator
    }

    /// Returns a float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Returns `len` bytes drawn from `alphabet` (not empty).
    pub fn bytes(&mut self, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_splitmix64_and_fixed_by_the_seed() {
        // SplitMix64's published first outputs for seed 0.
        let mut rng = SeededRng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
        let (mut a, mut b) = (SeededRng::new(42), SeededRng::new(42));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut rng = SeededRng::new(5);
        for _ in 0..10_000 {
            assert!(rng.below(7) < 7);
            assert!(rng.up_to(3) <= 3);
            let unit = rng.unit();
            assert!((0.0..1.0).contains(&unit));
        }
        assert!(rng.bytes(50, b"ab").iter().all(|byte| b"ab".contains(byte)));
        assert!(!SeededRng::new(1).chance(0, 100));
        assert!(SeededRng::new(1).chance(100, 100));
    }
}
