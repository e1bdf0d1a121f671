//! The shuffle of a reducer started early (slow start): it fetches in rounds.
//!
//! The grant carries the map outputs committed so far. The reducer fetches them, asks the
//! coordinator for the outputs committed since (`WatchInputs`, a long poll), fetches
//! those, and so on until the coordinator says the map stage is complete; then the merge
//! starts, as for a reducer granted late.
//!
//! A map output is known by its upstream task and the attempt that committed it. When
//! an answer names a task with another attempt than the one fetched, that output was lost
//! and computed again: the segment fetched from the lost copy is forgotten and the new
//! one fetched. A task missing from an answer lost its output and runs again: its segment
//! is forgotten until the new one comes. So when the stage is complete, the reducer holds
//! exactly one segment of each committed output, the one the coordinator committed, as a
//! reducer granted late would. (Forgotten segments stay on disk until the shuffle
//! directory is removed: a batched fetch writes several segments into one file.)
//!
//! A fetch that fails in a round fails the task with its lost upstreams listed, as
//! without slow start. A question that fails is asked again with backoff for about a
//! minute (a coordinator failover takes seconds); an attempt the coordinator no longer
//! knows stops.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use essaim_core::{AttemptId, UpstreamOutput};
use essaim_worker::InputsWatch;
use essaim_worker::file_access::FileCredential;
use tokio_util::sync::CancellationToken;

use super::{ShuffleOutcome, ShuffleSettings, fetch_partition};
use crate::counters::{self, Counters};
use crate::error::{TaskError, TaskResult};
use crate::reduce_task::FetchedSegment;

/// Questions asked in a row without an answer before the task fails.
const WATCH_TRIES: u32 = 12;

/// Wait before asking again after a failed question; doubled each time, up to
/// [`WATCH_BACKOFF_CAP`].
const WATCH_BACKOFF: Duration = Duration::from_millis(250);
const WATCH_BACKOFF_CAP: Duration = Duration::from_secs(8);

/// One fetched map output: the attempt that committed it and its segment (none when its
/// partition is empty).
#[derive(Debug)]
struct Held {
    attempt: AttemptId,
    segment: Option<FetchedSegment>,
}

/// What one round does, decided from what is held and what is committed now.
#[derive(Debug, PartialEq, Eq)]
struct RoundPlan {
    /// Upstream tasks whose held segment is forgotten: their output was lost, or lost
    /// and committed again.
    forget: Vec<u32>,
    /// Outputs to fetch: new ones, and those committed again.
    fetch: Vec<UpstreamOutput>,
}

impl RoundPlan {
    /// Returns the round that makes `held` match `committed`.
    fn new(held: &BTreeMap<u32, Held>, committed: &[UpstreamOutput]) -> Self {
        let now: BTreeMap<u32, AttemptId> = committed
            .iter()
            .map(|output| (output.task_index, output.attempt))
            .collect();
        let forget = held
            .iter()
            .filter(|(index, held)| now.get(index) != Some(&held.attempt))
            .map(|(index, _)| *index)
            .collect();
        let fetch = committed
            .iter()
            .filter(|output| {
                held.get(&output.task_index)
                    .is_none_or(|held| held.attempt != output.attempt)
            })
            .cloned()
            .collect();
        Self { forget, fetch }
    }
}

/// Where the rounds fetch to, and how.
pub struct RoundsTarget<'a> {
    /// The reducer's partition.
    pub partition: u32,
    /// The number of partitions.
    pub partitions: u32,
    /// The shuffle directory (it must exist); each round fetches into its own.
    pub dest_dir: &'a Path,
    /// What other workers' file servers ask for this job's files.
    pub credential: Option<&'a FileCredential>,
    /// How fetches are made.
    pub settings: &'a ShuffleSettings,
}

/// Fetches partition `target.partition` of every map output, starting from `granted`
/// and asking `watch` for the rest until the map stage is complete (see the module doc).
pub async fn fetch_partition_in_rounds(
    granted: &[UpstreamOutput],
    watch: &InputsWatch,
    target: RoundsTarget<'_>,
    cancel: &CancellationToken,
) -> TaskResult<ShuffleOutcome> {
    let mut held: BTreeMap<u32, Held> = BTreeMap::new();
    let mut counters = Counters::default();
    let mut committed = granted.to_vec();
    let mut version = watch.granted_version;
    let mut complete = false;
    let mut rounds = 0u64;
    loop {
        let plan = RoundPlan::new(&held, &committed);
        for index in &plan.forget {
            held.remove(index);
        }
        if !plan.fetch.is_empty() {
            let round_dir = target.dest_dir.join(format!("round-{rounds}"));
            tokio::fs::create_dir_all(&round_dir)
                .await
                .map_err(|source| TaskError::io("create directory", &round_dir, source))?;
            let outcome = fetch_partition(
                &plan.fetch,
                target.partition,
                target.partitions,
                &round_dir,
                target.credential,
                target.settings,
                cancel,
            )
            .await?;
            counters.merge(&outcome.counters);
            keep_fetched(&mut held, &plan.fetch, outcome.segments);
            rounds += 1;
        }
        if complete {
            break;
        }
        let inputs = ask_until_answered(watch, version, cancel).await?;
        tracing::debug!(
            version = inputs.version,
            outputs = inputs.outputs.len(),
            complete = inputs.complete,
            "map outputs committed so far"
        );
        version = inputs.version;
        committed = inputs.outputs;
        complete = inputs.complete;
    }
    counters.add(counters::SHUFFLE_ROUNDS, rounds);
    let segments = held.into_values().filter_map(|held| held.segment).collect();
    Ok(ShuffleOutcome { segments, counters })
}

