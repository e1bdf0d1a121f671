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
mod config;
mod durations;
mod jobs;
mod lifeline;
mod local_cluster;
mod output;
mod progress;
mod rest_client;
mod secrets;
mod tls_args;

pub use essaim_mapreduce as mapreduce;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
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
    /// Configuration file (default: the first of
    /// $XDG_CONFIG_HOME/essaim/essaim.toml and /etc/essaim/essaim.toml; '' for none).
    /// Its settings come after flags and ESSAIM_* variables: `essaim config show`.
    #[arg(long, global = true, env = "ESSAIM_CONFIG", value_name = "FILE")]
    config: Option<std::ffi::OsString>,
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
    Gen(commands::generate::GenArgs),
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
    /// Interactive serving of an index job's output: `essaim index serve`.
    Index(commands::index::IndexArgs),
    /// Ask a query root (`essaim index serve`) for the documents matching words.
    Query(commands::query::QueryArgs),
    /// The sharded, replicated cache: `essaim cache node`, `essaim cache proxy`.
    Cache(commands::cache::CacheArgs),
    /// Cancel a job.
    Cancel(commands::jobs::CancelArgs),
    /// List live workers.
    Workers(commands::jobs::WorkersArgs),
    /// The coordinators: which leads, its epoch, the standbys, etcd's health.
    Cluster(commands::cluster::Args),
    /// Inspect and act on the dead-letter queue.
    Dlq(commands::dlq::Args),
    /// List the input records a job skipped (`-D skip.records.max=N`), from its output;
    /// `--export FILE` writes them out to run again as input.
    Skipped(commands::skipped::Args),
    /// Train a model on the cluster and register it as a new version.
    Train(commands::train::Args),
    /// The model registry: list, show, register, alias, promote, roll back, archive, audit.
    Models(commands::models::Args),
    /// Serve the model registry on its own, without a coordinator (`/registry/v1`), on
    /// the embedded store or a PostgreSQL database several registries share.
    Registry(commands::registry::Args),
    /// Serve registry models over the Open Inference Protocol v2, following their
    /// aliases, with A/B, shadow and canary rollout (`essaim serve --model NAME@ALIAS`).
    Serve(commands::serve::Args),
    /// The effective configuration: each setting, its value and where it came from.
    Config(commands::config::Args),
    /// Run a demo on an embedded local cluster.
    Demo(commands::demo::Args),
    /// Evaluate the platform on local clusters: throughput vs workers, load balance,
    /// recovery, elasticity and cost, as JSON, SVG plots and a Markdown summary.
    Eval(commands::eval::Args),
    /// Service-level objectives: `essaim slo rules slo.toml` prints their Prometheus rules.
    Slo(commands::slo::Args),
    /// Benchmark drivers (used by bench/); prints METRIC lines.
    #[command(hide = true)]
    Bench(commands::bench::Args),
}

