//! `essaim submit`: builds a task-farm job from the command line and submits it.
//!
//! Tasks come from exactly one source:
//! - a command after `--`, one task per line of `--inputs` (`{}` in an argument is replaced
//!   by the line, or the line is appended as the last argument; `--line-on-stdin` sends it
//!   on standard input instead), or `--count` copies;
//! - `--kind K` with `--payload P` (`--count` copies) or one payload per line of `--inputs`;
//! - `--spec FILE`, a JSON job spec (see the README).
//!
//! A command's scripts and data can travel with the job (`--files`, as a streaming
//! job's): hashed before anything else (a missing file is a usage error), uploaded to the
//! coordinator's artifact store just before the job is submitted, and named in every
//! task's payload by their SHA-256, so that the workers fetch them and run the command
//! where they appear under their names.

use super::job_files::{JobFilesArgs, ShippedFiles};
use super::mapreduce::SubmitJob;
use crate::client::{ConnectArgs, usage};
use crate::output::{OutputFormat, print_json};
use essaim_core::spec::MAX_JOB_PAYLOAD_BYTES;
use essaim_proto::v1;
use essaim_worker::job_files::JobFiles;
use serde::Deserialize;
use serde_json::json;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Options of `essaim submit`: a task-farm job, or `essaim submit JOB …` for a
/// MapReduce job (see `essaim submit wordcount --help`).
#[derive(clap::Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true,
    subcommand_value_name = "JOB",
    subcommand_help_heading = "MapReduce jobs (`essaim submit JOB --help` for their options)"
)]
pub struct Args {
    /// A MapReduce job and its options: `essaim submit wordcount --input … --output …`.
    #[command(subcommand)]
    mapreduce: Option<SubmitJob>,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Job name shown in listings.
    #[arg(long, default_value = "")]
    name: String,
    /// Task kind (noop, sleep, echo, fail, salad, or one a custom worker registers).
    #[arg(long, conflicts_with_all = ["spec", "command"])]
    kind: Option<String>,
    /// Payload of every task of `--kind`.
    #[arg(long, requires = "kind", conflicts_with = "inputs")]
    payload: Option<String>,
    /// File with one task per line (`-` for standard input).
    #[arg(long)]
    inputs: Option<PathBuf>,
    /// Number of identical tasks (without --inputs).
    #[arg(long, conflicts_with = "inputs")]
    count: Option<u32>,
    /// Send each input line on the command's standard input rather than as an argument.
    #[arg(long, requires = "command")]
    line_on_stdin: bool,
    /// Files the command brings to the workers (comma-separated or repeated): each
    /// appears under its file name, or NAME for `PATH#NAME`, in the command's working
    /// directory, so that it need not be installed on any worker. Uploaded once to the
    /// coordinator; each worker fetches and caches them by hash.
    #[arg(
        long = "files",
        value_delimiter = ',',
        value_name = "PATH[#NAME]",
        requires = "command"
    )]
    files: Vec<String>,
    /// A JSON job spec file.
    #[arg(long, conflicts_with_all = ["kind", "command", "inputs", "count"])]
    spec: Option<PathBuf>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    priority: i32,
    /// Cancel the running jobs submitted with this key: this one replaces them (their
    /// cancellation names this job).
    #[arg(long, env = "ESSAIM_SUPERSEDE_KEY")]
    supersede_key: Option<String>,
    /// What processes the data, shown with the job beside the builds of the workers that
    /// ran it: your job definition and its version (`etl-orders v3`). Default: the
    /// coordinator's build.
    #[arg(long)]
    processing_version: Option<String>,
    /// Run the job's tasks only on workers carrying this label, `KEY=VALUE`
    /// (repeatable: every one must match): `--require-label gpu=yes`. A job no live
    /// worker satisfies waits, queued, until one registers.
    #[arg(long = "require-label", value_name = "KEY=VALUE", value_parser = essaim_core::labels::parse_label)]
    required_labels: Vec<(String, String)>,
    /// Most attempts of this job running at once (0 = no limit).
    #[arg(long, default_value_t = 0)]
    max_concurrency: u32,
    /// Attempts per task before it goes to the dead-letter queue (default 4).
    #[arg(long, default_value_t = 0)]
    max_attempts: u32,
    /// Tasks not started within this long are not run, e.g. `10m` (bare number:
    /// seconds).
    #[arg(long, alias = "deadline-secs", value_parser = crate::durations::seconds)]
    deadline: Option<Duration>,
    /// Longest run of one attempt, e.g. `30s` (bare number: seconds).
    #[arg(long, alias = "task-timeout-secs", value_parser = crate::durations::seconds)]
    task_timeout: Option<Duration>,
    /// Straggler threshold as a multiple of the median task duration (default 3).
    #[arg(long)]
    speculation: Option<f64>,
    /// Never start speculative copies.
    #[arg(long, conflicts_with = "speculation")]
    no_speculation: bool,
    /// Wait for the job to finish, with a progress bar.
    #[arg(long)]
    wait: bool,
    /// Output format (`--format` is accepted too).
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
    /// The command to run per task, after `--`.
    #[arg(last = true)]
    command: Vec<String>,
}

