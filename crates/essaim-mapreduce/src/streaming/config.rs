//! The parameters of a streaming job (listed in the module doc of `streaming`), parsed
//! and checked once: a misspelt name or a step without command is refused before
//! anything runs, since it would otherwise run an identity step without a word.

use std::path::PathBuf;

use super::Framing;
use super::process::{Launch, Role};
use crate::api::{JobError, JobParams};

/// The parameter naming the commands' working directory.
pub(super) const CWD_PARAM: &str = "cwd";

/// The commands of one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct StepCommands {
    pub mapper: Option<String>,
    pub combiner: Option<String>,
    pub reducer: Option<String>,
}

/// The parameters of a streaming job, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StreamingConfig {
    pub steps: Vec<StepCommands>,
    pub framing: Framing,
    pub cwd: Option<PathBuf>,
}

impl StreamingConfig {
    pub fn from_params(params: &JobParams) -> Result<Self, JobError> {
        let step_count: usize = params.parse_or("steps", 1)?;
        if step_count == 0 {
            return Err(JobError::permanent("parameter `steps` must be at least 1"));
        }
        let mut steps = vec![StepCommands::default(); step_count];
        for (name, value) in &params.0 {
            let Some(rest) = name.strip_prefix("step.") else {
                continue;
            };
            // A misspelt name would silently run an identity step instead: refuse it.
            let unknown = || JobError::permanent(format!("unknown parameter `{name}`"));
            let (index, part) = rest.split_once('.').ok_or_else(unknown)?;
            let index: usize = index.parse().map_err(|_| unknown())?;
            let Some(commands) = steps.get_mut(index) else {
                return Err(JobError::permanent(format!(
                    "parameter `{name}` names step {index}, but the job has {step_count} steps"
                )));
            };
            let slot = match part {
                "mapper" => &mut commands.mapper,
                "combiner" => &mut commands.combiner,
                "reducer" => &mut commands.reducer,
                _ => return Err(unknown()),
            };
            if value.trim().is_empty() {
                return Err(JobError::permanent(format!(
                    "parameter `{name}` is an empty command"
                )));
            }
            *slot = Some(value.clone());
        }
        for (index, commands) in steps.iter().enumerate() {
            if *commands == StepCommands::default() {
                return Err(JobError::permanent(format!(
                    "step {index} has no command: set `step.{index}.mapper` or \
                     `step.{index}.reducer`"
                )));
            }
        }
        Ok(Self {
            steps,
            framing: Framing {
                separator: parse_separator(params.get("separator"))?,
                whole_line_key: params.parse_or("sort_values", false)?,
            },
            cwd: params.get(CWD_PARAM).map(PathBuf::from),
        })
    }

    /// Returns one command of a step, refusing a step the job does not have.
    pub fn command(
        &self,
        step: usize,
        which: impl Fn(&StepCommands) -> &Option<String>,
    ) -> Result<Option<&str>, JobError> {
        let commands = self.steps.get(step).ok_or_else(|| {
            JobError::permanent(format!(
                "the job has {} steps, not {}",
                self.steps.len(),
                step + 1
            ))
        })?;
        Ok(which(commands).as_deref())
    }

    pub fn launch(&self, command: &str, role: Role) -> Launch {
        Launch {
            command: command.to_string(),
            role,
            cwd: self.cwd.clone(),
            framing: self.framing,
        }
    }
}

fn parse_separator(text: Option<&str>) -> Result<u8, JobError> {
    match text {
        None | Some("\\t") => Ok(b'\t'),
        Some(text) if text.len() == 1 && text.is_ascii() && text != "\n" => Ok(text.as_bytes()[0]),
        Some(text) => Err(JobError::permanent(format!(
            "parameter `separator` = `{text}`: must be one ASCII character other than newline, \
             or `\\t`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::JobDefinition;
    use crate::streaming::StreamingJob;

    fn params(pairs: &[(&str, &str)]) -> JobParams {
        JobParams::from_pairs(pairs)
    }

    #[test]
    fn invalid_parameters_are_permanent_errors_naming_the_key() {
        let invalid: [&[(&str, &str)]; 7] = [
            &[],
            &[("steps", "0"), ("step.0.mapper", "cat")],
            &[("steps", "2"), ("step.0.mapper", "cat")],
            &[("step.0.mapper", "cat"), ("step.0.mappr", "cat")],
            &[("step.0.mapper", "cat"), ("step.1.reducer", "cat")],
            &[("step.0.mapper", "  ")],
            &[("step.0.mapper", "cat"), ("separator", "ab")],
        ];
        for case in invalid {
            let error = StreamingJob.validate(&params(case)).unwrap_err();
            assert!(!error.retryable, "{case:?}");
            eprintln!("{case:?}: {}", error.message);
        }
        let misspelt = StreamingJob
            .validate(&params(&[
                ("step.0.mapper", "cat"),
                ("step.0.mappr", "cat"),
            ]))
            .unwrap_err();
        assert!(misspelt.message.contains("step.0.mappr"));
        let valid = params(&[
            ("steps", "2"),
            ("step.0.mapper", "cat"),
            ("step.1.reducer", "sort"),
        ]);
        StreamingJob.validate(&valid).unwrap();
        assert_eq!(StreamingJob.steps(&valid), 2);
    }
}
