//! `essaim report JOB --output-dir DIR`: a self-contained HTML report of one job, with its
//! plots as standalone SVG files and the raw data as JSON.
//!
//! It reads the coordinator's REST API, which serves the job's history (timeline,
//! per-worker shares, duration histogram, failures) that the gRPC API does not. A
//! running job gets a snapshot: run the command again for a newer one. Rendering is in
//! `essaim-report` (pure); this file fetches and writes.

use crate::client::{ConnectArgs, usage};
use crate::output::{OutputFormat, print_json};
use crate::rest_client::RestClient;
use essaim_coordinator::rest::{JobDetail, Overview, WorkerView};
use essaim_report::{ReportInput, render};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Options of `essaim report`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The job.
    job: u64,
    /// Directory to write the report to (created if missing; our files in it replaced).
    #[arg(long = "output-dir", visible_alias = "out", value_name = "DIR")]
    out: PathBuf,
    /// What to print about the files written.
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
}

/// The page's file name.
const PAGE: &str = "index.html";
/// The raw data's file name.
const DATA: &str = "job.json";

/// Fetches the job and writes the report.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let token = args.connect.token()?;
    let trust = args.connect.trust.load()?;
    let client = RestClient::new_trusting(&args.connect.coordinator, token.as_deref(), &trust)?;
    let raw = client
        .get_bytes(&format!("/api/v1/jobs/{}", args.job))
        .await?;
    let detail: JobDetail =
        serde_json::from_slice(&raw).map_err(|error| crate::rest_client::RestError::Decode {
            path: format!("/api/v1/jobs/{}", args.job),
            reason: error.to_string(),
        })?;
    let live_workers: Vec<WorkerView> = client.get("/api/v1/workers").await?;
    let overview: Overview = client.get("/api/v1/overview").await?;
    let report = render(&ReportInput {
        detail: &detail,
        live_workers: &live_workers,
        snapshot_unix_ms: overview.now_unix_ms,
        coordinator_url: &args.connect.coordinator,
    });

    let mut files: Vec<(PathBuf, Vec<u8>)> = vec![
        (args.out.join(PAGE), report.html.into_bytes()),
        (args.out.join(DATA), pretty_json(&raw)),
    ];
    for plot in report.plots {
        files.push((
            args.out.join(plot.file_name),
            essaim_report::svg::document(&plot.svg).into_bytes(),
        ));
    }
    write_all(&args.out, &files)?;

    let paths: Vec<String> = files
        .iter()
        .map(|(path, _)| path.display().to_string())
        .collect();
    match args.output {
        OutputFormat::Json => print_json(&json!({
            "job_id": detail.job.id,
            "state": detail.job.state,
            "dir": args.out,
            "page": args.out.join(PAGE),
            "files": paths,
        })),
        OutputFormat::Text => {
            for path in &paths {
                crate::outln!("{path}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Re-indents the coordinator's JSON for people, keeping every field it sent (also the
/// ones this version does not know); falls back to the bytes as they came.
fn pretty_json(raw: &[u8]) -> Vec<u8> {
    serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|value| serde_json::to_vec_pretty(&value).ok())
        .unwrap_or_else(|| raw.to_vec())
}

/// Creates `dir` and writes the files; a directory we cannot write to is the caller's
/// mistake (exit code 2), named with the reason.
fn write_all(dir: &Path, files: &[(PathBuf, Vec<u8>)]) -> anyhow::Result<()> {
    let refuse = |path: &Path, error: std::io::Error| {
        usage(format!(
            "cannot write the report to `{}`: {error}",
            path.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|error| refuse(dir, error))?;
    for (path, bytes) in files {
        std::fs::write(path, bytes).map_err(|error| refuse(path, error))?;
    }
    Ok(())
}
