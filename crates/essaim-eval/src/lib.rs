//! The evaluation harness behind `essaim eval --out DIR`. It starts real clusters of
//! local processes of the essaim binary on loopback, runs one scenario per evaluation question, reads
//! the coordinator's REST API, and writes `results.json`, one SVG per plot and a Markdown
//! summary.
//!
//! | question | scenario | file |
//! |---|---|---|
//! | 1. throughput vs number of workers | sleep tasks (I/O-bound), word count (CPU-bound) | `scaling.rs` |
//! | 2. load distribution across workers | per-worker shares of the job history, equal and unequal slots | `balance.rs` |
//! | 3. recovery time | SIGKILL of a worker; SIGSTOP past the worker timeout, then SIGCONT | `recovery.rs` |
//! | 4. behaviour under load variation | scale out 2→4 and drain 4→2 mid-job | `elasticity.rs` |
//! | 5. cost | core-seconds per GB of the word counts of question 1 | `scaling.rs` |
//! | 6. failover of the coordinator | SIGKILL and SIGSTOP of the leader of two coordinators on etcd | `failover.rs` |
//! | 1 and 5, streaming | events/s and core-seconds per million events of the flights pipeline vs workers | `stream_scaling.rs` |
//! | 2, streaming | each worker's records and CPU time while a pipeline runs | `stream_balance.rs` |
//! | 3, streaming | SIGKILL of a worker, and of the coordinator (restarted on its journal), mid-stream: units back, lag back to normal | `stream_recovery.rs` |
//! | 4, streaming | workers added and drained mid-stream, lag over time | `stream_elasticity.rs` |
//!
//! `cluster.rs` starts and signals the processes (`ha_cluster.rs` those of the
//! failover, with etcd; `stream_stack.rs` the NATS and PostgreSQL of the stream
//! scenarios, through `stream_servers.rs`, and their pipeline runs, checked against the
//! oracle of `flights.rs`), `procstat.rs` reads their CPU time,
//! `stats.rs` holds the statistics, `plots.rs` and `summary.rs` draw and write up the
//! results, `corpus.rs` writes the word count's corpus and its oracle (the demo's too).
//! Progress goes to standard error.
//!
//! It is a crate of its own because it is a third of the binary's code and none of the
//! command line: the binary's `essaim eval` parses the options, passes in what only the
//! binary has (a [`Host`]: its executable, its jobs, its REST client and its MapReduce
//! submission) and writes the files this crate renders.

mod balance;
mod cluster;
pub mod corpus;
mod elasticity;
mod failover;
#[cfg(test)]
mod fixture;
pub mod flights;
mod ha_cluster;
mod plots;
mod procstat;
mod recovery;
mod scaling;
mod stats;
mod stream_balance;
mod stream_elasticity;
mod stream_plots;
mod stream_recovery;
mod stream_scaling;
pub mod stream_servers;
mod stream_stack;
mod stream_summary;
mod summary;

use essaim_mapreduce::plan::PlannedJob;
use essaim_mapreduce::registry::JobRegistry;
use essaim_proto::CoordinatorClient;
use serde::Serialize;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A future the binary's side of [`Host`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the harness takes from the essaim binary that runs it, so that this crate does
/// not depend on the binary crate.
pub trait Host: Send + Sync {
    /// The essaim executable the clusters' processes run (the running binary, so that a
    /// program linking jobs of its own evaluates with them).
    fn executable(&self) -> std::io::Result<PathBuf>;
    /// The MapReduce jobs the binary knows; the word count's job is found here.
    fn jobs(&self) -> Arc<JobRegistry>;
    /// Opens a client of the coordinator's REST API at `url` with `token`.
    fn rest_client(&self, url: &str, token: &str) -> anyhow::Result<Box<dyn RestApi>>;
    /// Submits a planned MapReduce job as `essaim submit` does; returns its id.
    fn submit_planned<'a>(
        &'a self,
        client: &'a mut CoordinatorClient,
        planned: &'a PlannedJob,
    ) -> BoxFuture<'a, anyhow::Result<u64>>;
}

