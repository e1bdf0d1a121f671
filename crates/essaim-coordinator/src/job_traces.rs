//! The trace each job was submitted in, so that its attempts' spans on the workers join
//! the trace of the client that submitted it (see `essaim_telemetry::trace_context`).
//!
//! A job's tasks are granted long after `SubmitJob` returned, to workers that pull, so no
//! request carries the submission's context to them: the coordinator keeps it here and
//! attaches it to each grant. It is kept in memory only, not journaled: it decides
//! nothing, and after a restart or a failover a job's later attempts start traces of
//! their own, which costs a link in a trace and never a task.
//!
//! Bounded: at most [`MAX_TRACED_JOBS`] entries; past that the oldest job (the smallest
//! id) is forgotten first. The lock is held for a map operation only, never across an
//! `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use essaim_core::JobId;

/// How many jobs' trace contexts are kept at most (about 100 bytes each).
pub(crate) const MAX_TRACED_JOBS: usize = 10_000;

/// The `traceparent` of each traced job's submission; cheap to clone and share between
/// the gRPC handlers.
#[derive(Clone, Default)]
pub(crate) struct JobTraces {
    by_job: Arc<Mutex<BTreeMap<JobId, String>>>,
}

impl JobTraces {
    /// Remembers that `job` was submitted in the trace of `traceparent`.
    pub(crate) fn record(&self, job: JobId, traceparent: String) {
        let mut by_job = self.lock();
        by_job.insert(job, traceparent);
        while by_job.len() > MAX_TRACED_JOBS {
            by_job.pop_first();
        }
    }

    /// Returns the `traceparent` `job` was submitted with, if it was traced.
    pub(crate) fn of(&self, job: JobId) -> Option<String> {
        self.lock().get(&job).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<JobId, String>> {
        // A panic while holding the lock leaves a map that is still valid: keep using it.
        self.by_job
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_job_is_found_and_the_oldest_go_first_past_the_bound() {
        let traces = JobTraces::default();
        assert_eq!(traces.of(JobId(1)), None);
        for job in 1..=MAX_TRACED_JOBS as u64 + 2 {
            traces.record(JobId(job), format!("trace-of-{job}"));
        }
        assert_eq!(traces.of(JobId(1)), None);
        assert_eq!(traces.of(JobId(2)), None);
        assert_eq!(traces.of(JobId(3)), Some("trace-of-3".to_string()));
        let newest = MAX_TRACED_JOBS as u64 + 2;
        assert_eq!(traces.of(JobId(newest)), Some(format!("trace-of-{newest}")));
    }
}
