//! Human and JSON renderings of what the coordinator returns (`--output json`).

use clap::ValueEnum;
use essaim_proto::v1;
use serde_json::{Value, json};

/// How read commands print.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned text for people.
    #[default]
    Text,
    /// One JSON document for programs.
    Json,
}

/// `-o`/`--output` of the verbs where it named the output directory before
/// `--output-dir` (`essaim run`, `essaim submit JOB`, `essaim gen`): a format, or else,
/// as it always was there, the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatOrDirectory {
    /// `text` or `json`.
    Format(OutputFormat),
    /// Any other value: the output directory (old spelling of `--output-dir`).
    Directory(std::path::PathBuf),
}

impl FormatOrDirectory {
    /// Parses `-o VALUE`: a format name wins (a directory called `json` needs
    /// `--output-dir json`).
    pub fn parse(text: &str) -> Result<Self, String> {
        match OutputFormat::from_str(text, true) {
            Ok(format) => Ok(Self::Format(format)),
            Err(_) => Ok(Self::Directory(text.into())),
        }
    }

    /// Returns the output directory and the format from `-o`, `--output-dir` and
    /// `--format` (the old spelling of the format there, beside `--output DIR`).
    pub fn resolve(
        output: Option<&Self>,
        output_dir: Option<&std::path::Path>,
        format: Option<OutputFormat>,
    ) -> Result<(Option<std::path::PathBuf>, OutputFormat), String> {
        let (directory, dash_o_format) = match output {
            Some(Self::Directory(directory)) => (Some(directory.as_path()), None),
            Some(Self::Format(format)) => (None, Some(*format)),
            None => (None, None),
        };
        if let (Some(old), Some(new)) = (directory, output_dir) {
            return Err(format!(
                "two output directories: `{}` (-o/--output) and `{}` (--output-dir)",
                old.display(),
                new.display()
            ));
        }
        if dash_o_format.is_some() && format.is_some() {
            return Err("two output formats: -o/--output and --format".to_string());
        }
        let directory = directory.or(output_dir).map(Into::into);
        Ok((directory, dash_o_format.or(format).unwrap_or_default()))
    }
}

/// Returns a job status as JSON.
pub fn job_json(job: &v1::JobStatus) -> Value {
    json!({
        "job_id": job.job_id, "name": job.name, "state": job.state, "reason": job.reason,
        "priority": job.priority, "total": job.total, "pending": job.pending, "running": job.running,
        "retrying": job.retrying, "succeeded": job.succeeded, "dead_lettered": job.dead_lettered,
        "skipped": job.skipped, "submitted_unix_ms": job.submitted_unix_ms,
        "finished_unix_ms": job.finished_unix_ms, "attempts_started": job.attempts_started,
        "attempts_failed": job.attempts_failed, "results_rejected": job.results_rejected,
        "speculative_attempts": job.speculative_attempts,
        "outputs_lost": job.outputs_lost,
        "processing_version": job.processing_version,
        "owner": (!job.owner.is_empty()).then_some(&job.owner),
        "required_labels": job.required_labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "waiting_for_labels": job.waiting_for_labels,
        "waiting_for_anti_affinity": job.waiting_for_anti_affinity,
        "stages": job.stages.iter().map(|stage| json!({
            "total": stage.total, "succeeded": stage.succeeded,
            "running": stage.running, "failed": stage.failed,
        })).collect::<Vec<_>>(),
        "counters": job.counters.iter().collect::<std::collections::BTreeMap<_, _>>(),
    })
}

/// Returns labels as `k=v,k2=v2`, sorted by key.
pub fn labels_text(labels: &std::collections::HashMap<String, String>) -> String {
    let sorted: essaim_core::labels::Labels = labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    essaim_core::labels::show(&sorted)
}

