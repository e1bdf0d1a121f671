//! `essaim stream run|submit|status|stop|rescale`: streaming pipelines as jobs.
//!
//! A pipeline runs as one job named `stream:<name>` whose tasks (kind `stream`) never
//! end on their own, unless `--exit-at-end` asks them to stop once every source
//! partition has ended (an end-of-stream message, as `essaim replay --end-of-stream`
//! publishes). Stopping cancels the job; the pipeline's state stays in PostgreSQL, so
//! submitting it again resumes where it was. Rescaling submits the same pipeline with
//! another parallelism and then cancels the old job: units move between tasks with
//! their state (see `essaim-stream-runtime`).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};
use essaim_coordinator::planning::{StreamMigration, StreamRequest};
use essaim_proto::v1;

use crate::client::{ConnectArgs, CoordinatorCalls, usage};
use crate::local_cluster::{LocalCluster, LocalOptions};

/// `essaim stream …`.
#[derive(Args, Debug)]
pub struct StreamArgs {
    #[command(subcommand)]
    command: StreamCommand,
}

#[derive(Subcommand, Debug)]
enum StreamCommand {
    /// Runs a pipeline on a local cluster started for it, until Ctrl-C (or the end of
    /// its input with --exit-at-end).
    Run(RunArgs),
    /// Submits a pipeline to a running cluster.
    Submit(SubmitArgs),
    /// Shows a pipeline's job and, with --postgres, each unit's committed position.
    Status(super::stream_status::StatusArgs),
    /// Stops a pipeline (its state stays in PostgreSQL).
    Stop(NameArgs),
    /// Runs a pipeline with another parallelism, moving its partitions and state.
    Rescale(SubmitArgs),
}

/// What to run and where its servers are.
#[derive(Args, Debug, Clone)]
pub(crate) struct PipelineArgs {
    /// The pipeline spec (TOML).
    pub(crate) spec: PathBuf,
    /// The pipeline's name (default: the spec's file stem). Its state is keyed by it.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Tasks per stage (default: one per unit, so that the coordinator spreads the
    /// units over the workers and moves some as workers join, drain or die).
    #[arg(long)]
    pub(crate) parallelism: Option<u32>,
    /// NATS server (for NATS connectors and the shuffle of a sharder).
    #[arg(long, env = "ESSAIM_NATS_URL")]
    pub(crate) nats: Option<String>,
    /// Kafka bootstrap address (for Kafka connectors).
    #[arg(long, env = "ESSAIM_KAFKA_BOOTSTRAP")]
    pub(crate) kafka: Option<String>,
    /// The model registry (a coordinator's URL) `predict` operators load their models
    /// from (`stream submit` defaults to the coordinator it submits to).
    #[arg(long, env = "ESSAIM_REGISTRY_URL")]
    pub(crate) registry: Option<String>,
    /// PostgreSQL, where results, positions and checkpoints go.
    #[arg(long, env = "ESSAIM_POSTGRES_URL")]
    pub(crate) postgres: String,
    /// Stop once every source partition has ended and everything is committed.
    #[arg(long)]
    pub(crate) exit_at_end: bool,
    /// Most messages per commit.
    #[arg(long, default_value_t = essaim_planning::stream::DEFAULT_BATCH_MAX)]
    pub(crate) batch_max: usize,
    /// Longest wait for a batch (bare number: milliseconds): the latency floor when
    /// the input is slow (a full batch goes at once).
    #[arg(long, alias = "batch-wait-ms", value_parser = crate::durations::millis, default_value = "20ms")]
    pub(crate) batch_wait: Duration,
    /// What to do with state the pipeline's units made under another spec: keep it,
    /// reset it (positions kept) or rebuild it from the sources; without it, such
    /// state is refused.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["keep", "reset", "rebuild"])
        .try_map(|text| text.parse::<StreamMigration>()))]
    pub(crate) migrate: Option<StreamMigration>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Worker processes of the local cluster.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Directory of the local cluster (default: a temporary one).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SubmitArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Wait for the job to end.
    #[arg(long)]
    wait: bool,
}

#[derive(Args, Debug)]
struct NameArgs {
    /// The pipeline's name.
    name: String,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Runs `essaim stream …`.
pub async fn run(args: StreamArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StreamCommand::Run(args) => run_local(args).await,
        StreamCommand::Submit(args) => submit(args, false).await,
        StreamCommand::Rescale(args) => submit(args, true).await,
        StreamCommand::Status(args) => super::stream_status::run(args).await,
        StreamCommand::Stop(args) => stop(args).await,
    }
}

/// The name of the job a pipeline runs as.
pub(crate) fn job_name(pipeline: &str) -> String {
    essaim_planning::stream::job_name(pipeline)
}

