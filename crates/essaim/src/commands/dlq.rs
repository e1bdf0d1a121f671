//! `essaim dlq list|show|requeue|purge`: the dead-letter queue.

use crate::client::{ConnectArgs, CoordinatorCalls, usage};
use crate::output::{OutputFormat, dead_letter_json, print_json};
use essaim_proto::v1;
use serde_json::json;
use std::process::ExitCode;

/// Options of `essaim dlq`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// List dead letters (of one job with --job).
    List {
        /// Only this job.
        #[arg(long)]
        job: Option<u64>,
        /// Output format (`--format` is accepted too).
        #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Show one dead letter with its payload and every error.
    Show {
        /// The job.
        job: u64,
        /// The task index.
        task: u32,
        /// Output format (`--format` is accepted too).
        #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Put dead letters back in the queue with fresh attempts.
    Requeue(Selection),
    /// Remove dead letters for good.
    Purge(Selection),
}

#[derive(clap::Args, Debug)]
struct Selection {
    /// The job.
    job: u64,
    /// Only these task indexes (default: every dead letter of the job).
    tasks: Vec<u32>,
    /// Output format (`--format` is accepted too).
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
}

/// Runs one dead-letter action.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let coordinator = args.connect.coordinator()?;
    match args.action {
        Action::List { job, output } => {
            let letters = list_dead_letters(&coordinator, job.unwrap_or(0)).await?;
            match output {
                OutputFormat::Json => print_json(&json!(
                    letters
                        .iter()
                        .map(|l| dead_letter_json(l, false))
                        .collect::<Vec<_>>()
                )),
                OutputFormat::Text => {
                    crate::outln!(
                        "{:>6} {:>6} {:<10} {:>8}  LAST ERROR",
                        "JOB",
                        "TASK",
                        "KIND",
                        "ATTEMPTS"
                    );
                    for letter in &letters {
                        let last = letter
                            .errors
                            .last()
                            .and_then(|e| e.failure.as_ref())
                            .map(|f| f.message.clone())
                            .unwrap_or_default();
                        crate::outln!(
                            "{:>6} {:>6} {:<10} {:>8}  {}",
                            letter.job_id,
                            letter.task_index,
                            letter.kind,
                            letter.errors.len(),
                            last
                        );
                    }
                }
            }
        }
        Action::Show { job, task, output } => {
            let letters = list_dead_letters(&coordinator, job).await?;
            let Some(letter) = letters.into_iter().find(|l| l.task_index == task) else {
                return Err(usage(format!(
                    "task {task} of job {job} is not in the dead-letter queue"
                )));
            };
            match output {
                OutputFormat::Json => print_json(&dead_letter_json(&letter, true)),
                OutputFormat::Text => {
                    crate::outln!(
                        "job {} task {} ({}), payload: {}",
                        letter.job_id,
                        letter.task_index,
                        letter.kind,
                        String::from_utf8_lossy(&letter.payload)
                    );
                    for error in &letter.errors {
                        let failure = error.failure.clone().unwrap_or_default();
                        let code = failure
                            .exit_code
                            .map(|c| format!(" exit code {c}"))
                            .unwrap_or_default();
                        crate::outln!(
                            "  attempt {:x} on worker {:x}: {}{code}",
                            error.attempt_id,
                            error.worker_id,
                            failure.message
                        );
                        if !failure.stderr_tail.is_empty() {
                            for line in failure.stderr_tail.lines() {
                                crate::outln!("    | {line}");
                            }
                        }
                    }
                }
            }
        }
        Action::Requeue(selection) => {
            let (job_id, output) = (selection.job, selection.output);
            let request = selection_to_wire(selection);
            // Requeueing what is already requeued changes nothing: safe to repeat.
            let affected = coordinator
                .read(|mut client| {
                    let request = request.clone();
                    async move { client.requeue_dead_letters(request).await }
                })
                .await?
                .affected;
            match output {
                OutputFormat::Json => print_json(&json!({"job_id": job_id, "requeued": affected})),
                OutputFormat::Text => crate::outln!("requeued {affected} dead letters"),
            }
        }
        Action::Purge(selection) => {
            let (job_id, output) = (selection.job, selection.output);
            let request = selection_to_wire(selection);
            // Purging what is already purged changes nothing: safe to repeat.
            let affected = coordinator
                .read(|mut client| {
                    let request = request.clone();
                    async move { client.purge_dead_letters(request).await }
                })
                .await?
                .affected;
            match output {
                OutputFormat::Json => print_json(&json!({"job_id": job_id, "purged": affected})),
                OutputFormat::Text => crate::outln!("purged {affected} dead letters"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns the dead letters of `job_id` (0: of every job).
pub(crate) async fn list_dead_letters(
    coordinator: &CoordinatorCalls,
    job_id: u64,
) -> anyhow::Result<Vec<v1::DeadLetter>> {
    let listed = coordinator
        .read(|mut client| async move {
            let request = v1::ListDeadLettersRequest { job_id };
            client.list_dead_letters(request).await
        })
        .await?;
    Ok(listed.dead_letters)
}

fn selection_to_wire(selection: Selection) -> v1::DeadLetterSelection {
    v1::DeadLetterSelection {
        job_id: selection.job,
        tasks: selection
            .tasks
            .into_iter()
            .map(|task_index| v1::TaskRef {
                job_id: selection.job,
                task_index,
            })
            .collect(),
    }
}
