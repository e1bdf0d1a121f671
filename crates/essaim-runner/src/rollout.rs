//! Rollout decisions, free of I/O and clocks: which arm answers a request (the A/B
//! split and the canary's share), and when a canary is promoted or rolled back.
//!
//! **Sticky split.** A request with a key goes to the arm its key's bucket falls in:
//! the bucket is the first 8 bytes of the key's SHA-256 modulo 10,000, so the same key
//! gets the same arm in every runner process and across restarts, and a share of
//! 12.5 % is honoured to the basis point. A request without a key is bucketed by its
//! sequence number, mixed, so unkeyed traffic is spread evenly rather than in runs.
//!
//! **Canary.** The candidate answers its share; each of its answers is compared with
//! the primary's answer to the same rows (computed beside it, unseen by the caller).
//! Once `min_requests` candidate requests are observed (errors plus comparisons), the
//! canary is decided exactly once: rolled back if its error rate or its disagreement
//! rate is above its threshold, promoted otherwise. The tally starts again whenever
//! the pair of versions changes (an alias moved).
//!
//! ```text
//!   Observing ──(observed ≥ min, rates within thresholds)──► Decided(Promote)
//!       │
//!       └──────(observed ≥ min, a rate above its threshold)──► Decided(RollBack)
//!   any state ──(primary or candidate version changes)──► Observing (tally at zero)
//! ```

use sha2::{Digest, Sha256};

/// Buckets of the split: shares are honoured to 1/10,000.
const BUCKETS: u64 = 10_000;

/// Which version answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// The primary reference (`spam-filter@production`).
    Primary,
    /// The candidate of an A/B split or a canary.
    Candidate,
}

impl Arm {
    /// Returns the arm's word, a bounded metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Candidate => "candidate",
        }
    }
}

/// Returns the bucket (below 10,000) of a request: its key's, or its sequence number's.
pub fn bucket(key: Option<&str>, sequence: u64) -> u64 {
    let hashed = match key {
        Some(key) => {
            let digest = Sha256::digest(key.as_bytes());
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            u64::from_be_bytes(first)
        }
        None => essaim_core::rng::mix(sequence),
    };
    hashed % BUCKETS
}

/// Returns the arm of a request when the candidate gets `candidate_percent` % of them.
pub fn choose_arm(candidate_percent: f64, key: Option<&str>, sequence: u64) -> Arm {
    let candidate_buckets = (candidate_percent / 100.0 * BUCKETS as f64).round() as u64;
    if bucket(key, sequence) < candidate_buckets {
        Arm::Candidate
    } else {
        Arm::Primary
    }
}

/// When a canary is decided, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanaryPolicy {
    /// Share of requests the candidate answers, in percent.
    pub percent: f64,
    /// Candidate requests observed before a decision.
    pub min_requests: u64,
    /// Highest acceptable share of candidate requests that failed (0 to 1).
    pub max_error_rate: f64,
    /// Highest acceptable share of compared rows where the candidate's label differs
    /// from the primary's (0 to 1).
    pub max_disagreement: f64,
}

/// What a canary should do now.
#[derive(Debug, Clone, PartialEq)]
pub enum CanaryDecision {
    /// Keep observing.
    Wait,
    /// Point the primary's alias at the candidate's version.
    Promote,
    /// Withdraw the candidate, for this reason.
    RollBack(String),
}

/// What a shadow or a canary has seen of its candidate, for one pair of versions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CandidateTally {
    versions: Option<(u64, u64)>,
    errors: u64,
    compared_requests: u64,
    compared_rows: u64,
    disagreeing_rows: u64,
    decided: bool,
}

impl CandidateTally {
    /// Starts over if the versions differ from those tallied so far.
    pub fn follow_versions(&mut self, primary: u64, candidate: u64) {
        if self.versions != Some((primary, candidate)) {
            *self = Self {
                versions: Some((primary, candidate)),
                ..Self::default()
            };
        }
    }

    /// Records a candidate request that failed on the runner's side.
    pub fn record_error(&mut self) {
        self.errors += 1;
    }

    /// Records a candidate request whose `rows` rows were compared with the primary's
    /// answer, `disagreeing` of them with another label.
    pub fn record_comparison(&mut self, rows: u64, disagreeing: u64) {
        self.compared_requests += 1;
        self.compared_rows += rows;
        self.disagreeing_rows += disagreeing;
    }

    /// Returns the decision due now, once: after a `Promote` or `RollBack` it waits
    /// until the versions change (or [`Self::retry_decision`] is called).
    pub fn decide(&mut self, policy: &CanaryPolicy) -> CanaryDecision {
        let observed = self.errors + self.compared_requests;
        if self.decided || observed < policy.min_requests.max(1) {
            return CanaryDecision::Wait;
        }
        self.decided = true;
        let error_rate = self.errors as f64 / observed as f64;
        let disagreement = self.disagreement();
        if error_rate > policy.max_error_rate {
            return CanaryDecision::RollBack(format!(
                "error rate {error_rate:.3} > {} after {observed} requests",
                policy.max_error_rate
            ));
        }
        if disagreement > policy.max_disagreement {
            return CanaryDecision::RollBack(format!(
                "disagreement {disagreement:.3} > {} after {observed} requests",
                policy.max_disagreement
            ));
        }
        CanaryDecision::Promote
    }

