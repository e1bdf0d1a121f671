//! `essaim train naive-bayes --input DATA --label-column label --text-column body --model
//! NAME`: trains a model on the cluster and registers it as a new version.
//!
//! The steps, each visible in the cluster like any job:
//! 1. the input's SHA-256 and size are computed here (its lineage);
//! 2. `naive-bayes-train` counts terms per class of the training rows (MapReduce);
//! 3. the counts are assembled into the model artifact, here;
//! 4. `naive-bayes-eval` predicts every held-out row (MapReduce) and gives the
//!    confusion matrix, from which accuracy, precision, recall and F1 are computed;
//! 5. the artifact is uploaded to the coordinator's registry and registered with its
//!    metrics and lineage (the two job ids, the input's hash and size, the binary and
//!    job versions, the parameters).
//!
//! Like every MapReduce command, the inputs and the work directory must be readable by
//! every worker under the same paths (one machine, or a shared file system).

use crate::client::{ConnectArgs, CoordinatorCalls, usage};
use crate::commands::mapreduce::{follow, parse_size, submit_to_leader};
use crate::output::{OutputFormat, print_json};
use essaim_mapreduce::api::JobParams;
use essaim_mapreduce::config::{
    DEFAULT_MERGE_FACTOR, DEFAULT_SORT_BUFFER_BYTES, DEFAULT_SPLIT_BYTES,
};
use essaim_mapreduce::payload::SUCCESS_MARKER;
use essaim_mapreduce::plan::{JobRequest, expand_inputs, plan_job, prepare_output_dir};
use essaim_models::metrics::Confusion;
use essaim_models::naive_bayes::{evaluate, train};
use essaim_registry::client::RegistryClient;
use essaim_registry::names::ModelName;
use essaim_registry::record::{ArtifactRef, InputLineage, Lineage, NewVersion};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `essaim train`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    algorithm: Algorithm,
}

#[derive(clap::Subcommand, Debug)]
enum Algorithm {
    /// A multinomial naive Bayes text classifier (terms as scikit-learn's
    /// CountVectorizer finds them).
    NaiveBayes(NaiveBayesArgs),
}

/// Options of `essaim train naive-bayes`.
#[derive(clap::Args, Debug)]
pub struct NaiveBayesArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Labelled rows: CSV or TSV files with a header line (files, directories or globs).
    #[arg(long = "input", short = 'i', num_args = 1.., required = true)]
    inputs: Vec<String>,
    /// The header's name of the label column.
    #[arg(long)]
    label_column: String,
    /// The header's name of the text column.
    #[arg(long)]
    text_column: String,
    /// The model to register a new version of.
    #[arg(long)]
    model: String,
    /// `csv` or `tsv` (default: from the first input's extension; .tsv and .tab are TSV).
    #[arg(long)]
    format: Option<String>,
    /// Seed of the training/evaluation split.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of rows held out for evaluation.
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    /// Additive smoothing.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// The class whose precision, recall and F1 are reported (default: the average
    /// over classes).
    #[arg(long)]
    positive_class: Option<String>,
    /// Reduce tasks of each job.
    #[arg(long, short = 'r', default_value_t = 2)]
    reducers: u32,
    /// Split size, e.g. 64MiB.
    #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_SPLIT_BYTES)]
    split_size: u64,
    /// Where the jobs write their outputs and the artifact (default: a temporary
    /// directory, removed at the end); every worker must reach it under this path.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Who registers the version, as recorded in the audit log (default: $USER).
    #[arg(long, env = "ESSAIM_ACTOR")]
    actor: Option<String>,
    /// Output format (`--format` names the input format here).
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: OutputFormat,
}

/// Runs `essaim train`.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.algorithm {
        Algorithm::NaiveBayes(args) => naive_bayes(args).await,
    }
}

/// What one finished job left.
struct Finished {
    job_id: u64,
    counters: BTreeMap<String, u64>,
}

