//! The streaming stack the stream scenarios run on: a NATS JetStream server and a
//! PostgreSQL, the flights the project ships replayed into NATS, and the flights
//! pipeline of `essaim demo stream` submitted to an [`EvalCluster`].
//!
//! The servers are the ones named by `$ESSAIM_NATS_URL` and `$ESSAIM_POSTGRES_URL`,
//! else started by the project's scripts (as the demo does), else absent: the stream
//! scenarios are then skipped, unless named in `--only`, like the failover without etcd.
//! `ESSAIM_SKIP_NATS=1` or `ESSAIM_SKIP_POSTGRES=1` (the test suite's switches) skip
//! them too. Given servers must be the evaluation's alone: their stream `FLIGHTS` is
//! replaced by every replay.
//!
//! Every run gets a database of its own (so its tables and positions start empty) and
//! a pipeline name of its own (so its shuffle stream in NATS does too); after it, the
//! tables are compared with the oracle of [`crate::flights`], and a difference fails the
//! scenario.

use crate::cluster::EvalCluster;
use crate::flights::{self, AIRPORTS, SPEC, Stats};
use crate::say;
use crate::stream_servers::{self, NATS_URL_VARIABLE, POSTGRES_URL_VARIABLE, ScriptServer};
use essaim_coordinator::planning::StreamRequest;
use essaim_coordinator::streams::PipelineView;
use essaim_proto::v1;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The source stream of the flights pipeline (its spec names it) and its partitions.
const STREAM: &str = "FLIGHTS";
const SUBJECT: &str = "flights";
const PARTITIONS: u32 = 3;
/// Publishes awaiting their acknowledgement, as `essaim replay` by default: NATS syncs
/// every write (`scripts/nats.sh`), and more in flight time out on a loaded machine.
const PUBLISHES_IN_FLIGHT: usize = 256;
/// Period of the samples of the coordinator's stream board.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(250);
/// Longest the coordinator may fail to answer before the scenario fails.
const POLL_FAILURES_FOR: Duration = Duration::from_secs(30);
/// Longest a pipeline may run before the scenario fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// NATS and PostgreSQL, and the pipeline's files.
pub struct StreamStack {
    nats_url: String,
    postgres_url: String,
    /// The servers this evaluation started, stopped when dropped.
    _started: Vec<ScriptServer>,
    /// Where the spec and its airports table are, for the workers to read.
    dir: PathBuf,
    runs: AtomicUsize,
    /// The oracle's answer by number of events, computed once.
    expected: Mutex<BTreeMap<usize, Arc<Stats>>>,
    /// The backlog `FLIGHTS` holds, if it holds one.
    backlog: Mutex<Option<Replayed>>,
}

/// Locks `mutex`, whose data stays whole even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why the stream scenarios cannot run here, if they cannot.
pub fn absent_reason() -> Option<String> {
    for variable in ["ESSAIM_SKIP_NATS", "ESSAIM_SKIP_POSTGRES"] {
        if std::env::var(variable).as_deref() == Ok("1") {
            return Some(format!("{variable}=1"));
        }
    }
    let given = std::env::var_os(NATS_URL_VARIABLE).is_some()
        && std::env::var_os(POSTGRES_URL_VARIABLE).is_some();
    if !given && stream_servers::scripts_dir(None).is_none() {
        return Some(format!(
            "no servers: set ${NATS_URL_VARIABLE} and ${POSTGRES_URL_VARIABLE}, or run from the source tree (scripts/nats.sh, scripts/postgres.sh)"
        ));
    }
    None
}