    /// Returns the share of compared rows whose labels differed (0 before any).
    pub fn disagreement(&self) -> f64 {
        if self.compared_rows == 0 {
            return 0.0;
        }
        self.disagreeing_rows as f64 / self.compared_rows as f64
    }

    /// Allows the decision to be taken again (its registry call failed).
    pub fn retry_decision(&mut self) {
        self.decided = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_always_gets_the_same_arm() {
        for key in ["user-1", "user-2", "alice", "", "☃"] {
            let first = choose_arm(50.0, Some(key), 0);
            for sequence in 1..100 {
                assert_eq!(choose_arm(50.0, Some(key), sequence), first, "{key}");
            }
        }
    }

    #[test]
    fn keys_and_sequences_spread_by_the_share() {
        for percent in [0.0, 10.0, 50.0, 100.0] {
            let keyed = (0..10_000)
                .filter(|i| choose_arm(percent, Some(&format!("user-{i}")), 0) == Arm::Candidate)
                .count() as f64;
            let unkeyed = (0..10_000)
                .filter(|i| choose_arm(percent, None, *i) == Arm::Candidate)
                .count() as f64;
            for (what, count) in [("keyed", keyed), ("unkeyed", unkeyed)] {
                let share = count / 100.0;
                assert!((share - percent).abs() < 2.0, "{what} {percent}%: {share}%");
            }
        }
    }

    #[test]
    fn the_same_key_gets_the_same_bucket_in_any_process() {
        // Pinned: a runner restarted, or another runner, must agree. The value is
        // Python's `int.from_bytes(sha256(b"user-1").digest()[:8], "big") % 10000`.
        assert_eq!(bucket(Some("user-1"), 7), bucket(Some("user-1"), 8));
        assert_eq!(bucket(Some("user-1"), 0), 2_594);
    }

    fn policy() -> CanaryPolicy {
        CanaryPolicy {
            percent: 10.0,
            min_requests: 10,
            max_error_rate: 0.1,
            max_disagreement: 0.2,
        }
    }

    #[test]
    fn a_canary_waits_for_its_minimum_then_promotes_once() {
        let mut tally = CandidateTally::default();
        tally.follow_versions(1, 2);
        for _ in 0..9 {
            tally.record_comparison(2, 0);
            assert_eq!(tally.decide(&policy()), CanaryDecision::Wait);
        }
        tally.record_comparison(2, 1);
        assert_eq!(tally.decide(&policy()), CanaryDecision::Promote);
        tally.record_comparison(2, 2);
        assert_eq!(
            tally.decide(&policy()),
            CanaryDecision::Wait,
            "decided once"
        );
    }

    #[test]
    fn too_many_errors_or_disagreements_roll_back() {
        let mut errors = CandidateTally::default();
        errors.follow_versions(1, 2);
        for request in 0..10 {
            if request < 2 {
                errors.record_error();
            } else {
                errors.record_comparison(1, 0);
            }
        }
        let CanaryDecision::RollBack(reason) = errors.decide(&policy()) else {
            panic!("2 errors in 10 is above 10 %");
        };
        assert!(reason.starts_with("error rate 0.200"), "{reason}");

        let mut disagreeing = CandidateTally::default();
        disagreeing.follow_versions(1, 2);
        for request in 0..10 {
            disagreeing.record_comparison(1, u64::from(request < 3));
        }
        let CanaryDecision::RollBack(reason) = disagreeing.decide(&policy()) else {
            panic!("3 disagreements in 10 is above 20 %");
        };
        assert!(reason.starts_with("disagreement 0.300"), "{reason}");
    }

    #[test]
    fn exactly_at_the_threshold_is_still_acceptable() {
        let mut tally = CandidateTally::default();
        tally.follow_versions(1, 2);
        tally.record_error();
        for _ in 0..9 {
            tally.record_comparison(5, 1);
        }
        assert_eq!(tally.decide(&policy()), CanaryDecision::Promote);
    }

    #[test]
    fn new_versions_start_a_new_tally_and_a_failed_call_may_decide_again() {
        let mut tally = CandidateTally::default();
        tally.follow_versions(1, 2);
        for _ in 0..10 {
            tally.record_comparison(1, 0);
        }
        assert_eq!(tally.decide(&policy()), CanaryDecision::Promote);
        tally.retry_decision();
        assert_eq!(tally.decide(&policy()), CanaryDecision::Promote);
        tally.follow_versions(1, 2);
        assert_eq!(
            tally.decide(&policy()),
            CanaryDecision::Wait,
            "same pair: decided"
        );
        tally.follow_versions(1, 3);
        assert_eq!(
            tally.decide(&policy()),
            CanaryDecision::Wait,
            "new pair: observing"
        );
    }
}
