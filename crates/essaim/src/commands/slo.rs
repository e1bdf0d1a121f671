//! `essaim slo rules FILE`: service-level objectives as configuration, printed as the
//! Prometheus recording rules and burn-rate alerts that watch them (the generator is
//! `essaim_telemetry::slo`, next to the metric names it reads).
//!
//! The repository's own objectives are `deploy/prometheus/slo.toml`, and their rules
//! `deploy/prometheus/slo_rules.yml` are this command's output, kept equal by
//! `crates/essaim/tests/promtool/slo.rs`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use essaim_telemetry::slo::{Histograms, Objectives, prometheus_rules};

use crate::client::usage;

/// Service-level objectives.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: SloCommand,
}

#[derive(clap::Subcommand, Debug)]
enum SloCommand {
    /// Print the Prometheus rules (recording rules and multi-window burn-rate alerts)
    /// of an objectives file, e.g. deploy/prometheus/slo.toml.
    Rules {
        /// The objectives file (TOML).
        file: PathBuf,
    },
}

/// Runs `essaim slo …`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let SloCommand::Rules { file } = args.command;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read `{}`", file.display()))?;
    let histograms = Histograms {
        job_duration_seconds: essaim_telemetry::JOB_DURATION_BUCKETS_SECONDS.to_vec(),
        pipeline_latency_seconds: essaim_stream_runtime::metrics::latency_bucket_bounds(),
    };
    let objectives = Objectives::parse(&text, &histograms)
        .map_err(|error| usage(format!("{}: {error}", file.display())))?;
    let source = file.file_name().map_or_else(
        || file.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let rules = prometheus_rules(&objectives, &source);
    // The rules end with a newline, which the line writer adds back.
    crate::outln!("{}", rules.trim_end_matches('\n'));
    Ok(ExitCode::SUCCESS)
}
