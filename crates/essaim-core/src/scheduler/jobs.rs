//! Jobs as a whole: submission, cancellation, the end of a job once its tasks are all
//! terminal, and forgetting finished jobs after their retention.

use super::{JobError, Output, Scheduler};
use crate::ids::{AttemptId, JobId, Millis};
use crate::journal::JournalEvent;
use crate::labels::Labels;
use crate::model::{Job, JobState};
use crate::spec::{
    JobSpec, MAX_ANTI_AFFINITY_GROUP_BYTES, MAX_PROCESSING_VERSION_BYTES, MAX_SUPERSEDE_KEY_BYTES,
    RawJobSpec, SpecError,
};
use std::cmp::Reverse;
use std::collections::BTreeMap;

impl Scheduler {
    /// Validates and accepts a job.
    pub fn submit(
        &mut self,
        now: Millis,
        mut raw: RawJobSpec,
        out: &mut Vec<Output>,
    ) -> Result<JobId, SpecError> {
        let known: Vec<String> = self.known_kinds.iter().cloned().collect();
        let key = supersede_key(&raw.supersede_key)?;
        let version = one_line("processing_version", &raw.processing_version)?;
        let owner = one_line("owner", &raw.owner)?;
        let slow_start = slow_start_share(raw.slow_start)?;
        crate::labels::check_labels(&raw.required_labels).map_err(|reason| SpecError::Invalid {
            field: "required_labels",
            reason,
        })?;
        let required_labels = std::mem::take(&mut raw.required_labels);
        let groups = anti_affinity_groups(&raw)?;
        let spec = raw.validate(&known)?;
        let job_id = JobId(self.next_job);
        self.next_job += 1;
        if let Some(key) = &key {
            self.cancel_superseded(now, key, owner.as_deref(), job_id, out);
        }
        out.push(Output::Persist(JournalEvent::JobSubmitted {
            job: job_id,
            spec: spec.clone(),
            at: now,
        }));
        self.insert_job(job_id, spec, now);
        if let Some(key) = key {
            out.push(Output::Persist(JournalEvent::JobSupersedeKey {
                job: job_id,
                key: key.clone(),
            }));
            self.set_supersede_key(job_id, key);
        }
        if let Some(version) = version {
            out.push(Output::Persist(JournalEvent::JobProcessingVersion {
                job: job_id,
                version: version.clone(),
            }));
            self.set_processing_version(job_id, version);
        }
        if let Some(share) = slow_start {
            out.push(Output::Persist(JournalEvent::JobSlowStart {
                job: job_id,
                share,
            }));
            self.set_slow_start(job_id, share);
        }
        if let Some(owner) = owner {
            out.push(Output::Persist(JournalEvent::JobOwner {
                job: job_id,
                owner: owner.clone(),
            }));
            self.set_owner(job_id, owner);
        }
        if !required_labels.is_empty() {
            out.push(Output::Persist(JournalEvent::JobPlacement {
                job: job_id,
                required_labels: required_labels.clone().into_iter().collect(),
            }));
            self.set_required_labels(job_id, required_labels);
        }
        if !groups.is_empty() {
            out.push(Output::Persist(JournalEvent::JobAntiAffinity {
                job: job_id,
                groups: groups.clone().into_iter().collect(),
            }));
            self.set_anti_affinity(job_id, groups);
        }
        Ok(job_id)
    }

    /// Cancels the running jobs `owner` submitted with `key`: `newer` replaces them (seed
    /// 000: drop the requests a newer one has made pointless). Keys are the owner's own:
    /// another principal's key cannot cancel its jobs.
    fn cancel_superseded(
        &mut self,
        now: Millis,
        key: &str,
        owner: Option<&str>,
        newer: JobId,
        out: &mut Vec<Output>,
    ) {
        let superseded: Vec<JobId> = self
            .jobs
            .values()
            .filter(|job| job.state == JobState::Running)
            .filter(|job| job.supersede_key.as_deref() == Some(key))
            .filter(|job| job.owner.as_deref() == owner)
            .map(|job| job.id)
            .collect();
        for job in superseded {
            let reason = format!("superseded by job {} (supersede key `{key}`)", newer.0);
            // Running, checked just above: cancelling cannot fail.
            let _running = self.cancel_job(now, job, &reason, out);
        }
    }

