//! mrjob scripts as streaming jobs: the parameters that run an mrjob script's steps
//! the way mrjob's Hadoop runner does, with the script's own `--step-num=N --mapper`,
//! `--combiner` and `--reducer` modes.
//!
//! The steps come from the script itself: a short Python program loads it as
//! `__main__` with `MRJob.run` replaced by a function that prints the job's step
//! descriptions (`_steps_desc()`, what mrjob hands its runners; mrjob 0.7 has no
//! `--steps` switch any more) and its job-wide options as JSON. Each streaming step
//! then maps to parameters as mrjob's Hadoop runner maps it to Hadoop Streaming
//! arguments:
//!
//! | step description | parameter |
//! |---|---|
//! | `mapper` / `combiner` / `reducer` of type `script` | `step.<s>.<part>` = `python script --step-num=<s> --<part>` |
//! | … with a `pre_filter` | `<pre_filter> \| python script …` |
//! | … of type `command` | the command as written |
//! | no mapper | identity mapper (Hadoop's `cat`) |
//! | no reducer | identity reducer (Hadoop runs such a step map-only; the lines are the same, sorted) |
//! | `SORT_VALUES = True` | `sort_values=true` |
//!
//! The commands run in the script's directory, where mrjob's `FILES` (such as
//! `stop_words.txt`) are found by their relative names, as in Hadoop's task directory.
//! A script shipped with the job's files ([`mrjob_shipped_streaming_params`]) is named
//! by its file name and runs where those files are, so list its `FILES` with it.
//!
//! Refused, because essaim cannot honour them and the results would silently differ:
//! jar and Spark steps, `mapper_raw` (input manifests), custom Hadoop input or output
//! formats, custom partitioners, and jobconf settings of the data contract (`stream.*`,
//! partitioners, comparators). Other jobconf settings (memory, task counts) are tuning
//! for Hadoop and are ignored.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::api::JobParams;