impl StreamStack {
    /// Gets the servers (given, else started in `dir`) and writes the pipeline's files.
    pub fn start(dir: &Path) -> anyhow::Result<StreamStack> {
        std::fs::create_dir_all(dir)?;
        // Servers run as the `postgres` user when started by root: their directories
        // must be reachable by it.
        for reachable in [dir, dir.parent().unwrap_or(dir)] {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(reachable, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::write(dir.join("flights.toml"), SPEC)?;
        std::fs::write(dir.join("airports.csv"), AIRPORTS)?;
        let mut started = Vec::new();
        let mut url_of = |variable: &str, script: &str| -> anyhow::Result<String> {
            if let Ok(url) = std::env::var(variable) {
                return Ok(url);
            }
            let scripts = stream_servers::scripts_dir(None)
                .ok_or_else(|| anyhow::anyhow!("no scripts/ to start {script} with"))?;
            say(&format!("starting a server with scripts/{script}"));
            let name = script.trim_end_matches(".sh");
            let server = ScriptServer::start(scripts.join(script), dir.join(name), false)?;
            let url = server.url().to_owned();
            started.push(server);
            Ok(url)
        };
        let nats_url = url_of(NATS_URL_VARIABLE, "nats.sh")?;
        let postgres_url = url_of(POSTGRES_URL_VARIABLE, "postgres.sh")?;
        say(&format!(
            "streams: NATS at {nats_url}, PostgreSQL at {postgres_url}"
        ));
        Ok(StreamStack {
            nats_url,
            postgres_url,
            _started: started,
            dir: dir.to_path_buf(),
            runs: AtomicUsize::new(0),
            expected: Default::default(),
            backlog: Mutex::default(),
        })
    }

    /// Replaces the stream `FLIGHTS` with the first `events` flights
    /// ([`flights::first_events`]) and end-of-stream markers, as fast as the server
    /// confirms: a backlog for the runs that follow. A backlog of as many events
    /// already there is kept (publishing into NATS, which syncs every write, takes
    /// longer than reading it).
    pub async fn replay(&self, events: usize) -> anyhow::Result<Replayed> {
        if let Some(replayed) = *lock(&self.backlog)
            && replayed.events == events as u64
        {
            return Ok(replayed);
        }
        self.reset_stream().await?;
        let replayed = self.publish(events, None).await?;
        *lock(&self.backlog) = Some(replayed);
        Ok(replayed)
    }

    /// Replaces the stream `FLIGHTS` by an empty one, for [`Self::publish`] to fill
    /// while a pipeline reads it.
    pub async fn reset_stream(&self) -> anyhow::Result<()> {
        use essaim_connect_nats::broker::{self, StreamSpec};
        *lock(&self.backlog) = None;
        let context = broker::connect(&self.nats_url, broker::DEFAULT_REQUEST_TIMEOUT).await?;
        let _absent_is_fine = context.delete_stream(STREAM).await;
        let subjects = format!("{SUBJECT}.*");
        broker::ensure_stream(&context, &StreamSpec::new(STREAM, &[subjects.as_str()])).await?;
        Ok(())
    }

    /// Publishes the first `events` flights ([`flights::first_events`]) into `FLIGHTS`,
    /// then end-of-stream markers: as fast as the server confirms, or at about `rate`
    /// events/s (paced by event time).
    pub async fn publish(&self, events: usize, rate: Option<f64>) -> anyhow::Result<Replayed> {
        use essaim_connect_nats::broker;
        use essaim_connect_nats::publish::Publisher;
        use essaim_connect_nats::replay::{self, CsvInput, Pacing, ReplayOptions};
        let path = self.dir.join(format!("flights-{events}.csv"));
        let text = flights::first_events(events);
        if !path.exists() {
            std::fs::write(&path, &text)?;
        }
        let context = broker::connect(&self.nats_url, broker::DEFAULT_REQUEST_TIMEOUT).await?;
        let mut publisher = Publisher::new(context, PUBLISHES_IN_FLIGHT)?;
        let (pacing, time_column) = match rate {
            Some(rate) => {
                let span = flights::event_span_seconds(&text).unwrap_or(1.0).max(1.0);
                let wall = events as f64 / rate;
                (Pacing::Speedup(span / wall), Some("date".to_owned()))
            }
            None => (Pacing::AsFastAsPossible, None),
        };
        let options = ReplayOptions {
            subject: SUBJECT.to_owned(),
            partitions: Some(PARTITIONS),
            end_of_stream: true,
            time_column,
            pacing,
            limit: None,
        };
        let summary = replay::replay(
            CsvInput::open(&path).await?,
            &mut publisher,
            &options,
            &mut |_| {},
        )
        .await?;
        Ok(Replayed {
            events: summary.lines,
            events_per_second: summary.lines_per_second,
        })
    }

    /// Returns a fresh run: a database of its own and a pipeline name of its own.
    pub async fn fresh_run(&self) -> anyhow::Result<PipelineRun> {
        let number = self.runs.fetch_add(1, Ordering::Relaxed);
        let pipeline = format!("flights_{number}");
        let database = format!("essaim_eval_{}_{number}", std::process::id());
        let (client, _driver) = essaim_connect_postgres::tls::connect(&self.postgres_url).await?;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await?
            .is_some();
        if exists {
            // An earlier evaluation's, with the same process id.
            client
                .batch_execute(&format!("DROP DATABASE {database}"))
                .await?;
        }
        client
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await?;
        Ok(PipelineRun {
            database_url: with_database(&self.postgres_url, &database),
            pipeline,
        })
    }

    /// The pipeline's job for `run`, ending once every partition has ended.
    pub fn job(&self, run: &PipelineRun) -> anyhow::Result<v1::JobSpec> {
        let request = StreamRequest {
            kind: Default::default(),
            name: run.pipeline.clone(),
            spec: SPEC.to_owned(),
            tables: BTreeMap::new(),
            base_dir: Some(self.dir.display().to_string()),
            postgres: run.database_url.clone(),
            nats: Some(self.nats_url.clone()),
            kafka: None,
            registry: None,
            parallelism: None,
            exit_at_end: true,
            batch_max: None,
            batch_wait_ms: None,
            migrate: None,
            required_labels: BTreeMap::new(),
        };
        let tables = essaim_planning::stream::Tables::InlineOrFiles;
        Ok(essaim_planning::stream::job_spec(&request, tables)?)
    }

    /// Compares the tables of `run` with the oracle over the first `events` flights;
    /// fails loudly when they differ.
    pub async fn check(&self, run: &PipelineRun, events: usize, when: &str) -> anyhow::Result<()> {
        let expected = self.expected(events)?;
        let actual = Stats::read(&run.database_url, &run.pipeline).await?;
        if let Err(difference) = expected.compare(&actual) {
            anyhow::bail!(
                "the tables of pipeline {} ({when}) differ from the oracle: {difference}",
                run.pipeline
            );
        }
        Ok(())
    }

    fn expected(&self, events: usize) -> anyhow::Result<Arc<Stats>> {
        if let Some(stats) = lock(&self.expected).get(&events) {
            return Ok(stats.clone());
        }
        let text = flights::first_events(events);
        let stats = Arc::new(flights::expected_outputs(SPEC, &text, AIRPORTS)?);
        lock(&self.expected).insert(events, stats.clone());
        Ok(stats)
    }
}

/// What a replay published.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Replayed {
    /// Data lines, all confirmed.
    pub events: u64,
    /// From the first publish to the last confirmation.
    pub events_per_second: f64,
}

/// One run of the pipeline: its name and its database.
pub struct PipelineRun {
    /// The pipeline's name (its state and shuffle stream are keyed by it).
    pub pipeline: String,
    /// Its database.
    pub database_url: String,
}

/// `url` with its database (the path) replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(base, query)| (base, Some(query)));
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The stream board at one moment of a run.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSample {
    /// Seconds since the submission.
    pub t_s: f64,
    /// Lag summed over the units reported.
    pub lag: i64,
    /// Records read per second, summed over the units.
    pub records_per_second: f64,
    /// Units reported by a live worker.
    pub units: u32,
    /// Workers the coordinator counts as alive.
    pub workers: u32,
    /// Workers running some unit of the pipeline.
    pub stream_workers: u32,
}

/// What [`run_pipeline`] saw.
pub struct Observed {
    /// Submission → end on the coordinator's clock, s.
    pub job_seconds: f64,
    /// Every sample.
    pub samples: Vec<StreamSample>,
    /// The most records each worker read for each unit, by worker and stage.
    pub records: BTreeMap<(String, String), u64>,
    /// Units of each stage.
    pub units_by_stage: BTreeMap<String, u32>,
    /// CPU seconds of the coordinator and the workers during the run.
    pub core_seconds: f64,
    /// Of which the coordinator's.
    pub coordinator_core_seconds: f64,
    /// CPU seconds of each worker during the run, by name.
    pub worker_core_seconds: BTreeMap<String, f64>,
}

/// Submits `job` to `cluster`, samples the stream board every [`SAMPLE_PERIOD`] until
/// the job ends, calling `on_sample` after each sample (to kill, add or drain workers);
/// fails unless the job succeeds.
pub async fn run_pipeline(
    cluster: &mut EvalCluster,
    job: v1::JobSpec,
    mut on_sample: impl FnMut(
        &mut EvalCluster,
        &StreamSample,
        &[PipelineView],
    ) -> anyhow::Result<AfterSample>,
) -> anyhow::Result<Observed> {
    let cpu_before = cluster.cpu();
    let per_worker_before = cluster.worker_cpu();
    let started = Instant::now();
    let mut client = cluster.client();
    let job_id = crate::cluster::submit(&mut client, job).await?;
    let mut samples = Vec::new();
    let mut records: BTreeMap<(String, String, u32), u64> = BTreeMap::new();
    let mut units_by_stage: BTreeMap<String, u32> = BTreeMap::new();
    let mut per_worker_last = per_worker_before.clone();
    let mut failing_since: Option<Instant> = None;
    let job = loop {
        anyhow::ensure!(
            started.elapsed() < RUN_TIMEOUT,
            "the pipeline's job {job_id} still runs after {RUN_TIMEOUT:?}"
        );
        let polled = async {
            let status = crate::cluster::job_status(&mut client, job_id).await?;
            let views = cluster.streams().await?;
            let workers = cluster.workers_view().await?.len() as u32;
            anyhow::Ok((status, views, workers))
        }
        .await;
        // A coordinator just restarted may refuse a call or two.
        let (status, views, workers) = match polled {
            Ok(polled) => {
                failing_since = None;
                polled
            }
            Err(error)
                if failing_since.is_some_and(|since| since.elapsed() > POLL_FAILURES_FOR) =>
            {
                return Err(
                    error.context(format!("polling the coordinator for {POLL_FAILURES_FOR:?}"))
                );
            }
            Err(_) => {
                failing_since.get_or_insert_with(Instant::now);
                tokio::time::sleep(SAMPLE_PERIOD).await;
                continue;
            }
        };
        if status.state != "running" {
            break status;
        }
        let sample = sample_of(&views, workers, started.elapsed().as_secs_f64());
        for unit in views.iter().flat_map(|view| view.units.iter()) {
            let key = (unit.worker_name.clone(), unit.stage.clone(), unit.unit);
            let most = records.entry(key).or_default();
            *most = (*most).max(unit.records_in);
            let stage_units = units_by_stage.entry(unit.stage.clone()).or_default();
            *stage_units = (*stage_units).max(unit.unit + 1);
        }
        // A worker's CPU time is read while it lives: a killed one keeps its last.
        for (name, seconds) in cluster.worker_cpu() {
            per_worker_last.insert(name, seconds);
        }
        let then = on_sample(cluster, &sample, &views)?;
        samples.push(sample);
        if then == AfterSample::RestartCoordinator {
            cluster.restart_coordinator().await?;
        }
        tokio::time::sleep(SAMPLE_PERIOD).await;
    };
    let cpu_after = cluster.cpu();
    anyhow::ensure!(
        job.state == "succeeded",
        "the pipeline's job {job_id} ended {}: {job:?}",
        job.state
    );
    let detail = cluster.job_detail(job_id).await?;
    let job_seconds =
        crate::cluster::job_seconds(&detail).unwrap_or(started.elapsed().as_secs_f64());
    let mut by_worker: BTreeMap<(String, String), u64> = BTreeMap::new();
    for ((worker, stage, _unit), count) in records {
        *by_worker.entry((worker, stage)).or_default() += count;
    }
    let worker_core_seconds = per_worker_last
        .into_iter()
        .map(|(name, seconds)| {
            let before = per_worker_before.get(&name).copied().unwrap_or(0.0);
            (name, (seconds - before).max(0.0))
        })
        .collect();
    let coordinator_core_seconds = cpu_after.coordinator - cpu_before.coordinator;
    Ok(Observed {
        job_seconds,
        samples,
        records: by_worker,
        units_by_stage,
        core_seconds: coordinator_core_seconds + (cpu_after.workers - cpu_before.workers).max(0.0),
        coordinator_core_seconds,
        worker_core_seconds,
    })
}

/// What [`run_pipeline`] does after a sample, as the scenario asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSample {
    /// The next sample.
    Continue,
    /// SIGKILL the coordinator and start it again on its journal, then the next sample.
    RestartCoordinator,
}

/// The board's pipelines reduced to one sample.
fn sample_of(views: &[PipelineView], workers: u32, t_s: f64) -> StreamSample {
    let names: std::collections::BTreeSet<&str> = views
        .iter()
        .flat_map(|view| view.units.iter())
        .map(|unit| unit.worker.as_str())
        .collect();
    StreamSample {
        t_s,
        lag: views.iter().map(|view| view.lag).sum(),
        records_per_second: views.iter().map(|view| view.records_per_second).sum(),
        units: views.iter().map(|view| view.units.len() as u32).sum(),
        workers,
        stream_workers: names.len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_gets_a_database_of_its_own() {
        assert_eq!(
            with_database("postgresql://postgres@127.0.0.1:5432/postgres", "run_1"),
            "postgresql://postgres@127.0.0.1:5432/run_1"
        );
        assert_eq!(
            with_database("postgres://u:p@db:5432?sslmode=require", "run_1"),
            "postgres://u:p@db:5432/run_1?sslmode=require"
        );
    }
}