impl Args {
    /// Returns the MapReduce job named (`essaim submit JOB …`); `None` for a task-farm job.
    pub fn mapreduce_job(&self) -> Option<&str> {
        self.mapreduce.as_ref().map(|job| job.name.as_str())
    }
}

/// The JSON job spec accepted by `--spec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    #[serde(default)]
    name: String,
    tasks: Vec<SpecTask>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    max_concurrency: u32,
    #[serde(default)]
    max_attempts: u32,
    #[serde(default)]
    deadline_secs: Option<f64>,
    #[serde(default)]
    task_timeout_secs: Option<f64>,
    /// Labels a worker must carry to run the tasks, added to `--require-label`'s.
    #[serde(default)]
    required_labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecTask {
    kind: String,
    /// Text payload; for `command`, an object `{argv, stdin, env, cwd}` is also accepted.
    #[serde(default)]
    payload: serde_json::Value,
}

/// Submits the job; with `--wait`, waits for it.
pub async fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    if let Some(SubmitJob { name, args }) = args.mapreduce.take() {
        return super::mapreduce::submit(&name, *args).await;
    }
    let shipped = ShippedFiles::hash(
        &JobFilesArgs {
            files: args.files.clone(),
        },
        None,
    )?;
    let spec = build_spec(&args, &shipped.names_to_hashes())?;
    let bytes: usize = spec.tasks.iter().map(|t| t.payload.len()).sum();
    if bytes > MAX_JOB_PAYLOAD_BYTES {
        return Err(usage(format!(
            "the job's payloads add up to {bytes} bytes; at most {MAX_JOB_PAYLOAD_BYTES} are allowed in one job: split it"
        )));
    }
    let task_count = spec.tasks.len();
    let coordinator = args.connect.coordinator()?;
    let token = args.connect.token()?;
    shipped
        .upload(
            &args.connect.coordinator,
            token.as_deref(),
            &args.connect.trust.load()?,
        )
        .await?;
    let job_id = coordinator.submit_job(spec).await?;
    match args.output {
        OutputFormat::Json if !args.wait => {
            print_json(&json!({"job_id": job_id, "tasks": task_count}))
        }
        OutputFormat::Json => {}
        OutputFormat::Text => eprintln!("submitted job {job_id} ({task_count} tasks)"),
    }
    if !args.wait {
        if args.output == OutputFormat::Text {
            crate::outln!("{job_id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    super::jobs::wait_with_progress(&coordinator, job_id, None, args.output).await
}

/// Builds the job's spec; `files` (name → SHA-256) go into every command's payload.
fn build_spec(args: &Args, files: &JobFiles) -> anyhow::Result<v1::JobSpec> {
    let deadline_ms = |secs: Option<f64>| -> anyhow::Result<u64> {
        match secs {
            None => Ok(0),
            Some(s) if s.is_finite() && s > 0.0 => {
                Ok(essaim_coordinator::actor::wall_clock_ms() + (s * 1000.0) as u64)
            }
            Some(s) => Err(usage(format!("the deadline must be positive, got {s} s"))),
        }
    };
    let seconds_to_ms = |secs: Option<f64>| secs.map(|s| (s.max(0.0) * 1000.0) as u64).unwrap_or(0);
    let mut spec = v1::JobSpec {
        name: args.name.clone(),
        tasks: Vec::new(),
        priority: args.priority,
        max_concurrency: args.max_concurrency,
        max_attempts: args.max_attempts,
        deadline_unix_ms: deadline_ms(args.deadline.map(|deadline| deadline.as_secs_f64()))?,
        task_timeout_ms: seconds_to_ms(args.task_timeout.map(|timeout| timeout.as_secs_f64())),
        retry_backoff_base_ms: 0,
        retry_backoff_max_ms: 0,
        speculation_multiplier: if args.no_speculation {
            -1.0
        } else {
            args.speculation.unwrap_or(0.0)
        },
        supersede_key: args.supersede_key.clone().unwrap_or_default(),
        processing_version: args.processing_version.clone().unwrap_or_default(),
        slow_start: None,
        required_labels: essaim_core::labels::collect(args.required_labels.iter().cloned())
            .map_err(usage)?
            .into_iter()
            .collect(),
    };
    if let Some(path) = &args.spec {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read spec `{}`: {e}", path.display())))?;
        let file: SpecFile = serde_json::from_str(&text)
            .map_err(|e| usage(format!("invalid spec `{}`: {e}", path.display())))?;
        spec.name = file.name;
        spec.priority = file.priority;
        spec.max_concurrency = file.max_concurrency;
        spec.max_attempts = file.max_attempts;
        spec.deadline_unix_ms = deadline_ms(file.deadline_secs)?;
        spec.task_timeout_ms = seconds_to_ms(file.task_timeout_secs);
        spec.required_labels.extend(file.required_labels);
        for (index, task) in file.tasks.into_iter().enumerate() {
            let payload = match task.payload {
                serde_json::Value::Null => Vec::new(),
                serde_json::Value::String(text) => text.into_bytes(),
                other if task.kind == "command" => other.to_string().into_bytes(),
                other => {
                    return Err(usage(format!(
                        "task {index}: payload must be a string, got {other}"
                    )));
                }
            };
            spec.tasks.push(v1::TaskSpec {
                kind: task.kind,
                payload,
                ..Default::default()
            });
        }
        return Ok(spec);
    }
    let lines = match &args.inputs {
        Some(path) => Some(read_lines(path)?),
        None => None,
    };
    if !args.command.is_empty() {
        let inputs: Vec<Option<Vec<u8>>> = match lines {
            Some(lines) => lines.into_iter().map(Some).collect(),
            None => (0..args.count.unwrap_or(1)).map(|_| None).collect(),
        };
        for (number, line) in inputs.into_iter().enumerate() {
            let payload = command_payload(&args.command, line, args.line_on_stdin, files)
                .map_err(|e| usage(format!("input line {}: {e}", number + 1)))?;
            spec.tasks.push(v1::TaskSpec {
                kind: "command".into(),
                payload,
                ..Default::default()
            });
        }
        return Ok(spec);
    }
    let Some(kind) = &args.kind else {
        return Err(usage(
            "say what to run: a command after `--`, --kind, or --spec (see `essaim submit --help`)",
        ));
    };
    match lines {
        Some(lines) => spec
            .tasks
            .extend(lines.into_iter().map(|payload| v1::TaskSpec {
                kind: kind.clone(),
                payload,
                ..Default::default()
            })),
        None => {
            let payload = args.payload.clone().unwrap_or_default().into_bytes();
            for _ in 0..args.count.unwrap_or(1) {
                spec.tasks.push(v1::TaskSpec {
                    kind: kind.clone(),
                    payload: payload.clone(),
                    ..Default::default()
                });
            }
        }
    }
    Ok(spec)
}

fn read_lines(path: &PathBuf) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes)?;
    } else {
        bytes = std::fs::read(path)
            .map_err(|e| usage(format!("cannot read inputs `{}`: {e}", path.display())))?;
    }
    Ok(bytes
        .split(|byte| *byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line).to_vec())
        .filter(|line| !line.is_empty())
        .collect())
}

