//! Service-level objectives as configuration: a small TOML file (`deploy/prometheus/slo.toml`)
//! declares what "good" means for jobs and pipelines, and [`prometheus_rules`] turns it into
//! Prometheus recording rules and multi-window, multi-burn-rate alerts (the pattern of
//! Google's SRE workbook, chapter "Alerting on SLOs").
//!
//! Why here: the objectives are written against metric names and histogram buckets, which
//! this crate owns (the stream runtime owns its own and hands its buckets in through
//! [`Histograms`]). Parsing and generation are pure: text in, text out, no I/O.
//!
//! Three indicators, for `subject = "jobs"` (the coordinator's metrics, per scrape job =
//! cluster) or `subject = "pipelines"` (the streaming runtime's, per pipeline):
//!
//! | indicator | a bad event is | objective fields |
//! |---|---|---|
//! | `success` | a job that failed (cancelled ones do not count); a record dead-lettered | `target` |
//! | `latency` | a succeeded job, or a record, slower than `threshold_seconds` (a bucket bound) | `target`, `threshold_seconds` |
//! | `throughput` | — (a floor, not a ratio): tasks committed, or records read, per second below `min_per_second` while work waits | `min_per_second` |
//!
//! `target = 0.95` with `threshold_seconds = 600` reads "the 95th percentile of job
//! latency stays under 10 minutes". Ratio objectives get an error budget of
//! `1 - target` over `period` (default `30d`) and two alerts: a page when the budget
//! burns fast (2 % of it in 1 h, confirmed over 5 min; 5 % in 6 h, confirmed over
//! 30 min) and a ticket when it burns slowly (10 % in 1 day / 2 h; 10 % in 3 days / 6 h).

mod rules;

use std::collections::BTreeSet;

use serde::Deserialize;

pub use rules::prometheus_rules;

/// The only version of the file format.
pub const SLO_FILE_VERSION: u32 = 1;

/// The bucket bounds of the histograms latency objectives are measured on.
#[derive(Debug, Clone)]
pub struct Histograms {
    /// `essaim_coordinator_job_duration_seconds`.
    pub job_duration_seconds: Vec<f64>,
    /// `essaim_stream_end_to_end_latency_seconds` (owned by the stream runtime).
    pub pipeline_latency_seconds: Vec<f64>,
}

/// A validated objectives file.
#[derive(Debug, Clone, PartialEq)]
pub struct Objectives {
    /// In file order.
    pub objectives: Vec<Objective>,
}

/// One objective, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// Unique; becomes the `slo` label (lowercase letters, digits and `-`).
    pub name: String,
    /// What it is about.
    pub subject: Subject,
    /// For pipelines: only this pipeline (every pipeline, each on its own, when `None`).
    pub pipeline: Option<String>,
    /// What is measured and what good means.
    pub indicator: Indicator,
    /// One line for the alert's description.
    pub description: String,
}

/// What an objective is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// Batch jobs, as the coordinator sees them.
    Jobs,
    /// Streaming pipelines, as their units on the workers see them.
    Pipelines,
}

/// An indicator and its objective.
#[derive(Debug, Clone, PartialEq)]
pub enum Indicator {
    /// The share of good events is at least `target` over `period_hours`.
    Ratio {
        /// Which events are bad.
        bad: BadEvent,
        /// The share of good events promised, in (0, 1).
        target: f64,
        /// The period the error budget is counted over, in hours.
        period_hours: f64,
    },
    /// At least `min_per_second` while work waits.
    Throughput {
        /// The floor.
        min_per_second: f64,
    },
}

/// What makes an event bad for a ratio objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BadEvent {
    /// A failed job, a dead-lettered record.
    Failure,
    /// Slower than this bucket bound, in seconds.
    SlowerThan(f64),
}

