//! Where each version is used right now: every runner (`essaim serve`) and every
//! stream task of a pipeline with a `predict` operator reports, as a heartbeat, which
//! versions it has loaded for which served model (or operator), and the registry keeps
//! the last report of each reporter until it goes stale. Both report the same way; the
//! report's [`ReporterKind`] tells them apart.
//!
//! Usage is soft state, held in memory only: it is not written to the store, nor to the
//! audit log. A report describes the present of a process that may die at any time, so
//! a durable copy would only ever be a list of claims to expire; instead a report lives
//! for three heartbeats of its runner ([`MISSED_BEATS`]) and is then dropped, so a
//! runner killed without a word disappears from the view on its own. After a restart of
//! the registry's host the view is empty until the next heartbeats rebuild it (within
//! one interval of each runner).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Heartbeats a runner may miss before its report is dropped.
pub const MISSED_BEATS: u32 = 3;
/// Shortest and longest life of a report, whatever interval its runner gives.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(600);
/// Most runners held at once, and most served models in one report.
pub const MAX_RUNNERS: usize = 4096;
/// Most served models in one report.
pub const MAX_SERVED_MODELS: usize = 256;
/// Longest runner name, address, served name or reference.
pub const MAX_TEXT_LENGTH: usize = 256;

/// One slot of a served model: the reference it follows and the version loaded now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotUsage {
    /// `primary` (answers by default) or `candidate` (A/B, shadow or canary).
    pub role: String,
    /// The model of the reference.
    pub model: String,
    /// What follows the `@` of the reference: an alias or a version number.
    pub reference: String,
    /// The version loaded now; none while the first load is still under way.
    pub version: Option<u64>,
}

/// One model a runner serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedUsage {
    /// The name it is served under (`/v2/models/{name}`).
    pub name: String,
    /// `none`, `split`, `shadow` or `canary`.
    pub rollout: String,
    /// Its slots, primary first.
    pub slots: Vec<SlotUsage>,
}

/// Who uses the versions of a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReporterKind {
    /// A model runner (`essaim serve`): the report's models are served over HTTP.
    #[default]
    Runner,
    /// A streaming pipeline: the report's models are its `predict` operators.
    Pipeline,
}

impl ReporterKind {
    /// `runner` or `pipeline`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReporterKind::Runner => "runner",
            ReporterKind::Pipeline => "pipeline",
        }
    }
}

/// What a runner (or a pipeline's task) reports at every heartbeat
/// (`PUT usage/{runner}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// A runner or a pipeline (reports without it come from runners).
    #[serde(default)]
    pub kind: ReporterKind,
    /// Where its models are served (`http://host:port`), or, for a pipeline, its
    /// name.
    pub address: String,
    /// Time between two of its heartbeats, ms: the report lives [`MISSED_BEATS`] times
    /// that long.
    pub heartbeat_ms: u64,
    /// Its models.
    pub models: Vec<ServedUsage>,
}

/// A live runner's last report, as `GET usage` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerUsage {
    /// The runner's name.
    pub runner: String,
    /// Its last report.
    #[serde(flatten)]
    pub report: UsageReport,
    /// Time since that report arrived, ms.
    pub age_ms: u64,
}

/// Why a report is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// A field is empty, too long, or the report too large.
    #[error("usage report: {0}")]
    Invalid(String),
    /// The board holds as many runners as it may.
    #[error("usage report: {MAX_RUNNERS} runners are reporting already")]
    Full,
}

struct Held {
    report: UsageReport,
    received: Instant,
    expires: Instant,
}

/// The last report of every live runner.
#[derive(Default)]
pub struct UsageBoard {
    runners: Mutex<BTreeMap<String, Held>>,
}

impl std::fmt::Debug for UsageBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageBoard").finish_non_exhaustive()
    }
}

/// Returns how long a report of a runner beating every `heartbeat_ms` lives.
pub fn time_to_live(heartbeat_ms: u64) -> Duration {
    Duration::from_millis(heartbeat_ms)
        .saturating_mul(MISSED_BEATS)
        .clamp(MIN_TTL, MAX_TTL)
}

fn check_text(what: &str, text: &str) -> Result<(), UsageError> {
    let printable = text.chars().all(|c| !c.is_control());
    if text.is_empty() || text.len() > MAX_TEXT_LENGTH || !printable {
        return Err(UsageError::Invalid(format!(
            "{what} `{text}`: 1 to {MAX_TEXT_LENGTH} printable characters"
        )));
    }
    Ok(())
}

