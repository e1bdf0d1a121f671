//! How other tasks talk to the dispatcher: the messages it understands, and a handle
//! whose methods send them and wait for the answers.
//!
//! Every question carries a `oneshot` sender for its answer; a question asked of a
//! stopped dispatcher gets no answer, which the handle turns into `None` (or no effect),
//! so callers never hang on a dispatcher that is gone.

use essaim_core::{Assignment, AttemptId};
use tokio::sync::{mpsc, oneshot};

/// Room for messages to the dispatcher; senders wait when it is full.
const COMMAND_CHANNEL_CAPACITY: usize = 1024;

/// The attempts a heartbeat renews.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeldAttempts {
    /// Running (and not cancelled) and queued attempts.
    pub attempt_ids: Vec<AttemptId>,
    /// Slots in use, including attempts still stopping.
    pub busy_slots: u32,
}

/// A message to the dispatcher; a question carries the sender of its answer.
pub(super) enum DispatcherCommand {
    /// Attempts pulled under session `generation`.
    Assign {
        generation: u64,
        assignments: Vec<Assignment>,
    },
    /// Answer with the number of attempts to pull once it is above zero.
    AwaitCapacity { reply_tx: oneshot::Sender<u32> },
    /// Answer with the attempts to renew.
    ReportHeld {
        reply_tx: oneshot::Sender<HeldAttempts>,
    },
    /// The coordinator revoked these attempts.
    Cancel { attempt_ids: Vec<AttemptId> },
    /// The coordinator forgot this worker: drop everything; what comes next belongs to
    /// session `generation`.
    Reset {
        generation: u64,
        reply_tx: oneshot::Sender<()>,
    },
    /// Start no more attempts; keep the queue for handing back.
    StartDraining,
    /// Answer once no attempt runs.
    AwaitIdle { reply_tx: oneshot::Sender<()> },
    /// Cancel every running attempt (the drain grace is over).
    CancelRunning,
    /// Wait for every attempt to end, answer with the queued attempt ids, and stop.
    Finish {
        reply_tx: oneshot::Sender<Vec<AttemptId>>,
    },
}

/// The way other tasks reach the dispatcher. Every method returns without effect (or
/// `None`) once the dispatcher has stopped.
#[derive(Clone)]
pub(crate) struct DispatcherHandle {
    commands_tx: mpsc::Sender<DispatcherCommand>,
}

impl DispatcherHandle {
    async fn send(&self, command: DispatcherCommand) {
        let _stopped = self.commands_tx.send(command).await;
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> DispatcherCommand,
    ) -> Option<T> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.commands_tx.send(command(reply_tx)).await.ok()?;
        reply_rx.await.ok()
    }

    /// Queues attempts pulled under session `generation`.
    pub(crate) async fn assign(&self, generation: u64, assignments: Vec<Assignment>) {
        self.send(DispatcherCommand::Assign {
            generation,
            assignments,
        })
        .await;
    }

    /// Waits until attempts can be pulled and returns how many; `None` once draining.
    pub(crate) async fn await_capacity(&self) -> Option<u32> {
        self.ask(|reply_tx| DispatcherCommand::AwaitCapacity { reply_tx })
            .await
    }

    /// Returns the attempts a heartbeat must renew.
    pub(crate) async fn held_attempts(&self) -> Option<HeldAttempts> {
        self.ask(|reply_tx| DispatcherCommand::ReportHeld { reply_tx })
            .await
    }

    /// Cancels attempts revoked by the coordinator.
    pub(crate) async fn cancel(&self, attempt_ids: Vec<AttemptId>) {
        self.send(DispatcherCommand::Cancel { attempt_ids }).await;
    }

    /// Drops every attempt and returns once that is done; later attempts belong to
    /// session `generation`.
    pub(crate) async fn reset(&self, generation: u64) {
        self.ask(|reply_tx| DispatcherCommand::Reset {
            generation,
            reply_tx,
        })
        .await;
    }

    /// Stops starting attempts.
    pub(crate) async fn start_draining(&self) {
        self.send(DispatcherCommand::StartDraining).await;
    }

    /// Returns once no attempt runs.
    pub(crate) async fn await_idle(&self) {
        self.ask(|reply_tx| DispatcherCommand::AwaitIdle { reply_tx })
            .await;
    }

    /// Cancels every running attempt.
    pub(crate) async fn cancel_running(&self) {
        self.send(DispatcherCommand::CancelRunning).await;
    }

    /// Stops the dispatcher once every attempt has ended; returns the queued attempts,
    /// which were never started.
    pub(crate) async fn finish(&self) -> Vec<AttemptId> {
        self.ask(|reply_tx| DispatcherCommand::Finish { reply_tx })
            .await
            .unwrap_or_default()
    }
}

/// The receiving end of the dispatcher's messages, passed to [`Dispatcher::run`](super::Dispatcher::run).
pub(crate) struct DispatcherInbox {
    pub(super) commands_rx: mpsc::Receiver<DispatcherCommand>,
}

/// Returns a connected handle and inbox.
pub(super) fn channel() -> (DispatcherHandle, DispatcherInbox) {
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
    (
        DispatcherHandle { commands_tx },
        DispatcherInbox { commands_rx },
    )
}