/// Builds the JSON payload of one `command` task (`essaim_worker::command::CommandSpec`).
fn command_payload(
    template: &[String],
    line: Option<Vec<u8>>,
    line_on_stdin: bool,
    files: &JobFiles,
) -> Result<Vec<u8>, String> {
    let line = match line {
        Some(bytes) => Some(String::from_utf8(bytes).map_err(|_| "not valid UTF-8: command arguments must be text (use --kind with raw payloads for bytes)".to_string())?),
        None => None,
    };
    let mut argv: Vec<String> = template.to_vec();
    let mut stdin = None;
    if let Some(line) = line {
        if line_on_stdin {
            stdin = Some(format!("{line}\n"));
        } else if argv.iter().any(|arg| arg.contains("{}")) {
            argv = argv.iter().map(|arg| arg.replace("{}", &line)).collect();
        } else {
            argv.push(line);
        }
    }
    let mut payload = json!({"argv": argv, "stdin": stdin});
    if !files.is_empty() {
        payload["files"] = json!(files);
    }
    Ok(payload.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_is_replaced_or_the_line_appended() {
        let with_placeholder = command_payload(
            &["echo".into(), "x={}".into()],
            Some(b"42".to_vec()),
            false,
            &JobFiles::new(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(with_placeholder).unwrap(),
            r#"{"argv":["echo","x=42"],"stdin":null}"#
        );
        let appended = command_payload(
            &["wc".into(), "-c".into()],
            Some(b"f".to_vec()),
            false,
            &JobFiles::new(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(appended).unwrap(),
            r#"{"argv":["wc","-c","f"],"stdin":null}"#
        );
    }

    #[test]
    fn shipped_files_are_named_in_the_payload_only_when_there_are_some() {
        let files = JobFiles::from([("run.sh".to_string(), "ab".repeat(32))]);
        let payload = command_payload(&["sh".into(), "run.sh".into()], None, false, &files);
        let spec: essaim_worker::command::CommandSpec =
            serde_json::from_slice(&payload.unwrap()).unwrap();
        assert_eq!(spec.files, files);
        let without = command_payload(&["true".into()], None, false, &JobFiles::new()).unwrap();
        assert!(!String::from_utf8(without).unwrap().contains("files"));
    }

    #[test]
    fn invalid_utf8_input_line_is_refused_for_commands() {
        let error = command_payload(
            &["echo".into()],
            Some(vec![0xff, 0xfe]),
            false,
            &JobFiles::new(),
        )
        .unwrap_err();
        assert!(error.contains("not valid UTF-8"));
    }
}
