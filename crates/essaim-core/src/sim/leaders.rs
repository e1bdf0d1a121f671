//! Leader changes, as with coordinators elected through etcd: a new leader recovers from
//! the journal with a larger epoch while the deposed one keeps running for a while (paused
//! past its lease, or cut off from etcd), and workers that have not heard of the new
//! leader still talk to the old one.
//!
//! The journal is fenced: whatever the deposed leader tries to make durable is refused
//! (counted, never journaled), so nothing it does can be acknowledged. A worker refuses
//! grants from an epoch older than one it has already seen. The oracle's checks stay the
//! same — one commit per task, only from an attempt the *current* leader granted, never
//! from an older epoch, recovery gives back exactly the commits — and the deposed
//! leader's grants are never recorded as granted, so a commit of one would be caught.

use super::{KINDS, Message, Running, World, scheduler_config};
use crate::scheduler::{Output, Scheduler};

impl World {
    /// A new leader is elected; the old one keeps running, deposed.
    pub(super) fn fail_over(&mut self) {
        self.epoch += 1;
        self.report.failovers += 1;
        self.log(format!(
            "leader deposed; a new leader takes over (epoch {})",
            self.epoch
        ));
        let recovered = Scheduler::recover(
            scheduler_config(self.epoch, self.seed),
            KINDS,
            self.journal.clone(),
        );
        let deposed = std::mem::replace(&mut self.scheduler, recovered);
        self.deposed = Some(deposed);
    }

    /// The deposed leader learns it lost its lease and stops.
    pub(super) fn deposed_steps_down(&mut self) {
        if self.deposed.take().is_some() {
            self.log("the deposed leader steps down".to_string());
        }
    }

    /// The deposed leader keeps going: a worker that still knows it pulls from it, a
    /// report reaches it, its timers fire. Everything it would journal is fenced.
    pub(super) fn deposed_acts(&mut self) {
        let Some(mut deposed) = self.deposed.take() else {
            return;
        };
        let index = self.rng.up_to(self.workers.len() as u64 - 1) as usize;
        let mut out = Vec::new();
        deposed.tick(self.now, &mut out);
        let worker = &self.workers[index];
        if let Some(worker_id) = worker.id
            && worker.alive
            && worker.paused_until <= self.now
        {
            let free = worker.free_slots();
            let reply = deposed.pull(self.now, worker_id, free);
            for assignment in reply.assignments {
                self.check_placement(index, assignment.task);
                let epoch = assignment.attempt.epoch();
                if epoch < self.workers[index].newest_epoch {
                    self.report.stale_grants_refused += 1;
                    self.log(format!(
                        "worker #{index} refuses {} of old epoch {epoch}",
                        assignment.attempt
                    ));
                    continue;
                }
                self.log(format!(
                    "worker #{index} starts {} granted by the deposed leader",
                    assignment.attempt
                ));
                let duration = self.behaviours[&assignment.task].duration_ms;
                let long_running = self.long_running(&assignment.kind);
                self.workers[index].running.push(Running {
                    attempt: assignment.attempt,
                    task: assignment.task,
                    finishes_at: self.now + duration,
                    inputs: Vec::new(),
                    long_running,
                    inputs_complete: assignment.inputs_complete,
                });
            }
        }
        // A report in flight reaches the deposed leader instead of the new one.
        if !self.network.is_empty() && self.rng.chance(1, 3) {
            let pick = self.rng.up_to(self.network.len() as u64 - 1) as usize;
            let (_, Message::Report { worker, result }) = self.network.swap_remove(pick);
            deposed.report(self.now, worker, vec![result], &mut out);
        }
        let refused = out
            .iter()
            .filter(|output| matches!(output, Output::Persist(_)))
            .count();
        if refused > 0 {
            self.report.fenced_writes += refused as u64;
            self.log(format!(
                "{refused} journal writes of the deposed leader refused by the fence"
            ));
        }
        self.deposed = Some(deposed);
    }
}
