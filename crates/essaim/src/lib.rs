//! essaim: a distributed data-processing platform — a coordinator and pulling workers
//! running task farms and MapReduce batch jobs — as one binary.
//!
//! The `essaim` binary is [`main_with_jobs`] with no extra jobs. A program that brings
//! its own MapReduce jobs in Rust implements [`mapreduce::api::JobDefinition`] and calls
//! `essaim::main_with_jobs(vec![Arc::new(MyJob)])` from its `main`: the result is the
//! whole essaim command line (coordinator, worker, local cluster, `run`, `submit`) with
//! the job available everywhere, since the local cluster starts its workers from the
//! same executable. See `examples/custom-job` in the repository.
//!
//! Exit codes are decided here, in one place: 0 success, 1 the job or request failed,
//! 2 bad usage or input, 3 the coordinator is unreachable or refused us.

mod client;
mod commands;
mod jobs;
mod local_cluster;
mod output;
mod progress;
mod rest_client;

pub use essaim_mapreduce as mapreduce;

use clap::{Parser, Subcommand};
use essaim_mapreduce::api::JobDefinition;
use std::process::ExitCode;
use std::sync::Arc;

/// essaim: a distributed task farm with a coordinator and pulling workers.
#[derive(Parser)]
#[command(name = "essaim", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log as JSON lines instead of text (logs go to standard error).
    #[arg(long, global = true, env = "ESSAIM_LOG_JSON")]
    log_json: bool,
    /// Export spans over OTLP/gRPC to this collector, e.g. http://127.0.0.1:4317
    /// (default: no export).
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Start an embedded cluster on loopback: a coordinator and N worker processes.
    Local(commands::local::Args),
    /// Run a coordinator.
    Coordinator(commands::coordinator::Args),
    /// Run a worker that pulls tasks from a coordinator.
    Worker(commands::worker::Args),
    /// Submit a task-farm job, or a MapReduce job (`essaim submit wordcount …`).
    Submit(commands::submit::Args),
    /// Run a MapReduce job on an embedded local cluster and wait for it.
    Run(commands::mapreduce::RunArgs),
    /// Generate sample input for the built-in MapReduce jobs.
    Gen(commands::mapreduce::GenArgs),
    /// `essaim submit JOB …`: recognised before clap parses (see [`mapreduce_submit`]).
    #[command(skip)]
    SubmitJob(Vec<std::ffi::OsString>),
    /// List jobs.
    Jobs(commands::jobs::ListArgs),
    /// Show a job's status.
    Status(commands::jobs::StatusArgs),
    /// Wait for a job to finish, with a progress bar.
    Wait(commands::jobs::WaitArgs),
    /// Print a job's committed results.
    Results(commands::results::Args),
    /// Write a job's HTML report, with its plots as SVG and its data as JSON.
    Report(commands::report::Args),
    /// Publish a CSV data set to a NATS JetStream subject, paced by its event times.
    Replay(commands::replay::Args),
    /// An HTTP endpoint that stores posted lines in NATS JetStream.
    Ingest(commands::ingest::Args),
    /// Streaming pipelines: run, submit, status, stop, rescale.
    Stream(commands::stream::StreamArgs),
    /// Cancel a job.
    Cancel(commands::jobs::CancelArgs),
    /// List live workers.
    Workers(commands::jobs::WorkersArgs),
    /// Inspect and act on the dead-letter queue.
    Dlq(commands::dlq::Args),
    /// Run a demo on an embedded local cluster.
    Demo(commands::demo::Args),
    /// Evaluate the platform on local clusters: throughput vs workers, load balance,
    /// recovery, elasticity and cost, as JSON, SVG plots and a Markdown summary.
    Eval(commands::eval::Args),
    /// Benchmark drivers (used by bench/); prints METRIC lines.
    #[command(hide = true)]
    Bench(commands::bench::Args),
}

