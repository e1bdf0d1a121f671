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

/// One question: what `worker` learns for `attempt` beyond `known_version`, by `until`.
pub(crate) struct InputsQuestion {
    pub(crate) worker: WorkerId,
    pub(crate) attempt: AttemptId,
    pub(crate) known_version: u64,
    pub(crate) until: Instant,
}

impl InputsQuestion {
    /// Returns the answer when it is due at `now`: the worker no longer holds the
    /// attempt (`None`: lease lost), there is news, or the deadline passed.
    fn answer_if_due(&self, scheduler: &Scheduler, now: Instant) -> Option<WatchAnswer> {
        let held = scheduler.holds(self.worker, self.attempt);
        let due =
            !held || scheduler.inputs_news(self.attempt, self.known_version) || now >= self.until;
        due.then(|| {
            held.then(|| scheduler.upstream_inputs(self.attempt))
                .flatten()
        })
    }
}

/// One parked question.
struct ParkedWatch {
    question: InputsQuestion,
    reply: oneshot::Sender<WatchAnswer>,
}

/// The parked questions, owned by the actor.
#[derive(Default)]
pub(crate) struct ParkedWatches {
    parked: Vec<ParkedWatch>,
}

impl ParkedWatches {
    /// Answers now when there is something new (or the lease is gone), else parks the
    /// question until its deadline.
    pub(crate) fn ask(
        &mut self,
        scheduler: &Scheduler,
        question: InputsQuestion,
        reply: oneshot::Sender<WatchAnswer>,
        replies: &mut Vec<DeferredReply>,
    ) {
        match question.answer_if_due(scheduler, Instant::now()) {
            Some(answer) => replies.push(Box::new(move || {
                let _ = reply.send(answer);
            })),
            None => self.parked.push(ParkedWatch { question, reply }),
        }
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
            match parked.question.answer_if_due(scheduler, now) {
                Some(answer) => {
                    let reply = parked.reply;
                    replies.push(Box::new(move || {
                        let _ = reply.send(answer);
                    }));
                }
                None => still_parked.push(parked),
            }
        }
        self.parked = still_parked;
    }

    /// Returns the earliest deadline of a parked question.
    pub(crate) fn earliest_deadline(&self) -> Option<Instant> {
        self.parked.iter().map(|parked| parked.question.until).min()
    }

    /// Answers every parked question with what is known now (at shutdown).
    pub(crate) fn drain(&mut self, scheduler: &Scheduler) {
        for parked in self.parked.drain(..) {
            let _ = parked
                .reply
                .send(scheduler.upstream_inputs(parked.question.attempt));
        }
    }
}
