//! `essaim bench predict`: a prediction called in-process, the baseline of the hop a
//! central runner adds (bench/model_serve.sh). Each call does a runner's own work for
//! one request — parse the Open Inference Protocol body, score its rows — without the
//! network, the HTTP server or the batcher.

use essaim_models::naive_bayes::model::NaiveBayes;
use essaim_runner::oip::parse_request;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Most latencies kept: memory is bounded whatever `--seconds` says.
const MAX_SAMPLES: usize = 4_000_000;

/// Options of `essaim bench predict`.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The model's artifact (`essaim models download NAME@REF --out FILE`).
    #[arg(long, value_name = "FILE")]
    artifact: PathBuf,
    /// A directory of Open Inference Protocol request bodies (`*.json`), called in
    /// turn, in name order.
    #[arg(long, value_name = "DIR")]
    requests: PathBuf,
    /// How long to call the model, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// Calls the model in a loop on one thread and prints one JSON object: calls, calls/s,
/// and the p50/p99 of one call in microseconds.
pub fn run(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let artifact = std::fs::read(&args.artifact)
        .map_err(|error| anyhow::anyhow!("--artifact {}: {error}", args.artifact.display()))?;
    let classifier = NaiveBayes::from_bytes(&artifact)?.classifier();
    let bodies = read_bodies(&args.requests)?;
    let mut samples = Vec::new();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    while Instant::now() < deadline && samples.len() < MAX_SAMPLES {
        for body in &bodies {
            let call = Instant::now();
            let rows = parse_request(body)?;
            for text in &rows.texts {
                black_box(classifier.probabilities(text.as_bytes()));
            }
            samples.push(call.elapsed());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    samples.sort_unstable();
    let quantile_us = |q: f64| {
        let index = ((samples.len() as f64 * q) as usize).min(samples.len() - 1);
        samples[index].as_secs_f64() * 1e6
    };
    println!(
        "{}",
        serde_json::json!({
            "calls": samples.len(),
            "calls_per_s": samples.len() as f64 / elapsed,
            "p50_us": quantile_us(0.50),
            "p99_us": quantile_us(0.99),
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads every `*.json` file of `dir`, in name order; none is an error.
fn read_bodies(dir: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|error| anyhow::anyhow!("--requests {}: {error}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    anyhow::ensure!(
        !paths.is_empty(),
        "--requests {}: no *.json body",
        dir.display()
    );
    paths
        .iter()
        .map(|path| std::fs::read(path).map_err(Into::into))
        .collect()
}
