//! The root's table of leaves: which replicas of each shard are registered where,
//! which of them receive requests, their requests in flight and recent latencies.
//!
//! Decisions only, no I/O: time comes in as `now`. A replica receives requests while
//! it has registered within [`REPLICA_SILENT_AFTER`] and no request to it has failed
//! since its last registration (a killed leaf refuses connections at once, so the
//! first failure takes it out; its next registration, if it lives, brings it back).
//!
//! Registrations are checked for two mistakes: an older attempt of a replica that a
//! newer attempt replaced (a zombie), and a second replica of a shard on a worker that
//! already holds one (both replicas would die with that worker). Both are refused; the
//! leaf fails its attempt and the coordinator places it again. The second is a defence
//! only: the coordinator places a shard's replicas on different workers (their
//! anti-affinity group), so it is refused only when a worker restarted under the same
//! name before its old registration went silent.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use essaim_serve::balance::{BalanceRule, Balancer, Candidate, ReplicaIndex};
use essaim_serve::hedge::HedgePolicy;
use essaim_serve::latency::RecentLatency;
use serde::Serialize;

use crate::REPLICA_SILENT_AFTER;
use crate::wire::Registration;

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationRefused {
    /// The shard or replica number is out of range.
    #[error(
        "shard {shard} replica {replica} is not part of this index ({shards} shards × {replicas} replicas)"
    )]
    OutOfRange {
        /// The shard.
        shard: u32,
        /// The replica.
        replica: u32,
        /// N.
        shards: u32,
        /// R.
        replicas: u32,
    },
    /// A newer attempt holds this replica.
    #[error("attempt {attempt} of shard {shard} replica {replica} was replaced by attempt {newer}")]
    Superseded {
        /// The shard.
        shard: u32,
        /// The replica.
        replica: u32,
        /// The refused attempt.
        attempt: u64,
        /// The attempt holding the replica.
        newer: u64,
    },
    /// Another replica of the shard already runs on this worker.
    #[error(
        "worker `{worker}` already holds replica {other} of shard {shard}; replicas of a shard go to different workers"
    )]
    SameWorker {
        /// The shard.
        shard: u32,
        /// The worker.
        worker: String,
        /// The replica already there.
        other: u32,
    },
}

#[derive(Debug)]
struct Replica {
    url: String,
    worker: String,
    attempt: u64,
    last_seen: Instant,
    /// Set when a request failed after the last registration.
    failed: bool,
    outstanding: u32,
    latency: RecentLatency,
}

#[derive(Debug)]
struct Shard {
    replicas: BTreeMap<ReplicaIndex, Replica>,
    balancer: Balancer,
}

/// The table of every shard's replicas.
#[derive(Debug)]
pub struct LeafTable {
    replicas_per_shard: u32,
    shards: Vec<Shard>,
}

/// A replica chosen for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    /// The replica.
    pub replica: ReplicaIndex,
    /// Its base URL.
    pub url: String,
}

/// How a leaf request ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// It answered after this long.
    Answered(Duration),
    /// It failed (connection refused, error status).
    Failed,
    /// The root dropped it (a hedge's loser, or past the deadline).
    Cancelled,
}

/// One replica, as `GET /shards` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaView {
    /// The shard.
    pub shard: u32,
    /// The replica.
    pub replica: u32,
    /// Its URL.
    pub url: String,
    /// Its worker.
    pub worker: String,
    /// Its attempt.
    pub attempt: u64,
    /// Whether it receives requests.
    pub ready: bool,
    /// Requests in flight.
    pub outstanding: u32,
    /// Recent p95 latency, in milliseconds.
    pub p95_ms: Option<f64>,
}

impl LeafTable {
    /// Returns an empty table for `shards` shards of `replicas` replicas.
    pub fn new(shards: u32, replicas: u32, rule: BalanceRule) -> Self {
        let shards = (0..shards)
            .map(|_| Shard {
                replicas: BTreeMap::new(),
                balancer: Balancer::new(rule),
            })
            .collect();
        Self {
            replicas_per_shard: replicas,
            shards,
        }
    }

