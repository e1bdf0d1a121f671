//! `essaim jobs|status|wait|cancel|workers`: reading and steering jobs.

use crate::client::ConnectArgs;
use crate::output::{OutputFormat, job_json, job_text, print_json};
use crate::progress::StageBars;
use essaim_proto::{CoordinatorClient, v1};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

/// Options of `essaim jobs`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format (`--format` is accepted too).
    #[arg(long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
}

/// Options of `essaim status` and `essaim cancel`: one job.
#[derive(clap::Args, Debug)]
pub struct JobArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The job.
    job: u64,
    /// Output format (`--format` is accepted too).
    #[arg(long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
}

/// Options of `essaim status`.
pub type StatusArgs = JobArgs;
/// Options of `essaim cancel`.
pub type CancelArgs = JobArgs;

/// Options of `essaim wait`.
#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The job.
    job: u64,
    /// Give up after this many seconds (exit code 1).
    #[arg(long)]
    timeout_secs: Option<f64>,
    /// Output format (`--format` is accepted too).
    #[arg(long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
}

/// Options of `essaim workers`.
#[derive(clap::Args, Debug)]
pub struct WorkersArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format (`--format` is accepted too).
    #[arg(long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
}

/// Returns every job the coordinator knows.
pub(crate) async fn all_jobs(
    client: &mut CoordinatorClient,
) -> Result<Vec<v1::JobStatus>, tonic::Status> {
    Ok(client
        .list_jobs(v1::ListJobsRequest {})
        .await?
        .into_inner()
        .jobs)
}

/// Lists jobs.
pub async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let jobs = all_jobs(&mut args.connect.connect().await?).await?;
    match args.output {
        OutputFormat::Json => print_json(&json!(jobs.iter().map(job_json).collect::<Vec<_>>())),
        OutputFormat::Text => {
            crate::outln!(
                "{:>6}  {:<10} {:>8} {:>9} {:>8} {:>6}  NAME",
                "JOB",
                "STATE",
                "TASKS",
                "SUCCEEDED",
                "RUNNING",
                "DLQ"
            );
            for job in &jobs {
                crate::outln!(
                    "{:>6}  {:<10} {:>8} {:>9} {:>8} {:>6}  {}",
                    job.job_id,
                    job.state,
                    job.total,
                    job.succeeded,
                    job.running,
                    job.dead_lettered,
                    job.name
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows one job.
pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connect.connect().await?;
    let answer = client.get_job(v1::GetJobRequest { job_id: args.job }).await;
    print_answer(answer, args.output)
}

/// Waits for one job.
pub async fn wait(args: WaitArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connect.connect().await?;
    let timeout = args
        .timeout_secs
        .map(|s| Duration::from_secs_f64(s.max(0.0)));
    wait_with_progress(&mut client, args.job, timeout, args.output).await
}

/// Long-polls the job until it is terminal, drawing a progress bar per stage on a
/// terminal (see `crate::progress`); returns success only when the job succeeded.
pub async fn wait_with_progress(
    client: &mut CoordinatorClient,
    job_id: u64,
    timeout: Option<Duration>,
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let started = tokio::time::Instant::now();
    let mut job = client
        .get_job(v1::GetJobRequest { job_id })
        .await?
        .into_inner();
    let bars = StageBars::for_job(&job, crate::progress::should_draw(output));
    while job.state == "running" {
        if timeout.is_some_and(|limit| started.elapsed() >= limit) {
            bars.abandon(format!("job {job_id} still running: timed out waiting"));
            anyhow::bail!("job {job_id} is still running after the timeout");
        }
        bars.update(&job);
        job = client
            .wait_job(v1::WaitJobRequest {
                job_id,
                timeout_ms: 500,
            })
            .await?
            .into_inner();
    }
    bars.finish(&job);
    print_job(&job, output);
    Ok(if job.state == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_job(job: &v1::JobStatus, output: OutputFormat) {
    match output {
        OutputFormat::Json => print_json(&job_json(job)),
        OutputFormat::Text => crate::outln!("{}", job_text(job)),
    }
}

/// Cancels one job.
pub async fn cancel(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connect.connect().await?;
    let answer = client
        .cancel_job(v1::CancelJobRequest { job_id: args.job })
        .await;
    print_answer(answer, args.output)
}

/// Prints the job the coordinator answered with (or fails with its refusal).
fn print_answer(
    answer: Result<tonic::Response<v1::JobStatus>, tonic::Status>,
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    print_job(&answer?.into_inner(), output);
    Ok(ExitCode::SUCCESS)
}

/// Lists live workers.
pub async fn workers(args: WorkersArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connect.connect().await?;
    let workers = client
        .list_workers(v1::ListWorkersRequest {})
        .await?
        .into_inner()
        .workers;
    match args.output {
        OutputFormat::Json => print_json(&json!(workers
            .iter()
            .map(|w| json!({"worker_id": format!("{:x}", w.worker_id), "name": w.name, "slots": w.slots, "busy_slots": w.busy_slots,
                "held_attempts": w.held_attempts, "last_heartbeat_age_ms": w.last_heartbeat_age_ms, "draining": w.draining,
                "kinds": w.kinds, "file_server_url": w.file_server_url}))
            .collect::<Vec<_>>())),
        OutputFormat::Text => {
            crate::outln!("{:<14} {:<16} {:>5} {:>5} {:>5} {:>9}  KINDS", "WORKER", "NAME", "SLOTS", "BUSY", "HELD", "HEARTBEAT");
            for w in &workers {
                let state = if w.draining { " (draining)" } else { "" };
                crate::outln!("{:<14x} {:<16} {:>5} {:>5} {:>5} {:>7}ms  {}{state}", w.worker_id, w.name, w.slots, w.busy_slots, w.held_attempts, w.last_heartbeat_age_ms, w.kinds.join(","));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