/// Why an objectives file was refused; the message names the objective and the field.
#[derive(Debug, thiserror::Error)]
pub enum SloError {
    /// Not TOML, or fields of the wrong type or unknown (with its line and column).
    #[error("{source}")]
    Parse {
        /// What the parser said, with the position.
        #[source]
        source: toml::de::Error,
    },
    /// A version this essaim does not know.
    #[error("`version = {found}` is not supported: the only version is {SLO_FILE_VERSION}")]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// A field's value is wrong.
    #[error("objective {index} (`{name}`): `{field}` {reason}")]
    Invalid {
        /// 1-based position in the file.
        index: usize,
        /// The objective's name.
        name: String,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SloFile {
    version: u32,
    #[serde(default)]
    objective: Vec<ObjectiveFile>,
}

/// One `[[objective]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectiveFile {
    name: String,
    subject: Subject,
    indicator: String,
    #[serde(default)]
    pipeline: Option<String>,
    #[serde(default)]
    target: Option<f64>,
    #[serde(default)]
    threshold_seconds: Option<f64>,
    #[serde(default)]
    min_per_second: Option<f64>,
    /// `30d`, `7d`, `12h`; default `30d`.
    #[serde(default)]
    period: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

impl Objectives {
    /// Parses and validates an objectives file; latency thresholds must be bucket bounds
    /// of `histograms`.
    pub fn parse(text: &str, histograms: &Histograms) -> Result<Objectives, SloError> {
        let file: SloFile = toml::from_str(text).map_err(|source| SloError::Parse { source })?;
        if file.version != SLO_FILE_VERSION {
            return Err(SloError::Version {
                found: file.version,
            });
        }
        let mut names = BTreeSet::new();
        let mut objectives = Vec::new();
        for (position, written) in file.objective.into_iter().enumerate() {
            let index = position + 1;
            let objective = validate(index, written, histograms)?;
            if !names.insert(objective.name.clone()) {
                return Err(invalid(index, &objective.name, "name", "is used twice"));
            }
            objectives.push(objective);
        }
        Ok(Objectives { objectives })
    }
}

fn invalid(index: usize, name: &str, field: &'static str, reason: impl Into<String>) -> SloError {
    SloError::Invalid {
        index,
        name: name.to_string(),
        field,
        reason: reason.into(),
    }
}

fn validate(
    index: usize,
    written: ObjectiveFile,
    histograms: &Histograms,
) -> Result<Objective, SloError> {
    let name = written.name.clone();
    let fail = |field, reason: String| invalid(index, &name, field, reason);
    let name_is_a_label = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_is_a_label {
        return Err(fail(
            "name",
            "must be lowercase letters, digits and `-`".into(),
        ));
    }
    if written.pipeline.is_some() && written.subject != Subject::Pipelines {
        return Err(fail(
            "pipeline",
            "is only for `subject = \"pipelines\"`".into(),
        ));
    }
    if let Some(pipeline) = &written.pipeline
        && (pipeline.is_empty() || pipeline.contains(['"', '\\', '\n']))
    {
        return Err(fail("pipeline", "must be a plain pipeline name".into()));
    }
    let indicator = match written.indicator.as_str() {
        "success" | "latency" => {
            let target = written
                .target
                .ok_or_else(|| fail("target", "is required for this indicator".into()))?;
            if !(target > 0.0 && target < 1.0) {
                return Err(fail("target", format!("{target} is not between 0 and 1")));
            }
            let period = written.period.as_deref().unwrap_or("30d");
            let period_hours = parse_period_hours(period)
                .ok_or_else(|| fail("period", format!("`{period}` is not like `30d` or `12h`")))?;
            let bad = if written.indicator == "success" {
                BadEvent::Failure
            } else {
                let threshold = written
                    .threshold_seconds
                    .ok_or_else(|| fail("threshold_seconds", "is required for latency".into()))?;
                let bounds = match written.subject {
                    Subject::Jobs => &histograms.job_duration_seconds,
                    Subject::Pipelines => &histograms.pipeline_latency_seconds,
                };
                if !bounds.contains(&threshold) {
                    return Err(fail(
                        "threshold_seconds",
                        format!("{threshold} is not a bucket bound; choose one of {bounds:?}"),
                    ));
                }
                BadEvent::SlowerThan(threshold)
            };
            Indicator::Ratio {
                bad,
                target,
                period_hours,
            }
        }
        "throughput" => {
            let min_per_second = written
                .min_per_second
                .ok_or_else(|| fail("min_per_second", "is required for throughput".into()))?;
            if !(min_per_second > 0.0 && min_per_second.is_finite()) {
                return Err(fail(
                    "min_per_second",
                    format!("{min_per_second} is not positive"),
                ));
            }
            Indicator::Throughput { min_per_second }
        }
        other => {
            return Err(fail(
                "indicator",
                format!("`{other}` is not one of success, latency, throughput"),
            ));
        }
    };
    let misplaced = match &indicator {
        Indicator::Ratio { bad, .. } => [
            (written.min_per_second.is_some(), "min_per_second"),
            (
                written.threshold_seconds.is_some() && *bad == BadEvent::Failure,
                "threshold_seconds",
            ),
        ],
        Indicator::Throughput { .. } => [
            (written.target.is_some(), "target"),
            (written.threshold_seconds.is_some(), "threshold_seconds"),
        ],
    };
    if let Some((_, field)) = misplaced.into_iter().find(|(present, _)| *present) {
        return Err(fail(field, "does not apply to this indicator".into()));
    }
    Ok(Objective {
        description: written.description.unwrap_or_default(),
        name: written.name,
        subject: written.subject,
        pipeline: written.pipeline,
        indicator,
    })
}

/// Returns the hours of `30d` or `12h`.
fn parse_period_hours(period: &str) -> Option<f64> {
    let (number, hours_per_unit) = if let Some(days) = period.strip_suffix('d') {
        (days, 24.0)
    } else {
        (period.strip_suffix('h')?, 1.0)
    };
    let number: u32 = number.parse().ok()?;
    (number > 0).then_some(f64::from(number) * hours_per_unit)
}

#[cfg(test)]
mod tests;
