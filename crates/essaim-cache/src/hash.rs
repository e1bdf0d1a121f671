//! The one hash of the cache: FNV-1a over the bytes, then the SplitMix64 finalizer.
//!
//! FNV-1a alone is stable across processes and versions (which placement needs: every
//! proxy must agree on where a key lives) but its high bits mix poorly for short,
//! similar inputs such as `node-1#0`, `node-1#1`; the finalizer spreads them over the
//! whole ring, so virtual nodes land evenly.

/// Returns the stable 64-bit hash of `bytes`.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        state ^= u64::from(*byte);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    mix(state)
}

/// SplitMix64's finalizer: every input bit flips about half the output bits.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_across_versions() {
        // Placement depends on it: a change would move every key of a running cache.
        assert_eq!(hash64(b""), mix(0xcbf2_9ce4_8422_2325));
        assert_ne!(hash64(b"node-1#0"), hash64(b"node-1#1"));
        assert_eq!(hash64(b"key"), hash64(b"key"));
    }
}
