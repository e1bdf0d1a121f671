//! `essaim eval --out DIR`: the command line of the evaluation harness (`essaim-eval`).
//! It checks the options, hands the harness what only this binary has (its executable,
//! its jobs, its REST client, its MapReduce submission) and writes the files the harness
//! renders: `results.json`, one SVG per plot and `summary.md`. Progress goes to standard
//! error; `--output json` prints `results.json` on standard output.

use crate::client::usage;
use crate::output::{OutputFormat, print_json};
use crate::rest_client::RestClient;
use essaim_eval::{BoxFuture, Options, Plan, RestApi, Scenario};
use essaim_mapreduce::plan::PlannedJob;
use essaim_mapreduce::registry::JobRegistry;
use essaim_proto::CoordinatorClient;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Options of `essaim eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory for results.json, the SVG plots and summary.md (created if missing;
    /// these files in it are replaced).
    #[arg(
        long = "output-dir",
        visible_alias = "out",
        value_name = "DIR",
        default_value = "eval-results"
    )]
    out: PathBuf,
    /// A smoke test: fewer worker counts, repeats and tasks (about half a minute).
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Repeats of the short scenarios (default: 3, or 2 with --quick; the stream
    /// scenarios' 3, or 1 with --quick).
    #[arg(long)]
    repeats: Option<usize>,
    /// Size of the word count's corpus in MB (default: 512, or 8 with --quick).
    #[arg(long)]
    corpus_mb: Option<u64>,
    /// What to print on standard output: the files written, or results.json.
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
}

/// Runs the evaluation.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(repeats) = args.repeats {
        if repeats == 0 {
            return Err(usage("--repeats must be at least 1"));
        }
        plan.repeats = repeats;
        plan.crash_repeats = repeats;
        plan.stream_repeats = repeats;
    }
    if let Some(corpus_mb) = args.corpus_mb {
        if corpus_mb == 0 {
            return Err(usage("--corpus-mb must be at least 1"));
        }
        plan.corpus_mb = corpus_mb;
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|error| usage(format!("cannot create `{}`: {error}", args.out.display())))?;
    let options = Options {
        plan,
        quick: args.quick,
        only: args.only,
        out: args.out.clone(),
    };
    let mut results = essaim_eval::evaluate(&ThisBinary, &options).await?;
    let mut written = Vec::new();
    for (name, bytes) in essaim_eval::files(&mut results)? {
        let path = args.out.join(name);
        std::fs::write(&path, bytes)
            .map_err(|error| usage(format!("cannot write `{}`: {error}", path.display())))?;
        written.push(path);
    }
    essaim_eval::say(&format!(
        "done in {:.0} s; {} files in {}",
        results.wall_seconds,
        written.len(),
        args.out.display()
    ));
    match args.output {
        OutputFormat::Json => print_json(&serde_json::to_value(&results)?),
        OutputFormat::Text => {
            for path in &written {
                crate::outln!("{}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The harness's view of this binary.
struct ThisBinary;

impl essaim_eval::Host for ThisBinary {
    fn executable(&self) -> std::io::Result<PathBuf> {
        std::env::current_exe()
    }

    fn jobs(&self) -> Arc<JobRegistry> {
        crate::jobs::registry()
    }

    fn rest_client(&self, url: &str, token: &str) -> anyhow::Result<Box<dyn RestApi>> {
        Ok(Box::new(RestClient::new(url, Some(token))?))
    }

    fn submit_planned<'a>(
        &'a self,
        client: &'a mut CoordinatorClient,
        planned: &'a PlannedJob,
    ) -> BoxFuture<'a, anyhow::Result<u64>> {
        Box::pin(super::mapreduce::submit_planned(
            client,
            Default::default(),
            planned,
        ))
    }
}

impl RestApi for RestClient {
    fn get_bytes<'a>(&'a self, path: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<u8>>> {
        Box::pin(async move { Ok(RestClient::get_bytes(self, path).await?.to_vec()) })
    }
}