/// Runs the essaim command line with `jobs` registered next to the built-in MapReduce
/// jobs: the entry point of a binary that links its own jobs (see the crate doc).
pub fn main_with_jobs(jobs: Vec<Arc<dyn JobDefinition>>) -> ExitCode {
    jobs::install(jobs);
    // Before anything serves /metrics: `essaim_build_info` names this build (build.rs).
    essaim_telemetry::BuildInfo::record_for_this_process(essaim_telemetry::BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        revision: env!("ESSAIM_BUILD_REVISION").to_string(),
        rustc: env!("ESSAIM_BUILD_RUSTC").to_string(),
    });
    // After `jobs::install`: `essaim submit JOB` has a subcommand per installed job.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (cli, layered) = match parse_command_line(&argv) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    // The demo's story is on stdout; its cluster only speaks up when something is wrong.
    let quiet = match &cli.command {
        Command::Demo(_) | Command::Run(_) | Command::Gen(_) => true,
        Command::Submit(args) => args.mapreduce_job().is_some(),
        _ => false,
    };
    let default_level = if quiet {
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
    let command_span = client_span(&cli);
    let command = async move {
        match cli.command {
            Command::Local(args) => commands::local::run(args).await,
            Command::Coordinator(args) => commands::coordinator::run(args).await,
            Command::Worker(args) => commands::worker::run(args).await,
            Command::Submit(args) => commands::submit::run(args).await,
            Command::Run(args) => commands::mapreduce::run(args).await,
            Command::Gen(args) => commands::generate::generate(args),
            Command::Jobs(args) => commands::jobs::list(args).await,
            Command::Status(args) => commands::jobs::status(args).await,
            Command::Wait(args) => commands::jobs::wait(args).await,
            Command::Results(args) => commands::results::run(args).await,
            Command::Report(args) => commands::report::run(args).await,
            Command::Replay(args) => commands::replay::run(args).await,
            Command::Stream(args) => commands::stream::run(args).await,
            Command::Ingest(args) => commands::ingest::run(args).await,
            Command::Index(args) => commands::index::run(args).await,
            Command::Query(args) => commands::query::run(args).await,
            Command::Cache(args) => commands::cache::run(args).await,
            Command::Cancel(args) => commands::jobs::cancel(args).await,
            Command::Workers(args) => commands::jobs::workers(args).await,
            Command::Cluster(args) => commands::cluster::run(args).await,
            Command::Dlq(args) => commands::dlq::run(args).await,
            Command::Skipped(args) => commands::skipped::run(args).await,
            Command::Models(args) => commands::models::run(args).await,
            Command::Registry(args) => commands::registry::run(args).await,
            Command::Train(args) => commands::train::run(args).await,
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Config(args) => commands::config::run(args, layered),
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Eval(args) => commands::eval::run(args).await,
            Command::Slo(args) => commands::slo::run(args),
            Command::Bench(args) => commands::bench::run(args).await,
        }
    };
    let result = runtime.block_on(tracing::Instrument::instrument(command, command_span));
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

/// The command line with the configuration file layered under it (see `config`).
pub(crate) struct Layered {
    /// clap's command, with every option's variable and the file's defaults.
    pub command: clap::Command,
    /// The file, if one was read.
    pub file: Option<config::ConfigFile>,
}

/// Reads the configuration file and parses the command line over it; on failure, says
/// why and returns the exit code (2: bad usage or configuration).
fn parse_command_line(argv: &[std::ffi::OsString]) -> Result<(Cli, Layered), ExitCode> {
    let refuse_file = |error: config::ConfigError| {
        eprintln!("error: {}", essaim_core::error_chain::error_chain(&error));
        ExitCode::from(2)
    };
    let file = config::load_for_process(argv).map_err(refuse_file)?;
    let command = config::layer(Cli::command(), file.as_ref()).map_err(refuse_file)?;
    let matches = command
        .clone()
        .try_get_matches_from(argv)
        .map_err(|error| refuse_command_line(error, argv.to_vec()))?;
    let cli = Cli::from_arg_matches(&matches)
        .map_err(|error| refuse_command_line(error, argv.to_vec()))?;
    Ok((cli, Layered { command, file }))
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
        Command::Registry(_) => "essaim-registry",
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

/// Returns the span a client command runs in when spans are exported, so that the
/// coordinator's and the workers' spans of what it asked join one trace, itself a child
/// of `TRACEPARENT` when a script set it. Processes that serve (a coordinator, a
/// worker, a local cluster) get none: each request they serve starts its own span.
fn client_span(cli: &Cli) -> tracing::Span {
    let exporting = cli
        .otlp_endpoint
        .as_deref()
        .is_some_and(|endpoint| !endpoint.is_empty());
    let verb = match &cli.command {
        Command::Submit(_) => "essaim submit",
        Command::Jobs(_) => "essaim jobs",
        Command::Status(_) => "essaim status",
        Command::Wait(_) => "essaim wait",
        Command::Results(_) => "essaim results",
        Command::Report(_) => "essaim report",
        Command::Cancel(_) => "essaim cancel",
        Command::Workers(_) => "essaim workers",
        Command::Dlq(_) => "essaim dlq",
        Command::Train(_) => "essaim train",
        Command::Models(_) => "essaim models",
        Command::Query(_) => "essaim query",
        _ => return tracing::Span::none(),
    };
    if !exporting {
        return tracing::Span::none();
    }
    let span = tracing::info_span!("command", otel.name = verb, otel.kind = "client");
    essaim_telemetry::trace_context::set_parent_from_environment(&span);
    span
}

/// Reports a command line clap refused and returns the exit code (clap's own: 2 for bad
/// usage, 0 for `--help` and `--version`). One case gets a better message than clap's:
/// `essaim submit WORD …` where WORD names no MapReduce job (clap sees an unexpected
/// argument, since the task-farm form takes no word there).
fn refuse_command_line(error: clap::Error, argv: Vec<std::ffi::OsString>) -> ExitCode {
    if let Some(word) = unknown_submitted_job(&argv)
        && error.kind() == clap::error::ErrorKind::UnknownArgument
    {
        eprintln!("error: {:#}", commands::mapreduce::unknown_job(word));
        return ExitCode::from(2);
    }
    let _printed = error.print();
    ExitCode::from(if error.use_stderr() { 2 } else { 0 })
}

/// Returns WORD when the command line is `essaim submit WORD …` and WORD is a word (not
/// an option) that names no MapReduce job of this binary.
fn unknown_submitted_job(argv: &[std::ffi::OsString]) -> Option<&str> {
    let [_program, command, word, ..] = argv else {
        return None;
    };
    let word = word.to_str()?;
    let is_job_word = command == "submit" && !word.starts_with('-');
    (is_job_word && jobs::registry().get(word).is_none()).then_some(word)
}

/// Chooses the exit code of a failed command from what failed.
fn exit_code_for(error: &anyhow::Error) -> u8 {
    if let Some(status) = error.downcast_ref::<tonic::Status>() {
        return match status.code() {
            tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::FailedPrecondition => 2,
            tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::Unavailable => 3,
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
    if let Some(error) = error.downcast_ref::<essaim_registry::client::ClientError>() {
        use essaim_registry::client::ClientError;
        return match error {
            ClientError::InvalidUrl { .. } | ClientError::InvalidHeader { .. } => 2,
            ClientError::Unreachable { .. } | ClientError::TimedOut { .. } => 3,
            ClientError::Refused { status, .. } => match status {
                401 | 403 => 3,
                400..=499 => 2,
                _ => 1,
            },
            ClientError::Corrupt { .. } | ClientError::Decode { .. } | ClientError::Io { .. } => 1,
        };
    }
    if error.downcast_ref::<client::UsageError>().is_some() {
        return 2;
    }
    // A registry that cannot open its store, alone or inside a coordinator.
    for cause in error.chain() {
        if let Some(error) = cause.downcast_ref::<essaim_registry::RegistryError>() {
            use essaim_registry::RegistryError;
            return match error {
                RegistryError::StoreLocation { .. } => 2,
                RegistryError::StoreUnreachable { .. } => 3,
                _ => 1,
            };
        }
    }
    if let Some(error) = error.downcast_ref::<essaim_serve_runtime::client::CallError>() {
        use essaim_serve_runtime::client::CallError;
        return match error {
            CallError::InvalidUrl { .. } => 2,
            CallError::Unreachable { .. } => 3,
            CallError::Status { .. } | CallError::Decode { .. } => 1,
        };
    }
    if let Some(error) = error.downcast_ref::<essaim_connect_nats::NatsError>() {
        use essaim_connect_nats::NatsError;
        return match error {
            NatsError::InvalidConfig { .. }
            | NatsError::InvalidUrl { .. }
            | NatsError::Header { .. }
            | NatsError::Read { .. } => 2,
            NatsError::Connect { .. } => 3,
            _ => 1,
        };
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(words: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("essaim").chain(words.iter().copied()))
    }

    fn submit_args(words: &[&str]) -> commands::submit::Args {
        match parse(words) {
            Ok(Cli {
                command: Command::Submit(args),
                ..
            }) => args,
            Ok(_) => panic!("{words:?} is not `submit`"),
            Err(error) => panic!("{words:?}: {error}"),
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// `-o` is `--output`, a format, on every verb that has one, and nothing else.
    #[test]
    fn dash_o_means_the_output_format_everywhere() {
        let command = Cli::command();
        let mut stack = vec![(String::from("essaim"), &command)];
        while let Some((path, verb)) = stack.pop() {
            for arg in verb.get_arguments() {
                let is_output = arg.get_long() == Some("output");
                let is_o = arg.get_short() == Some('o');
                assert_eq!(is_output, is_o, "{path} --{:?}", arg.get_long());
            }
            for sub in verb.get_subcommands() {
                stack.push((format!("{path} {}", sub.get_name()), sub));
            }
        }
    }

    /// The spellings flags had before they were made consistent still parse.
    #[test]
    fn old_spellings_still_parse() {
        let old: [&[&str]; 9] = [
            &["run", "wordcount", "-i", "in", "-o", "out/"],
            &[
                "run",
                "wordcount",
                "-i",
                "in",
                "--output",
                "out",
                "--format",
                "json",
            ],
            &["gen", "sort", "-o", "dir"],
            &[
                "coordinator",
                "--heartbeat-ms",
                "500",
                "--worker-timeout-ms",
                "3000",
            ],
            &[
                "coordinator",
                "--retention-secs",
                "1",
                "--drain-target-secs",
                "5",
            ],
            &["worker", "--drain-grace-secs", "3"],
            &["wait", "1", "--timeout-secs", "2.5"],
            &["report", "1", "--out", "dir"],
            &["jobs", "--format", "json", "--connect-timeout", "2"],
        ];
        for words in old {
            assert!(parse(words).is_ok(), "{words:?}: {:?}", parse(words).err());
        }
        let Ok(Cli {
            command: Command::Coordinator(_),
            ..
        }) = parse(&["coordinator", "--heartbeat", "250ms", "--retention", "7d"])
        else {
            panic!("durations with units parse");
        };
    }

    #[test]
    fn submit_parses_a_mapreduce_job_as_its_subcommand() {
        let words = [
            "submit",
            "wordcount",
            "--input",
            "a",
            "b",
            "--output",
            "out",
        ];
        assert_eq!(submit_args(&words).mapreduce_job(), Some("wordcount"));
        let with_options = [
            "submit",
            "sort",
            "-i",
            "in",
            "-o",
            "out",
            "--reducers",
            "3",
            "--split-size",
            "64KiB",
            "--detach",
            "--coordinator",
            "http://h:1",
        ];
        assert_eq!(submit_args(&with_options).mapreduce_job(), Some("sort"));
        // An unknown job is refused with the list of known jobs.
        let unknown = [
            "essaim", "submit", "wordcont", "--input", "x", "--output", "y",
        ];
        let argv: Vec<std::ffi::OsString> = unknown.iter().map(Into::into).collect();
        assert_eq!(unknown_submitted_job(&argv), Some("wordcont"));
        let error = parse(&unknown[1..]).err().unwrap();
        assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
        let known: Vec<std::ffi::OsString> = ["essaim", "submit", "wordcount"]
            .iter()
            .map(Into::into)
            .collect();
        assert_eq!(unknown_submitted_job(&known), None);
        let missing_output = parse(&["submit", "wordcount", "--input", "a"])
            .err()
            .unwrap();
        assert_eq!(
            missing_output.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn submit_still_parses_every_task_farm_form() {
        let forms: [&[&str]; 5] = [
            &[
                "submit",
                "--kind",
                "sleep",
                "--payload",
                "200",
                "--count",
                "50",
                "--wait",
            ],
            &["submit", "--spec", "job.json"],
            &["submit", "--inputs", "urls.txt", "--", "curl", "-s", "{}"],
            &[
                "submit", "--count", "3", "--output", "json", "--", "echo", "hi",
            ],
            &["submit", "--max-attempts", "4", "--", "/nonexistent/prog"],
        ];
        for words in forms {
            assert_eq!(submit_args(words).mapreduce_job(), None, "{words:?}");
        }
    }

    #[test]
    fn help_describes_the_mapreduce_form_of_submit() {
        let mut command = Cli::command();
        let submit = command.find_subcommand_mut("submit").unwrap();
        let help = submit.render_long_help().to_string();
        for job in ["wordcount", "grep", "sort", "streaming"] {
            assert!(help.contains(job), "{job} missing from:\n{help}");
        }
        let wordcount = jobs::registry().get("wordcount").unwrap();
        let description = wordcount.description();
        assert!(
            help.contains(description),
            "{description} missing from:\n{help}"
        );
        let job_help = parse(&["submit", "wordcount", "--help"]).err().unwrap();
        assert_eq!(job_help.kind(), clap::error::ErrorKind::DisplayHelp);
        let text = job_help.to_string();
        for option in [
            "--input",
            "--output",
            "--reducers",
            "--sort-buffer",
            "--detach",
        ] {
            assert!(text.contains(option), "{option} missing from:\n{text}");
        }
    }

    #[test]
    fn run_takes_a_job_or_lists_them() {
        let run = |words: &[&str]| {
            matches!(
                parse(words),
                Ok(Cli {
                    command: Command::Run(_),
                    ..
                })
            )
        };
        assert!(run(&[
            "run",
            "wordcount",
            "--input",
            "a",
            "--output",
            "out"
        ]));
        assert!(run(&["run", "--list"]));
        assert!(parse(&["run", "--input", "a", "--output", "out"]).is_err());
    }
}
