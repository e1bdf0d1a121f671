//! The front's table of replicas: where each replica serves, whether it receives
//! requests, and its requests in flight.
//!
//! Decisions only, no I/O: time comes in as `now`. A replica receives requests while it
//! has registered within [`REPLICA_SILENT_AFTER`] and no request to it has failed at
//! the connection level since its last registration (a killed replica refuses
//! connections at once, so the first failure takes it out; its next registration, if
//! it lives, brings it back). A replica silent for longer is dropped from the table:
//! its worker died or its attempt was stopped, and the coordinator places it again,
//! as a new attempt that registers anew.
//!
//! The choice is the least outstanding replica (ties in turn), which also steers away
//! from a slow one without measuring it; a retry leaves out the replicas already
//! tried. An older attempt of a replica that a newer attempt replaced is refused.
use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::REPLICA_SILENT_AFTER;
use crate::wire::Registration;

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationRefused {
    /// The replica number is out of range.
    #[error("replica {replica} is not part of this front ({replicas} replicas)")]
    OutOfRange {
        /// The replica.
        replica: u32,
        /// R.
        replicas: u32,
    },
    /// A newer attempt holds this replica.
    #[error("attempt {attempt} of replica {replica} was replaced by attempt {newer}")]
    Superseded {
        /// The replica.
        replica: u32,
        /// The refused attempt.
        attempt: u64,
        /// The attempt holding the replica.
        newer: u64,
    },
}

#[derive(Debug)]
struct Replica {
    url: String,
    worker: String,
    attempt: u64,
    last_seen: Instant,
    /// Set when a request failed at the connection level after the last registration.
    down: bool,
    outstanding: u32,
}

/// A replica chosen for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    /// The replica.
    pub replica: u32,
    /// Its base URL.
    pub url: String,
}

/// How a forwarded request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The replica answered (whatever the status).
    Answered,
    /// The connection failed: refused, reset, or no answer in time.
    Unreachable,
}

/// One replica, as `GET /replicas` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaView {
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
}

/// The table of every replica.
#[derive(Debug)]
pub struct ReplicaTable {
    replicas_wanted: u32,
    replicas: BTreeMap<u32, Replica>,
    turn: u64,
}

impl ReplicaTable {
    /// Returns an empty table for `replicas` replicas.
    pub fn new(replicas: u32) -> Self {
        Self {
            replicas_wanted: replicas,
            replicas: BTreeMap::new(),
            turn: 0,
        }
    }

    /// Records a replica's registration (its heartbeat).
    pub fn register(
        &mut self,
        now: Instant,
        registration: &Registration,
    ) -> Result<(), RegistrationRefused> {
        if registration.replica >= self.replicas_wanted {
            return Err(RegistrationRefused::OutOfRange {
                replica: registration.replica,
                replicas: self.replicas_wanted,
            });
        }
        match self.replicas.get_mut(&registration.replica) {
            Some(known) if known.attempt > registration.attempt => {
                Err(RegistrationRefused::Superseded {
                    replica: registration.replica,
                    attempt: registration.attempt,
                    newer: known.attempt,
                })
            }
            Some(known) if known.attempt == registration.attempt => {
                known.last_seen = now;
                known.down = false;
                Ok(())
            }
            _ => {
                tracing::info!(
                    replica = registration.replica, worker = %registration.worker,
                    url = %registration.url, attempt = registration.attempt,
                    "model replica registered"
                );
                self.replicas.insert(
                    registration.replica,
                    Replica {
                        url: registration.url.clone(),
                        worker: registration.worker.clone(),
                        attempt: registration.attempt,
                        last_seen: now,
                        down: false,
                        outstanding: 0,
                    },
                );
                Ok(())
            }
        }
    }