async fn naive_bayes(args: NaiveBayesArgs) -> anyhow::Result<ExitCode> {
    let model = ModelName::parse(&args.model).map_err(|error| usage(error.to_string()))?;
    let coordinator = args.connect.coordinator()?;
    let registry = registry_client(&args)?;
    let temporary;
    let work_dir = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::Builder::new().prefix("essaim-train-").tempdir()?;
            temporary.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&work_dir)?;
    let work_dir = std::path::absolute(&work_dir)?;

    let files = expand_inputs(&args.inputs).map_err(|error| usage(error.to_string()))?;
    let input = tokio::task::spawn_blocking(move || hash_inputs(&files)).await??;
    let mut params = JobParams::from_pairs(&[
        ("label_column", &args.label_column),
        ("text_column", &args.text_column),
        ("seed", &args.seed.to_string()),
        ("holdout", &args.holdout.to_string()),
        ("alpha", &args.alpha.to_string()),
    ]);
    if let Some(format) = &args.format {
        params.set("format", format.clone());
    }

    let quiet = args.output == OutputFormat::Json;
    let training_dir = work_dir.join("train");
    let training = run_job(
        &coordinator,
        &args,
        train::NAME,
        &params,
        &training_dir,
        quiet,
    )
    .await?;
    let alpha = args.alpha;
    let assembled =
        tokio::task::spawn_blocking(move || train::assemble_model(alpha, &training_dir)).await??;
    let artifact_path = work_dir.join("model.json");
    std::fs::write(&artifact_path, assembled.to_bytes())?;

    let mut evaluation_params = params.clone();
    evaluation_params.set("model", artifact_path.to_string_lossy().into_owned());
    let evaluation_dir = work_dir.join("eval");
    let evaluation = run_job(
        &coordinator,
        &args,
        evaluate::NAME,
        &evaluation_params,
        &evaluation_dir,
        quiet,
    )
    .await?;
    let confusion =
        tokio::task::spawn_blocking(move || evaluate::read_confusion(&evaluation_dir)).await??;

    let mut metrics = quality(&confusion, args.positive_class.as_deref())?;
    let rows = |name: &str| training.counters.get(name).copied().unwrap_or(0) as f64;
    metrics.insert(
        "train_rows".into(),
        rows(essaim_models::naive_bayes::TRAIN_ROWS_COUNTER),
    );
    metrics.insert("eval_rows".into(), confusion.total() as f64);
    metrics.insert("vocabulary".into(), assembled.terms.len() as f64);
    let new = NewVersion {
        artifact: None,
        metrics,
        metadata: BTreeMap::from([
            ("algorithm".into(), "naive-bayes".into()),
            (
                "artifact_format".into(),
                essaim_models::naive_bayes::model::FORMAT.into(),
            ),
            ("classes".into(), assembled.classes.join(",")),
        ]),
        lineage: Lineage {
            training_job: Some(training.job_id),
            evaluation_job: Some(evaluation.job_id),
            input: Some(input),
            binary_version: Some(env!("CARGO_PKG_VERSION").into()),
            job_definition: Some(format!("{}/{}", train::NAME, train::JOB_VERSION)),
            parameters: params.0.clone(),
        },
    };
    let record = registry.register_file(&model, &artifact_path, new).await?;
    print_result(args.output, &record, &confusion);
    Ok(ExitCode::SUCCESS)
}

fn registry_client(args: &NaiveBayesArgs) -> anyhow::Result<RegistryClient> {
    let url = args
        .connect
        .coordinator
        .split(',')
        .next()
        .unwrap_or_default();
    let actor = args
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    Ok(RegistryClient::new_trusting(
        url.trim(),
        args.connect.token()?.as_deref(),
        &actor,
        &args.connect.trust.load()?,
    )?)
}