    /// Returns N.
    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// Records a leaf's registration (its heartbeat).
    pub fn register(
        &mut self,
        now: Instant,
        leaf: &Registration,
    ) -> Result<(), RegistrationRefused> {
        let replicas = self.replicas_per_shard;
        let shard_count = self.shard_count();
        let Some(shard) = self.shards.get_mut(leaf.shard as usize) else {
            return Err(out_of_range(leaf, shard_count, replicas));
        };
        if leaf.replica >= replicas {
            return Err(out_of_range(leaf, shard_count, replicas));
        }
        let other_here = shard.replicas.iter().find(|(index, replica)| {
            **index != leaf.replica && replica.worker == leaf.worker && is_live(replica, now)
        });
        if let Some((other, _)) = other_here {
            return Err(RegistrationRefused::SameWorker {
                shard: leaf.shard,
                worker: leaf.worker.clone(),
                other: *other,
            });
        }
        match shard.replicas.get_mut(&leaf.replica) {
            Some(known) if known.attempt > leaf.attempt => Err(RegistrationRefused::Superseded {
                shard: leaf.shard,
                replica: leaf.replica,
                attempt: leaf.attempt,
                newer: known.attempt,
            }),
            Some(known) if known.attempt == leaf.attempt => {
                known.last_seen = now;
                known.failed = false;
                Ok(())
            }
            _ => {
                shard.replicas.insert(
                    leaf.replica,
                    Replica {
                        url: leaf.url.clone(),
                        worker: leaf.worker.clone(),
                        attempt: leaf.attempt,
                        last_seen: now,
                        failed: false,
                        outstanding: 0,
                        latency: RecentLatency::default(),
                    },
                );
                tracing::info!(shard = leaf.shard, replica = leaf.replica, worker = %leaf.worker, url = %leaf.url, "leaf registered");
                Ok(())
            }
        }
    }

    /// Picks a ready replica of `shard` other than `tried`, and counts the request in
    /// flight; `None` when there is none.
    pub fn pick(
        &mut self,
        now: Instant,
        shard: u32,
        tried: &[ReplicaIndex],
        key: Option<&str>,
    ) -> Option<Pick> {
        let state = self.shards.get_mut(shard as usize)?;
        let candidates: Vec<Candidate> = state
            .replicas
            .iter()
            .filter(|(index, replica)| is_ready(replica, now) && !tried.contains(index))
            .map(|(index, replica)| Candidate {
                replica: *index,
                outstanding: replica.outstanding,
            })
            .collect();
        let chosen = state.balancer.pick(&candidates, key)?;
        let replica = state.replicas.get_mut(&chosen)?;
        replica.outstanding += 1;
        Some(Pick {
            replica: chosen,
            url: replica.url.clone(),
        })
    }

    /// Records the end of a request to `url` (the replica may have been replaced since).
    pub fn finish(&mut self, shard: u32, replica: ReplicaIndex, url: &str, outcome: Outcome) {
        let Some(state) = self.shards.get_mut(shard as usize) else {
            return;
        };
        let Some(known) = state.replicas.get_mut(&replica) else {
            return;
        };
        if known.url != url {
            return;
        }
        known.outstanding = known.outstanding.saturating_sub(1);
        match outcome {
            Outcome::Answered(latency) => known.latency.record(latency.as_secs_f64()),
            Outcome::Failed => known.failed = true,
            Outcome::Cancelled => {}
        }
    }

    /// Returns how long to wait for `shard` before hedging.
    pub fn hedge_delay(&self, shard: u32, policy: &HedgePolicy) -> Duration {
        let Some(state) = self.shards.get(shard as usize) else {
            return policy.default_delay;
        };
        policy.delay(state.replicas.values().map(|replica| &replica.latency))
    }

    /// Returns the number of ready replicas of each shard.
    pub fn ready_counts(&self, now: Instant) -> Vec<usize> {
        self.shards
            .iter()
            .map(|shard| shard.replicas.values().filter(|r| is_ready(r, now)).count())
            .collect()
    }

    /// Returns every known replica, in shard and replica order.
    pub fn view(&self, now: Instant) -> Vec<ReplicaView> {
        let mut view = Vec::new();
        for (shard, state) in self.shards.iter().enumerate() {
            for (index, replica) in &state.replicas {
                view.push(ReplicaView {
                    shard: shard as u32,
                    replica: *index,
                    url: replica.url.clone(),
                    worker: replica.worker.clone(),
                    attempt: replica.attempt,
                    ready: is_ready(replica, now),
                    outstanding: replica.outstanding,
                    p95_ms: replica.latency.quantile(0.95).map(|s| s * 1000.0),
                });
            }
        }
        view
    }
}

