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
//!
//! Or against a stack that runs already (`--nats`, `--postgres`, `--coordinator`: the
//! compose file `deploy/compose/docker-compose.stream.yml` runs it inside its network):
//! the same replay, pipeline and comparison, but the cluster is not the demo's, so it
//! kills nothing (whoever runs the stack injects the failures). Such a stack must be
//! fresh: an earlier run's stream or tables would be resumed, and refused.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::stream::{PipelineArgs, build_job};
use crate::client::{ConnectArgs, CoordinatorCalls, TokenArgs};
use crate::local_cluster::{LocalCluster, LocalOptions};
use essaim_eval::flights::{AIRPORTS, SPEC, Stats, expected_outputs, flights_sample};
use essaim_eval::stream_servers::ScriptServer;

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
    /// A NATS JetStream server (or a cluster's members, comma-separated) to use instead
    /// of starting one; it must not hold the stream FLIGHTS yet.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// A PostgreSQL to use instead of starting one; it must not hold the pipeline's
    /// tables yet.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// A running cluster to submit the pipeline to instead of starting a local one; its
    /// workers reach --nats and --postgres at the same URLs. No worker is killed.
    #[arg(long, value_name = "URL", requires_all = ["nats", "postgres"])]
    coordinator: Option<String>,
    #[command(flatten)]
    token: TokenArgs,
}

/// A server of the demo: started by a script (stopped when dropped), or given.
struct Server {
    url: String,
    started: Option<ScriptServer>,
}

impl Server {
    /// The server at `given`, else one started by `scripts/SCRIPT` in `dir`.
    fn given_or_started(
        given: Option<&String>,
        scripts: &Option<PathBuf>,
        script: &str,
        dir: PathBuf,
        keep: bool,
    ) -> anyhow::Result<Server> {
        if let Some(url) = given {
            return Ok(Server {
                url: url.clone(),
                started: None,
            });
        }
        let started = ScriptServer::start(scripts_dir(scripts.clone())?.join(script), dir, keep)?;
        Ok(Server {
            url: started.url().to_owned(),
            started: Some(started),
        })
    }
}

/// Finds `scripts/`: the flag, else the source tree this binary was built from, else
/// `./scripts`.
fn scripts_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    essaim_eval::stream_servers::scripts_dir(flag).ok_or_else(|| {
        crate::client::usage(
            "cannot find the project's scripts/ (nats.sh, postgres.sh): run from the source tree or pass --scripts",
        )
    })
}

/// Runs the demo.
pub async fn run(args: StreamDemoArgs) -> anyhow::Result<ExitCode> {
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

    if args.nats.is_none() || args.postgres.is_none() {
        eprintln!("demo: starting NATS JetStream and PostgreSQL (installed if missing)…");
    }
    let keep = args.keep_servers;
    let nats = Server::given_or_started(
        args.nats.as_ref(),
        &args.scripts,
        "nats.sh",
        work.join("nats"),
        keep,
    )?;
    let postgres = Server::given_or_started(
        args.postgres.as_ref(),
        &args.scripts,
        "postgres.sh",
        work.join("postgres"),
        keep,
    )?;
    eprintln!("demo: NATS at {}, PostgreSQL at {}", nats.url, postgres.url);
    // The demo's own connections resolve secret references (`${env:NAME}`) here; the
    // pipeline's tasks carry the URLs as given, for the workers to resolve.
    let nats_here = essaim_connect::secrets::resolve_secrets(&nats.url)?;
    let postgres_here = essaim_connect::secrets::resolve_secrets(&postgres.url)?;
    ensure_fresh(&nats_here, &postgres_here).await?;

    replay(&nats_here, &work.join("flights.csv")).await?;
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
    let (elapsed, failure) = match &args.coordinator {
        Some(url) => {
            let connect = ConnectArgs::for_url(url, args.token.resolve()?);
            let elapsed = run_on_cluster(&pipeline, &connect.coordinator()?).await?;
            (elapsed, format!("on the cluster at {url}"))
        }
        None => {
            let (elapsed, killed) =
                run_with_a_kill(&pipeline, args.workers.max(2), &postgres_here, work).await?;
            let failure = if killed {
                "a worker killed mid-stream"
            } else {
                "no worker killed (the pipeline ended first)"
            };
            (elapsed, failure.to_owned())
        }
    };

    let expected = expected_outputs(SPEC, &flights, AIRPORTS)?;
    let actual = Stats::read(&postgres_here, PIPELINE).await?;
    let verdict = expected.compare(&actual);
    crate::outln!(
        "{rows} flights through the pipeline in {:.1} s ({:.0} events/s), {}",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
        failure
    );
    crate::outln!(
        "flight_stats: {} hourly windows, unknown airports: {}, dead letters: {}",
        actual.windows.len(),
        actual.unknown_airports,
        actual.dead_letters
    );
    for (started, script) in [
        (&nats.started, "nats.sh"),
        (&postgres.started, "postgres.sh"),
    ] {
        if let Some(server) = started.as_ref().filter(|server| server.kept()) {
            crate::outln!(
                "server kept: {} (stop it with scripts/{script} stop {})",
                server.url(),
                server.dir().display()
            );
        }
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

/// Refuses servers that hold an earlier run: its stream would be replayed into again
/// and its committed positions resumed, and the tables would not be this run's.
async fn ensure_fresh(nats_url: &str, postgres_url: &str) -> anyhow::Result<()> {
    use essaim_connect_nats::broker;
    let context = broker::connect(nats_url, broker::DEFAULT_REQUEST_TIMEOUT).await?;
    anyhow::ensure!(
        context.get_stream("FLIGHTS").await.is_err(),
        "NATS holds the stream FLIGHTS already (an earlier run's?): the demo needs fresh servers"
    );
    let (client, _driver) = essaim_connect_postgres::tls::connect(postgres_url).await?;
    let earlier: bool = client
        .query_one("SELECT to_regclass('flight_stats') IS NOT NULL", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        !earlier,
        "PostgreSQL holds the table flight_stats already (an earlier run's?): the demo needs fresh servers"
    );
    Ok(())
}

/// Submits the pipeline to a running cluster and waits for it to end; returns how long
/// it ran.
async fn run_on_cluster(
    pipeline: &PipelineArgs,
    coordinator: &CoordinatorCalls,
) -> anyhow::Result<Duration> {
    let (_, job) = build_job(pipeline)?;
    let tasks = job.tasks.len();
    let started = Instant::now();
    let job_id = coordinator.submit_job(job).await?;
    eprintln!("demo: pipeline `{PIPELINE}` runs as job {job_id} ({tasks} stream tasks)");
    let waited =
        super::jobs::wait_with_progress(coordinator, job_id, None, Default::default()).await?;
    anyhow::ensure!(
        waited == ExitCode::SUCCESS,
        "the pipeline's job {job_id} did not succeed"
    );
    Ok(started.elapsed())
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
