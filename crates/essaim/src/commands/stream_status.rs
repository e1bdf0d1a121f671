//! `essaim stream status`: a pipeline's jobs and, with `--postgres`, each unit's
//! committed position, the age of its last commit and the dead letters — as aligned
//! text or, with `--output json`, one JSON document for programs.
//!
//! The jobs come from the coordinator; the units from the pipeline's PostgreSQL, which
//! is where positions are committed (the coordinator does not know them).

use std::process::ExitCode;

use serde::Serialize;

use crate::client::ConnectArgs;
use crate::output::{OutputFormat, print_json};

/// Arguments of `essaim stream status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The pipeline's name.
    name: String,
    #[command(flatten)]
    connect: ConnectArgs,
    /// PostgreSQL of the pipeline: adds each unit's committed positions, the age of
    /// its last commit, and the dead letters.
    #[arg(long, env = "ESSAIM_POSTGRES_URL")]
    postgres: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
}

/// What `status` reports.
#[derive(Debug, Serialize)]
struct PipelineStatus {
    pipeline: String,
    jobs: Vec<JobLine>,
    /// `None` without `--postgres`.
    units: Option<Vec<UnitLine>>,
    dead_letters: Option<i64>,
}

#[derive(Debug, Serialize)]
struct JobLine {
    job_id: u64,
    state: String,
    tasks: u32,
    running: u32,
    succeeded: u32,
    dead_lettered: u32,
}

#[derive(Debug, Serialize)]
struct UnitLine {
    unit: String,
    source: String,
    partition: i32,
    position: i64,
    commit_age_seconds: f64,
}

/// Runs `essaim stream status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let job_name = super::stream::job_name(&args.name);
    let jobs: Vec<JobLine> = super::jobs::all_jobs(&args.connect.coordinator()?)
        .await?
        .into_iter()
        .filter(|job| job.name == job_name)
        .map(|job| JobLine {
            job_id: job.job_id,
            state: job.state,
            tasks: job.total,
            running: job.running,
            succeeded: job.succeeded,
            dead_lettered: job.dead_lettered,
        })
        .collect();
    if jobs.is_empty() {
        eprintln!("no job for pipeline `{}`", args.name);
        return Ok(ExitCode::from(1));
    }
    let mut status = PipelineStatus {
        pipeline: args.name.clone(),
        jobs,
        units: None,
        dead_letters: None,
    };
    if let Some(url) = &args.postgres {
        let (units, dead_letters) = unit_status(url, &args.name).await?;
        status.units = Some(units);
        status.dead_letters = Some(dead_letters);
    }
    match args.output {
        OutputFormat::Json => print_json(&serde_json::to_value(&status)?),
        OutputFormat::Text => print_text(&status),
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads each unit's committed positions and the pipeline's dead letters.
async fn unit_status(url: &str, pipeline: &str) -> anyhow::Result<(Vec<UnitLine>, i64)> {
    // The URL the pipeline runs with may name its password (`${env:PG_PASSWORD}`): read
    // here from this machine, as the workers do from theirs.
    let url = essaim_connect::secrets::resolve_secrets(url)?;
    let (client, _driver) = essaim_connect_postgres::tls::connect(&url).await?;
    // A prefix compared as text: LIKE would read `_` in names as a wildcard.
    let prefix = format!("{pipeline}/");
    let rows = client
        .query(
            "SELECT pipeline, source, \"partition\", position, \
             extract(epoch FROM now() - updated_at)::float8 \
             FROM essaim_offsets WHERE left(pipeline, length($1)) = $1 \
             ORDER BY pipeline, source, \"partition\"",
            &[&prefix],
        )
        .await?;
    let units = rows
        .iter()
        .map(|row| UnitLine {
            unit: row.get(0),
            source: row.get(1),
            partition: row.get(2),
            position: row.get(3),
            commit_age_seconds: row.get(4),
        })
        .collect();
    let dead_letters: i64 = client
        .query_one(
            "SELECT count(*) FROM essaim_dead_letters WHERE left(pipeline, length($1)) = $1",
            &[&prefix],
        )
        .await?
        .get(0);
    Ok((units, dead_letters))
}

fn print_text(status: &PipelineStatus) {
    for job in &status.jobs {
        crate::outln!(
            "job {:>5}  {:<10} tasks {:>3}  running {:>3}  succeeded {:>3}  dead-lettered {:>3}",
            job.job_id,
            job.state,
            job.tasks,
            job.running,
            job.succeeded,
            job.dead_lettered
        );
    }
    let Some(units) = &status.units else {
        return;
    };
    crate::outln!(
        "{:<28} {:<12} {:>9} {:>14} {:>12}",
        "UNIT",
        "SOURCE",
        "PARTITION",
        "POSITION",
        "COMMIT AGE"
    );
    for unit in units {
        crate::outln!(
            "{:<28} {:<12} {:>9} {:>14} {:>11.1}s",
            unit.unit,
            unit.source,
            unit.partition,
            unit.position,
            unit.commit_age_seconds
        );
    }
    if let Some(dead) = status.dead_letters {
        crate::outln!("dead letters: {dead}");
    }
}