/// Why an mrjob script could not be turned into streaming parameters.
#[derive(Debug, thiserror::Error)]
pub enum MrjobError {
    /// The script file cannot be found.
    #[error("failed to find the mrjob script `{path}`")]
    Script {
        /// The script as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The Python interpreter cannot be started.
    #[error("failed to run `{python}` to describe the steps of `{script}`")]
    Launch {
        /// The interpreter.
        python: String,
        /// The script.
        script: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The script ran but did not describe its steps (mrjob missing, a syntax error,
    /// a job that needs arguments).
    #[error("`{script}` did not describe its steps ({status}): {stderr}")]
    Describe {
        /// The script.
        script: PathBuf,
        /// How the describing process exited.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// The description is not what mrjob prints.
    #[error("unexpected step description from `{script}`: {detail}")]
    Malformed {
        /// The script.
        script: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The job uses an mrjob feature streaming jobs do not have.
    #[error("`{script}` uses {feature}, which essaim streaming jobs do not support")]
    Unsupported {
        /// The script.
        script: PathBuf,
        /// The feature, e.g. `a spark step (step 1)`.
        feature: String,
    },
}

/// Loads the script as `__main__` with `MRJob.run` replaced, so that the class the
/// script itself runs is the one described. The description is the last stdout line,
/// after whatever the script prints while it loads.
const DESCRIBE_PROGRAM: &str = r#"
import json, os, runpy, sys
from mrjob.job import MRJob

script = sys.argv[1]
described = []

def describe(cls):
    job = cls(args=[])
    described.append({
        "steps": job._steps_desc(),
        "sort_values": bool(job.sort_values()),
        "partitioner": job.partitioner(),
        "hadoop_input_format": job.hadoop_input_format(),
        "hadoop_output_format": job.hadoop_output_format(),
        "jobconf": {str(k): str(v) for k, v in (job.jobconf() or {}).items()},
    })

MRJob.run = classmethod(describe)
sys.argv = [script]
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
if not described:
    sys.exit("the script did not call run() on an MRJob class")
print()
print(json.dumps(described[0]))
"#;

/// Where the workers find an mrjob script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScriptPlacement {
    /// At its path on the client, which every worker sees (one machine, or a shared
    /// file system): the commands name it by that path and run in its directory.
    InPlace,
    /// Shipped with the job's files under its file name: the commands name it so, and
    /// run where the job's files are.
    Shipped,
}

/// Returns the parameters of a [`super::StreamingJob`] that runs the mrjob script
/// `script` with the interpreter `python` (a name on `PATH`, or a path), step by step,
/// as mrjob's Hadoop runner would. Runs the interpreter once to read the steps.
pub fn mrjob_streaming_params(python: &str, script: &Path) -> Result<JobParams, MrjobError> {
    describe_into_params(python, script, ScriptPlacement::InPlace)
}

/// Returns the parameters of [`mrjob_streaming_params`] for a script that travels
/// with the job's files (`--files`) under its file name: the commands name it by that
/// name and run in the directory of the job's files, not the script's directory.
pub fn mrjob_shipped_streaming_params(
    python: &str,
    script: &Path,
) -> Result<JobParams, MrjobError> {
    describe_into_params(python, script, ScriptPlacement::Shipped)
}

fn describe_into_params(
    python: &str,
    script: &Path,
    placement: ScriptPlacement,
) -> Result<JobParams, MrjobError> {
    let script = script.canonicalize().map_err(|source| MrjobError::Script {
        path: script.to_path_buf(),
        source,
    })?;
    // A path, not a name: absolute, since the commands run in the script's directory.
    // Not canonical: a virtual environment's `python` is a symbolic link whose
    // resolution would leave the environment.
    let python = if python.contains('/') {
        std::path::absolute(python)
            .map_err(|source| MrjobError::Launch {
                python: python.to_string(),
                script: script.clone(),
                source,
            })?
            .to_string_lossy()
            .into_owned()
    } else {
        python.to_string()
    };
    let output = Command::new(&python)
        .arg("-c")
        .arg(DESCRIBE_PROGRAM)
        .arg(&script)
        .output()
        .map_err(|source| MrjobError::Launch {
            python: python.clone(),
            script: script.clone(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail_start = stderr.len().saturating_sub(2048);
        let tail_start = (tail_start..stderr.len())
            .find(|at| stderr.is_char_boundary(*at))
            .unwrap_or(stderr.len());
        return Err(MrjobError::Describe {
            script,
            status: output.status.to_string(),
            stderr: stderr[tail_start..].trim().to_string(),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last_line = stdout.lines().rev().find(|line| !line.trim().is_empty());
    let description: JobDescription =
        serde_json::from_str(last_line.unwrap_or_default()).map_err(|error| {
            MrjobError::Malformed {
                script: script.clone(),
                detail: error.to_string(),
            }
        })?;
    params_from_description(&python, &script, placement, &description)
}

/// What [`DESCRIBE_PROGRAM`] prints.
#[derive(Debug, Deserialize)]
struct JobDescription {
    steps: Vec<StepDescription>,
    #[serde(default)]
    sort_values: bool,
    #[serde(default)]
    partitioner: Option<String>,
    #[serde(default)]
    hadoop_input_format: Option<String>,
    #[serde(default)]
    hadoop_output_format: Option<String>,
    #[serde(default)]
    jobconf: BTreeMap<String, String>,
}

/// One entry of mrjob's `_steps_desc()` (see mrjob's `MRStep.description`).
#[derive(Debug, Deserialize)]
struct StepDescription {
    #[serde(rename = "type")]
    kind: String,
    mapper: Option<Substep>,
    combiner: Option<Substep>,
    reducer: Option<Substep>,
    #[serde(default)]
    input_manifest: bool,
    #[serde(default)]
    jobconf: BTreeMap<String, serde_json::Value>,
}

/// How one part of a step runs: the script in a mode, or a command of its own.
#[derive(Debug, Deserialize)]
struct Substep {
    #[serde(rename = "type")]
    kind: String,
    command: Option<String>,
    pre_filter: Option<String>,
}

/// The pure half of [`mrjob_streaming_params`]: the description to parameters.
fn params_from_description(
    python: &str,
    script: &Path,
    placement: ScriptPlacement,
    description: &JobDescription,
) -> Result<JobParams, MrjobError> {
    let unsupported = |feature: String| MrjobError::Unsupported {
        script: script.to_path_buf(),
        feature,
    };
    if description.steps.is_empty() {
        return Err(MrjobError::Malformed {
            script: script.to_path_buf(),
            detail: "the job has no steps".to_string(),
        });
    }
    if let Some(partitioner) = &description.partitioner {
        return Err(unsupported(format!("the partitioner `{partitioner}`")));
    }
    if let Some(format) = &description.hadoop_input_format {
        return Err(unsupported(format!("the input format `{format}`")));
    }
    if let Some(format) = &description.hadoop_output_format {
        return Err(unsupported(format!("the output format `{format}`")));
    }
    check_jobconf(description.jobconf.keys(), "JOBCONF").map_err(unsupported)?;

    let mut params = JobParams::default();
    params.set("steps", description.steps.len().to_string());
    if description.sort_values {
        params.set("sort_values", "true");
    }
    let script_text = match placement {
        ScriptPlacement::InPlace => {
            let directory = script.parent().unwrap_or(Path::new("/"));
            params.set("cwd", directory.to_string_lossy());
            script.to_string_lossy()
        }
        ScriptPlacement::Shipped => script
            .file_name()
            .map_or_else(|| script.to_string_lossy(), |name| name.to_string_lossy()),
    };
    for (index, step) in description.steps.iter().enumerate() {
        if step.kind != "streaming" {
            return Err(unsupported(format!("a {} step (step {index})", step.kind)));
        }
        if step.input_manifest {
            return Err(unsupported(format!("mapper_raw (step {index})")));
        }
        check_jobconf(step.jobconf.keys(), &format!("the jobconf of step {index}"))
            .map_err(unsupported)?;
        let parts = [
            ("mapper", &step.mapper),
            ("combiner", &step.combiner),
            ("reducer", &step.reducer),
        ];
        for (part, substep) in parts {
            let Some(substep) = substep else {
                continue;
            };
            let command = match (substep.kind.as_str(), &substep.command) {
                ("command", Some(command)) => command.clone(),
                ("script", _) => {
                    let run_script = format!(
                        "{} {} --step-num={index} --{part}",
                        shell_quote(python),
                        shell_quote(&script_text)
                    );
                    match &substep.pre_filter {
                        Some(pre_filter) => format!("{pre_filter} | {run_script}"),
                        None => run_script,
                    }
                }
                (kind, _) => {
                    return Err(MrjobError::Malformed {
                        script: script.to_path_buf(),
                        detail: format!("step {index} has a {part} of type `{kind}`"),
                    });
                }
            };
            params.set(format!("step.{index}.{part}"), command);
        }
        if step.mapper.is_none() && step.reducer.is_none() && step.combiner.is_none() {
            // mrjob describes such a step only for a job without any function in it;
            // Hadoop would run `cat` and sort.
            params.set(format!("step.{index}.mapper"), "cat");
        }
    }
    Ok(params)
}

/// Refuses jobconf settings that change what lines a command sees or in what order.
fn check_jobconf<'a>(
    mut names: impl Iterator<Item = &'a String>,
    whose: &str,
) -> Result<(), String> {
    let changes_the_contract = |name: &str| {
        name.starts_with("stream.")
            || name.contains("partition")
            || name.contains("comparator")
            || name.contains("separator")
    };
    match names.find(|name| changes_the_contract(name)) {
        Some(name) => Err(format!("`{name}` in {whose}")),
        None => Ok(()),
    }
}

/// Quotes a word for `/bin/sh` when it needs quoting.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&byte));
    if plain {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params_of(json: &str) -> Result<JobParams, MrjobError> {
        let description: JobDescription = serde_json::from_str(json).unwrap();
        params_from_description(
            "python3",
            Path::new("/jobs/mr wc.py"),
            ScriptPlacement::InPlace,
            &description,
        )
    }

    #[test]
    fn a_shipped_script_is_named_by_its_file_name_and_sets_no_directory() {
        let description: JobDescription = serde_json::from_str(
            r#"{"steps": [{"type": "streaming", "mapper": {"type": "script"}}]}"#,
        )
        .unwrap();
        let params = params_from_description(
            "python3",
            Path::new("/jobs/mr wc.py"),
            ScriptPlacement::Shipped,
            &description,
        )
        .unwrap();
        assert_eq!(params.get("cwd"), None);
        assert_eq!(
            params.get("step.0.mapper"),
            Some("python3 'mr wc.py' --step-num=0 --mapper")
        );
    }

    #[test]
    fn script_steps_become_the_scripts_own_modes() {
        let params = params_of(
            r#"{"steps": [
                {"type": "streaming", "mapper": {"type": "script"},
                 "combiner": {"type": "script"}, "reducer": {"type": "script"}},
                {"type": "streaming", "reducer": {"type": "script"}}
            ], "sort_values": true, "jobconf": {"mapreduce.job.reduces": "4"}}"#,
        )
        .unwrap();
        let expected: BTreeMap<String, String> = [
            ("steps", "2"),
            ("sort_values", "true"),
            ("cwd", "/jobs"),
            (
                "step.0.mapper",
                "python3 '/jobs/mr wc.py' --step-num=0 --mapper",
            ),
            (
                "step.0.combiner",
                "python3 '/jobs/mr wc.py' --step-num=0 --combiner",
            ),
            (
                "step.0.reducer",
                "python3 '/jobs/mr wc.py' --step-num=0 --reducer",
            ),
            (
                "step.1.reducer",
                "python3 '/jobs/mr wc.py' --step-num=1 --reducer",
            ),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
        assert_eq!(params.0, expected);
    }

    #[test]
    fn commands_and_pre_filters_are_kept_as_written() {
        let params = params_of(
            r#"{"steps": [{"type": "streaming",
                "mapper": {"type": "command", "command": "grep -v x"},
                "reducer": {"type": "script", "pre_filter": "sort -r"}}]}"#,
        )
        .unwrap();
        assert_eq!(params.get("step.0.mapper"), Some("grep -v x"));
        assert_eq!(
            params.get("step.0.reducer"),
            Some("sort -r | python3 '/jobs/mr wc.py' --step-num=0 --reducer")
        );
    }

    #[test]
    fn features_that_would_change_the_result_are_refused() {
        let refused = [
            r#"{"steps": [{"type": "spark"}]}"#,
            r#"{"steps": [{"type": "streaming", "mapper": {"type": "script"},
                "input_manifest": true}]}"#,
            r#"{"steps": [{"type": "streaming", "mapper": {"type": "script"},
                "jobconf": {"stream.num.map.output.key.fields": 2}}]}"#,
            r#"{"steps": [{"type": "streaming", "mapper": {"type": "script"}}],
                "partitioner": "org.apache.hadoop.mapred.lib.HashPartitioner"}"#,
            r#"{"steps": [{"type": "streaming", "mapper": {"type": "script"}}],
                "hadoop_input_format": "nicknack.ManifestTextInputFormat"}"#,
        ];
        for json in refused {
            let error = params_of(json).unwrap_err();
            assert!(
                matches!(error, MrjobError::Unsupported { .. }),
                "{json}: {error}"
            );
        }
    }

    #[test]
    fn shell_quoting_survives_the_shell() {
        for word in ["plain/path.py", "with space", "it's", "", "$HOME", "a\"b"] {
            let output = Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(word)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(output.stdout).unwrap(), word);
        }
    }
}