    /// Picks the ready replica with the fewest requests in flight, other than `tried`
    /// (ties in turn), and counts the request in flight; `None` when there is none.
    pub fn pick(&mut self, now: Instant, tried: &[u32]) -> Option<Pick> {
        let candidates: Vec<(u32, u32)> = self
            .replicas
            .iter()
            .filter(|(index, replica)| is_ready(replica, now) && !tried.contains(index))
            .map(|(index, replica)| (*index, replica.outstanding))
            .collect();
        let least = candidates
            .iter()
            .map(|(_, outstanding)| *outstanding)
            .min()?;
        let tied: Vec<u32> = candidates
            .iter()
            .filter(|(_, outstanding)| *outstanding == least)
            .map(|(index, _)| *index)
            .collect();
        let chosen = tied[(self.turn % tied.len() as u64) as usize];
        self.turn = self.turn.wrapping_add(1);
        let replica = self.replicas.get_mut(&chosen)?;
        replica.outstanding += 1;
        Some(Pick {
            replica: chosen,
            url: replica.url.clone(),
        })
    }

    /// Records the end of a request to `pick` (the replica may have been replaced since:
    /// then nothing changes).
    pub fn finish(&mut self, pick: &Pick, outcome: Outcome) {
        let Some(known) = self.replicas.get_mut(&pick.replica) else {
            return;
        };
        if known.url != pick.url {
            return;
        }
        known.outstanding = known.outstanding.saturating_sub(1);
        if outcome == Outcome::Unreachable {
            known.down = true;
        }
    }

    /// Drops the replicas silent for [`REPLICA_SILENT_AFTER`]; returns them.
    pub fn drop_silent(&mut self, now: Instant) -> Vec<ReplicaView> {
        let silent: Vec<u32> = self
            .replicas
            .iter()
            .filter(|(_, replica)| !is_live(replica, now))
            .map(|(index, _)| *index)
            .collect();
        let view = self.view(now);
        for index in &silent {
            self.replicas.remove(index);
        }
        view.into_iter()
            .filter(|replica| silent.contains(&replica.replica))
            .collect()
    }

    /// Returns the number of replicas receiving requests.
    pub fn ready_count(&self, now: Instant) -> usize {
        self.replicas
            .values()
            .filter(|replica| is_ready(replica, now))
            .count()
    }

    /// Returns every known replica, in order.
    pub fn view(&self, now: Instant) -> Vec<ReplicaView> {
        self.replicas
            .iter()
            .map(|(index, replica)| ReplicaView {
                replica: *index,
                url: replica.url.clone(),
                worker: replica.worker.clone(),
                attempt: replica.attempt,
                ready: is_ready(replica, now),
                outstanding: replica.outstanding,
            })
            .collect()
    }
}

fn is_live(replica: &Replica, now: Instant) -> bool {
    now.saturating_duration_since(replica.last_seen) < REPLICA_SILENT_AFTER
}

