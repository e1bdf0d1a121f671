//! Benchmark drivers behind `bench/`: each prints `METRIC key=value` lines in the format
//! of the peer scripts in the shared benchmark folder, so results compare line by line.

use crate::client::ConnectArgs;
use crate::local_cluster::{LocalCluster, LocalOptions};
use essaim_proto::v1;
use nix::sys::signal::Signal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Options of `essaim bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(clap::Subcommand, Debug)]
enum Bench {
    /// No-op throughput and single-task round-trip latency against a running cluster.
    Taskfarm {
        #[command(flatten)]
        connect: ConnectArgs,
        /// No-op tasks in the throughput job.
        #[arg(long, default_value_t = 100_000)]
        tasks: u32,
        /// Sequential one-task jobs for the latency figures.
        #[arg(long, default_value_t = 2000)]
        latency_samples: u32,
    },
    /// A cache-aside Zipf load on cache nodes, a cache proxy or memcached (bench/cache.sh).
    Cache(super::bench_cache::CacheLoadArgs),
    /// A model's predictions called in-process, one request at a time (bench/model_serve.sh).
    Predict(super::bench_predict::PredictArgs),
    /// Time from SIGKILL of a worker to its tasks running elsewhere (own local cluster).
    Recovery {
        /// Repetitions.
        #[arg(long, default_value_t = 5)]
        runs: u32,
        /// Worker timeout of the cluster, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        worker_timeout_ms: u64,
    },
}

/// Runs one benchmark.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.bench {
        Bench::Taskfarm {
            connect,
            tasks,
            latency_samples,
        } => taskfarm(connect, tasks, latency_samples).await,
        Bench::Recovery {
            runs,
            worker_timeout_ms,
        } => recovery(runs, worker_timeout_ms).await,
        Bench::Cache(args) => super::bench_cache::run(args).await,
        Bench::Predict(args) => super::bench_predict::run(args),
    }
}

fn noop_job(tasks: u32) -> v1::SubmitJobRequest {
    let tasks = (0..tasks)
        .map(|_| v1::TaskSpec {
            kind: "noop".into(),
            payload: Vec::new(),
            ..Default::default()
        })
        .collect();
    v1::SubmitJobRequest {
        spec: Some(v1::JobSpec {
            name: "bench".into(),
            tasks,
            speculation_multiplier: -1.0,
            ..Default::default()
        }),
    }
}

async fn taskfarm(
    connect: ConnectArgs,
    tasks: u32,
    latency_samples: u32,
) -> anyhow::Result<ExitCode> {
    let mut client = connect.connect().await?;
    // Warm-up: connections, allocations, the first journal pages.
    run_job(&mut client, 1000).await?;

    let started = Instant::now();
    run_job(&mut client, tasks).await?;
    let elapsed = started.elapsed().as_secs_f64();
    crate::outln!("METRIC thr_n={tasks}");
    crate::outln!("METRIC thr_s={elapsed:.4}");
    crate::outln!("METRIC thr_tasks_per_s={:.1}", f64::from(tasks) / elapsed);

    let mut latencies = Vec::with_capacity(latency_samples as usize);
    for _ in 0..latency_samples {
        let started = Instant::now();
        run_job(&mut client, 1).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
    }
    if !latencies.is_empty() {
        let total: f64 = latencies.iter().sum();
        latencies.sort_by(f64::total_cmp);
        let percentile = |p: f64| {
            latencies[((p / 100.0 * (latencies.len() - 1) as f64).round() as usize)
                .min(latencies.len() - 1)]
        };
        crate::outln!("METRIC lat_n={latency_samples}");
        crate::outln!("METRIC lat_p50_us={:.1}", percentile(50.0));
        crate::outln!("METRIC lat_p99_us={:.1}", percentile(99.0));
        crate::outln!("METRIC lat_mean_us={:.1}", total / latencies.len() as f64);
    }
    Ok(ExitCode::SUCCESS)
}

/// Submits `tasks` no-op tasks and long-polls until the job is terminal.
async fn run_job(client: &mut essaim_proto::CoordinatorClient, tasks: u32) -> anyhow::Result<()> {
    let job_id = client
        .submit_job(noop_job(tasks))
        .await?
        .into_inner()
        .job_id;
    loop {
        let job = client
            .wait_job(v1::WaitJobRequest {
                job_id,
                timeout_ms: 10_000,
            })
            .await?
            .into_inner();
        match job.state.as_str() {
            "running" => continue,
            "succeeded" => return Ok(()),
            other => anyhow::bail!("benchmark job {job_id} ended {other}: {}", job.reason),
        }
    }
}

async fn recovery(runs: u32, worker_timeout_ms: u64) -> anyhow::Result<ExitCode> {
    let mut samples = Vec::new();
    for run in 0..runs {
        let workdir = tempfile::Builder::new()
            .prefix("essaim-recovery-")
            .tempdir()?;
        let options = LocalOptions {
            workers: 2,
            slots: 2,
            prefetch: essaim_worker::Prefetch::Fixed(0),
            listen: "127.0.0.1:0".parse()?,
            data_dir: workdir.path().to_path_buf(),
            token: None,
            restart_crashed: false,
            worker_log: "error".into(),
            heartbeat: Duration::from_millis((worker_timeout_ms / 5).max(50)),
            worker_timeout: Duration::from_millis(worker_timeout_ms),
            task_cache: Default::default(),
        };
        let cluster = LocalCluster::start(options).await?;
        let mut client = essaim_proto::connect(&cluster.url, None, Duration::from_secs(5)).await?;
        // Two long tasks per worker slot: both workers are busy, two tasks wait.
        let tasks = (0..6)
            .map(|_| v1::TaskSpec {
                kind: "sleep".into(),
                payload: b"60000".to_vec(),
                ..Default::default()
            })
            .collect();
        let spec = v1::JobSpec {
            name: "recovery".into(),
            tasks,
            speculation_multiplier: -1.0,
            ..Default::default()
        };
        let job_id = client
            .submit_job(v1::SubmitJobRequest { spec: Some(spec) })
            .await?
            .into_inner()
            .job_id;
        wait_until(&mut client, job_id, |job| job.running == 4).await?;
        let killed_at = Instant::now();
        cluster.signal_worker(0, Signal::SIGKILL).await;
        // The victim's two tasks run again once the survivor... has no free slot: they are
        // re-queued (attempts failed) and would be granted as soon as a slot frees. Measure
        // detection + re-queue, the part the platform controls.
        wait_until(&mut client, job_id, |job| job.attempts_failed >= 2).await?;
        let recovered = killed_at.elapsed().as_secs_f64();
        crate::outln!("METRIC recovery_run{run}_s={recovered:.3}");
        samples.push(recovered);
        cluster.stop(Duration::from_secs(2)).await?;
    }
    samples.sort_by(f64::total_cmp);
    crate::outln!("METRIC recovery_median_s={:.3}", samples[samples.len() / 2]);
    crate::outln!(
        "METRIC recovery_worker_timeout_s={:.3}",
        worker_timeout_ms as f64 / 1000.0
    );
    Ok(ExitCode::SUCCESS)
}

async fn wait_until(
    client: &mut essaim_proto::CoordinatorClient,
    job_id: u64,
    done: impl Fn(&v1::JobStatus) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = client
            .get_job(v1::GetJobRequest { job_id })
            .await?
            .into_inner();
        if done(&job) {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("condition not reached within 60 s: {job:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