/// Runs the essaim command line with `jobs` registered next to the built-in MapReduce
/// jobs: the entry point of a binary that links its own jobs (see the crate doc).
pub fn main_with_jobs(jobs: Vec<Arc<dyn JobDefinition>>) -> ExitCode {
    jobs::install(jobs);
    let cli = match mapreduce_submit(std::env::args_os().collect()) {
        Some(words) => Cli {
            command: Command::SubmitJob(words),
            log_json: std::env::var_os("ESSAIM_LOG_JSON").is_some(),
            otlp_endpoint: std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok(),
        },
        None => Cli::parse(),
    };
    // The demo's story is on stdout; its cluster only speaks up when something is wrong.
    let default_level = if matches!(
        cli.command,
        Command::Demo(_) | Command::Run(_) | Command::Gen(_) | Command::SubmitJob(_)
    ) {
        tracing::level_filters::LevelFilter::WARN
    } else {
        tracing::level_filters::LevelFilter::INFO
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    // Inside the runtime: the OTLP exporter's gRPC client is created on it.
    let tracing_guard = match runtime.block_on(async { install_tracing(&cli, default_level) }) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Local(args) => commands::local::run(args).await,
            Command::Coordinator(args) => commands::coordinator::run(args).await,
            Command::Worker(args) => commands::worker::run(args).await,
            Command::Submit(args) => commands::submit::run(args).await,
            Command::Run(args) => commands::mapreduce::run(args).await,
            Command::Gen(args) => commands::mapreduce::generate(args),
            Command::SubmitJob(words) => commands::mapreduce::submit_words(words).await,
            Command::Jobs(args) => commands::jobs::list(args).await,
            Command::Status(args) => commands::jobs::status(args).await,
            Command::Wait(args) => commands::jobs::wait(args).await,
            Command::Results(args) => commands::results::run(args).await,
            Command::Report(args) => commands::report::run(args).await,
            Command::Replay(args) => commands::replay::run(args).await,
            Command::Stream(args) => commands::stream::run(args).await,
            Command::Ingest(args) => commands::ingest::run(args).await,
            Command::Cancel(args) => commands::jobs::cancel(args).await,
            Command::Workers(args) => commands::jobs::workers(args).await,
            Command::Dlq(args) => commands::dlq::run(args).await,
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Eval(args) => commands::eval::run(args).await,
            Command::Bench(args) => commands::bench::run(args).await,
        }
    });
    // Flushes the spans still buffered, while the runtime still runs their gRPC client.
    drop(tracing_guard);
    // Do not wait for lingering blocking tasks (a stdin reader, say) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit_code_for(&error))
        }
    }
}

/// Installs the log subscriber, exporting spans over OTLP when an endpoint is set, under
/// the name of the role this process plays.
fn install_tracing(
    cli: &Cli,
    default_level: tracing::level_filters::LevelFilter,
) -> Result<essaim_telemetry::TracingGuard, essaim_telemetry::TracingError> {
    let service_name = match cli.command {
        Command::Coordinator(_) | Command::Local(_) => "essaim-coordinator",
        Command::Worker(_) => "essaim-worker",
        _ => "essaim",
    };
    // An empty endpoint means "unset", as the OpenTelemetry specification says.
    let otlp = cli
        .otlp_endpoint
        .iter()
        .find(|endpoint| !endpoint.is_empty())
        .map(|endpoint| essaim_telemetry::OtlpOptions {
            endpoint: endpoint.clone(),
            service_name: service_name.to_string(),
        });
    if let Some(otlp) = &otlp {
        // Worker processes this one starts (`essaim local`, the demos) export there too.
        let _set_once = local_cluster::OTLP_ENDPOINT.set(otlp.endpoint.clone());
    }
    essaim_telemetry::install_tracing(essaim_telemetry::TracingOptions {
        json: cli.log_json,
        default_level,
        otlp,
    })
}

/// Returns the words from JOB on when the command line is `essaim submit JOB …` with
/// JOB a word rather than an option: a MapReduce job, whose options are its own. (A
/// task-farm `essaim submit` starts with an option or `--`.)
fn mapreduce_submit(argv: Vec<std::ffi::OsString>) -> Option<Vec<std::ffi::OsString>> {
    let mut words = argv.into_iter().skip(1);
    if words.next()? != "submit" {
        return None;
    }
    let rest: Vec<std::ffi::OsString> = words.collect();
    let first = rest.first()?.to_str()?;
    (!first.starts_with('-')).then_some(rest)
}

/// Chooses the exit code of a failed command from what failed.
fn exit_code_for(error: &anyhow::Error) -> u8 {
    if let Some(status) = error.downcast_ref::<tonic::Status>() {
        return match status.code() {
            tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::FailedPrecondition => 2,
            tonic::Code::Unauthenticated | tonic::Code::Unavailable => 3,
            _ => 1,
        };
    }
    if error.downcast_ref::<essaim_proto::ClientError>().is_some() {
        return 3;
    }
    if let Some(error) = error.downcast_ref::<rest_client::RestError>() {
        use rest_client::RestError;
        return match error {
            RestError::InvalidUrl { .. } | RestError::InvalidToken | RestError::NotFound { .. } => {
                2
            }
            RestError::Unreachable { .. }
            | RestError::TimedOut { .. }
            | RestError::Unauthorized { .. } => 3,
            RestError::Status { .. } | RestError::Decode { .. } => 1,
        };
    }
    if error.downcast_ref::<client::UsageError>().is_some() {
        return 2;
    }
    if let Some(error) = error.downcast_ref::<essaim_connect_nats::NatsError>() {
        use essaim_connect_nats::NatsError;
        return match error {
            NatsError::InvalidConfig { .. } | NatsError::Header { .. } | NatsError::Read { .. } => {
                2
            }
            NatsError::Connect { .. } => 3,
            _ => 1,
        };
    }
    1
}