fn out_of_range(leaf: &Registration, shards: u32, replicas: u32) -> RegistrationRefused {
    RegistrationRefused::OutOfRange {
        shard: leaf.shard,
        replica: leaf.replica,
        shards,
        replicas,
    }
}

fn is_live(replica: &Replica, now: Instant) -> bool {
    now.saturating_duration_since(replica.last_seen) < REPLICA_SILENT_AFTER
}

fn is_ready(replica: &Replica, now: Instant) -> bool {
    is_live(replica, now) && !replica.failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(shard: u32, replica: u32, worker: &str, attempt: u64) -> Registration {
        Registration {
            shard,
            replica,
            url: format!("http://{worker}/{shard}/{replica}/{attempt}"),
            worker: worker.to_owned(),
            attempt,
        }
    }

    #[test]
    fn a_failed_replica_is_skipped_until_it_registers_again() {
        let now = Instant::now();
        let mut table = LeafTable::new(1, 2, BalanceRule::RoundRobin);
        table.register(now, &leaf(0, 0, "w1", 1)).unwrap();
        table.register(now, &leaf(0, 1, "w2", 2)).unwrap();
        let first = table.pick(now, 0, &[], None).unwrap();
        table.finish(0, first.replica, &first.url, Outcome::Failed);
        for _ in 0..4 {
            let pick = table.pick(now, 0, &[], None).unwrap();
            assert_ne!(pick.replica, first.replica);
            table.finish(0, pick.replica, &pick.url, Outcome::Cancelled);
        }
        let worker = if first.replica == 0 { "w1" } else { "w2" };
        let attempt = if first.replica == 0 { 1 } else { 2 };
        table
            .register(now, &leaf(0, first.replica, worker, attempt))
            .unwrap();
        assert_eq!(table.ready_counts(now), [2]);
    }

    #[test]
    fn a_silent_replica_receives_nothing() {
        let start = Instant::now();
        let mut table = LeafTable::new(1, 1, BalanceRule::RoundRobin);
        table.register(start, &leaf(0, 0, "w1", 1)).unwrap();
        let later = start + REPLICA_SILENT_AFTER;
        assert_eq!(table.pick(later, 0, &[], None), None);
    }

    #[test]
    fn two_replicas_of_a_shard_on_one_worker_are_refused() {
        let now = Instant::now();
        let mut table = LeafTable::new(2, 2, BalanceRule::RoundRobin);
        table.register(now, &leaf(0, 0, "w1", 1)).unwrap();
        let refused = table.register(now, &leaf(0, 1, "w1", 2)).unwrap_err();
        assert!(matches!(
            refused,
            RegistrationRefused::SameWorker { other: 0, .. }
        ));
        // Another shard on the same worker is fine.
        table.register(now, &leaf(1, 1, "w1", 3)).unwrap();
    }

    #[test]
    fn a_replaced_attempt_cannot_come_back() {
        let now = Instant::now();
        let mut table = LeafTable::new(1, 1, BalanceRule::RoundRobin);
        table.register(now, &leaf(0, 0, "w1", 1)).unwrap();
        table.register(now, &leaf(0, 0, "w2", 5)).unwrap();
        let refused = table.register(now, &leaf(0, 0, "w1", 1)).unwrap_err();
        assert!(matches!(
            refused,
            RegistrationRefused::Superseded { newer: 5, .. }
        ));
        assert!(table.register(now, &leaf(3, 0, "w1", 1)).is_err());
    }

    #[test]
    fn outstanding_requests_are_counted_in_and_out() {
        let now = Instant::now();
        let mut table = LeafTable::new(1, 2, BalanceRule::LeastOutstanding);
        table.register(now, &leaf(0, 0, "w1", 1)).unwrap();
        table.register(now, &leaf(0, 1, "w2", 2)).unwrap();
        let first = table.pick(now, 0, &[], None).unwrap();
        let second = table.pick(now, 0, &[], None).unwrap();
        assert_ne!(first.replica, second.replica, "the busy one is avoided");
        table.finish(
            0,
            first.replica,
            &first.url,
            Outcome::Answered(Duration::from_millis(1)),
        );
        let third = table.pick(now, 0, &[], None).unwrap();
        assert_eq!(third.replica, first.replica);
    }
}
