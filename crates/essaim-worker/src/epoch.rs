//! The epoch fence: a worker takes no instruction from a coordinator older than one it
//! has already heard from.
//!
//! Attempt ids carry the epoch of the coordinator that granted them in their top bits
//! (`epoch << 40 | counter`, see `essaim_core::ids`), and the epoch grows with every
//! coordinator start and every election. Once a worker has been granted an attempt of
//! epoch E, a newer coordinator exists (or existed) and owns the cluster: a grant of an
//! epoch below E can only come from a deposed coordinator that still answers (paused
//! past its lease, or cut off from the store), and running it could commit work twice
//! if its results ever reached a store that still took them. Such grants are refused,
//! and counted, rather than run; the deposed coordinator's lease on them simply expires.

use essaim_core::AttemptId;

/// The highest coordinator epoch this worker has been granted work by.
#[derive(Debug, Clone, Default)]
pub(crate) struct EpochFence {
    highest_seen: u64,
}

impl EpochFence {
    /// Returns true when a grant of `attempt` may run (its epoch is the highest seen so
    /// far, which it then becomes), false when it comes from an older epoch.
    pub(crate) fn admit(&mut self, attempt: AttemptId) -> bool {
        let epoch = attempt.epoch();
        if epoch < self.highest_seen {
            return false;
        }
        self.highest_seen = epoch;
        true
    }

    /// Returns the highest epoch seen (0 before the first grant).
    pub(crate) fn highest_seen(&self) -> u64 {
        self.highest_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_core::ids::EPOCH_SHIFT;

    fn attempt(epoch: u64, counter: u64) -> AttemptId {
        AttemptId(epoch << EPOCH_SHIFT | counter)
    }

    #[test]
    fn a_grant_from_an_older_epoch_is_refused_after_a_newer_one() {
        let mut fence = EpochFence::default();
        assert!(fence.admit(attempt(3, 7)));
        assert!(fence.admit(attempt(3, 8)), "same epoch, later grant");
        assert!(fence.admit(attempt(4, 1)), "a newer coordinator took over");
        assert_eq!(fence.highest_seen(), 4);
        assert!(
            !fence.admit(attempt(3, 9)),
            "the deposed coordinator of epoch 3 still answers"
        );
        assert_eq!(fence.highest_seen(), 4);
        assert!(fence.admit(attempt(4, 2)));
    }

    #[test]
    fn the_counter_bits_do_not_count_as_epoch() {
        let mut fence = EpochFence::default();
        assert!(fence.admit(attempt(2, (1 << EPOCH_SHIFT) - 1)));
        assert!(fence.admit(attempt(2, 1)));
        assert_eq!(attempt(2, (1 << EPOCH_SHIFT) - 1).epoch(), 2);
    }
}
