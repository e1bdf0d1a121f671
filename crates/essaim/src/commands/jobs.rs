//! `essaim jobs|status|wait|cancel|workers`: reading and steering jobs.

use crate::client::{ConnectArgs, CoordinatorCalls};
use crate::output::{OutputFormat, job_json, job_text, print_json};
use crate::progress::StageBars;
use essaim_proto::{Idempotence, v1};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

/// Options of `essaim jobs`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format (`--format` is accepted too).
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
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
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
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
    /// Give up after this long (exit code 1), e.g. `10m` (bare number: seconds); while
    /// the coordinator is unreachable, retry until then (without it: for the connect
    /// timeout per outage).
    #[arg(long, alias = "timeout-secs", value_parser = crate::durations::seconds)]
    timeout: Option<Duration>,
    /// Output format (`--format` is accepted too).
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
}

/// Options of `essaim workers`.
#[derive(clap::Args, Debug)]
pub struct WorkersArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Output format (`--format` is accepted too).
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
}

/// Returns every job the coordinator knows.
pub(crate) async fn all_jobs(coordinator: &CoordinatorCalls) -> anyhow::Result<Vec<v1::JobStatus>> {
    let listed = coordinator
        .read(|mut client| async move { client.list_jobs(v1::ListJobsRequest {}).await })
        .await?;
    Ok(listed.jobs)
}

/// Lists jobs.
pub async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let jobs = all_jobs(&args.connect.coordinator()?).await?;
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
    let job_id = args.job;
    let job = args
        .connect
        .coordinator()?
        .read(|mut client| async move { client.get_job(v1::GetJobRequest { job_id }).await })
        .await?;
    print_job(&job, args.output);
    Ok(ExitCode::SUCCESS)
}

/// Waits for one job.
pub async fn wait(args: WaitArgs) -> anyhow::Result<ExitCode> {
    let coordinator = args.connect.coordinator()?;
    wait_with_progress(&coordinator, args.job, args.timeout, args.output).await
}

/// Long-polls the job until it is terminal, drawing a progress bar per stage on a
/// terminal (see `crate::progress`); returns success only when the job succeeded.
///
/// Rides through coordinator restarts and failovers: each call retries until the wait's
/// own timeout when one is given, else for the connect timeout of each outage.
pub async fn wait_with_progress(
    coordinator: &CoordinatorCalls,
    job_id: u64,
    timeout: Option<Duration>,
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let started = tokio::time::Instant::now();
    let call_deadline = || match timeout {
        Some(limit) => started + limit,
        None => coordinator.default_deadline(),
    };
    let mut job = coordinator
        .call_until(
            call_deadline(),
            Idempotence::Idempotent,
            |mut client| async move { client.get_job(v1::GetJobRequest { job_id }).await },
        )
        .await?;
    let bars = StageBars::for_job(&job, crate::progress::should_draw(output));
    while job.state == "running" {
        if timeout.is_some_and(|limit| started.elapsed() >= limit) {
            bars.abandon(format!("job {job_id} still running: timed out waiting"));
            anyhow::bail!("job {job_id} is still running after the timeout");
        }
        bars.update(&job);
        job = coordinator
            .call_until(
                call_deadline(),
                Idempotence::Idempotent,
                |mut client| async move {
                    let request = v1::WaitJobRequest {
                        job_id,
                        timeout_ms: 500,
                    };
                    client.wait_job(request).await
                },
            )
            .await?;
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
    let job_id = args.job;
    // Cancelling twice leaves the job as cancelling once does.
    let job = args
        .connect
        .coordinator()?
        .read(|mut client| async move { client.cancel_job(v1::CancelJobRequest { job_id }).await })
        .await?;
    print_job(&job, args.output);
    Ok(ExitCode::SUCCESS)
}

/// Lists live workers.
pub async fn workers(args: WorkersArgs) -> anyhow::Result<ExitCode> {
    let workers = args
        .connect
        .coordinator()?
        .read(|mut client| async move { client.list_workers(v1::ListWorkersRequest {}).await })
        .await?
        .workers;
    match args.output {
        OutputFormat::Json => print_json(&json!(workers
            .iter()
            .map(|w| json!({"worker_id": format!("{:x}", w.worker_id), "name": w.name, "slots": w.slots, "busy_slots": w.busy_slots,
                "held_attempts": w.held_attempts, "last_heartbeat_age_ms": w.last_heartbeat_age_ms, "draining": w.draining,
                "kinds": w.kinds, "file_server_url": w.file_server_url, "build": w.build,
                "labels": w.labels.iter().collect::<std::collections::BTreeMap<_, _>>()}))
            .collect::<Vec<_>>())),
        OutputFormat::Text => {
            crate::outln!("{:<14} {:<16} {:>5} {:>5} {:>5} {:>9}  {:<20} {:<16} KINDS", "WORKER", "NAME", "SLOTS", "BUSY", "HELD", "HEARTBEAT", "BUILD", "LABELS");
            for w in &workers {
                let state = if w.draining { " (draining)" } else { "" };
                let labels = crate::output::labels_text(&w.labels);
                let labels = if labels.is_empty() { "-".to_string() } else { labels };
                crate::outln!("{:<14x} {:<16} {:>5} {:>5} {:>5} {:>7}ms  {:<20} {:<16} {}{state}", w.worker_id, w.name, w.slots, w.busy_slots, w.held_attempts, w.last_heartbeat_age_ms, w.build, labels, w.kinds.join(","));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