/// Returns a job status as one text block.
pub fn job_text(job: &v1::JobStatus) -> String {
    let mut text = format!(
        "job {} ({}) {}\n  tasks: {} total, {} succeeded, {} running, {} pending, {} retrying, {} dead-lettered, {} skipped\n  attempts: {} started, {} failed, {} speculative; {} late results rejected",
        job.job_id,
        if job.name.is_empty() {
            "unnamed"
        } else {
            &job.name
        },
        job.state,
        job.total,
        job.succeeded,
        job.running,
        job.pending,
        job.retrying,
        job.dead_lettered,
        job.skipped,
        job.attempts_started,
        job.attempts_failed,
        job.speculative_attempts,
        job.results_rejected,
    );
    if !job.reason.is_empty() {
        text.push_str(&format!("\n  reason: {}", job.reason));
    }
    if !job.processing_version.is_empty() {
        text.push_str(&format!(
            "\n  processing version: {}",
            job.processing_version
        ));
    }
    if !job.owner.is_empty() {
        text.push_str(&format!("\n  owner: {}", job.owner));
    }
    if !job.required_labels.is_empty() {
        let labels = labels_text(&job.required_labels);
        text.push_str(&format!("\n  runs on workers with: {labels}"));
        if job.waiting_for_labels {
            text.push_str(&format!(
                "\n  waiting for a worker with labels {labels}: no live worker carries them"
            ));
        }
    }
    if job.waiting_for_anti_affinity {
        text.push_str(
            "\n  waiting for a worker: every live worker holds another task of a waiting \
             task's anti-affinity group (more replicas than workers)",
        );
    }
    if job.stages.len() > 1 {
        let stages: Vec<String> = job
            .stages
            .iter()
            .enumerate()
            .map(|(index, stage)| {
                format!(
                    "{index}: {}/{} succeeded, {} running",
                    stage.succeeded, stage.total, stage.running
                )
            })
            .collect();
        text.push_str(&format!("\n  stages: {}", stages.join("; ")));
    }
    if job.outputs_lost > 0 {
        text.push_str(&format!(
            "\n  lost outputs recomputed: {}",
            job.outputs_lost
        ));
    }
    if !job.counters.is_empty() {
        let counters: std::collections::BTreeMap<_, _> = job.counters.iter().collect();
        text.push_str("\n  counters:");
        for (name, value) in counters {
            text.push_str(&format!("\n    {name:<28} {value}"));
        }
    }
    if job.finished_unix_ms > 0 {
        let seconds = job.finished_unix_ms.saturating_sub(job.submitted_unix_ms) as f64 / 1000.0;
        text.push_str(&format!("\n  took {seconds:.3} s"));
    }
    text
}

/// Returns a failure as JSON.
pub fn failure_json(failure: Option<&v1::TaskFailure>) -> Value {
    match failure {
        None => Value::Null,
        Some(f) => {
            json!({"message": f.message, "exit_code": f.exit_code, "stderr_tail": f.stderr_tail, "retryable": f.retryable})
        }
    }
}

/// Returns a dead letter as JSON.
pub fn dead_letter_json(letter: &v1::DeadLetter, with_payload: bool) -> Value {
    let errors: Vec<Value> = letter
        .errors
        .iter()
        .map(|e| json!({"attempt_id": format!("{:x}", e.attempt_id), "worker_id": format!("{:x}", e.worker_id), "at_unix_ms": e.at_unix_ms, "failure": failure_json(e.failure.as_ref())}))
        .collect();
    let mut value = json!({"job_id": letter.job_id, "task_index": letter.task_index, "kind": letter.kind, "attempts": letter.errors.len(), "errors": errors});
    if with_payload {
        value["payload"] = Value::String(String::from_utf8_lossy(&letter.payload).into_owned());
    }
    value
}

/// Prints a JSON value on standard output.
pub fn print_json(value: &Value) {
    crate::outln!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into())
    );
}

/// Writes one line on standard output; a closed pipe (`essaim jobs | head`) ends the
/// process quietly instead of panicking, like other Unix tools.
pub fn write_stdout_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        && error.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// `println!` that survives a closed pipe; see `write_stdout_line`. Internal to the
/// command line (exported only because `macro_rules!` scoping requires it).
#[doc(hidden)]
#[macro_export]
macro_rules! outln {
    () => { $crate::output::write_stdout_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::write_stdout_line(format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    #[test]
    fn dash_o_is_a_format_or_the_old_output_directory() {
        let json = FormatOrDirectory::parse("json").unwrap();
        let directory = FormatOrDirectory::parse("out/").unwrap();
        assert_eq!(json, FormatOrDirectory::Format(OutputFormat::Json));
        let resolve = FormatOrDirectory::resolve;
        assert_eq!(
            resolve(Some(&directory), None, None),
            Ok((Some(PathBuf::from("out/")), OutputFormat::Text))
        );
        assert_eq!(
            resolve(Some(&json), Some(Path::new("out")), None),
            Ok((Some(PathBuf::from("out")), OutputFormat::Json))
        );
        // The old spelling: `--output DIR --format json`.
        assert_eq!(
            resolve(Some(&directory), None, Some(OutputFormat::Json)),
            Ok((Some(PathBuf::from("out/")), OutputFormat::Json))
        );
        assert!(resolve(Some(&directory), Some(Path::new("other")), None).is_err());
        assert!(resolve(Some(&json), None, Some(OutputFormat::Text)).is_err());
        assert_eq!(resolve(None, None, None), Ok((None, OutputFormat::Text)));
    }
}
