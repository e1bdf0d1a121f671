//! `essaim replay`: publishes a CSV data set to a NATS JetStream subject, paced by its
//! event times, so that streaming pipelines can be tried on real traffic.
//!
//! The work is `essaim_connect_nats::replay`; this module turns flags into its options
//! and prints progress (standard error) and the summary (standard output).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use essaim_connect_nats::broker::{self, StreamSpec};
use essaim_connect_nats::publish::Publisher;
use essaim_connect_nats::replay::{self, CsvInput, Pacing, ReplayOptions};

use crate::output::{OutputFormat, print_json};

/// Replays a CSV file (plain, or `.zst` through the `zstd` command) to a subject.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("pace").required(true).args(["speedup", "as_fast_as_possible"])))]
pub struct Args {
    /// The CSV file; its first line is the header and is not published.
    file: PathBuf,
    /// The NATS server (`--url` is accepted too).
    #[arg(
        long = "nats",
        visible_alias = "url",
        env = "ESSAIM_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    url: String,
    /// The subject each data line is published to.
    #[arg(long)]
    subject: String,
    /// Ensure this stream (file storage, one replica) captures the subject first
    /// (default: a stream must already capture it).
    #[arg(long)]
    stream: Option<String>,
    /// The column holding each line's event time, `YYYY-MM-DD HH:MM:SS[.fraction]` UTC
    /// (needed by --speedup).
    #[arg(long)]
    time_column: Option<String>,
    /// Replay event time this many times faster than it happened, e.g. 3600 for an
    /// hour a second.
    #[arg(long, requires = "time_column")]
    speedup: Option<f64>,
    /// Publish as fast as the server confirms.
    #[arg(long)]
    as_fast_as_possible: bool,
    /// Stop after this many data lines (default: the whole file).
    #[arg(long)]
    limit: Option<u64>,
    /// Spread the lines over this many partitions: line i goes to `<subject>.<i mod P>`
    /// (the stream then captures `<subject>.*`).
    #[arg(long)]
    partitions: Option<u32>,
    /// After the last line, publish an end-of-stream marker to every partition, which
    /// lets `essaim stream run --exit-at-end` finish.
    #[arg(long)]
    end_of_stream: bool,
    /// Publish to this Kafka bootstrap address instead of NATS, on topic `--subject`
    /// (created with --partitions partitions, default 1); as fast as possible, plain
    /// CSV files only.
    #[arg(long, env = "ESSAIM_KAFKA_BOOTSTRAP")]
    kafka: Option<String>,
    /// Publishes awaiting their acknowledgement at most (default 256).
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Output format of the summary.
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
}

/// Runs the replay and prints its summary.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(bootstrap) = &args.kafka {
        return replay_to_kafka(&args, bootstrap).await;
    }
    let pacing = match args.speedup {
        Some(speedup) => Pacing::Speedup(speedup),
        None => Pacing::AsFastAsPossible,
    };
    let context = broker::connect(&args.url, broker::DEFAULT_REQUEST_TIMEOUT).await?;
    if let Some(stream) = &args.stream {
        let subject = match args.partitions {
            Some(_) => format!("{}.*", args.subject),
            None => args.subject.clone(),
        };
        broker::ensure_stream(&context, &StreamSpec::new(stream, &[subject.as_str()])).await?;
    }
    let mut publisher = Publisher::new(context, args.max_in_flight)?;
    let input = CsvInput::open(&args.file).await?;
    let options = ReplayOptions {
        subject: args.subject.clone(),
        partitions: args.partitions,
        end_of_stream: args.end_of_stream,
        time_column: args.time_column.clone(),
        pacing,
        limit: args.limit,
    };
    let mut progress = |progress: &replay::ReplayProgress| {
        eprintln!(
            "replay: {} lines, {} bytes, {:.1} s",
            progress.lines, progress.bytes, progress.seconds
        );
    };
    let summary = replay::replay(input, &mut publisher, &options, &mut progress)
        .await
        .with_context(|| format!("failed to replay `{}`", args.file.display()))?;
    match args.output {
        OutputFormat::Json => print_json(&serde_json::json!({
            "file": args.file.display().to_string(),
            "subject": args.subject,
            "lines": summary.lines,
            "bytes": summary.bytes,
            "untimed_lines": summary.untimed_lines,
            "seconds": summary.seconds,
            "lines_per_second": summary.lines_per_second,
        })),
        OutputFormat::Text => crate::outln!(
            "replayed {} lines ({} bytes) to {} in {:.3} s: {:.0} lines/s{}",
            summary.lines,
            summary.bytes,
            args.subject,
            summary.seconds,
            summary.lines_per_second,
            if summary.untimed_lines > 0 {
                format!(" ({} without a readable event time)", summary.untimed_lines)
            } else {
                String::new()
            }
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Publishes the file's data lines to a Kafka topic (see `--kafka`).
async fn replay_to_kafka(args: &Args, bootstrap: &str) -> anyhow::Result<ExitCode> {
    use std::io::BufRead as _;
    if args.speedup.is_some() {
        return Err(crate::client::usage(
            "--speedup is not supported with --kafka: Kafka replays go as fast as possible",
        ));
    }
    let file = std::fs::File::open(&args.file).map_err(|error| {
        crate::client::usage(format!("cannot read `{}`: {error}", args.file.display()))
    })?;
    let limit = args.limit.unwrap_or(u64::MAX);
    // Read lazily: memory stays bounded by the producer's queue, not by the file.
    let lines = std::io::BufReader::new(file)
        .split(b'\n')
        .skip(1)
        .map_while(Result::ok)
        .map(|mut line| {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            line
        })
        .filter(|line| !line.is_empty())
        .take(usize::try_from(limit).unwrap_or(usize::MAX));
    let started = std::time::Instant::now();
    let config = essaim_connect_kafka::KafkaConfig::new(bootstrap);
    let published = essaim_connect_kafka::publish_lines(
        &config,
        &args.subject,
        args.partitions.unwrap_or(1).max(1),
        lines,
        args.end_of_stream,
    )
    .await?;
    eprintln!(
        "replayed {} lines to Kafka topic {} in {:.3} s",
        published.lines,
        args.subject,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
