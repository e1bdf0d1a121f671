//! The one stable hash of the crate: 64-bit FNV-1a.
//!
//! Partitions, derived record ids and hashed string ids must be the same on every
//! machine, every run and every Rust release, because the runtime routes records by them
//! and checkpoints state keyed by them. `std`'s `DefaultHasher` promises none of that, so
//! this module spells the function out (FNV-1a: offset basis `0xcbf29ce484222325`, prime
//! `0x100000001b3`, one byte at a time).

/// The FNV-1a 64-bit offset basis.
const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// The FNV-1a 64-bit prime.
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Returns the FNV-1a 64-bit hash of `bytes`.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    fnv1a_64_continue(OFFSET_BASIS, bytes)
}

/// Continues an FNV-1a hash from `state` over `bytes`, so that several pieces can be
/// hashed without concatenating them first.
pub fn fnv1a_64_continue(state: u64, bytes: &[u8]) -> u64 {
    let mut hash = state;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// Returns the partition of `key` among `partitions`: `fnv1a_64(key) mod partitions`.
///
/// This is the sharding function: the runtime sends a keyed record to the task that owns
/// this partition, so a key's state lives on exactly one task. `partitions` must be at
/// least 1 (a spec with zero partitions is refused at validation).
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    debug_assert!(partitions > 0, "validation refuses zero partitions");
    let partitions = u64::from(partitions.max(1));
    // The remainder is below `partitions`, itself a u32, so the conversion cannot fail.
    u32::try_from(fnv1a_64(key.as_bytes()) % partitions).expect("remainder fits in u32")
}

/// Returns a stable id derived from a parent id and an index, for records an operator
/// makes out of one input (flat-map pieces, window results).
pub fn derive_id(parent: u64, salt: &[u8], index: u64) -> u64 {
    let hash = fnv1a_64_continue(OFFSET_BASIS, &parent.to_le_bytes());
    let hash = fnv1a_64_continue(hash, salt);
    fnv1a_64_continue(hash, &index.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_published_test_vectors() {
        // Vectors from the FNV reference test suite.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn continuing_a_hash_equals_hashing_the_concatenation() {
        assert_eq!(
            fnv1a_64_continue(fnv1a_64(b"foo"), b"bar"),
            fnv1a_64(b"foobar")
        );
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        // Pinned: changing these moves keyed state between tasks on upgrade.
        assert_eq!(partition_of("ATL", 8), (fnv1a_64(b"ATL") % 8) as u32);
        for partitions in 1..20 {
            for key in ["", "a", "ORD", "LAX", "some longer key"] {
                assert!(partition_of(key, partitions) < partitions);
            }
        }
    }
}