/// Reads the spec and cuts it into tasks (its tables are read relative to it).
pub(crate) fn build_job(args: &PipelineArgs) -> anyhow::Result<(String, v1::JobSpec)> {
    let text = std::fs::read_to_string(&args.spec)
        .map_err(|error| usage(format!("cannot read `{}`: {error}", args.spec.display())))?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => args
            .spec
            .file_stem()
            .map(|stem| stem.to_string_lossy().replace(['.', ' '], "_"))
            .unwrap_or_else(|| "pipeline".to_owned()),
    };
    // Workers resolve the spec's relative paths against this: absolute, whatever the
    // working directory the spec was named from.
    let spec_path = std::path::absolute(&args.spec).unwrap_or_else(|_| args.spec.clone());
    let directory = spec_path.parent().unwrap_or(Path::new("."));
    warn_of_inline_passwords(args);
    let request = StreamRequest {
        kind: Default::default(),
        name: name.clone(),
        spec: text,
        tables: BTreeMap::new(),
        base_dir: Some(directory.display().to_string()),
        postgres: args.postgres.clone(),
        nats: args.nats.clone(),
        kafka: args.kafka.clone(),
        registry: args.registry.clone(),
        parallelism: args.parallelism,
        exit_at_end: args.exit_at_end,
        batch_max: Some(args.batch_max),
        batch_wait_ms: Some(u64::try_from(args.batch_wait.as_millis()).unwrap_or(u64::MAX)),
        migrate: args.migrate,
        required_labels: BTreeMap::new(),
    };
    let job =
        essaim_planning::stream::job_spec(&request, essaim_planning::stream::Tables::InlineOrFiles)
            .map_err(|error| usage(format!("{}: {error}", args.spec.display())))?;
    Ok((name, job))
}

/// Warns when an endpoint holds a password written out: it would travel in every task's
/// payload and in the coordinator's journal. A reference (`${env:NAME}`,
/// `${file:PATH}`) is resolved by the workers instead.
fn warn_of_inline_passwords(args: &PipelineArgs) {
    let endpoints = [
        Some(&args.postgres),
        args.nats.as_ref(),
        args.kafka.as_ref(),
        args.registry.as_ref(),
    ];
    for url in endpoints.into_iter().flatten() {
        if essaim_connect::secrets::has_inline_password(url) {
            eprintln!(
                "warning: an endpoint holds a password, which travels in the job's payload and journal; write it as ${{env:NAME}} or ${{file:PATH}}, read on the workers (see the README's security section)"
            );
            return;
        }
    }
}

async fn running_jobs(
    coordinator: &CoordinatorCalls,
    name: &str,
) -> anyhow::Result<Vec<v1::JobStatus>> {
    let jobs = super::jobs::all_jobs(coordinator).await?;
    Ok(jobs
        .into_iter()
        .filter(|job| job.name == job_name(name) && job.state == "running")
        .collect())
}

/// Cancels one job (a repeat leaves it cancelled).
async fn cancel(coordinator: &CoordinatorCalls, job_id: u64) -> anyhow::Result<()> {
    coordinator
        .read(|mut client| async move { client.cancel_job(v1::CancelJobRequest { job_id }).await })
        .await?;
    Ok(())
}

async fn submit(mut args: SubmitArgs, rescale: bool) -> anyhow::Result<ExitCode> {
    if rescale && args.pipeline.migrate.is_some() {
        // The old job's units may still commit while the new ones migrate.
        return Err(usage(
            "a rescale keeps the spec: stop the pipeline, then submit it with --migrate",
        ));
    }
    if args.pipeline.registry.is_none() {
        // The coordinator a pipeline is submitted to holds the registry its models
        // most likely come from.
        let first = args
            .connect
            .coordinator
            .split(',')
            .next()
            .unwrap_or_default();
        args.pipeline.registry = Some(first.trim().to_owned());
    }
    let (name, job) = build_job(&args.pipeline)?;
    let tasks = job.tasks.len();
    let coordinator = args.connect.coordinator()?;
    let previous = running_jobs(&coordinator, &name).await?;
    if !rescale && !previous.is_empty() {
        return Err(usage(format!(
            "pipeline `{name}` already runs as job {}: stop it or rescale it",
            previous[0].job_id
        )));
    }
    if rescale && previous.is_empty() {
        return Err(usage(format!("pipeline `{name}` is not running")));
    }
    let job_id = coordinator.submit_job(job).await?;
    eprintln!("pipeline `{name}`: job {job_id}, {tasks} stream tasks");
    for old in previous {
        cancel(&coordinator, old.job_id).await?;
        eprintln!("pipeline `{name}`: job {} stopped", old.job_id);
    }
    if args.wait {
        return super::jobs::wait_with_progress(&coordinator, job_id, None, Default::default())
            .await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn stop(args: NameArgs) -> anyhow::Result<ExitCode> {
    let coordinator = args.connect.coordinator()?;
    let running = running_jobs(&coordinator, &args.name).await?;
    if running.is_empty() {
        eprintln!("pipeline `{}` is not running", args.name);
        return Ok(ExitCode::from(1));
    }
    for job in running {
        cancel(&coordinator, job.job_id).await?;
        eprintln!("pipeline `{}`: job {} stopped", args.name, job.job_id);
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_local(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (name, job) = build_job(&args.pipeline)?;
    let tasks = job.tasks.len();
    let temporary;
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::tempdir()?;
            temporary.path().to_path_buf()
        }
    };
    let options = LocalOptions::for_demo(args.workers.max(1), data_dir);
    let cluster = LocalCluster::start(options).await?;
    let coordinator = CoordinatorCalls::local(&cluster.url)?;
    let job_id = coordinator.submit_job(job).await?;
    eprintln!(
        "pipeline `{name}` runs as job {job_id} ({tasks} stream tasks) on a local cluster at {}",
        cluster.url
    );
    let outcome = tokio::select! {
        waited = super::jobs::wait_with_progress(&coordinator, job_id, None, Default::default()) => waited,
        () = super::shutdown_signal() => {
            cancel(&coordinator, job_id).await?;
            Ok(ExitCode::SUCCESS)
        }
    };
    cluster.stop(Duration::from_secs(5)).await?;
    outcome
}
