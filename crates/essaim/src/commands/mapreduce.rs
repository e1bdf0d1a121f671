//! `essaim run JOB` (on an embedded local cluster) and `essaim submit JOB` (to a running
//! cluster): plan a MapReduce job, submit it, follow its stages, print a summary.
//!
//! The client does all the planning (inputs, splits, parameters, output directory; see
//! `essaim_mapreduce::plan`) so a malformed request fails here with exit code 2 before any
//! task runs. The output directory must be reachable by every worker under the same path
//! (a shared file system, or one machine).

mod summary;
pub(crate) use summary::print_summary;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use essaim_coordinator::planning::{MapReduceRequest, S3Request};
use essaim_mapreduce::api::JobParams;
use essaim_mapreduce::config::{
    DEFAULT_MERGE_FACTOR, DEFAULT_OPEN_COST_BYTES, DEFAULT_REDUCERS, DEFAULT_SLOW_START,
    DEFAULT_SORT_BUFFER_BYTES, DEFAULT_SPLIT_BYTES,
};
use essaim_mapreduce::plan::PlannedJob;
use essaim_planning::mapreduce::Overwrite;
use essaim_proto::{CoordinatorClient, v1};

use super::job_files::{JobFilesArgs, ShippedFiles};
use crate::client::{ConnectArgs, CoordinatorCalls, usage};
use crate::local_cluster::{LocalCluster, LocalOptions};
use crate::output::{FormatOrDirectory, OutputFormat, print_json};
use crate::progress::StageBars;
use std::io::IsTerminal;