/// A client of one coordinator's REST API (`/api/v1`), which alone serves the job
/// history (per-worker shares, timeline) and the overview the scenarios read.
pub trait RestApi: Send + Sync {
    /// GETs `path` (e.g. `/api/v1/workers`) and returns the body of a 200 answer.
    fn get_bytes<'a>(&'a self, path: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<u8>>>;
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The sizes.
    pub plan: Plan,
    /// Whether `plan` is the smoke test's (recorded as the results' `mode`).
    pub quick: bool,
    /// The scenarios to run (all when empty).
    pub only: Vec<Scenario>,
    /// Where the files will be written (for the progress lines only).
    pub out: PathBuf,
}

impl Options {
    /// Whether `scenario` runs: every one when `only` is empty, else those it names.
    fn selects(&self, scenario: Scenario) -> bool {
        self.only.is_empty() || self.only.contains(&scenario)
    }
}

/// The scenarios, by question.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Throughput vs workers, sleep tasks (question 1, I/O-bound).
    Sleep,
    /// Throughput vs workers, word count, and its cost (questions 1, CPU-bound, and 5).
    Wordcount,
    /// Load distribution across workers.
    Balance,
    /// Recovery after SIGKILL and after a partition.
    Recovery,
    /// Scaling out and draining mid-job.
    Elasticity,
    /// SIGKILL and SIGSTOP of the leader of two coordinators elected through etcd
    /// (skipped when there is no etcd, unless asked for by name).
    Failover,
    /// Events/s of the flights pipeline vs workers, and core-seconds per million events
    /// (NATS and PostgreSQL: skipped without them, unless asked for by name).
    StreamScaling,
    /// Each worker's records and CPU time while the flights pipeline runs.
    StreamBalance,
    /// SIGKILL of a worker, and of the coordinator, mid-stream: time until the lag is
    /// back to normal.
    StreamRecovery,
    /// Workers added and drained mid-stream: lag over time.
    StreamElasticity,
}

impl Scenario {
    /// The scenarios that need NATS and PostgreSQL.
    const STREAMS: [Scenario; 4] = [
        Scenario::StreamScaling,
        Scenario::StreamBalance,
        Scenario::StreamRecovery,
        Scenario::StreamElasticity,
    ];
}

/// The sizes of every scenario; `--quick` shrinks them.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Repeats of the throughput and balance measurements and of the partition.
    pub repeats: usize,
    /// Repeats of each SIGKILL case.
    pub crash_repeats: usize,
    /// Worker counts of the throughput curves.
    pub scaling_workers: Vec<usize>,
    /// Slots per worker of the sleep-task curve.
    pub sleep_slots: u32,
    /// Length of a sleep task, ms.
    pub sleep_ms: u64,
    /// Tasks per slot of each sleep-task run.
    pub sleep_tasks_per_slot: u32,
    /// Size of the word-count corpus, MB; it is split in 16 map tasks.
    pub corpus_mb: u64,
    /// Slots of the equal workers of the balance scenario.
    pub balance_slots: Vec<u32>,
    /// Slots of the unequal workers.
    pub heterogeneous_slots: Vec<u32>,
    /// Tasks per slot of each balance job.
    pub balance_tasks_per_slot: u32,
    /// Worker timeouts of the SIGKILL cases, ms.
    pub recovery_timeouts_ms: Vec<u64>,
    /// Worker timeout of the partition, ms.
    pub partition_timeout_ms: u64,
    /// Tasks of each partition job.
    pub partition_tasks: u32,
    /// Length of an elasticity task, ms.
    pub elastic_task_ms: u64,
    /// Length of each elasticity phase, s.
    pub phase_secs: u64,
    /// SIGKILLs of the leader coordinator.
    pub failover_kills: usize,
    /// SIGSTOPs of the leader coordinator past its lease.
    pub failover_stops: usize,
    /// Worker counts of the streaming throughput curve.
    pub stream_workers: Vec<usize>,
    /// Repeats of each streaming throughput run and of the worker's SIGKILL.
    pub stream_repeats: usize,
    /// Flights in the streaming backlog (the 50,000 shipped, repeated 4 days later as
    /// needed, up to 350,000).
    pub stream_events: usize,
    /// Workers of the stream balance and recovery clusters.
    pub stream_cluster_workers: usize,
    /// Flights published at `stream_rate` while the pipeline runs.
    pub stream_paced_events: usize,
    /// Events/s of the paced publication (recovery, elasticity).
    pub stream_rate: f64,
}

