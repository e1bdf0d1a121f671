//! Long-polls of attempts started early (slow start) for their inputs: `WatchInputs`.
//!
//! A reducer granted before every map succeeded asks for the outputs committed after
//! the inputs version it knows. The question is answered at once when the job's version
//! is already newer (or the attempt lost its lease); otherwise it is parked here and
//! answered by the first batch that changes the version, or empty-handed at its
//! deadline. Like every reply, an answer leaves only once its batch is durable: a
//! reducer never fetches an output whose commit could still be lost with the batch.
//! Only the worker holding the attempt's lease is answered; any other caller is told
//! the lease is lost, and learns nothing of the job's outputs.

use crate::actor::DeferredReply;
use essaim_core::{AttemptId, Scheduler, UpstreamInputs, WorkerId};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The answer to one `WatchInputs`: `None` when the attempt no longer holds its lease.
pub type WatchAnswer = Option<UpstreamInputs>;

/// One parked question.
struct ParkedWatch {
    worker: WorkerId,
    attempt: AttemptId,
    known_version: u64,
    until: Instant,
    reply: oneshot::Sender<WatchAnswer>,
}

/// The parked questions, owned by the actor.
#[derive(Default)]
pub(crate) struct ParkedWatches {
    parked: Vec<ParkedWatch>,
}

impl ParkedWatches {
    /// Answers now when there is something new (or the lease is gone), else parks the
    /// question until `until`.
    pub(crate) fn ask(
        &mut self,
        scheduler: &Scheduler,
        worker: WorkerId,
        attempt: AttemptId,
        known_version: u64,
        until: Instant,
        reply: oneshot::Sender<WatchAnswer>,
        replies: &mut Vec<DeferredReply>,
    ) {
        let held = scheduler.holds(worker, attempt);
        if !held || scheduler.inputs_news(attempt, known_version) || Instant::now() >= until {
            let answer = held.then(|| scheduler.upstream_inputs(attempt)).flatten();
            replies.push(Box::new(move || {
                let _ = reply.send(answer);
            }));
            return;
        }
        self.parked.push(ParkedWatch {
            worker,
            attempt,
            known_version,
            until,
            reply,
        });
    }

    /// Answers the parked questions that have news, whose deadline passed, or whose
    /// caller hung up (those get nothing).
    pub(crate) fn serve(&mut self, scheduler: &Scheduler, replies: &mut Vec<DeferredReply>) {
        if self.parked.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut still_parked = Vec::with_capacity(self.parked.len());
        for parked in std::mem::take(&mut self.parked) {
            if parked.reply.is_closed() {
                continue;
            }
            let held = scheduler.holds(parked.worker, parked.attempt);
            if !held
                || scheduler.inputs_news(parked.attempt, parked.known_version)
                || now >= parked.until
            {
                let answer = held
                    .then(|| scheduler.upstream_inputs(parked.attempt))
                    .flatten();
                let reply = parked.reply;
                replies.push(Box::new(move || {
                    let _ = reply.send(answer);
                }));
                continue;
            }
            still_parked.push(parked);
        }
        self.parked = still_parked;
    }

    /// Returns the earliest deadline of a parked question.
    pub(crate) fn earliest_deadline(&self) -> Option<Instant> {
        self.parked.iter().map(|parked| parked.until).min()
    }

    /// Answers every parked question with what is known now (at shutdown).
    pub(crate) fn drain(&mut self, scheduler: &Scheduler) {
        for parked in self.parked.drain(..) {
            let _ = parked.reply.send(scheduler.upstream_inputs(parked.attempt));
        }
    }
}
