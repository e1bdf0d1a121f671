//! The settings of skipping mode, their defaults and limits: given as job parameters
//! (`-D skip.records.max=5`, as Hadoop's `mapreduce.map.skip.maxrecords`), taken out of
//! the parameters by the planner and carried in [`crate::config::JobConfig::skip`], so
//! that no job sees them and every task reads the same values.

use serde::{Deserialize, Serialize};

use crate::api::JobParams;
use crate::config::ConfigError;

/// Parameter: the most input records a job may skip; 0 (the default) turns skipping off.
pub const SKIP_RECORDS_MAX_PARAM: &str = "skip.records.max";
/// Parameter: failed attempts of a task before the next one isolates its bad records.
pub const SKIP_START_ATTEMPTS_PARAM: &str = "skip.start.attempts";
/// Every parameter of skipping mode starts so; any other such name is refused.
const SKIP_PARAM_PREFIX: &str = "skip.";

/// Default of [`SKIP_START_ATTEMPTS_PARAM`], Hadoop's `mapreduce.task.skip.start.attempts`:
/// two failures tell a record that fails every time from a machine that failed once.
pub const DEFAULT_SKIP_START_ATTEMPTS: u32 = 2;
/// Largest budget of skipped records: past it, the input is not mostly good and the job
/// should not pretend to have run.
pub const MAX_SKIP_RECORDS: u64 = 100_000;
/// Probes one attempt may make while isolating (each runs the mapper over a range):
/// with `k` bad records among `n` the search needs at most `2·k·⌈log2 n⌉`, so this
/// caps only budgets far above what one task should skip (about 100 records in a split
/// of a million).
pub const MAX_PROBES_PER_TASK: u32 = 4_096;

/// How a job treats records its code fails on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipConfig {
    /// The most records the whole job may skip; 0 = skipping off (the default).
    pub max_records: u64,
    /// Failed attempts of a task before the next attempt isolates bad records.
    pub start_attempts: u32,
}

impl Default for SkipConfig {
    fn default() -> Self {
        Self {
            max_records: 0,
            start_attempts: DEFAULT_SKIP_START_ATTEMPTS,
        }
    }
}

impl SkipConfig {
    /// Returns true when the job skips nothing (its payloads then say nothing of it).
    pub fn is_off(&self) -> bool {
        self.max_records == 0
    }

    /// Takes the `skip.*` parameters out of `params` and returns the settings they give;
    /// a value that is not a number, out of range, or an unknown `skip.*` name is
    /// refused by name.
    pub fn take_from_params(params: &mut JobParams) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let names: Vec<String> = params
            .0
            .keys()
            .filter(|name| name.starts_with(SKIP_PARAM_PREFIX))
            .cloned()
            .collect();
        for name in names {
            let value = params.0.remove(&name).unwrap_or_default();
            match name.as_str() {
                SKIP_RECORDS_MAX_PARAM => {
                    config.max_records = parse_number(SKIP_RECORDS_MAX_PARAM, &value)?;
                }
                SKIP_START_ATTEMPTS_PARAM => {
                    config.start_attempts = parse_number(SKIP_START_ATTEMPTS_PARAM, &value)?;
                }
                _ => {
                    return Err(ConfigError {
                        field: "skip parameter",
                        reason: format!(
                            "`{name}` is unknown; skipping mode takes \
                             {SKIP_RECORDS_MAX_PARAM} and {SKIP_START_ATTEMPTS_PARAM}"
                        ),
                    });
                }
            }
        }
        config.validated()
    }

    /// Returns the settings if they are in range.
    pub fn validated(self) -> Result<Self, ConfigError> {
        self.validate()?;
        Ok(self)
    }

    /// Checks that the settings are in range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_records > MAX_SKIP_RECORDS {
            return Err(ConfigError {
                field: SKIP_RECORDS_MAX_PARAM,
                reason: format!(
                    "{} is above the limit of {MAX_SKIP_RECORDS}",
                    self.max_records
                ),
            });
        }
        Ok(())
    }

    /// Returns the fewest attempts per task that leave one attempt to isolate bad
    /// records after [`SkipConfig::start_attempts`] failures.
    pub fn attempts_needed(&self) -> u32 {
        self.start_attempts.saturating_add(1)
    }

    /// Returns true when attempt `attempt_number` (1 for the first), which failed on a
    /// record, should isolate the bad records rather than fail: skipping is on, and
    /// either [`SkipConfig::start_attempts`] attempts of the task came before it (the
    /// scheduler starts another only after a failure, a speculative copy or a re-run of
    /// a lost output aside), or the failure is one no retry can fix (the job refused a
    /// record for good).
    pub fn isolates(&self, attempt_number: u32, failure_retryable: bool) -> bool {
        if self.is_off() {
            return false;
        }
        let failed_before = attempt_number.saturating_sub(1);
        failed_before >= self.start_attempts || !failure_retryable
    }
}

fn parse_number<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError {
        field,
        reason: format!("`{value}` is not a whole number"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_parameters_are_taken_out_and_checked_by_name() {
        let mut params = JobParams::from_pairs(&[
            ("skip.records.max", "5"),
            ("skip.start.attempts", "1"),
            ("pattern", "x"),
        ]);
        let config = SkipConfig::take_from_params(&mut params).unwrap();
        assert_eq!(
            config,
            SkipConfig {
                max_records: 5,
                start_attempts: 1
            }
        );
        assert_eq!(params, JobParams::from_pairs(&[("pattern", "x")]));

        let refused = [
            ("skip.records.max", "five", "skip.records.max"),
            ("skip.records.max", "-1", "skip.records.max"),
            ("skip.records.max", "100001", "skip.records.max"),
            ("skip.start.attempts", "2.5", "skip.start.attempts"),
            ("skip.record.max", "5", "skip parameter"),
        ];
        for (name, value, field) in refused {
            let mut params = JobParams::from_pairs(&[(name, value)]);
            let error = SkipConfig::take_from_params(&mut params).unwrap_err();
            assert_eq!(error.field, field, "{name}={value}: {error}");
        }
        let mut none = JobParams::default();
        assert!(SkipConfig::take_from_params(&mut none).unwrap().is_off());
    }

    #[test]
    fn an_attempt_isolates_after_the_start_attempts_or_at_a_permanent_failure() {
        let on = SkipConfig {
            max_records: 3,
            start_attempts: 2,
        };
        assert!(!on.isolates(1, true));
        assert!(!on.isolates(2, true));
        assert!(on.isolates(3, true));
        assert!(on.isolates(1, false), "a refused record is not retried");
        let off = SkipConfig::default();
        assert!(!off.isolates(9, false));
        assert_eq!(on.attempts_needed(), 3);
    }
}