/// What every MapReduce job takes, on `run` and `submit` alike (the job itself is named
/// by `run`'s first word, or by `submit`'s subcommand).
#[derive(clap::Args, Debug, Clone)]
pub struct JobArgs {
    /// List the jobs this binary knows and exit.
    #[arg(long)]
    list: bool,
    /// Input files, directories or globs (repeat or separate with spaces).
    #[arg(long = "input", short = 'i', num_args = 1.., required_unless_present = "list")]
    inputs: Vec<String>,
    /// Output directory, or `s3://bucket/prefix` (refused if it exists, unless
    /// --overwrite). Inputs may be `s3://bucket/prefix` too.
    #[arg(long, value_name = "DIR", required_unless_present_any = ["list", "output"])]
    output_dir: Option<PathBuf>,
    /// Output format of the summary: text or json. Any other value names the output
    /// directory, as `-o DIR` did before --output-dir.
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = FormatOrDirectory::parse)]
    output: Option<FormatOrDirectory>,
    /// Output format of the summary, beside the old `--output DIR`.
    #[arg(long, value_enum, hide_short_help = true)]
    format: Option<OutputFormat>,
    /// Endpoint of an S3-compatible store for `s3://` inputs and outputs, e.g.
    /// http://127.0.0.1:9000 (default: AWS_ENDPOINT, else AWS). Workers use it too;
    /// credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY on each process.
    #[arg(long, env = "ESSAIM_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Region of the S3 store (default: AWS_REGION, else us-east-1).
    #[arg(long, env = "ESSAIM_S3_REGION")]
    s3_region: Option<String>,
    /// Allow an http:// S3 endpoint (test servers).
    #[arg(long, env = "ESSAIM_S3_ALLOW_HTTP")]
    s3_allow_http: bool,
    /// Replace the output directory if it exists.
    #[arg(long)]
    overwrite: bool,
    /// Reduce tasks per step.
    #[arg(long, short = 'r', env = "ESSAIM_MAPREDUCE_REDUCERS", default_value_t = DEFAULT_REDUCERS)]
    reducers: u32,
    /// A job parameter, `name=value` (repeatable).
    #[arg(long = "param", short = 'D', value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// grep: the regular expression (same as -D pattern=…).
    #[arg(long)]
    pattern: Option<String>,
    /// streaming: the mapper command of a one-step job (same as -D step.0.mapper=…).
    #[arg(long)]
    mapper: Option<String>,
    /// streaming: the reducer command of a one-step job.
    #[arg(long)]
    reducer: Option<String>,
    /// streaming: the combiner command of a one-step job.
    #[arg(long)]
    combiner: Option<String>,
    /// streaming: run an mrjob script (every step, with its own --step-num flags).
    #[arg(long, value_name = "SCRIPT")]
    mrjob: Option<PathBuf>,
    /// Python interpreter for --mrjob.
    #[arg(long, env = "ESSAIM_MAPREDUCE_PYTHON", default_value = "python3")]
    python: String,
    #[command(flatten)]
    job_files: JobFilesArgs,
    /// Split size, e.g. 64MiB or 1000000.
    #[arg(long, env = "ESSAIM_MAPREDUCE_SPLIT_SIZE", value_parser = parse_size, default_value_t = DEFAULT_SPLIT_BYTES)]
    split_size: u64,
    /// Files smaller than the split size are packed several to a map task, each
    /// counted as its size plus this much, e.g. 64KiB (Spark's openCostInBytes).
    #[arg(long, env = "ESSAIM_MAPREDUCE_OPEN_COST", value_parser = parse_size, default_value_t = DEFAULT_OPEN_COST_BYTES)]
    open_cost: u64,
    /// One map task per file (or piece of a large file): no packing of small files.
    #[arg(long, env = "ESSAIM_MAPREDUCE_NO_PACKING")]
    no_packing: bool,
    /// Sort buffer of each map task, e.g. 64MiB (at least 64KiB).
    #[arg(long, env = "ESSAIM_MAPREDUCE_SORT_BUFFER", value_parser = parse_size, default_value_t = DEFAULT_SORT_BUFFER_BYTES)]
    sort_buffer: u64,
    /// Runs merged at once.
    #[arg(long, env = "ESSAIM_MAPREDUCE_MERGE_FACTOR", default_value_t = DEFAULT_MERGE_FACTOR)]
    merge_factor: u32,
    /// Compress the output parts: `gz` (part-00000.gz) or `zst`. Inputs named `.gz`,
    /// `.zst` or `.bz2` (or starting with their magic numbers) are always decompressed.
    #[arg(long, env = "ESSAIM_MAPREDUCE_COMPRESS_OUTPUT", value_name = "CODEC", value_parser = parse_output_codec)]
    compress_output: Option<essaim_storage::Codec>,
    /// Attempts per task before the job fails (default 4).
    #[arg(long, env = "ESSAIM_MAPREDUCE_MAX_ATTEMPTS", default_value_t = 0)]
    max_attempts: u32,
    /// Slow start: the reducers start fetching the map outputs committed so far once
    /// this share of the map tasks succeeded (0.0 to 1.0; 1.0 waits for every map task;
    /// Hadoop's mapreduce.job.reduce.slowstart.completedmaps). Early reducers give their
    /// slot back when a map task would wait for one.
    #[arg(long, env = "ESSAIM_MAPREDUCE_SLOWSTART", value_name = "SHARE", value_parser = parse_share, default_value_t = DEFAULT_SLOW_START)]
    slowstart: f64,
    /// Run the job's tasks only on workers carrying this label, `KEY=VALUE`
    /// (repeatable: every one must match), as `essaim submit --require-label`.
    #[arg(long = "require-label", value_name = "KEY=VALUE", value_parser = essaim_core::labels::parse_label)]
    required_labels: Vec<(String, String)>,
}

impl JobArgs {
    /// The format of the summary.
    fn format(&self) -> OutputFormat {
        FormatOrDirectory::resolve(
            self.output.as_ref(),
            self.output_dir.as_deref(),
            self.format,
        )
        .map(|(_, format)| format)
        .unwrap_or_default()
    }

    /// The output directory, from --output-dir or the old `-o DIR`.
    fn output_dir(&self) -> anyhow::Result<PathBuf> {
        let (directory, _) = FormatOrDirectory::resolve(
            self.output.as_ref(),
            self.output_dir.as_deref(),
            self.format,
        )
        .map_err(usage)?;
        directory.ok_or_else(|| usage("--output-dir is required (-o names a format here)"))
    }
}

