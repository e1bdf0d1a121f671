//! Which ready replica of a shard receives a request.
//!
//! Three rules, as seed 000's load balancer discussion lists them:
//! - **round robin**: each replica in turn; even when requests cost the same;
//! - **least outstanding**: the replica with the fewest requests in flight (ties go
//!   round robin), which steers away from a slow replica without measuring it;
//! - **key affinity**: the same key always to the same replica while it is ready, so
//!   that replica's caches hit. Rendezvous hashing (highest `fnv1a(key, replica)`):
//!   when a replica leaves, only its own keys move. Without a key, round robin.
//!
//! Only ready replicas are candidates; the caller also leaves out a replica already
//! tried for this request (a hedge goes to *another* replica).
use essaim_stream::hash::{fnv1a_64, fnv1a_64_continue};

/// A replica's number within its shard, `0..R`.
pub type ReplicaIndex = u32;

/// The balancing rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BalanceRule {
    /// Each replica in turn.
    RoundRobin,
    /// The fewest requests in flight (the default: it also avoids slow replicas).
    #[default]
    LeastOutstanding,
    /// The same key to the same replica.
    KeyAffinity,
}

impl std::str::FromStr for BalanceRule {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "round-robin" => Ok(Self::RoundRobin),
            "least-outstanding" => Ok(Self::LeastOutstanding),
            "key-affinity" => Ok(Self::KeyAffinity),
            other => Err(format!(
                "unknown balancing rule `{other}`: round-robin, least-outstanding or key-affinity"
            )),
        }
    }
}

/// A candidate replica and its requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The replica.
    pub replica: ReplicaIndex,
    /// Requests sent to it and not answered yet.
    pub outstanding: u32,
}

/// One shard's balancer: the rule and the round-robin cursor.
#[derive(Debug, Clone, Default)]
pub struct Balancer {
    rule: BalanceRule,
    turn: u64,
}

impl Balancer {
    /// Returns a balancer following `rule`.
    pub fn new(rule: BalanceRule) -> Self {
        Self { rule, turn: 0 }
    }

    /// Picks one of `candidates` (ready, not yet tried), or `None` when there is none.
    pub fn pick(&mut self, candidates: &[Candidate], key: Option<&str>) -> Option<ReplicaIndex> {
        if candidates.is_empty() {
            return None;
        }
        let turn = self.turn;
        self.turn = self.turn.wrapping_add(1);
        let in_turn = |list: &[Candidate]| list[(turn % list.len() as u64) as usize].replica;
        match (self.rule, key) {
            (BalanceRule::KeyAffinity, Some(key)) => {
                let key_hash = fnv1a_64(key.as_bytes());
                candidates
                    .iter()
                    .max_by_key(|candidate| {
                        fnv1a_64_continue(key_hash, &candidate.replica.to_le_bytes())
                    })
                    .map(|candidate| candidate.replica)
            }
            (BalanceRule::LeastOutstanding, _) => {
                let fewest = candidates.iter().map(|c| c.outstanding).min()?;
                let idle: Vec<Candidate> = candidates
                    .iter()
                    .copied()
                    .filter(|candidate| candidate.outstanding == fewest)
                    .collect();
                Some(in_turn(&idle))
            }
            (BalanceRule::RoundRobin | BalanceRule::KeyAffinity, _) => Some(in_turn(candidates)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(outstanding: &[u32]) -> Vec<Candidate> {
        outstanding
            .iter()
            .enumerate()
            .map(|(index, outstanding)| Candidate {
                replica: index as u32,
                outstanding: *outstanding,
            })
            .collect()
    }

    #[test]
    fn round_robin_takes_each_replica_in_turn() {
        let mut balancer = Balancer::new(BalanceRule::RoundRobin);
        let picks: Vec<_> = (0..6)
            .map(|_| balancer.pick(&candidates(&[0, 5, 9]), None).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_outstanding_avoids_the_busy_replica() {
        let mut balancer = Balancer::new(BalanceRule::LeastOutstanding);
        for _ in 0..10 {
            assert_eq!(balancer.pick(&candidates(&[3, 0, 2]), None), Some(1));
        }
        let picks: Vec<_> = (0..4)
            .map(|_| balancer.pick(&candidates(&[1, 1, 7]), None).unwrap())
            .collect();
        assert!(picks.contains(&0) && picks.contains(&1) && !picks.contains(&2));
    }

    #[test]
    fn key_affinity_keeps_a_key_on_one_replica_and_moves_only_the_lost_ones() {
        let mut balancer = Balancer::new(BalanceRule::KeyAffinity);
        let all = candidates(&[0, 0, 0]);
        let keys: Vec<String> = (0..300).map(|index| format!("user-{index}")).collect();
        let before: Vec<_> = keys
            .iter()
            .map(|key| balancer.pick(&all, Some(key)).unwrap())
            .collect();
        for (key, replica) in keys.iter().zip(&before) {
            assert_eq!(balancer.pick(&all, Some(key)), Some(*replica), "stable");
        }
        let without_one: Vec<Candidate> = all.iter().copied().filter(|c| c.replica != 1).collect();
        for (key, replica) in keys.iter().zip(&before) {
            let after = balancer.pick(&without_one, Some(key)).unwrap();
            if *replica != 1 {
                assert_eq!(
                    after, *replica,
                    "a key of a replica still there does not move"
                );
            }
        }
        for replica in 0..3 {
            let share = before.iter().filter(|r| **r == replica).count();
            assert!(share > 60, "replica {replica} gets {share} of 300 keys");
        }
    }

    #[test]
    fn no_candidate_no_pick() {
        let mut balancer = Balancer::default();
        assert_eq!(balancer.pick(&[], Some("k")), None);
    }
}