impl Plan {
    /// The full evaluation: about 2–3 minutes on a quiet 2-core machine.
    pub fn full() -> Self {
        Self {
            repeats: 3,
            crash_repeats: 3,
            scaling_workers: vec![1, 2, 4, 8],
            sleep_slots: 2,
            sleep_ms: 20,
            sleep_tasks_per_slot: 100,
            corpus_mb: 512,
            balance_slots: vec![2; 4],
            heterogeneous_slots: vec![1, 2, 4],
            balance_tasks_per_slot: 60,
            recovery_timeouts_ms: vec![5000, 1000],
            partition_timeout_ms: 1000,
            partition_tasks: 40,
            elastic_task_ms: 50,
            phase_secs: 12,
            failover_kills: 5,
            failover_stops: 5,
            stream_workers: vec![1, 2, 4],
            stream_repeats: 3,
            stream_events: 100_000,
            stream_cluster_workers: 3,
            stream_paced_events: 20_000,
            stream_rate: 800.0,
        }
    }

    /// The smoke test.
    pub fn quick() -> Self {
        Self {
            repeats: 2,
            crash_repeats: 1,
            scaling_workers: vec![1, 2],
            sleep_tasks_per_slot: 25,
            corpus_mb: 8,
            balance_tasks_per_slot: 15,
            recovery_timeouts_ms: vec![1000],
            partition_tasks: 16,
            phase_secs: 3,
            failover_kills: 1,
            failover_stops: 1,
            stream_workers: vec![1, 2],
            stream_repeats: 1,
            stream_events: 10_000,
            stream_cluster_workers: 2,
            stream_paced_events: 8_000,
            stream_rate: 800.0,
            ..Self::full()
        }
    }
}

/// What the machine is, and how busy it was.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// `model name` of `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: Option<String>,
    /// `MemTotal` of `/proc/meminfo`, kB.
    pub memory_kb: Option<u64>,
    /// 1, 5 and 15-minute load averages when the evaluation started.
    pub load_average_before: Option<[f64; 3]>,
    /// The same when it ended.
    pub load_average_after: Option<[f64; 3]>,
}

/// Everything the evaluation measured: `results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Version of this document's layout.
    pub version: u32,
    /// `full` or `quick`.
    pub mode: &'static str,
    /// The machine.
    pub machine: Machine,
    /// When it started, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// How long it took, s.
    pub wall_seconds: f64,
    /// The sizes used.
    pub plan: Plan,
    /// Question 1, I/O-bound.
    pub throughput_sleep: Option<scaling::SleepScaling>,
    /// Question 1, CPU-bound, and question 5 (its `cost`).
    pub throughput_wordcount: Option<scaling::WordcountScaling>,
    /// Question 2.
    pub balance: Option<balance::Balance>,
    /// Question 3.
    pub recovery: Option<recovery::Recovery>,
    /// Question 4.
    pub elasticity: Option<elasticity::Elasticity>,
    /// Question 6.
    pub failover: Option<failover::Failover>,
    /// Why the stream scenarios did not run (no NATS or PostgreSQL), if they did not.
    pub streams_skipped: Option<String>,
    /// Questions 1 and 5, streaming.
    pub stream_scaling: Option<stream_scaling::StreamScaling>,
    /// Question 2, streaming.
    pub stream_balance: Option<stream_balance::StreamBalance>,
    /// Question 3, streaming.
    pub stream_recovery: Option<stream_recovery::StreamRecovery>,
    /// Question 4, streaming.
    pub stream_elasticity: Option<stream_elasticity::StreamElasticity>,
    /// The SVG files written next to this one.
    pub plots: Vec<String>,
}