/// Parses `--compress-output`: the codecs parts can be written with.
pub(crate) fn parse_output_codec(name: &str) -> Result<essaim_storage::Codec, String> {
    match essaim_storage::Codec::from_name(name) {
        Some(codec @ (essaim_storage::Codec::Gzip | essaim_storage::Codec::Zstd)) => Ok(codec),
        _ => Err(format!("`{name}` is not an output codec: gz or zst")),
    }
}

/// Options of `essaim run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The job: wordcount, grep, index, dedup, join, rollup, matvec, rownorms, cosine,
    /// sort, sort-validate, streaming, or one linked into this binary (`essaim run
    /// --list` shows them).
    #[arg(value_name = "JOB", required_unless_present = "list")]
    job_name: Option<String>,
    #[command(flatten)]
    job: JobArgs,
    /// Worker processes of the embedded cluster.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Slots per worker (default: cores divided among the workers, at least 1).
    #[arg(long)]
    slots: Option<u32>,
    /// Submit to this running coordinator instead of starting a local cluster.
    #[arg(long, env = "ESSAIM_RUN_COORDINATOR")]
    coordinator: Option<String>,
    /// Cluster token, with --coordinator.
    #[command(flatten)]
    token: crate::client::TokenArgs,
    /// The embedded cluster's workers keep and reuse map outputs there.
    #[command(flatten)]
    task_cache: super::task_cache::TaskCacheArgs,
}

/// Options of `essaim submit JOB`: a MapReduce job submitted to a running cluster.
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    job: JobArgs,
    /// Return once submitted instead of following the job.
    #[arg(long)]
    detach: bool,
}

/// `essaim submit JOB …`: one subcommand per job this binary knows (the built-in ones and
/// those linked in, see [`crate::main_with_jobs`]), each taking [`SubmitArgs`], so that
/// `essaim submit --help` lists the jobs and `essaim submit JOB --help` their options.
#[derive(Debug)]
pub struct SubmitJob {
    /// The job's name.
    pub name: String,
    /// Its options (boxed: they are most of `essaim submit`'s size).
    pub args: Box<SubmitArgs>,
}

/// The job names and descriptions of the subcommands: clap wants `'static` names, and
/// the job list is fixed once per process (see `crate::jobs`), so they are leaked once.
fn job_subcommand_names() -> &'static [(&'static str, String)] {
    static NAMES: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let registry = crate::jobs::registry();
        registry
            .names()
            .into_iter()
            .map(|name| {
                let description = registry
                    .get(&name)
                    .map(|job| job.description().to_string())
                    .unwrap_or_default();
                let name: &'static str = Box::leak(name.into_boxed_str());
                (name, description)
            })
            .collect()
    })
}

impl clap::Subcommand for SubmitJob {
    fn augment_subcommands(command: clap::Command) -> clap::Command {
        let mut command = command;
        for (name, description) in job_subcommand_names() {
            // After `augment_args`, which would take `SubmitArgs`' doc as the about.
            let job = <SubmitArgs as clap::Args>::augment_args(clap::Command::new(*name))
                .about(description.clone())
                .long_about(None);
            command = command.subcommand(job);
        }
        command
    }

    fn augment_subcommands_for_update(command: clap::Command) -> clap::Command {
        Self::augment_subcommands(command)
    }

    fn has_subcommand(name: &str) -> bool {
        crate::jobs::registry().get(name).is_some()
    }
}