/// Plans, submits and follows one job to its end; fails unless it committed.
async fn run_job(
    coordinator: &CoordinatorCalls,
    args: &NaiveBayesArgs,
    name: &str,
    params: &JobParams,
    output_dir: &Path,
    quiet: bool,
) -> anyhow::Result<Finished> {
    let registry = crate::jobs::registry();
    let Some(job) = registry.get(name) else {
        return Err(crate::commands::mapreduce::unknown_job(name));
    };
    let request = JobRequest {
        params: params.clone(),
        inputs: args.inputs.clone(),
        output_dir: output_dir.to_path_buf(),
        reducers: args.reducers,
        split_bytes: args.split_size,
        sort_buffer_bytes: DEFAULT_SORT_BUFFER_BYTES,
        merge_factor: DEFAULT_MERGE_FACTOR,
        output_codec: None,
        storage: Default::default(),
        files: Default::default(),
        open_cost_bytes: Some(essaim_mapreduce::config::DEFAULT_OPEN_COST_BYTES),
    };
    let planned = plan_job(job.as_ref(), &request).map_err(|error| usage(error.to_string()))?;
    prepare_output_dir(output_dir, true).map_err(|error| usage(error.to_string()))?;
    let job_id = submit_to_leader(coordinator, Default::default(), &planned).await?;
    let status = follow(coordinator, job_id, &planned, quiet).await?;
    let committed = output_dir.join(SUCCESS_MARKER).is_file();
    if status.state != "succeeded" || !committed {
        anyhow::bail!(
            "job {job_id} ({name}) {}: {} (see `essaim dlq list --job {job_id}`)",
            status.state,
            status.reason
        );
    }
    Ok(Finished {
        job_id,
        counters: status.counters.into_iter().collect(),
    })
}

/// Returns the input's lineage: its paths, and the SHA-256 and size of its files'
/// bytes in the order the job reads them.
fn hash_inputs(files: &[PathBuf]) -> anyhow::Result<InputLineage> {
    let mut chained: Box<dyn Read> = Box::new(std::io::empty());
    for file in files {
        chained = Box::new(chained.chain(std::fs::File::open(file)?));
    }
    let ArtifactRef { sha256, size } = essaim_registry::artifacts::hash_reader(chained)?;
    let paths: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    Ok(InputLineage {
        path: paths.join(","),
        sha256,
        bytes: size,
    })
}

/// Returns accuracy, precision, recall and F1 (of the positive class, or averaged).
fn quality(
    confusion: &Confusion,
    positive_class: Option<&str>,
) -> anyhow::Result<BTreeMap<String, f64>> {
    if confusion.total() == 0 {
        return Err(usage(
            "no row was held out for evaluation: raise --holdout or give more rows",
        ));
    }
    let scores = match positive_class {
        Some(class) if !confusion.classes().contains(class) => {
            return Err(usage(format!(
                "--positive-class {class}: no such class among {:?}",
                confusion.classes()
            )));
        }
        Some(class) => confusion.scores(class),
        None => confusion.macro_scores(),
    };
    Ok(BTreeMap::from([
        ("accuracy".into(), confusion.accuracy()),
        ("precision".into(), scores.precision),
        ("recall".into(), scores.recall),
        ("f1".into(), scores.f1),
    ]))
}

fn print_result(
    output: OutputFormat,
    record: &essaim_registry::record::VersionRecord,
    confusion: &Confusion,
) {
    let confusion_rows: Vec<_> = confusion
        .counts
        .iter()
        .map(|((actual, predicted), rows)| {
            json!({"actual": actual, "predicted": predicted, "rows": rows})
        })
        .collect();
    match output {
        OutputFormat::Json => print_json(&json!({
            "model": record.model,
            "version": record.version,
            "metrics": record.metrics,
            "sha256": record.artifact.sha256,
            "lineage": record.lineage,
            "confusion": confusion_rows,
        })),
        OutputFormat::Text => {
            crate::outln!(
                "registered {}@{} (sha256 {})",
                record.model,
                record.version,
                record.artifact.sha256
            );
            for (name, value) in &record.metrics {
                crate::outln!("  {name:<12} {value:.4}");
            }
        }
    }
}