    pub(super) fn set_supersede_key(&mut self, job_id: JobId, key: String) {
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.supersede_key = Some(key);
        }
    }

    pub(super) fn set_slow_start(&mut self, job_id: JobId, share: f64) {
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.enable_slow_start(share);
        }
    }

    pub(super) fn set_required_labels(&mut self, job_id: JobId, labels: Labels) {
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.required_labels = labels;
        }
    }

    pub(super) fn set_anti_affinity(&mut self, job_id: JobId, groups: BTreeMap<u32, String>) {
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.anti_affinity = groups;
        }
    }

    pub(super) fn set_owner(&mut self, job_id: JobId, owner: String) {
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.owner = Some(owner);
        }
    }

    pub(super) fn set_processing_version(&mut self, job_id: JobId, version: String) {
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.processing_version = Some(version);
        }
    }

    /// Cancels a running job: queued tasks are skipped, live attempts are revoked.
    pub fn cancel_job(
        &mut self,
        now: Millis,
        job_id: JobId,
        reason: &str,
        out: &mut Vec<Output>,
    ) -> Result<(), JobError> {
        let job = self.jobs.get(&job_id).ok_or(JobError::NotFound(job_id))?;
        if job.state != JobState::Running {
            return Err(JobError::AlreadyFinished {
                job: job_id,
                state: job.state.name(),
            });
        }
        out.push(Output::Persist(JournalEvent::JobCancelled {
            job: job_id,
            reason: reason.to_string(),
            at: now,
        }));
        self.apply_cancel(job_id, reason, now);
        let state = self.jobs[&job_id].state.clone();
        out.push(Output::JobFinished { job: job_id, state });
        Ok(())
    }

    fn insert_job(&mut self, job_id: JobId, spec: JobSpec, now: Millis) {
        let priority = spec.priority;
        let mut job = Job::new(job_id, spec, now);
        job.queue_first_stage();
        self.jobs.insert(job_id, job);
        self.job_order.insert((Reverse(priority), job_id));
        self.next_job = self.next_job.max(job_id.0 + 1);
    }

    pub(super) fn apply_cancel(&mut self, job_id: JobId, reason: &str, now: Millis) {
        let live: Vec<AttemptId> = self
            .attempts
            .iter()
            .filter(|(_, attempt)| attempt.task.job == job_id)
            .map(|(id, _)| *id)
            .collect();
        for attempt_id in live {
            self.release_and_cancel(attempt_id);
        }
        let job = self.jobs.get_mut(&job_id).expect("cancelled job exists");
        job.cancel(reason, now, &mut self.retry_queue);
        self.job_order.remove(&(Reverse(job.spec.priority), job_id));
    }

    /// Moves the queued tasks of a job past its deadline to `Skipped`.
    pub(super) fn skip_unstarted(&mut self, job_id: JobId) {
        self.jobs
            .get_mut(&job_id)
            .expect("job exists")
            .skip_unstarted(&mut self.retry_queue);
    }

    pub(super) fn finish_if_done(&mut self, now: Millis, job_id: JobId, out: &mut Vec<Output>) {
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        if !job.finish_if_done(now) {
            return;
        }
        self.job_order.remove(&(Reverse(job.spec.priority), job_id));
        out.push(Output::JobFinished {
            job: job_id,
            state: job.state.clone(),
        });
    }

    /// Forgets jobs that finished at least `retention_ms` ago; returns them. Their events
    /// disappear from the journal at the next snapshot, their results with them.
    pub fn forget_jobs_finished_before(&mut self, now: Millis, retention_ms: Millis) -> Vec<JobId> {
        let expired: Vec<JobId> = self
            .jobs
            .values()
            .filter(|job| job.state != JobState::Running)
            .filter(|job| {
                job.finished_at
                    .is_some_and(|at| at.saturating_add(retention_ms) <= now)
            })
            .map(|job| job.id)
            .collect();
        for job in &expired {
            self.jobs.remove(job);
        }
        expired
    }
}

/// A label of a submission shown on one line (its processing version, its owner): none
/// when empty; refused when too long or not printable on one line.
fn one_line(field: &'static str, raw: &str) -> Result<Option<String>, SpecError> {
    let version = raw.trim();
    if version.len() > MAX_PROCESSING_VERSION_BYTES {
        return Err(SpecError::Invalid {
            field,
            reason: format!(
                "{} bytes long; at most {MAX_PROCESSING_VERSION_BYTES}",
                version.len()
            ),
        });
    }
    if version.chars().any(char::is_control) {
        return Err(SpecError::Invalid {
            field,
            reason: "holds a control character; it is shown on one line".into(),
        });
    }
    Ok((!version.is_empty()).then(|| version.to_string()))
}

/// Returns the slow-start share a job keeps: `None` when it has none or asks for 1.0
/// (a stage waits for every task of the one before, as without slow start).
fn slow_start_share(raw: Option<f64>) -> Result<Option<f64>, SpecError> {
    let Some(share) = raw else {
        return Ok(None);
    };
    if !(0.0..=1.0).contains(&share) {
        return Err(SpecError::Invalid {
            field: "slow_start",
            reason: format!("{share} is not a share between 0.0 and 1.0"),
        });
    }
    Ok((share < 1.0).then_some(share))
}

/// The supersede key of a submission: none when empty; refused when too long.
fn supersede_key(raw: &str) -> Result<Option<String>, SpecError> {
    let key = raw.trim();
    if key.len() > MAX_SUPERSEDE_KEY_BYTES {
        return Err(SpecError::Invalid {
            field: "supersede_key",
            reason: format!(
                "{} bytes long; at most {MAX_SUPERSEDE_KEY_BYTES}",
                key.len()
            ),
        });
    }
    Ok((!key.is_empty()).then(|| key.to_string()))
}

/// The anti-affinity groups of a submission by task index: none when it names none;
/// refused when it names a group for some tasks but not one entry per task, or a group
/// too long or not printable on one line.
fn anti_affinity_groups(raw: &RawJobSpec) -> Result<BTreeMap<u32, String>, SpecError> {
    let invalid = |reason: String| SpecError::Invalid {
        field: "anti_affinity_group",
        reason,
    };
    if raw
        .anti_affinity_groups
        .iter()
        .all(|group| group.trim().is_empty())
    {
        return Ok(BTreeMap::new());
    }
    if raw.anti_affinity_groups.len() != raw.tasks.len() {
        return Err(invalid(format!(
            "{} groups for {} tasks: give one per task (empty for none)",
            raw.anti_affinity_groups.len(),
            raw.tasks.len()
        )));
    }
    let mut groups = BTreeMap::new();
    for (index, group) in raw.anti_affinity_groups.iter().enumerate() {
        let group = group.trim();
        if group.len() > MAX_ANTI_AFFINITY_GROUP_BYTES {
            return Err(invalid(format!(
                "task {index}: {} bytes long; at most {MAX_ANTI_AFFINITY_GROUP_BYTES}",
                group.len()
            )));
        }
        if group.chars().any(char::is_control) {
            return Err(invalid(format!("task {index}: holds a control character")));
        }
        if !group.is_empty() {
            groups.insert(index as u32, group.to_string());
        }
    }
    Ok(groups)
}