/// Checks a report of `runner` before it is held.
pub fn check_report(runner: &str, report: &UsageReport) -> Result<(), UsageError> {
    check_text("runner", runner)?;
    check_text("address", &report.address)?;
    if report.models.len() > MAX_SERVED_MODELS {
        return Err(UsageError::Invalid(format!(
            "at most {MAX_SERVED_MODELS} served models"
        )));
    }
    for served in &report.models {
        check_text("served name", &served.name)?;
        check_text("rollout", &served.rollout)?;
        if served.slots.len() > 2 {
            return Err(UsageError::Invalid(format!(
                "served model `{}`: at most a primary and a candidate",
                served.name
            )));
        }
        for slot in &served.slots {
            check_text("slot role", &slot.role)?;
            check_text("model", &slot.model)?;
            check_text("reference", &slot.reference)?;
        }
    }
    Ok(())
}

impl UsageBoard {
    fn locked(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Held>> {
        // Every change is one insert or removal: a poisoned map is still consistent.
        self.runners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `runner`'s report, replacing its previous one.
    pub fn record(
        &self,
        runner: &str,
        report: UsageReport,
        now: Instant,
    ) -> Result<(), UsageError> {
        check_report(runner, &report)?;
        let mut runners = self.locked();
        runners.retain(|_, held| held.expires > now);
        if runners.len() >= MAX_RUNNERS && !runners.contains_key(runner) {
            return Err(UsageError::Full);
        }
        let expires = now + time_to_live(report.heartbeat_ms);
        let held = Held {
            report,
            received: now,
            expires,
        };
        runners.insert(runner.to_string(), held);
        Ok(())
    }

    /// Drops `runner`'s report (a runner stopping in order); returns whether it was held.
    pub fn withdraw(&self, runner: &str) -> bool {
        self.locked().remove(runner).is_some()
    }

    /// Returns the reports of the runners alive at `now`, by name; drops the others.
    pub fn live(&self, now: Instant) -> Vec<RunnerUsage> {
        let mut runners = self.locked();
        runners.retain(|_, held| held.expires > now);
        runners
            .iter()
            .map(|(runner, held)| RunnerUsage {
                runner: runner.clone(),
                report: held.report.clone(),
                age_ms: now.saturating_duration_since(held.received).as_millis() as u64,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(version: Option<u64>) -> UsageReport {
        UsageReport {
            kind: ReporterKind::Runner,
            address: "http://127.0.0.1:8080".into(),
            heartbeat_ms: 1000,
            models: vec![ServedUsage {
                name: "spam-filter".into(),
                rollout: "none".into(),
                slots: vec![SlotUsage {
                    role: "primary".into(),
                    model: "spam-filter".into(),
                    reference: "production".into(),
                    version,
                }],
            }],
        }
    }

    #[test]
    fn a_report_lives_three_heartbeats_and_the_next_one_replaces_it() {
        let board = UsageBoard::default();
        let start = Instant::now();
        board.record("a", report(Some(1)), start).unwrap();
        let later = start + Duration::from_millis(2900);
        assert_eq!(board.live(later).len(), 1);
        assert_eq!(board.live(later)[0].age_ms, 2900);
        board.record("a", report(Some(2)), later).unwrap();
        let live = board.live(later + Duration::from_millis(2900));
        assert_eq!(live[0].report.models[0].slots[0].version, Some(2));
        assert!(board.live(later + Duration::from_millis(3000)).is_empty());
    }

    #[test]
    fn a_withdrawn_runner_is_gone_at_once() {
        let board = UsageBoard::default();
        let now = Instant::now();
        board.record("a", report(None), now).unwrap();
        board.record("b", report(None), now).unwrap();
        assert!(board.withdraw("a"));
        assert!(!board.withdraw("a"));
        let names: Vec<String> = board.live(now).into_iter().map(|r| r.runner).collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn the_time_to_live_is_bounded() {
        assert_eq!(time_to_live(0), MIN_TTL);
        assert_eq!(time_to_live(2000), Duration::from_secs(6));
        assert_eq!(time_to_live(u64::MAX), MAX_TTL);
    }

    #[test]
    fn malformed_reports_are_refused() {
        let board = UsageBoard::default();
        let now = Instant::now();
        assert!(board.record("", report(None), now).is_err());
        let mut long = report(None);
        long.address = "x".repeat(MAX_TEXT_LENGTH + 1);
        assert!(board.record("a", long, now).is_err());
        let mut three = report(None);
        let slot = three.models[0].slots[0].clone();
        three.models[0].slots.extend([slot.clone(), slot]);
        assert!(board.record("a", three, now).is_err());
        assert!(board.live(now).is_empty());
    }
}