/// Records the outputs of `fetched` as held, with the segments a round brought.
fn keep_fetched(
    held: &mut BTreeMap<u32, Held>,
    fetched: &[UpstreamOutput],
    segments: Vec<FetchedSegment>,
) {
    for output in fetched {
        let segment = None;
        held.insert(
            output.task_index,
            Held {
                attempt: output.attempt,
                segment,
            },
        );
    }
    for segment in segments {
        if let Some(entry) = held.get_mut(&segment.task_index) {
            entry.segment = Some(segment);
        }
    }
}

/// Asks `watch` for the inputs after `version`, again with backoff while questions fail.
async fn ask_until_answered(
    watch: &InputsWatch,
    version: u64,
    cancel: &CancellationToken,
) -> TaskResult<essaim_core::UpstreamInputs> {
    let mut backoff = WATCH_BACKOFF;
    let mut failures = 0u32;
    loop {
        let answer = tokio::select! {
            () = cancel.cancelled() => return Err(TaskError::Cancelled),
            answer = watch.next(version) => answer,
        };
        let error = match answer {
            Ok(Some(inputs)) => return Ok(inputs),
            // Handed back or revoked: the coordinator stops it too; nothing to report.
            Ok(None) => return Err(TaskError::Cancelled),
            Err(error) => error,
        };
        failures += 1;
        if failures >= WATCH_TRIES {
            return Err(TaskError::Shuffle(error.to_string()));
        }
        tracing::warn!(%error, failures, "failed to ask for map outputs; asking again");
        tokio::select! {
            () = cancel.cancelled() => return Err(TaskError::Cancelled),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(WATCH_BACKOFF_CAP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_core::FileRef;

    fn output(task_index: u32, attempt: u64) -> UpstreamOutput {
        UpstreamOutput {
            task_index,
            attempt: AttemptId(attempt),
            file: FileRef {
                url: format!("http://w/{task_index}/{attempt}"),
                size_bytes: 1,
            },
        }
    }

    fn held(pairs: &[(u32, u64)]) -> BTreeMap<u32, Held> {
        pairs
            .iter()
            .map(|(index, attempt)| {
                let held = Held {
                    attempt: AttemptId(*attempt),
                    segment: None,
                };
                (*index, held)
            })
            .collect()
    }

    #[test]
    fn a_round_fetches_only_outputs_committed_since() {
        let plan = RoundPlan::new(
            &held(&[(0, 10), (1, 11)]),
            &[output(0, 10), output(1, 11), output(2, 12)],
        );
        assert_eq!(plan.forget, Vec::<u32>::new());
        assert_eq!(plan.fetch, vec![output(2, 12)]);
    }

    #[test]
    fn an_output_committed_again_is_forgotten_and_fetched_anew() {
        let plan = RoundPlan::new(&held(&[(0, 10), (1, 11)]), &[output(0, 20), output(1, 11)]);
        assert_eq!(plan.forget, vec![0]);
        assert_eq!(plan.fetch, vec![output(0, 20)]);
    }

    #[test]
    fn an_output_lost_and_not_yet_recomputed_is_forgotten() {
        let plan = RoundPlan::new(&held(&[(0, 10), (1, 11)]), &[output(1, 11)]);
        assert_eq!(plan.forget, vec![0]);
        assert!(plan.fetch.is_empty());
    }

    #[test]
    fn after_a_round_the_held_outputs_are_the_committed_ones() {
        let mut holding = held(&[(0, 10), (1, 11), (3, 13)]);
        let committed = [output(0, 20), output(1, 11), output(2, 12)];
        let plan = RoundPlan::new(&holding, &committed);
        for index in &plan.forget {
            holding.remove(index);
        }
        keep_fetched(&mut holding, &plan.fetch, Vec::new());
        let now: Vec<(u32, AttemptId)> = holding.iter().map(|(i, h)| (*i, h.attempt)).collect();
        let expected: Vec<(u32, AttemptId)> = committed
            .iter()
            .map(|o| (o.task_index, o.attempt))
            .collect();
        assert_eq!(now, expected);
        assert_eq!(
            RoundPlan::new(&holding, &committed),
            RoundPlan {
                forget: vec![],
                fetch: vec![]
            }
        );
    }
}
