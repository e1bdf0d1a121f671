//! `essaim demo wordcount`: MapReduce on an embedded local cluster, with a worker killed
//! in the middle of the map stage, checked against a count made while the text was
//! written.
//!
//! The demo writes its own corpus (seeded, Zipf-distributed words made of syllables, so
//! the data is the same on every machine and nothing has to be downloaded), counting
//! every word as it writes it: that count is the oracle, computed without essaim. Then it
//! runs `wordcount`, SIGKILLs one worker process once a third of the map tasks are done
//! (its supervisor restarts it, as an orchestrator would), and compares every line of
//! the committed output with the oracle. The corpus, its oracle and the job's plan are
//! `essaim_eval::corpus`, which the evaluation's word count uses too.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use essaim_eval::corpus::{VOCABULARY, compare, plan_wordcount, write_corpus};
use essaim_mapreduce::payload::SUCCESS_MARKER;
use essaim_mapreduce::plan::prepare_output_dir;
use nix::sys::signal::Signal;

use crate::local_cluster::{LocalCluster, LocalOptions};
use crate::output::OutputFormat;

/// Options of `essaim demo wordcount`.
#[derive(clap::Args, Debug)]
pub struct WordcountArgs {
    /// Size of the generated corpus, in MB.
    #[arg(long, default_value_t = 100)]
    megabytes: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Reduce tasks.
    #[arg(long, default_value_t = 3)]
    reducers: u32,
    /// Do not kill a worker during the map stage.
    #[arg(long)]
    no_kill: bool,
    /// Seed of the corpus.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Runs the demo.
pub async fn run(args: WordcountArgs) -> anyhow::Result<ExitCode> {
    if args.megabytes == 0 || args.workers == 0 || args.reducers == 0 {
        return Err(crate::client::usage(
            "--megabytes, --workers and --reducers must be at least 1",
        ));
    }
    let workdir = tempfile::Builder::new()
        .prefix("essaim-wordcount-")
        .tempdir()?;
    let corpus = workdir.path().join("corpus");
    let output = workdir.path().join("counts");
    crate::outln!(
        "Writing a {} MB corpus of {VOCABULARY} distinct words (Zipf), counting every word as it is written…",
        args.megabytes
    );
    let generation = Instant::now();
    let oracle = tokio::task::spawn_blocking({
        let corpus = corpus.clone();
        let bytes = args.megabytes * 1_000_000;
        move || write_corpus(&corpus, bytes, 4, args.seed)
    })
    .await??;
    crate::outln!(
        "  done in {:.1} s: {} words, {} distinct",
        generation.elapsed().as_secs_f64(),
        oracle.values().sum::<u64>(),
        oracle.len()
    );

    let planned = plan_wordcount(
        &crate::jobs::registry(),
        &corpus,
        &output,
        args.reducers,
        4 << 20,
    )?;
    prepare_output_dir(&output, false)?;
    crate::outln!(
        "Starting a coordinator and {} worker processes on loopback; {} map tasks, {} reducers.",
        args.workers,
        planned.map_tasks,
        args.reducers
    );
    let options = LocalOptions::for_demo(args.workers, workdir.path().join("cluster"));
    let started = Instant::now();
    let cluster = std::sync::Arc::new(LocalCluster::start(options).await?);
    let mut client = essaim_proto::connect(&cluster.url, None, Duration::from_secs(5)).await?;
    let job_id =
        super::mapreduce::submit_planned(&mut client, Default::default(), &planned).await?;

    let killer = (!args.no_kill).then(|| {
        let cluster = cluster.clone();
        let mut watcher = client.clone();
        let victim = args.workers.saturating_sub(1);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let Ok(job) = watcher
                    .get_job(essaim_proto::v1::GetJobRequest { job_id })
                    .await
                else {
                    return false;
                };
                let Some(map) = job.into_inner().stages.first().cloned() else {
                    return false;
                };
                if map.succeeded == map.total {
                    return false;
                }
                if map.succeeded * 3 >= map.total {
                    return cluster.signal_worker(victim, Signal::SIGKILL).await;
                }
            }
        })
    });
    let coordinator = crate::client::CoordinatorCalls::local(&cluster.url)?;
    let status = super::mapreduce::follow(&coordinator, job_id, &planned, false).await?;
    let killed = match killer {
        Some(killer) => killer.await.unwrap_or(false),
        None => false,
    };
    let elapsed = started.elapsed();
    let crashes = cluster.crashes();
    let committed = output.join(SUCCESS_MARKER).is_file();
    super::mapreduce::print_summary(
        &planned,
        &status,
        elapsed,
        status.state == "succeeded" && committed,
        &[],
        OutputFormat::Text,
    );
    if let Ok(cluster) = std::sync::Arc::try_unwrap(cluster) {
        cluster.stop(Duration::from_secs(10)).await?;
    }

    crate::outln!();
    if killed {
        crate::outln!(
            "A worker process was killed with SIGKILL during the map stage ({crashes} crash seen by its supervisor, which restarted it)."
        );
    }
    let (counts, mismatch) = compare(&output, args.reducers, &oracle)?;
    let mut top: Vec<(&Vec<u8>, &u64)> = counts.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    crate::outln!("Most frequent words:");
    for (word, count) in top.iter().take(5) {
        crate::outln!("  {:<12} {count}", String::from_utf8_lossy(word));
    }
    match mismatch {
        None if committed => {
            crate::outln!(
                "The output matches the count made while writing: all {} words, every count exact.",
                oracle.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            crate::outln!("The job did not commit its output.");
            Ok(ExitCode::from(1))
        }
        Some(problem) => {
            crate::outln!("The output does NOT match the count made while writing: {problem}");
            Ok(ExitCode::from(1))
        }
    }
}
