//! The simulated workers and the network between them and the coordinator: pulls,
//! attempts that finish (or fail, or lose their inputs) after their duration, reports
//! that arrive late, twice or never, and heartbeats.

use super::{KINDS, Message, Running, World, served_by, worker_labels};
use crate::ids::{AttemptId, WorkerId};
use crate::model::{ReportedResult, TaskFailure, TaskOutput};
use crate::scheduler::WorkerInfo;
use std::collections::BTreeMap as Known;
use std::collections::BTreeMap;

impl World {
    pub(super) fn register(&mut self, index: usize) {
        let worker = &self.workers[index];
        let info = WorkerInfo {
            name: format!("w{index}"),
            slots: worker.slots,
            kinds: KINDS.iter().map(|k| k.to_string()).collect(),
            file_server_url: String::new(),
            // On odd seeds, `command` tasks are long-running: spread over the workers
            // and handed back as workers come and go (they still end, here).
            long_running_kinds: KINDS
                .iter()
                .filter(|kind| self.long_running(kind))
                .map(|kind| kind.to_string())
                .collect(),
            labels: worker_labels(index),
            ..Default::default()
        };
        let id = self.scheduler.register_worker(self.now, info);
        self.workers[index].id = Some(id);
        self.workers[index].newest_epoch = self.workers[index].newest_epoch.max(self.epoch);
        self.log(format!("worker #{index} registered as {id}"));
    }

    pub(super) fn pull(&mut self, index: usize, faults: bool) {
        let worker = &self.workers[index];
        let Some(worker_id) = worker.id else { return };
        if !worker.alive || worker.paused_until > self.now {
            return;
        }
        let free = worker.free_slots();
        let max = if faults && self.rng.chance(1, 10) {
            free + 2
        } else {
            free
        };
        let reply = self.scheduler.pull(self.now, worker_id, max);
        for assignment in &reply.assignments {
            self.granted.insert(assignment.attempt, assignment.task);
            self.check_inputs(assignment);
            self.check_placement(index, assignment.task);
        }
        if reply.reregister {
            self.drop_and_reregister(index);
            return;
        }
        if faults && !reply.assignments.is_empty() && self.rng.chance(1, 20) {
            self.log(format!(
                "pull reply to worker #{index} lost ({} grants)",
                reply.assignments.len()
            ));
            return;
        }
        for assignment in reply.assignments {
            let behaviour = self.behaviours[&assignment.task];
            let jitter = self.rng.up_to(behaviour.duration_ms / 2 + 1);
            // Some attempts straggle, to exercise speculation.
            let straggle = if self.rng.chance(1, 15) {
                behaviour.duration_ms * 6
            } else {
                0
            };
            self.log(format!(
                "worker #{index} starts {} as {}{}",
                assignment.task,
                assignment.attempt,
                if assignment.speculative {
                    " (speculative)"
                } else {
                    ""
                }
            ));
            let inputs = assignment
                .inputs
                .iter()
                .map(|input| (input.task_index, input.attempt, served_by(&input.file.url)))
                .collect();
            let long_running = self.long_running(&assignment.kind);
            self.workers[index].running.push(Running {
                attempt: assignment.attempt,
                task: assignment.task,
                finishes_at: self.now + behaviour.duration_ms + jitter + straggle,
                inputs,
                long_running,
                inputs_complete: assignment.inputs_complete,
            });
        }
    }