impl clap::FromArgMatches for SubmitJob {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut matches.clone())
    }

    fn from_arg_matches_mut(matches: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
        let Some((name, mut job_matches)) = matches.remove_subcommand() else {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::MissingSubcommand,
                "name a MapReduce job",
            ));
        };
        let args = <SubmitArgs as clap::FromArgMatches>::from_arg_matches_mut(&mut job_matches)?;
        Ok(Self {
            name,
            args: Box::new(args),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// Runs a job on an embedded local cluster (or on `--coordinator`).
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.job.list {
        return list_jobs(args.job.format());
    }
    let name = args.job_name.clone().unwrap_or_default();
    if let Some(coordinator) = args.coordinator.clone() {
        let connect = ConnectArgs::for_url(&coordinator, args.token.resolve()?);
        let submit_args = SubmitArgs {
            connect,
            job: args.job,
            detach: false,
        };
        return submit(&name, submit_args).await;
    }
    if !args.job.required_labels.is_empty() {
        return Err(usage(
            "--require-label needs --coordinator: the workers of the embedded cluster carry no labels, so the job would wait for ever",
        ));
    }
    let (planned, shipped) = plan(&name, &args.job)?;
    let workdir = tempfile::Builder::new().prefix("essaim-run-").tempdir()?;
    let cores = super::local::default_slots();
    let workers = args.workers.max(1);
    let slots = args
        .slots
        .unwrap_or_else(|| (cores / workers as u32).max(1));
    let options = LocalOptions {
        workers,
        slots,
        prefetch: essaim_worker::Prefetch::Fixed(0),
        listen: "127.0.0.1:0".parse()?,
        data_dir: workdir.path().to_path_buf(),
        token: None,
        restart_crashed: true,
        worker_log: "warn".into(),
        heartbeat: Duration::from_millis(500),
        worker_timeout: Duration::from_secs(3),
        task_cache: args.task_cache.clone(),
    };
    let started = Instant::now();
    let cluster = LocalCluster::start(options).await?;
    let coordinator = CoordinatorCalls::local(&cluster.url)?;
    let result = match shipped
        .upload(&cluster.url, None, &essaim_tls::ClientTrust::system())
        .await
    {
        Ok(()) => submit_and_follow(&coordinator, &args.job, planned, started).await,
        Err(error) => Err(error),
    };
    cluster.stop(Duration::from_secs(10)).await?;
    result
}

/// Submits the job `name` to a running cluster and, unless detached, follows it.
pub async fn submit(name: &str, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    if args.job.list {
        return list_jobs(args.job.format());
    }
    let (planned, shipped) = plan(name, &args.job)?;
    let started = Instant::now();
    let coordinator = args.connect.coordinator()?;
    let token = args.connect.token()?;
    shipped
        .upload(
            &args.connect.coordinator,
            token.as_deref(),
            &args.connect.trust.load()?,
        )
        .await?;
    if args.detach {
        let job_id =
            submit_to_leader(&coordinator, SubmitOptions::of(&args.job)?, &planned).await?;
        match args.job.format() {
            OutputFormat::Json => print_json(&serde_json::json!({"job_id": job_id})),
            OutputFormat::Text => crate::outln!("{job_id}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    submit_and_follow(&coordinator, &args.job, planned, started).await
}

fn list_jobs(format: OutputFormat) -> anyhow::Result<ExitCode> {
    let registry = crate::jobs::registry();
    let mut listed = Vec::new();
    for name in registry.names() {
        let description = registry
            .get(&name)
            .map(|job| job.description().to_string())
            .unwrap_or_default();
        match format {
            OutputFormat::Json => {
                listed.push(serde_json::json!({"name": name, "description": description}));
            }
            OutputFormat::Text => crate::outln!("{name:<14} {description}"),
        }
    }
    if format == OutputFormat::Json {
        print_json(&serde_json::Value::Array(listed));
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns the usage error of a job name this binary does not know.
pub(crate) fn unknown_job(name: &str) -> anyhow::Error {
    usage(format!(
        "unknown job `{name}`; known jobs: {}",
        crate::jobs::registry().names().join(", ")
    ))
}

/// Builds the parameters, hashes the files to ship, plans the job `name` and prepares
/// its output directory.
fn plan(name: &str, args: &JobArgs) -> anyhow::Result<(PlannedJob, ShippedFiles)> {
    let registry = crate::jobs::registry();
    if registry.get(name).is_none() {
        return Err(unknown_job(name));
    }
    let mut params = JobParams::default();
    // With --files, an mrjob script travels with the files instead of being read where
    // it lies by every worker.
    let ships_files = !args.job_files.files.is_empty();
    if let Some(script) = &args.mrjob {
        let described = if ships_files {
            essaim_mapreduce::streaming::mrjob_shipped_streaming_params(&args.python, script)
        } else {
            essaim_mapreduce::streaming::mrjob_streaming_params(&args.python, script)
        };
        params =
            described.map_err(|error| usage(format!("--mrjob {}: {error}", script.display())))?;
    }
    let shipped_script = args.mrjob.as_deref().filter(|_| ships_files);
    let shipped = ShippedFiles::hash(&args.job_files, shipped_script)?;
    let shortcuts = [
        ("pattern", &args.pattern),
        ("step.0.mapper", &args.mapper),
        ("step.0.reducer", &args.reducer),
        ("step.0.combiner", &args.combiner),
    ];
    for (name, value) in shortcuts {
        if let Some(value) = value {
            params.set(name, value.clone());
        }
    }
    for param in &args.params {
        let Some((name, value)) = param.split_once('=') else {
            return Err(usage(format!("-D {param}: expected NAME=VALUE")));
        };
        params.set(name.trim(), value);
    }
    let output = args.output_dir()?;
    let request = MapReduceRequest {
        kind: Default::default(),
        job: name.to_owned(),
        inputs: args.inputs.clone(),
        output: output.display().to_string(),
        params: params.0,
        reducers: Some(args.reducers),
        split_bytes: Some(args.split_size),
        open_cost_bytes: Some(if args.no_packing { 0 } else { args.open_cost }),
        sort_buffer_bytes: Some(args.sort_buffer),
        merge_factor: Some(args.merge_factor),
        compress_output: args.compress_output.map(|codec| codec.name().to_owned()),
        overwrite: args.overwrite,
        max_attempts: Some(args.max_attempts),
        slow_start: Some(args.slowstart),
        s3: Some(S3Request {
            endpoint: args.s3_endpoint.clone(),
            region: args.s3_region.clone(),
            allow_http: args.s3_allow_http,
        }),
        files: shipped.names_to_hashes(),
        required_labels: Default::default(),
    };
    let planned = essaim_planning::mapreduce::plan(&registry, &request, Overwrite::Anything)
        .map_err(|error| usage(essaim_core::error_chain::error_chain(&error)))?;
    Ok((planned, shipped))
}

/// How a planned job is submitted: the options of its spec that planning does not
/// decide.
#[derive(Debug, Clone)]
pub(crate) struct SubmitOptions {
    /// Attempts per task, 0 for the coordinator's default.
    pub max_attempts: u32,
    /// The share of map tasks after which the reducers start (slow start).
    pub slow_start: f64,
    /// Labels a worker must carry to run the job's tasks.
    pub required_labels: essaim_core::labels::Labels,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        Self {
            max_attempts: 0,
            slow_start: DEFAULT_SLOW_START,
            required_labels: Default::default(),
        }
    }
}

impl SubmitOptions {
    /// Returns the options a job's arguments ask for; a label required twice with two
    /// values is a usage error.
    fn of(args: &JobArgs) -> anyhow::Result<Self> {
        Ok(Self {
            max_attempts: args.max_attempts,
            slow_start: args.slowstart,
            required_labels: essaim_core::labels::collect(args.required_labels.iter().cloned())
                .map_err(usage)?,
        })
    }

    /// Returns the wire spec of `planned` with these options.
    fn spec(self, planned: &PlannedJob) -> v1::JobSpec {
        let mut spec =
            essaim_planning::mapreduce::job_spec(self.max_attempts, self.slow_start, planned);
        spec.required_labels = self.required_labels.into_iter().collect();
        spec
    }
}

/// Submits a planned job; returns its id.
pub(crate) async fn submit_planned(
    client: &mut CoordinatorClient,
    options: SubmitOptions,
    planned: &PlannedJob,
) -> anyhow::Result<u64> {
    let spec = options.spec(planned);
    Ok(client
        .submit_job(v1::SubmitJobRequest { spec: Some(spec) })
        .await?
        .into_inner()
        .job_id)
}

/// Submits the planned job through the leading coordinator (retried only while it surely
/// did not reach it); returns its id.
pub(crate) async fn submit_to_leader(
    coordinator: &CoordinatorCalls,
    options: SubmitOptions,
    planned: &PlannedJob,
) -> anyhow::Result<u64> {
    coordinator.submit_job(options.spec(planned)).await
}

async fn submit_and_follow(
    coordinator: &CoordinatorCalls,
    args: &JobArgs,
    planned: PlannedJob,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let job_id = submit_to_leader(coordinator, SubmitOptions::of(args)?, &planned).await?;
    let job = follow(
        coordinator,
        job_id,
        &planned,
        args.format() == OutputFormat::Json,
    )
    .await?;
    let elapsed = started.elapsed();
    // `_SUCCESS` in the output, local or in a bucket, is the only proof of a commit.
    let committed = match planned.config.output().is_committed() {
        Ok(committed) => committed,
        Err(error) => {
            tracing::warn!(%error, "the output's _SUCCESS marker could not be checked");
            false
        }
    };
    let succeeded = job.state == "succeeded" && committed;
    // A failed job's reasons are its dead letters' errors: say them here, since the
    // cluster of `essaim run` is gone once it returns.
    let failed_tasks = if succeeded {
        Vec::new()
    } else {
        super::dlq::list_dead_letters(coordinator, job_id)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "the failed tasks could not be listed");
                Vec::new()
            })
    };
    print_summary(
        &planned,
        &job,
        elapsed,
        succeeded,
        &failed_tasks,
        args.format(),
    );
    Ok(if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Follows a job to its end with a progress bar per stage (map, then reduce per step);
/// returns its final status. Rides through coordinator restarts like `essaim wait`.
pub(crate) async fn follow(
    coordinator: &CoordinatorCalls,
    job_id: u64,
    planned: &PlannedJob,
    hidden: bool,
) -> anyhow::Result<v1::JobStatus> {
    let mut stages = vec![("map".to_string(), u64::from(planned.map_tasks))];
    for step in 0..planned.steps {
        let name = if planned.steps == 1 {
            "reduce".to_string()
        } else {
            format!("reduce {}", step + 1)
        };
        stages.push((name, u64::from(planned.config.reducers)));
    }
    let bars = StageBars::new(&stages, !hidden && std::io::stderr().is_terminal());
    let mut job = coordinator
        .read(|mut client| async move { client.get_job(v1::GetJobRequest { job_id }).await })
        .await?;
    while job.state == "running" {
        bars.update(&job);
        job = coordinator
            .read(|mut client| async move {
                let request = v1::WaitJobRequest {
                    job_id,
                    timeout_ms: 250,
                };
                client.wait_job(request).await
            })
            .await?;
    }
    bars.finish(&job);
    Ok(job)
}

/// Parses a share between 0.0 and 1.0 (`--slowstart`).
fn parse_share(text: &str) -> Result<f64, String> {
    let share: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number (e.g. 0.05)"))?;
    if !(0.0..=1.0).contains(&share) {
        return Err(format!("`{text}` is not a share between 0.0 and 1.0"));
    }
    Ok(share)
}

/// Parses a byte size: a number with an optional suffix (K, M, G, KiB, MiB, GiB, KB, MB,
/// GB; binary multiples for both spellings, as `sort -S` does).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 64MiB)"))?;
    let multiplier: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use KiB, MiB or GiB)")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `essaim run`'s options, parsed on their own.
    #[derive(clap::Parser)]
    struct Run {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn the_command_line_defaults_are_the_job_configuration_defaults() {
        use clap::Parser;
        let parsed = Run::try_parse_from(["run", "wordcount", "-i", "in", "-o", "out"]).unwrap();
        let job = parsed.run.job;
        assert_eq!(job.reducers, DEFAULT_REDUCERS);
        assert_eq!(job.split_size, DEFAULT_SPLIT_BYTES);
        assert_eq!(job.sort_buffer, DEFAULT_SORT_BUFFER_BYTES);
        assert_eq!(job.merge_factor, DEFAULT_MERGE_FACTOR);
        assert_eq!(job.slowstart, DEFAULT_SLOW_START);
    }

    #[test]
    fn a_slow_start_share_lies_between_zero_and_one() {
        assert_eq!(parse_share("0.05"), Ok(0.05));
        assert_eq!(parse_share("1"), Ok(1.0));
        assert_eq!(parse_share("0"), Ok(0.0));
        for bad in ["1.5", "-0.1", "NaN", "half"] {
            assert!(parse_share(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