/// Prints one line of progress on standard error.
pub fn say(line: &str) {
    eprintln!("eval: {line}");
}

/// The last lines of every coordinator log under `dir` (one level of scenario
/// directories; `coordinator.log`, or `coordinatorN-R.log` under high availability), so
/// that a failure reported far from this machine says why.
fn coordinator_log_tails(dir: &std::path::Path) -> String {
    const LINES: usize = 15;
    let mut tails = String::new();
    let scenarios = std::fs::read_dir(dir).into_iter().flatten().flatten();
    for scenario in scenarios {
        let files = std::fs::read_dir(scenario.path()).into_iter().flatten();
        let mut logs: Vec<std::path::PathBuf> = files
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                let name = path.file_name().and_then(|name| name.to_str());
                name.is_some_and(|name| name.starts_with("coordinator") && name.ends_with(".log"))
            })
            .collect();
        logs.sort();
        for log in logs {
            let Ok(text) = std::fs::read_to_string(&log) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
            tails.push_str(&format!("\n--- last lines of {}:\n{tail}", log.display()));
        }
    }
    tails
}

/// Runs the scenarios of `options` on clusters of `host`'s executable; returns what
/// they measured (see [`files`] for what to write).
pub async fn evaluate(host: &dyn Host, options: &Options) -> anyhow::Result<Results> {
    let plan = &options.plan;
    let started = Instant::now();
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    let load_average_before = read_load_average();
    let mode = if options.quick { "quick" } else { "full" };
    say(&format!(
        "{mode} evaluation, results in {} (load average {:?})",
        options.out.display(),
        load_average_before
    ));
    // Clusters, logs and the corpus live here, and go with it; a failed scenario keeps
    // it, so that its processes' logs say why.
    let tempdir = tempfile::Builder::new().prefix("essaim-eval-").tempdir()?;

    let mut results = Results {
        version: 1,
        mode,
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|text| cpu_model(&text)),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|text| text.trim().to_string()),
            memory_kb: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|text| memory_kb(&text)),
            load_average_before,
            load_average_after: None,
        },
        started_unix_ms,
        wall_seconds: 0.0,
        plan: plan.clone(),
        throughput_sleep: None,
        throughput_wordcount: None,
        balance: None,
        recovery: None,
        elasticity: None,
        failover: None,
        streams_skipped: None,
        stream_scaling: None,
        stream_balance: None,
        stream_recovery: None,
        stream_elasticity: None,
        plots: Vec::new(),
    };
    if let Err(error) = run_scenarios(host, options, tempdir.path(), &mut results).await {
        let kept = tempdir.keep();
        return Err(error.context(format!(
            "a scenario failed; its clusters' logs are kept in {}{}",
            kept.display(),
            coordinator_log_tails(&kept)
        )));
    }
    results.machine.load_average_after = read_load_average();
    results.wall_seconds = started.elapsed().as_secs_f64();
    Ok(results)
}

/// Runs the scenarios `options` selects, recording what they measured in `results`.
async fn run_scenarios(
    host: &dyn Host,
    options: &Options,
    workdir: &std::path::Path,
    results: &mut Results,
) -> anyhow::Result<()> {
    let plan = &options.plan;
    let selected = |scenario| options.selects(scenario);
    if selected(Scenario::Sleep) {
        results.throughput_sleep = Some(scaling::sleep_scaling(host, plan, workdir).await?);
    }
    if selected(Scenario::Wordcount) {
        results.throughput_wordcount = Some(scaling::wordcount_scaling(host, plan, workdir).await?);
    }
    if selected(Scenario::Balance) {
        results.balance = Some(balance::balance(host, plan, workdir).await?);
    }
    if selected(Scenario::Recovery) {
        results.recovery = Some(recovery::recovery(host, plan, workdir).await?);
    }
    if selected(Scenario::Elasticity) {
        results.elasticity = Some(elasticity::elasticity(host, plan, workdir).await?);
    }
    if selected(Scenario::Failover) {
        let required = options.only.contains(&Scenario::Failover);
        results.failover = Some(failover::failover(host, plan, workdir, required).await?);
    }
    run_stream_scenarios(host, options, workdir, results).await
}