    pub(super) fn finish_due_attempts(&mut self, faults: bool) {
        for index in 0..self.workers.len() {
            let worker = &mut self.workers[index];
            let Some(worker_id) = worker.id else { continue };
            if !worker.alive || worker.paused_until > self.now {
                continue;
            }
            let now = self.now;
            let (done, still): (Vec<Running>, Vec<Running>) = std::mem::take(&mut worker.running)
                .into_iter()
                .partition(|r| r.finishes_at <= now);
            worker.running = still;
            for finished in done {
                let (finished, mut lost_inputs) = if finished.inputs_complete {
                    (finished, Vec::new())
                } else {
                    match self.fetch_round(finished, faults) {
                        FetchRound::Wait(running) => {
                            self.workers[index].running.push(running);
                            continue;
                        }
                        FetchRound::Stop => continue,
                        FetchRound::Ready(running, lost_inputs) => (running, lost_inputs),
                    }
                };
                let behaviour = self.behaviours[&finished.task];
                let failed = behaviour.poison || self.rng.chance(behaviour.flaky_percent, 100);
                // Inputs served by a crashed worker are gone; now and then a healthy one
                // is reported corrupt.
                for (upstream, _, server) in &finished.inputs {
                    let gone = self.crashed_ids.contains(&WorkerId(*server));
                    if gone || (faults && self.rng.chance(1, 40)) {
                        lost_inputs.push(*upstream);
                    }
                }
                let outcome = if !lost_inputs.is_empty() {
                    self.log(format!(
                        "{} cannot read the outputs of tasks {lost_inputs:?}",
                        finished.attempt
                    ));
                    Err(TaskFailure {
                        lost_inputs,
                        ..TaskFailure::retryable("inputs lost")
                    })
                } else if failed {
                    let mut failure =
                        TaskFailure::retryable(format!("task {} failed", finished.task));
                    failure.exit_code = Some(1);
                    Err(failure)
                } else {
                    let has_next_stage = self.scheduler.job(finished.task.job).is_some_and(|job| {
                        job.spec.tasks[finished.task.index as usize].stage + 1 < job.stage_count()
                    });
                    Ok(TaskOutput {
                        inline: finished.task.index.to_le_bytes().to_vec(),
                        file: has_next_stage.then(|| crate::model::FileRef {
                            url: format!("sim://{}/{}", worker_id.0, finished.attempt.0),
                            size_bytes: 1,
                        }),
                        counters: BTreeMap::from([("records".to_string(), 1)]),
                    })
                };
                let result = ReportedResult {
                    attempt: finished.attempt,
                    outcome,
                    duration_ms: behaviour.duration_ms,
                };
                let delay = if faults {
                    self.rng.up_to(400)
                } else {
                    self.rng.up_to(30)
                };
                let copies = if faults && self.rng.chance(1, 20) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    self.network.push((
                        self.now + delay,
                        Message::Report {
                            worker: worker_id,
                            result: result.clone(),
                        },
                    ));
                }
            }
        }
    }

    pub(super) fn deliver_messages(&mut self, faults: bool) {
        let mut due = Vec::new();
        let mut index = 0;
        while index < self.network.len() {
            if self.network[index].0 <= self.now {
                due.push(self.network.swap_remove(index).1);
            } else {
                index += 1;
            }
        }
        // Deliver in a random order: the network reorders.
        while !due.is_empty() {
            let pick = if faults {
                self.rng.up_to(due.len() as u64 - 1) as usize
            } else {
                0
            };
            let Message::Report { worker, result } = due.swap_remove(pick);
            let attempt = result.attempt;
            let mut out = Vec::new();
            let reply = self
                .scheduler
                .report(self.now, worker, vec![result], &mut out);
            self.report.rejected += u64::from(reply.rejected);
            self.log(format!(
                "report of {attempt} from {worker}: rejected={}",
                reply.rejected
            ));
            self.absorb(out);
        }
    }

    pub(super) fn heartbeat(&mut self, index: usize) {
        let worker = &self.workers[index];
        let Some(worker_id) = worker.id else { return };
        if !worker.alive || worker.paused_until > self.now {
            return;
        }
        let held: Vec<AttemptId> = worker.running.iter().map(|r| r.attempt).collect();
        let reply = self
            .scheduler
            .heartbeat(self.now, worker_id, &held, false, held.len() as u32);
        if reply.reregister {
            self.drop_and_reregister(index);
            return;
        }
        for attempt in &reply.cancel {
            self.failed_or_stopped.insert(*attempt);
        }
        if !reply.cancel.is_empty() {
            self.log(format!("worker #{index} told to stop {:?}", reply.cancel));
        }
        self.workers[index]
            .running
            .retain(|r| !reply.cancel.contains(&r.attempt));
    }
}

/// What an attempt started early does when it asks for its inputs.
enum FetchRound {
    /// Some are still to come: it asks again later.
    Wait(Running),
    /// Its lease is gone: it stops without a report.
    Stop,
    /// Its inputs are complete and fetched (it finishes), or some could not be fetched
    /// (it reports them lost).
    Ready(Running, Vec<u32>),
}

impl World {
    /// One round of an attempt started early: it asks the scheduler for its inputs (as a
    /// reducer does over `WatchInputs`), fetches those new or committed again since its
    /// last round (an output served by a crashed worker cannot be fetched), forgets those
    /// lost since, and finishes once they are complete.
    fn fetch_round(&mut self, mut running: Running, faults: bool) -> FetchRound {
        let Some(view) = self.scheduler.upstream_inputs(running.attempt) else {
            self.log(format!(
                "{} no longer holds its lease: stops",
                running.attempt
            ));
            return FetchRound::Stop;
        };
        let known: Known<u32, AttemptId> = running
            .inputs
            .iter()
            .map(|(index, attempt, _)| (*index, *attempt))
            .collect();
        let mut fetched = Vec::new();
        let mut lost_inputs = Vec::new();
        for output in &view.outputs {
            let server = served_by(&output.file.url);
            fetched.push((output.task_index, output.attempt, server));
            let previous = known.get(&output.task_index);
            if previous == Some(&output.attempt) {
                continue;
            }
            if previous.is_some() {
                self.report.inputs_refreshed += 1;
            }
            let gone = self.crashed_ids.contains(&WorkerId(server));
            if gone || (faults && self.rng.chance(1, 40)) {
                lost_inputs.push(output.task_index);
            }
        }
        running.inputs = fetched;
        if !lost_inputs.is_empty() {
            self.log(format!(
                "{} cannot fetch the outputs of tasks {lost_inputs:?}",
                running.attempt
            ));
            running.inputs.clear();
            return FetchRound::Ready(running, lost_inputs);
        }
        if !view.complete {
            running.finishes_at = self.now + 10 + self.rng.up_to(60);
            return FetchRound::Wait(running);
        }
        let given: Vec<(u32, AttemptId)> = running
            .inputs
            .iter()
            .map(|(index, attempt, _)| (*index, *attempt))
            .collect();
        self.check_inputs_of(running.task, &given, true);
        self.log(format!(
            "{} has every input (version {})",
            running.attempt, view.version
        ));
        // Everything is fetched: nothing it reads can be lost any more.
        running.inputs.clear();
        running.inputs_complete = true;
        FetchRound::Ready(running, Vec::new())
    }
}
