//! `essaim demo wordcount`: MapReduce on an embedded local cluster, with a worker killed
//! in the middle of the map stage, checked against a count made while the text was
//! written.
//!
//! The demo writes its own corpus (seeded, Zipf-distributed words made of syllables, so
//! the data is the same on every machine and nothing has to be downloaded), counting
//! every word as it writes it: that count is the oracle, computed without essaim. Then it
//! runs `wordcount`, SIGKILLs one worker process once a third of the map tasks are done
//! (its supervisor restarts it, as an orchestrator would), and compares every line of
//! the committed output with the oracle.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use essaim_core::rng::SeededRng;
use essaim_mapreduce::api::JobParams;
use essaim_mapreduce::payload::{SUCCESS_MARKER, part_file_name};
use essaim_mapreduce::plan::{JobRequest, plan_job, prepare_output_dir};
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

/// Distinct words of the corpus.
const VOCABULARY: usize = 20_000;
const SYLLABLES: &[&str] = &[
    "ba", "be", "bi", "bo", "ca", "ce", "ci", "co", "da", "de", "di", "do", "fa", "fe", "fi", "ga",
    "ge", "la", "le", "li", "lo", "ma", "me", "mi", "mo", "na", "ne", "ni", "no", "pa", "pe", "pi",
    "ra", "re", "ri", "ro", "sa", "se", "si", "so", "ta", "te", "ti", "to", "va", "ve", "vi", "ze",
];

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

    let request = JobRequest {
        params: JobParams::default(),
        inputs: vec![corpus.to_string_lossy().into_owned()],
        output_dir: output.clone(),
        reducers: args.reducers,
        split_bytes: 4 << 20,
        sort_buffer_bytes: 32 << 20,
        merge_factor: 16,
    };
    let registry = crate::jobs::registry();
    let job = registry
        .get("wordcount")
        .ok_or_else(|| anyhow::anyhow!("this binary has no wordcount job"))?;
    let planned = plan_job(job.as_ref(), &request)?;
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
    let job_id = super::mapreduce::submit_planned(&mut client, 0, &planned).await?;

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
    let status = super::mapreduce::follow(&mut client, job_id, &planned, false).await?;
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

/// Writes `files` files of about `bytes` in all; returns how often each word was written.
pub(crate) fn write_corpus(
    dir: &Path,
    bytes: u64,
    files: u32,
    seed: u64,
) -> std::io::Result<HashMap<Vec<u8>, u64>> {
    std::fs::create_dir_all(dir)?;
    let mut rng = SeededRng::new(seed);
    let words: Vec<Vec<u8>> = (0..VOCABULARY)
        .map(|index| {
            let mut word = Vec::new();
            let mut rest = index + 1;
            while rest > 0 {
                word.extend_from_slice(SYLLABLES[rest % SYLLABLES.len()].as_bytes());
                rest /= SYLLABLES.len();
            }
            word
        })
        .collect();
    let mut counts: Vec<u64> = vec![0; VOCABULARY];
    let per_file = bytes / u64::from(files);
    let ln_vocabulary = (VOCABULARY as f64).ln();
    for file in 0..files {
        let mut text = Vec::with_capacity(per_file as usize + 128);
        let mut line_length = 0;
        while (text.len() as u64) < per_file {
            // Zipf(1): the log of the rank is uniform.
            let uniform = rng.up_to(1 << 30) as f64 / f64::from(1u32 << 30);
            let rank = ((uniform * ln_vocabulary).exp() as usize).clamp(1, VOCABULARY) - 1;
            let word = &words[rank];
            counts[rank] += 1;
            text.extend_from_slice(word);
            line_length += word.len() + 1;
            if line_length > 72 {
                text.push(b'\n');
                line_length = 0;
            } else {
                text.push(b' ');
            }
        }
        text.push(b'\n');
        std::fs::write(dir.join(format!("text-{file}.txt")), &text)?;
    }
    Ok(words
        .into_iter()
        .zip(counts)
        .filter(|(_, count)| *count > 0)
        .collect())
}

/// Reads the output parts; returns the counts and the first disagreement with `oracle`.
#[allow(clippy::type_complexity)]
pub(crate) fn compare(
    output: &Path,
    reducers: u32,
    oracle: &HashMap<Vec<u8>, u64>,
) -> std::io::Result<(HashMap<Vec<u8>, u64>, Option<String>)> {
    let mut counts = HashMap::new();
    for part in 0..reducers {
        let path = output.join(part_file_name(part));
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok((counts, Some(format!("{} is missing", path.display()))));
        };
        for line in bytes.split(|byte| *byte == b'\n').filter(|l| !l.is_empty()) {
            let Some(tab) = line.iter().rposition(|byte| *byte == b'\t') else {
                return Ok((counts, Some("a line without a count".into())));
            };
            let count = std::str::from_utf8(&line[tab + 1..])
                .ok()
                .and_then(|text| text.parse::<u64>().ok());
            let Some(count) = count else {
                return Ok((counts, Some("a count that is not a number".into())));
            };
            counts.insert(line[..tab].to_vec(), count);
        }
    }
    if counts.len() != oracle.len() {
        return Ok((
            counts.clone(),
            Some(format!(
                "{} distinct words in the output, {} written",
                counts.len(),
                oracle.len()
            )),
        ));
    }
    for (word, expected) in oracle {
        if counts.get(word) != Some(expected) {
            let problem = format!(
                "`{}` counted {:?}, written {expected} times",
                String::from_utf8_lossy(word),
                counts.get(word)
            );
            return Ok((counts, Some(problem)));
        }
    }
    Ok((counts, None))
}
