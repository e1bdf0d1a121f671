//! A seeded generator for the crate's randomized tests (SplitMix64).
//!
//! Tests print their seed on failure and replay exactly; a hand-written generator keeps
//! the crate free of a test-only dependency tree and its output fixed across releases.

/// SplitMix64: tiny, fast and good enough to draw test inputs.
pub(crate) struct TestRng(u64);

impl TestRng {
    /// Returns a generator for `seed`.
    pub(crate) fn new(seed: u64) -> TestRng {
        TestRng(seed)
    }

    /// Returns the next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// Returns a number in `0..bound` (`bound` > 0; the tiny modulo bias is harmless here).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// Returns a float in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
