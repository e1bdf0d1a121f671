//! `essaim skipped OUTPUT`: the input records a job skipped in skipping mode
//! (`-D skip.records.max=N`), read from where they live, the job's output
//! (`OUTPUT/_skipped/`): each with its file and line, byte offset, map task, the error
//! it gave alone, and its bytes. No cluster is needed, as the output outlives it; a
//! job id is looked up on the coordinator for its output.
//!
//! `--export FILE` writes the records byte for byte, one per line, in file and line
//! order: fix the job, then run it with `--input FILE` to process what was skipped
//! (Hadoop users read `OUT/_logs/skip/` the same way).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use essaim_mapreduce::skip::SkippedRecord;
use essaim_mapreduce::skip::store::read_skipped_records;
use essaim_proto::v1;
use essaim_storage::{Location, OutputDir, S3Options};
use serde_json::json;

use crate::client::{ConnectArgs, usage};
use crate::output::{OutputFormat, print_json};

/// Options of `essaim skipped`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The job's output directory or `s3://bucket/prefix`; or the id of a job the
    /// coordinator knows, whose output is read.
    #[arg(value_name = "OUTPUT|JOB")]
    target: String,
    /// Bytes of each record shown in the text listing (JSON and --export keep every
    /// byte stored).
    #[arg(long, value_name = "BYTES", default_value_t = 200)]
    max_bytes: usize,
    /// Write the skipped records to FILE, byte for byte, one per line, to run a fixed
    /// job on them with `--input FILE` (refused if FILE exists).
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
    /// Output format (`--format` is accepted too).
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
    /// Endpoint of the S3-compatible store of an `s3://` output (default: AWS_ENDPOINT).
    #[arg(long, env = "ESSAIM_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Region of the S3 store (default: AWS_REGION, else us-east-1).
    #[arg(long, env = "ESSAIM_S3_REGION")]
    s3_region: Option<String>,
    /// Allow an http:// S3 endpoint (test servers).
    #[arg(long, env = "ESSAIM_S3_ALLOW_HTTP")]
    s3_allow_http: bool,
    /// How to reach the coordinator, when OUTPUT is a job id.
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Lists (or exports) the records a job skipped.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let location = output_location(&args).await?;
    let output = OutputDir::new(
        location.clone(),
        S3Options {
            endpoint: args.s3_endpoint.clone(),
            region: args.s3_region.clone(),
            allow_http: args.s3_allow_http,
        },
    );
    // The output is read with blocking calls (files, or the storage crate's runtime).
    let records = tokio::task::spawn_blocking(move || read_skipped_records(&output))
        .await
        .context("the reading thread failed")?
        .with_context(|| format!("failed to read the skipped records of {location}"))?;
    if let Some(file) = &args.export {
        export(&records, file)?;
        eprintln!("wrote {} records to {}", records.len(), file.display());
    }
    match args.output {
        OutputFormat::Json => print_json(&json!({
            "output": location.to_string(),
            "skipped": records.len(),
            "records": records,
        })),
        OutputFormat::Text => print_text(&location, &records, args.max_bytes),
    }
    Ok(ExitCode::SUCCESS)
}

/// The output to read: the location given, or the output of the job id given.
async fn output_location(args: &Args) -> anyhow::Result<Location> {
    let is_job_id = !args.target.is_empty()
        && args.target.bytes().all(|byte| byte.is_ascii_digit())
        && !Path::new(&args.target).exists();
    let text = if is_job_id {
        let job_id: u64 = args
            .target
            .parse()
            .map_err(|_| usage(format!("`{}` is not a job id", args.target)))?;
        let coordinator = args.connect.coordinator()?;
        let job = coordinator
            .read(|mut client| async move { client.get_job(v1::GetJobRequest { job_id }).await })
            .await?;
        let Some(output) = essaim_planning::mapreduce::output_of_job_name(&job.name) else {
            return Err(usage(format!(
                "job {job_id} (`{}`) is not a MapReduce job with an output",
                job.name
            )));
        };
        output.to_string()
    } else {
        args.target.clone()
    };
    let location = Location::parse(&text)
        .map_err(|error| usage(error.to_string()))?
        .absolute()
        .with_context(|| format!("failed to resolve {text}"))?;
    // A missing directory would read as an output that skipped nothing.
    if let Some(dir) = location.as_local()
        && !dir.is_dir()
    {
        return Err(usage(format!("no output directory at {}", dir.display())));
    }
    Ok(location)
}

fn print_text(location: &Location, records: &[SkippedRecord], max_bytes: usize) {
    if records.is_empty() {
        crate::outln!("no record skipped in {location}");
        return;
    }
    crate::outln!("{} records skipped in {location}:", records.len());
    for record in records {
        crate::outln!(
            "{} (byte {}, map task {}, {} bytes)",
            record.location(),
            record.offset,
            record.task,
            record.length
        );
        crate::outln!("  record: {}", shown_bytes(record, max_bytes));
        let mut lines = record.error.lines();
        crate::outln!("  error:  {}", lines.next().unwrap_or(""));
        for line in lines {
            crate::outln!("          {line}");
        }
    }
}

/// The first `max_bytes` of a record, escaped where not printable.
fn shown_bytes(record: &SkippedRecord, max_bytes: usize) -> String {
    let bytes = record.bytes();
    let shown = &bytes[..bytes.len().min(max_bytes)];
    let mut text = shown.escape_ascii().to_string();
    if (shown.len() as u64) < record.length {
        text.push_str(&format!(
            " … ({} more bytes)",
            record.length - shown.len() as u64
        ));
    }
    text
}

/// Writes the records' bytes, one per line, to a new `file`.
fn export(records: &[SkippedRecord], file: &Path) -> anyhow::Result<()> {
    let cut: Vec<String> = records
        .iter()
        .filter(|record| record.is_truncated())
        .map(SkippedRecord::location)
        .collect();
    if !cut.is_empty() {
        return Err(usage(format!(
            "only the first bytes of {} are stored: they cannot be exported whole",
            cut.join(", ")
        )));
    }
    let mut out = std::fs::File::create_new(file)
        .map_err(|error| usage(format!("cannot create {}: {error}", file.display())))?;
    for record in records {
        out.write_all(&record.bytes())?;
        out.write_all(b"\n")?;
    }
    out.sync_all()?;
    Ok(())
}
