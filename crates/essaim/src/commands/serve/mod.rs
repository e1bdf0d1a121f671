//! `essaim serve --model spam-filter@production`: the model runner. It serves models of
//! the registry over the Open Inference Protocol v2 (`POST /v2/models/{name}/infer`),
//! follows their aliases, and rolls candidates out as its model file says
//! (`essaim_runner`).
//!
//! The registry is the coordinator's (`--coordinator`, `--token`, as every verb); a
//! canary's promotions and rollbacks are recorded in its audit log under the actor
//! `essaim-serve`. Every `--usage-interval` it reports the versions it serves, under
//! `--name`, for `essaim models list --usage`.
//!
//! With `--on-cluster --replicas R` the runner runs as R `model.serve` tasks on the
//! cluster's workers instead, and this process is their front on `--listen`
//! ([`cluster`]).

mod cluster;

use crate::client::{ConnectArgs, usage};
use essaim_registry::client::RegistryClient;
use essaim_runner::batch::{BatchLimits, DEFAULT_MAX_BATCH, DEFAULT_MAX_QUEUE, default_scorers};
use essaim_runner::config::{ServedModelPlan, check_distinct, parse_model_arg, parse_model_file};
use essaim_runner::usage::UsageSettings;
use essaim_runner::{Runner, RunnerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Who the registry's audit log names for a runner's canary decisions.
const ACTOR: &str = "essaim-serve";

/// Options of `essaim serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The coordinator (whose registry serves the models), and the trust its
    /// `https://` address and, with --on-cluster, the replicas are verified with.
    #[command(flatten)]
    connect: ConnectArgs,
    /// The certificate the runner (with --on-cluster: the front) serves TLS with;
    /// the replicas serve with their workers' certificates.
    #[command(flatten)]
    tls: crate::tls_args::ServerTlsArgs,
    /// A model to serve, `NAME@ALIAS` or `NAME@VERSION`, answered at
    /// /v2/models/NAME (repeatable).
    #[arg(long = "model", value_name = "NAME@REF")]
    models: Vec<String>,
    /// A model file (TOML) listing models with their rollout: an A/B split, a shadow
    /// or a canary (`--config` is the essaim.toml of every verb).
    #[arg(long, value_name = "FILE")]
    model_config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Most requests scored in one batch.
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH)]
    max_batch: usize,
    /// Longest a batch waits to fill, from its first request, once a scorer is free:
    /// `0` (the default) scores what is queued at once; `2ms` waits for company.
    #[arg(long, value_name = "DURATION", value_parser = crate::durations::millis, default_value = "0")]
    max_batch_delay: Duration,
    /// Most batches of one version scored at once (default: one per core).
    #[arg(long, value_name = "N")]
    scorers: Option<usize>,
    /// Most requests admitted per version (queued or being scored); more get 429.
    #[arg(long, default_value_t = DEFAULT_MAX_QUEUE)]
    max_queue: usize,
    /// How often the registry is asked which versions the aliases name.
    #[arg(long, value_name = "DURATION", value_parser = crate::durations::seconds, default_value = "5s")]
    reload_interval: Duration,
    /// The runner's name in the governance view (`essaim models list --usage`);
    /// default HOSTNAME:PORT.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The URL clients reach this runner at, as the governance view shows it; default
    /// http:// (https:// with --tls-cert) and the address listened on.
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
    /// How often the runner tells the registry which versions it serves; the registry
    /// forgets a runner that misses three.
    #[arg(long, value_name = "DURATION", value_parser = crate::durations::seconds, default_value = "5s")]
    usage_interval: Duration,
    /// Run the runner as `--replicas` long-running tasks on the cluster's workers,
    /// this process being their front on `--listen` (`--advertise`: the URL the
    /// workers reach it at; `--name`: the replicas' name in the governance view).
    #[arg(long)]
    on_cluster: bool,
    /// With --on-cluster: how many replicas of the runner.
    #[arg(long, value_name = "N", default_value_t = 2, requires = "on_cluster")]
    replicas: u32,
    /// With --on-cluster: run the replicas only on workers carrying this label,
    /// `KEY=VALUE` (repeatable: every one must match), e.g. `--require-label gpu=yes`.
    #[arg(
        long = "require-label",
        value_name = "KEY=VALUE",
        value_parser = essaim_core::labels::parse_label,
        requires = "on_cluster"
    )]
    required_labels: Vec<(String, String)>,
}

/// What `--model` and `--model-config` say, read once.
struct ModelArgs {
    /// The plans, checked.
    plans: Vec<ServedModelPlan>,
    /// The model file's text, for replicas that parse it again.
    model_file: Option<String>,
}

fn read_models(args: &Args) -> anyhow::Result<ModelArgs> {
    let mut plans = Vec::new();
    for text in &args.models {
        plans.push(parse_model_arg(text).map_err(|error| usage(error.to_string()))?);
    }
    let mut model_file = None;
    if let Some(path) = &args.model_config {
        let text = std::fs::read_to_string(path)
            .map_err(|error| usage(format!("--model-config {}: {error}", path.display())))?;
        let from_file = parse_model_file(&text)
            .map_err(|error| usage(format!("{}: {error}", path.display())))?;
        plans.extend(from_file);
        model_file = Some(text);
    }
    check_distinct(&plans).map_err(|error| usage(error.to_string()))?;
    Ok(ModelArgs { plans, model_file })
}

fn batch_limits(args: &Args) -> anyhow::Result<BatchLimits> {
    if args.max_batch == 0 || args.max_queue == 0 || args.scorers == Some(0) {
        return Err(usage(
            "--max-batch, --max-queue and --scorers must be at least 1",
        ));
    }
    Ok(BatchLimits {
        max_batch: args.max_batch,
        max_delay: args.max_batch_delay,
        max_queue: args.max_queue,
        scorers: args.scorers.unwrap_or_else(default_scorers),
    })
}

/// The registry: the first coordinator's.
fn registry_url(args: &Args) -> String {
    args.connect
        .coordinator
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let models = read_models(&args)?;
    let limits = batch_limits(&args)?;
    if args.usage_interval < Duration::from_millis(100) {
        return Err(usage("--usage-interval must be at least 100ms"));
    }
    if args.on_cluster {
        return cluster::run(&args, models, limits).await;
    }
    let tls = args.tls.load()?;
    let trust = args.connect.trust.load()?;
    let client = RegistryClient::new_trusting(
        &registry_url(&args),
        args.connect.token()?.as_deref(),
        ACTOR,
        &trust,
    )
    .map_err(|error| usage(error.to_string()))?;
    let scheme = essaim_tls::url_scheme(tls.as_ref());
    let config = RunnerConfig {
        listen: args.listen,
        models: models.plans,
        limits,
        reload_interval: args.reload_interval,
        client,
        usage: UsageSettings {
            name: args.name,
            address: args.advertise,
            interval: args.usage_interval,
        },
        tls,
    };
    let runner = Runner::start(config).await.map_err(|error| match error {
        essaim_runner::RunnerError::Config(error) => usage(error.to_string()),
        other => anyhow::Error::from(other),
    })?;
    eprintln!(
        "model runner on {scheme}://{}/v2/models/{{name}}/infer",
        runner.local_addr()
    );
    super::shutdown_signal().await;
    runner.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