fn is_ready(replica: &Replica, now: Instant) -> bool {
    is_live(replica, now) && !replica.down
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn replica(replica: u32, worker: &str, attempt: u64) -> Registration {
        Registration {
            replica,
            url: format!("http://{worker}/{replica}/{attempt}"),
            worker: worker.to_owned(),
            attempt,
        }
    }

    fn two_replicas(now: Instant) -> ReplicaTable {
        let mut table = ReplicaTable::new(2);
        table.register(now, &replica(0, "w1", 1)).unwrap();
        table.register(now, &replica(1, "w2", 2)).unwrap();
        table
    }

    #[test]
    fn the_replica_with_the_fewest_requests_in_flight_is_chosen() {
        let now = Instant::now();
        let mut table = two_replicas(now);
        let first = table.pick(now, &[]).unwrap();
        let second = table.pick(now, &[]).unwrap();
        assert_ne!(first.replica, second.replica, "the busy one is avoided");
        let third = table.pick(now, &[]).unwrap();
        // Both hold one: either; then the other one holds fewer.
        let fourth = table.pick(now, &[]).unwrap();
        assert_ne!(third.replica, fourth.replica);
        table.finish(&first, Outcome::Answered);
        table.finish(&third, Outcome::Answered);
        // The replica of `first` and `third` is now idle while the other holds two.
        let fifth = table.pick(now, &[]).unwrap();
        if first.replica == third.replica {
            assert_eq!(fifth.replica, first.replica);
        }
        let view = table.view(now);
        let in_flight: u32 = view.iter().map(|replica| replica.outstanding).sum();
        assert_eq!(in_flight, 3, "{view:?}");
    }

    #[test]
    fn ties_go_in_turn() {
        let now = Instant::now();
        let mut table = two_replicas(now);
        let mut chosen = Vec::new();
        for _ in 0..4 {
            let pick = table.pick(now, &[]).unwrap();
            table.finish(&pick, Outcome::Answered);
            chosen.push(pick.replica);
        }
        assert_eq!(chosen, [0, 1, 0, 1]);
    }

    #[test]
    fn a_retry_goes_to_another_replica_and_the_failed_one_rests_until_it_registers() {
        let now = Instant::now();
        let mut table = two_replicas(now);
        let first = table.pick(now, &[]).unwrap();
        table.finish(&first, Outcome::Unreachable);
        let retry = table.pick(now, &[first.replica]).unwrap();
        assert_ne!(retry.replica, first.replica);
        table.finish(&retry, Outcome::Answered);
        assert_eq!(
            table.pick(now, &[retry.replica]),
            None,
            "no third replica to try"
        );
        for _ in 0..4 {
            let pick = table.pick(now, &[]).unwrap();
            assert_ne!(
                pick.replica, first.replica,
                "a down replica receives nothing"
            );
            table.finish(&pick, Outcome::Answered);
        }
        let worker = if first.replica == 0 { "w1" } else { "w2" };
        let attempt = u64::from(first.replica) + 1;
        table
            .register(now, &replica(first.replica, worker, attempt))
            .unwrap();
        assert_eq!(table.ready_count(now), 2);
    }

    #[test]
    fn a_silent_replica_is_dropped() {
        let start = Instant::now();
        let mut table = two_replicas(start);
        let later = start + REPLICA_SILENT_AFTER - Duration::from_millis(1);
        table.register(later, &replica(1, "w2", 2)).unwrap();
        assert!(table.drop_silent(later).is_empty());
        let silent = start + REPLICA_SILENT_AFTER;
        assert_eq!(table.ready_count(silent), 1);
        let dropped = table.drop_silent(silent);
        assert_eq!(dropped.len(), 1);
        assert_eq!((dropped[0].replica, dropped[0].worker.as_str()), (0, "w1"));
        assert_eq!(table.view(silent).len(), 1);
        for _ in 0..3 {
            assert_eq!(table.pick(silent, &[]).unwrap().replica, 1);
        }
        // Placed again elsewhere, it comes back as a new attempt.
        table.register(silent, &replica(0, "w2", 7)).unwrap();
        assert_eq!(table.ready_count(silent), 2);
    }

    #[test]
    fn a_replaced_attempt_cannot_come_back_and_numbers_are_checked() {
        let now = Instant::now();
        let mut table = two_replicas(now);
        table.register(now, &replica(0, "w2", 5)).unwrap();
        let refused = table.register(now, &replica(0, "w1", 1)).unwrap_err();
        assert!(matches!(
            refused,
            RegistrationRefused::Superseded { newer: 5, .. }
        ));
        assert!(matches!(
            table.register(now, &replica(2, "w1", 9)).unwrap_err(),
            RegistrationRefused::OutOfRange { replicas: 2, .. }
        ));
    }

    #[test]
    fn a_request_to_a_replaced_replica_changes_nothing() {
        let now = Instant::now();
        let mut table = ReplicaTable::new(1);
        table.register(now, &replica(0, "w1", 1)).unwrap();
        let old = table.pick(now, &[]).unwrap();
        table.register(now, &replica(0, "w2", 2)).unwrap();
        table.finish(&old, Outcome::Unreachable);
        assert_eq!(table.ready_count(now), 1);
    }
}
