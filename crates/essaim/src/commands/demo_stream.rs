//! `essaim demo stream`: seed 002's whole stack on one machine, in one command — a
//! broker, a processing cluster, a database — with a failure in the middle and the
//! answer checked.
//!
//! It starts a NATS JetStream server and a PostgreSQL of its own, in a fresh temporary
//! directory, through the project's scripts (`scripts/nats.sh`, `scripts/postgres.sh`,
//! which install them when missing), replays the real flights the project ships
//! (`demo/stream/`) into three partitions, runs the flights pipeline on a local cluster,
//! SIGKILLs a worker once units have committed, and compares the tables with the same
//! pipeline run in this process over the same lines. The servers are stopped at the end
//! unless `--keep-servers` asks to look at the tables afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::Signal;

use super::demo_stream_oracle::{Stats, expected_outputs};
use super::stream::{PipelineArgs, build_job};
use crate::client::CoordinatorCalls;
use crate::local_cluster::{LocalCluster, LocalOptions};

/// The shipped data and pipeline.
const FLIGHTS: &str = include_str!("../../../../demo/stream/flights.csv");
const AIRPORTS: &str = include_str!("../../../../demo/stream/airports.csv");
const SPEC: &str = include_str!("../../../../demo/stream/flights.toml");
/// The pipeline's name: its state in PostgreSQL is keyed by it.
const PIPELINE: &str = "flights";

/// Options of `essaim demo stream`.
#[derive(clap::Args, Debug)]
pub struct StreamDemoArgs {
    /// Flights to replay (at most the 50,000 shipped).
    #[arg(long, default_value_t = 50_000)]
    rows: usize,
    /// Worker processes of the local cluster (one of them is killed).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Leave the NATS and PostgreSQL servers running and print their URLs.
    #[arg(long)]
    keep_servers: bool,
    /// The project's `scripts/` directory (default: the source tree's).
    #[arg(long)]
    scripts: Option<PathBuf>,
}

/// A server started by one of the project's scripts, stopped when dropped.
struct ScriptServer {
    script: PathBuf,
    dir: PathBuf,
    url: String,
    keep: bool,
}

impl ScriptServer {
    fn start(script: PathBuf, dir: PathBuf, keep: bool) -> anyhow::Result<ScriptServer> {
        let output = std::process::Command::new(&script)
            .arg("start")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("cannot run `{}`", script.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "`{} start` failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let url = stdout.lines().last().unwrap_or_default().trim().to_owned();
        anyhow::ensure!(!url.is_empty(), "`{}` printed no URL", script.display());
        Ok(ScriptServer {
            script,
            dir,
            url,
            keep,
        })
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _ = std::process::Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .output();
    }
}

/// Finds `scripts/`: the flag, else the source tree this binary was built from, else
/// `./scripts`.
fn scripts_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts");
    let candidates = flag
        .into_iter()
        .chain([built_from, PathBuf::from("scripts")]);
    for candidate in candidates {
        if candidate.join("nats.sh").is_file() && candidate.join("postgres.sh").is_file() {
            return Ok(candidate);
        }
    }
    Err(crate::client::usage(
        "cannot find the project's scripts/ (nats.sh, postgres.sh): run from the source tree or pass --scripts",
    ))
}

/// The first `rows` data lines of the shipped flights, with the header.
fn flights_sample(rows: usize) -> String {
    let mut lines = FLIGHTS.lines();
    let mut sample = String::with_capacity(FLIGHTS.len().min(rows * 48));
    for line in lines.by_ref().take(rows + 1) {
        sample.push_str(line);
        sample.push('\n');
    }
    sample
}