/// Runs the stream scenarios `options` selects on one NATS and one PostgreSQL; skips
/// them without those servers, unless one of them is named in `--only`.
async fn run_stream_scenarios(
    host: &dyn Host,
    options: &Options,
    workdir: &std::path::Path,
    results: &mut Results,
) -> anyhow::Result<()> {
    let plan = &options.plan;
    let selected = |scenario| options.selects(scenario);
    if !Scenario::STREAMS.into_iter().any(selected) {
        return Ok(());
    }
    if let Some(reason) = stream_stack::absent_reason() {
        let required = Scenario::STREAMS
            .iter()
            .any(|scenario| options.only.contains(scenario));
        anyhow::ensure!(
            !required,
            "the stream scenarios need NATS and PostgreSQL: {reason}"
        );
        say(&format!("stream scenarios skipped: {reason}"));
        results.streams_skipped = Some(reason);
        return Ok(());
    }
    let stack = stream_stack::StreamStack::start(&workdir.join("streams"))?;
    if selected(Scenario::StreamScaling) {
        results.stream_scaling =
            Some(stream_scaling::stream_scaling(host, plan, workdir, &stack).await?);
    }
    if selected(Scenario::StreamBalance) {
        results.stream_balance =
            Some(stream_balance::stream_balance(host, plan, workdir, &stack).await?);
    }
    if selected(Scenario::StreamRecovery) {
        results.stream_recovery =
            Some(stream_recovery::stream_recovery(host, plan, workdir, &stack).await?);
    }
    if selected(Scenario::StreamElasticity) {
        results.stream_elasticity =
            Some(stream_elasticity::stream_elasticity(host, plan, workdir, &stack).await?);
    }
    Ok(())
}

/// Returns the files of `results` by name: one SVG per plot, `results.json` and
/// `summary.md`; records the plots' names in `results.plots`.
pub fn files(results: &mut Results) -> Result<Vec<(String, Vec<u8>)>, serde_json::Error> {
    let plots = plots::plots(results);
    results.plots = plots
        .iter()
        .map(|plot| plot.file_name.to_string())
        .collect();
    let mut files: Vec<(String, Vec<u8>)> = plots
        .into_iter()
        .map(|plot| {
            (
                plot.file_name.to_string(),
                essaim_report::svg::document(&plot.svg).into_bytes(),
            )
        })
        .collect();
    files.push(("results.json".into(), serde_json::to_vec_pretty(results)?));
    files.push(("summary.md".into(), summary::summary(results).into_bytes()));
    Ok(files)
}

/// Returns the first `model name` of `/proc/cpuinfo`.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map(|(_, value)| value.trim().to_string())
}

/// Returns `MemTotal` of `/proc/meminfo`, in kB.
fn memory_kb(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Parses the three load averages of `/proc/loadavg`.
fn parse_load_average(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

fn read_load_average() -> Option<[f64; 3]> {
    parse_load_average(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_facts_are_read_from_proc_files() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 9B14\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 9B14"));
        assert_eq!(cpu_model("processor : 0\n"), None);
        let meminfo = "MemTotal:       24684084 kB\nMemFree:        1 kB\n";
        assert_eq!(memory_kb(meminfo), Some(24_684_084));
        assert_eq!(
            parse_load_average("0.52 1.10 2.00 1/345 6789\n"),
            Some([0.52, 1.10, 2.00])
        );
        assert_eq!(parse_load_average("0.52"), None);
    }

    #[test]
    fn the_quick_plan_is_smaller_than_the_full_one() {
        let (quick, full) = (Plan::quick(), Plan::full());
        assert!(quick.scaling_workers.len() < full.scaling_workers.len());
        assert!(quick.corpus_mb < full.corpus_mb);
        assert!(quick.phase_secs < full.phase_secs);
        // The speed-up of question 1 needs a one-worker baseline.
        assert_eq!(full.scaling_workers[0], 1);
        assert_eq!(quick.scaling_workers[0], 1);
    }
}