/// Runs the demo.
pub async fn run(args: StreamDemoArgs) -> anyhow::Result<ExitCode> {
    let scripts = scripts_dir(args.scripts.clone())?;
    let temporary = tempfile::Builder::new()
        .prefix("essaim-demo-stream-")
        .tempdir()?;
    // Kept servers keep their directory, whatever happens next.
    let (work, _removed_at_exit) = if args.keep_servers {
        (temporary.keep(), None)
    } else {
        (temporary.path().to_path_buf(), Some(temporary))
    };
    let work = work.as_path();
    // Servers run as the `postgres` user when started by root: their directories must
    // be reachable by it.
    make_world_traversable(work)?;
    let flights = flights_sample(args.rows.max(1));
    let rows = flights.lines().count() - 1;
    std::fs::write(work.join("flights.csv"), &flights)?;
    std::fs::write(work.join("airports.csv"), AIRPORTS)?;
    std::fs::write(work.join("flights.toml"), SPEC)?;

    eprintln!("demo: starting NATS JetStream and PostgreSQL (installed if missing)…");
    let nats = ScriptServer::start(
        scripts.join("nats.sh"),
        work.join("nats"),
        args.keep_servers,
    )?;
    let postgres = ScriptServer::start(
        scripts.join("postgres.sh"),
        work.join("postgres"),
        args.keep_servers,
    )?;
    eprintln!("demo: NATS at {}, PostgreSQL at {}", nats.url, postgres.url);

    replay(&nats.url, &work.join("flights.csv")).await?;
    eprintln!("demo: {rows} flights replayed into 3 partitions of FLIGHTS");

    let pipeline = PipelineArgs {
        spec: work.join("flights.toml"),
        name: Some(PIPELINE.to_owned()),
        parallelism: None,
        nats: Some(nats.url.clone()),
        kafka: None,
        registry: None,
        postgres: postgres.url.clone(),
        exit_at_end: true,
        batch_max: 2000,
        batch_wait: std::time::Duration::from_millis(20),
        migrate: None,
    };
    let (elapsed, killed) =
        run_with_a_kill(&pipeline, args.workers.max(2), &postgres.url, work).await?;

    let expected = expected_outputs(SPEC, &flights, AIRPORTS)?;
    let actual = Stats::read(&postgres.url, PIPELINE).await?;
    let verdict = expected.compare(&actual);
    crate::outln!(
        "{rows} flights through the pipeline in {:.1} s ({:.0} events/s), {}",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
        if killed {
            "a worker killed mid-stream"
        } else {
            "no worker killed (the pipeline ended first)"
        }
    );
    crate::outln!(
        "flight_stats: {} hourly windows, unknown airports: {}, dead letters: {}",
        actual.windows.len(),
        actual.unknown_airports,
        actual.dead_letters
    );
    if args.keep_servers {
        crate::outln!(
            "servers kept: NATS {} and PostgreSQL {} (stop them with scripts/nats.sh stop {} and scripts/postgres.sh stop {})",
            nats.url,
            postgres.url,
            nats.dir.display(),
            postgres.dir.display()
        );
    }
    match verdict {
        Ok(()) => {
            crate::outln!("the tables equal the oracle (the same pipeline in one process)");
            Ok(ExitCode::SUCCESS)
        }
        Err(difference) => {
            crate::outln!("the tables differ from the oracle: {difference}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Lets other users (the `postgres` user of a root-run demo) into `dir`.
fn make_world_traversable(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Replays the flights file into `FLIGHTS` (subjects `flights.0..2`), with
/// end-of-stream markers, as fast as the server confirms.
async fn replay(nats_url: &str, path: &Path) -> anyhow::Result<()> {
    use essaim_connect_nats::broker::{self, StreamSpec};
    use essaim_connect_nats::publish::Publisher;
    use essaim_connect_nats::replay::{self, CsvInput, Pacing, ReplayOptions};
    let context = broker::connect(nats_url, broker::DEFAULT_REQUEST_TIMEOUT).await?;
    broker::ensure_stream(&context, &StreamSpec::new("FLIGHTS", &["flights.*"])).await?;
    let mut publisher = Publisher::new(context, 256)?;
    let options = ReplayOptions {
        subject: "flights".to_owned(),
        partitions: Some(3),
        end_of_stream: true,
        time_column: None,
        pacing: Pacing::AsFastAsPossible,
        limit: None,
    };
    replay::replay(
        CsvInput::open(path).await?,
        &mut publisher,
        &options,
        &mut |_| {},
    )
    .await?;
    Ok(())
}

/// Runs the pipeline to the end of its input on a local cluster, SIGKILLing worker 0
/// once two units have committed; returns how long the pipeline ran and whether the
/// worker was killed while it ran.
async fn run_with_a_kill(
    pipeline: &PipelineArgs,
    workers: usize,
    postgres_url: &str,
    work: &Path,
) -> anyhow::Result<(Duration, bool)> {
    let (_, job) = build_job(pipeline)?;
    let tasks = job.tasks.len();
    let options = LocalOptions::for_demo(workers, work.join("cluster"));
    let cluster = LocalCluster::start(options).await?;
    let coordinator = CoordinatorCalls::local(&cluster.url)?;
    let started = Instant::now();
    let job_id = coordinator.submit_job(job).await?;
    eprintln!(
        "demo: pipeline `{PIPELINE}` runs as job {job_id} ({tasks} stream tasks) on {workers} workers"
    );
    let killer = async {
        wait_for_commits(postgres_url, 2).await?;
        let killed = cluster.signal_worker(0, Signal::SIGKILL).await;
        if killed {
            eprintln!("demo: worker 1 killed with SIGKILL mid-stream; its units resume elsewhere");
        }
        anyhow::Ok(killed)
    };
    let waited = super::jobs::wait_with_progress(&coordinator, job_id, None, Default::default());
    let (killed, code) = tokio::join!(killer, waited);
    let elapsed = started.elapsed();
    cluster.stop(Duration::from_secs(5)).await?;
    let killed = killed?;
    anyhow::ensure!(
        code? == ExitCode::SUCCESS,
        "the pipeline's job {job_id} did not succeed"
    );
    Ok((elapsed, killed))
}

/// Waits until `count` units have committed a position.
async fn wait_for_commits(postgres_url: &str, count: i64) -> anyhow::Result<()> {
    let (client, _driver) = essaim_connect_postgres::tls::connect(postgres_url).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let committed: i64 = client
            .query_opt("SELECT count(*) FROM essaim_offsets", &[])
            .await
            .ok()
            .flatten()
            .map_or(0, |row| row.get(0));
        if committed >= count {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("no unit committed within two minutes")
}

/// The keys of a table of expected or actual windows.
pub(crate) type WindowKey = (String, i64);
/// What a window holds: flights, mean delay, p95 delay.
pub(crate) type WindowValue = (i64, f64, f64);
/// The windows of `flight_stats`.
pub(crate) type Windows = BTreeMap<WindowKey, WindowValue>;
