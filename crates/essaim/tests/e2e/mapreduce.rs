//! MapReduce on a real cluster: outputs equal an oracle computed another way (coreutils,
//! or a direct computation in the test), with workers SIGKILLed during the map, the
//! shuffle and the reduce, with a map output corrupted on disk, and with bad input.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::{Cluster, Deadline, EVENTUALLY};
use essaim_core::rng::SeededRng;
use essaim_testkit::oracle::{sorted_lines, word_counts};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes `files` text files of about `bytes_per_file` bytes: Zipf-ish words separated by
/// every kind of ASCII whitespace, with CRLF lines, invalid UTF-8 and a long line.
pub(crate) fn write_corpus(
    dir: &Path,
    files: usize,
    bytes_per_file: usize,
    seed: u64,
) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = SeededRng::new(seed);
    let words: Vec<Vec<u8>> = (0..500)
        .map(|i| match i % 50 {
            0 => vec![0xff, 0xfe, b'a' + (i % 26) as u8],
            1 => "été".as_bytes().to_vec(),
            _ => format!("w{}", i * 7 % 500).into_bytes(),
        })
        .collect();
    let separators: &[&[u8]] = &[b" ", b"  ", b"\t", b"\n", b"\r\n", b"\x0b", b"\x0c", b" \n"];
    let mut paths = Vec::new();
    for file in 0..files {
        let mut text = Vec::with_capacity(bytes_per_file + 100);
        if file == 0 {
            // One line far longer than a split.
            for i in 0..40_000 {
                text.extend_from_slice(&words[i % 37]);
                text.push(b' ');
            }
            text.push(b'\n');
        }
        while text.len() < bytes_per_file {
            // Rank-skewed choice: low indexes far more often.
            let ceiling = rng.up_to(words.len() as u64 - 1);
            let rank = rng.up_to(ceiling) as usize;
            text.extend_from_slice(&words[rank]);
            text.extend_from_slice(separators[rng.up_to(separators.len() as u64 - 1) as usize]);
        }
        let path = dir.join(format!("part-{file}.txt"));
        std::fs::write(&path, &text).unwrap();
        paths.push(path);
    }
    paths
}

/// Counts words with coreutils, as a user would check: `tr | sort | uniq -c`.
pub(crate) fn coreutils_word_counts(files: &[PathBuf]) -> BTreeMap<Vec<u8>, u64> {
    let list: Vec<String> = files.iter().map(|f| format!("'{}'", f.display())).collect();
    let script = format!(
        "cat {} | tr -s ' \\t\\r\\n\\013\\014' '\\n' | sed '/^$/d' | sort | uniq -c",
        list.join(" ")
    );
    let output = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("LC_ALL", "C")
        .output()
        .expect("coreutils run");
    assert!(output.status.success(), "coreutils failed: {output:?}");
    let mut counts = BTreeMap::new();
    for line in output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
    {
        let line = line.trim_ascii_start();
        let space = line.iter().position(|b| *b == b' ').unwrap();
        let count: u64 = std::str::from_utf8(&line[..space])
            .unwrap()
            .parse()
            .unwrap();
        counts.insert(line[space + 1..].to_vec(), count);
    }
    // The test kit's oracle (used where coreutils are not at hand) must agree.
    let texts: Vec<Vec<u8>> = files
        .iter()
        .map(|file| std::fs::read(file).expect("read an input"))
        .collect();
    assert_eq!(
        word_counts(texts.iter().map(Vec::as_slice)),
        counts,
        "the test kit's word counts differ from coreutils'"
    );
    counts
}

/// Reads a committed wordcount output: every part sorted by key, keys disjoint.
pub(crate) fn read_word_counts(output: &Path, reducers: u32) -> BTreeMap<Vec<u8>, u64> {
    assert!(output.join("_SUCCESS").is_file(), "no _SUCCESS marker");
    assert!(
        !output.join("_temporary").exists(),
        "_temporary left behind"
    );
    let mut counts = BTreeMap::new();
    for part in 0..reducers {
        let bytes = std::fs::read(output.join(format!("part-{part:05}"))).unwrap();
        let mut previous: Option<Vec<u8>> = None;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let tab = line.iter().rposition(|b| *b == b'\t').unwrap();
            let word = line[..tab].to_vec();
            let count: u64 = std::str::from_utf8(&line[tab + 1..])
                .unwrap()
                .parse()
                .unwrap();
            if let Some(previous) = &previous {
                assert!(previous < &word, "part {part} is not sorted");
            }
            previous = Some(word.clone());
            assert!(counts.insert(word, count).is_none(), "a word in two parts");
        }
    }
    counts
}

/// Returns the chaos seed: `ESSAIM_E2E_SEED` to replay a failure, else the clock.
fn chaos_seed() -> u64 {
    std::env::var("ESSAIM_E2E_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_equals_coreutils_and_survives_workers_killed_in_map_and_reduce() {
    let mut cluster = Cluster::start(3, 1).await;
    let inputs = write_corpus(&cluster.path("corpus"), 4, 600_000, 7);
    let oracle = coreutils_word_counts(&inputs);
    assert!(
        oracle.len() > 400,
        "the corpus is too poor: {}",
        oracle.len()
    );

    // Fault-free run.
    let clean = cluster.path("clean");
    let corpus = cluster.path("corpus").display().to_string();
    let args = [
        "submit",
        "wordcount",
        "--input",
        &corpus,
        "--reducers",
        "3",
        "--split-size",
        "64KiB",
    ];
    let run = cluster
        .cli(&[&args[..], &["--output", clean.to_str().unwrap()]].concat())
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("map.input.records"), "{}", run.stdout);
    assert_eq!(read_word_counts(&clean, 3), oracle);

    // The same job while workers are SIGKILLed: once during the map stage, once when
    // the reduce stage runs, replaced each time.
    let seed = chaos_seed();
    eprintln!("chaos seed {seed} (ESSAIM_E2E_SEED={seed} replays it)");
    let mut rng = SeededRng::new(seed);
    let chaotic = cluster.path("chaotic");
    let url = cluster.url();
    let output_arg = chaotic.display().to_string();
    let all_args: Vec<String> = [&args[..], &["--output", &output_arg]]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let client = tokio::spawn(async move {
        let args: Vec<&str> = all_args.iter().map(String::as_str).collect();
        crate::harness::essaim_with_env(&args, &[("ESSAIM_COORDINATOR", &url)]).await
    });
    let deadline = Deadline::after(EVENTUALLY, "the chaotic wordcount");
    let mut killed_in = Vec::new();
    let job_id = loop {
        deadline.tick().await;
        let jobs = cluster
            .client()
            .list_jobs(essaim_proto::v1::ListJobsRequest {})
            .await
            .unwrap()
            .into_inner()
            .jobs;
        if let Some(job) = jobs.iter().find(|job| job.name.contains("chaotic")) {
            break job.job_id;
        }
    };
    while killed_in.len() < 2 {
        let job = cluster.job(job_id).await;
        if job.state != "running" {
            break;
        }
        let map = &job.stages[0];
        let reduce = &job.stages[1];
        let phase = if map.succeeded < map.total {
            (map.succeeded > 0 && killed_in.is_empty()).then_some("map")
        } else if reduce.running > 0 && !killed_in.contains(&"reduce") {
            Some("reduce")
        } else {
            None
        };
        if let Some(phase) = phase {
            let names = cluster.worker_names();
            let victim = names[rng.up_to(names.len() as u64 - 1) as usize].clone();
            eprintln!("SIGKILL {victim} during {phase}");
            cluster.kill_worker(&victim);
            cluster.start_worker(1);
            killed_in.push(phase);
        }
        tokio::time::sleep(Duration::from_millis(5 + rng.up_to(20))).await;
    }
    let run = crate::harness::within("the chaotic wordcount", client)
        .await
        .unwrap();
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(!killed_in.is_empty(), "no worker was killed");
    assert_eq!(read_word_counts(&chaotic, 3), oracle);
    let job = cluster.job(job_id).await;
    eprintln!(
        "killed during {killed_in:?}: {} failed attempts, {} lost outputs",
        job.attempts_failed, job.outputs_lost
    );
    // Both jobs are over: the live workers delete their intermediate files (told so by
    // the coordinator in heartbeat replies). A killed worker's files stay on its disk
    // until a worker starts again on that scratch directory.
    let deadline = Deadline::after(EVENTUALLY, "map outputs to be deleted");
    loop {
        let left: Vec<PathBuf> = cluster
            .worker_names()
            .iter()
            .flat_map(|name| find_files(&cluster.path(&format!("{name}-scratch")), "map.out"))
            .collect();
        if left.is_empty() {
            break;
        }
        deadline.tick().await;
    }
}

/// A streaming reducer that sums the counts of each word, after sleeping 2 s on its
/// first record: long enough to kill a process while reducers run.
pub(crate) const SLOW_SUMMING_REDUCER: &str = r#"awk -F '\t' 'NR == 1 { system("sleep 2") } $1 != k { if (NR > 1) print k "\t" n; k = $1; n = 0 } { n += $2 } END { if (NR > 0) print k "\t" n }'"#;

/// Returns the records a line reader finds in `files`: one per `\n`, plus an unterminated
/// last line.
fn line_records(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .map(|file| {
            let bytes = std::fs::read(file).unwrap();
            let newlines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
            newlines + u64::from(bytes.last().is_some_and(|b| *b != b'\n'))
        })
        .sum()
}

/// The coordinator is SIGKILLed while the reducers run and restarted from its journal:
/// the reducers of the new incarnation read the map outputs the old one committed (their
/// locations are journaled: none is recomputed), and the job's counters are summed again
/// from the journal.
/// Returns `essaim submit streaming` with two reducers over `corpus` into `output`, the
/// `mapper` and `reducer` commands, and `extra` flags.
pub(crate) fn streaming_args(
    corpus: &Path,
    output: &Path,
    mapper: &str,
    reducer: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "submit",
        "streaming",
        "--input",
        corpus.to_str().expect("a UTF-8 path"),
        "--output",
        output.to_str().expect("a UTF-8 path"),
        "--reducers",
        "2",
        "--mapper",
        mapper,
        "--reducer",
        reducer,
    ];
    args.extend_from_slice(extra);
    args.into_iter().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_its_coordinator_killed_during_the_reduce_stage() {
    let mut cluster = Cluster::start(2, 1).await;
    let corpus = cluster.path("corpus");
    let inputs = write_corpus(&corpus, 3, 60_000, 23);
    let oracle = coreutils_word_counts(&inputs);
    let output = cluster.path("out");
    let mapper =
        r#"awk -F '[ \t\r\v\f]+' '{ for (i = 1; i <= NF; i++) if ($i != "") print $i "\t1" }'"#;
    let reducer = SLOW_SUMMING_REDUCER;
    let args = streaming_args(
        &corpus,
        &output,
        mapper,
        reducer,
        &["--detach", "--split-size", "64KiB"],
    );
    let run = cluster
        .cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let job_id: u64 = run.stdout.trim().parse().unwrap();

    let deadline = Deadline::after(EVENTUALLY, "a reducer to run");
    loop {
        deadline.tick().await;
        let job = cluster.job(job_id).await;
        assert_eq!(
            job.state, "running",
            "the job ended before its reducers ran: {job:?}"
        );
        if job.stages[0].succeeded == job.stages[0].total && job.stages[1].running > 0 {
            break;
        }
    }
    eprintln!("SIGKILL the coordinator during the reduce stage");
    cluster.kill_coordinator();
    cluster.restart_coordinator().await;

    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
    assert_eq!(read_word_counts(&output, 2), oracle);
    assert_eq!(job.outputs_lost, 0, "map outputs were recomputed: {job:?}");
    // Summed from the replayed commits: every input line once.
    assert_eq!(
        job.counters.get("map.input.records"),
        Some(&line_records(&inputs)),
        "{:?}",
        job.counters
    );
}

/// A streaming job whose reducers are slow, so that a worker can be killed while they
/// fetch and reduce; and whose mapper is slow on one line, so that finished map outputs
/// can be corrupted on disk before any reducer reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_map_output_is_detected_and_recomputed_and_a_reducer_killed_midway_reruns() {
    let mut cluster = Cluster::start(3, 1).await;
    let corpus = cluster.path("corpus");
    let mut inputs = write_corpus(&corpus, 3, 50_000, 11);
    let slow = corpus.join("slow.txt");
    std::fs::write(&slow, "SLOWDOWN here\nw1 w2\n").unwrap();
    inputs.push(slow);
    let oracle = coreutils_word_counts(&inputs);
    let output = cluster.path("out");
    // Words are split on every ASCII whitespace byte, as wordcount and coreutils `tr` do.
    let mapper = r#"awk -F '[ \t\r\v\f]+' '{ if ($1 == "SLOWDOWN") system("sleep 4"); for (i = 1; i <= NF; i++) if ($i != "") print $i "\t1" }'"#;
    let reducer = SLOW_SUMMING_REDUCER;
    let url = cluster.url();
    let args = streaming_args(&corpus, &output, mapper, reducer, &[]);
    let client = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::harness::essaim_with_env(&args, &[("ESSAIM_COORDINATOR", &url)]).await
    });

    // While the slow map runs, flip a byte in the middle of every finished map output.
    let deadline = Deadline::after(EVENTUALLY, "map outputs to appear");
    let mut corrupted = 0;
    while corrupted == 0 {
        deadline.tick().await;
        for path in find_files(cluster.dir(), "map.out") {
            let mut bytes = std::fs::read(&path).unwrap();
            if bytes.len() > 64 {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x5a;
                std::fs::write(&path, &bytes).unwrap();
                corrupted += 1;
            }
        }
    }
    eprintln!("corrupted {corrupted} map outputs");

    // Then kill a worker while a reducer sleeps in its first record.
    let job_id = 1;
    let deadline = Deadline::after(EVENTUALLY, "a reducer to run");
    loop {
        deadline.tick().await;
        let job = cluster.job(job_id).await;
        if job.state != "running" {
            break;
        }
        if job.stages[1].running > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let victim = cluster.worker_names()[0].clone();
            eprintln!("SIGKILL {victim} during the reduce stage");
            cluster.kill_worker(&victim);
            cluster.start_worker(1);
            break;
        }
    }
    let run = crate::harness::within("the streaming job", client)
        .await
        .unwrap();
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(read_word_counts(&output, 2), oracle);
    let job = cluster.job(job_id).await;
    assert!(
        job.outputs_lost >= 1,
        "the corrupt outputs were not reported lost: {job:?}"
    );
}

/// Runs `essaim submit JOB --input INPUT --output OUTPUT EXTRA…` on the cluster and
/// fails the test unless it succeeds.
async fn submit_and_succeed(
    cluster: &Cluster,
    job: &str,
    input: &Path,
    output: &Path,
    extra: &[&str],
) {
    let mut args = vec![
        "submit",
        job,
        "--input",
        input.to_str().expect("a UTF-8 path"),
        "--output",
        output.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    let run = cluster.cli(&args).await;
    assert_eq!(run.code, Some(0), "{job}: {}\n{}", run.stdout, run.stderr);
}

/// Returns the non-empty lines of a file's bytes.
fn non_empty_lines(bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    bytes
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_orders_records_across_reducers_and_validate_agrees_with_its_input() {
    let cluster = Cluster::start(2, 1).await;
    let input = cluster.path("records");
    let sorted = cluster.path("sorted");
    let generated = cluster
        .cli(&[
            "gen",
            "sort",
            "--rows",
            "20000",
            "--files",
            "3",
            "--output",
            input.to_str().unwrap(),
        ])
        .await;
    assert_eq!(generated.code, Some(0), "{}", generated.stderr);
    submit_and_succeed(
        &cluster,
        "sort",
        &input,
        &sorted,
        &["--reducers", "3", "--split-size", "256KiB"],
    )
    .await;
    // Oracle: the same lines, sorted by bytes, are the concatenated parts.
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for file in std::fs::read_dir(&input).unwrap() {
        expected.extend(non_empty_lines(
            &std::fs::read(file.unwrap().path()).unwrap(),
        ));
    }
    expected.sort();
    let mut actual = Vec::new();
    for part in 0..3 {
        let bytes = std::fs::read(sorted.join(format!("part-{part:05}"))).unwrap();
        assert!(
            !bytes.is_empty(),
            "part {part} is empty: the cut points are poor"
        );
        actual.extend(non_empty_lines(&bytes));
    }
    assert_eq!(actual.len(), expected.len());
    assert!(actual == expected, "the parts are not the input sorted");
    let report = cluster.path("report");
    submit_and_succeed(
        &cluster,
        "sort-validate",
        &sorted,
        &report,
        &["--reducers", "1"],
    )
    .await;
    let text = std::fs::read_to_string(report.join("part-00000")).unwrap();
    assert!(text.contains("OK"), "validate reported: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mapreduce_requests_get_clear_errors_and_empty_input_gives_empty_output() {
    let cluster = Cluster::start(1, 1).await;
    let out = cluster.path("out");
    let out_arg = out.to_str().unwrap();
    // (job, input, what the error must say): refused before anything runs, exit code 2.
    let refused = [
        ("wordcount", "/nonexistent/x", "does not exist"),
        ("wordcont", "/etc/hostname", "known jobs: "),
        ("grep", "/etc/hostname", "pattern"),
    ];
    for (job, input, expected) in refused {
        let run = cluster
            .cli(&["submit", job, "--input", input, "--output", out_arg])
            .await;
        assert_eq!(run.code, Some(2), "{job}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{job}: {}", run.stderr);
    }
    assert!(!out.exists(), "a refused job created its output directory");

    let empty = cluster.path("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let empty_arg = empty.to_str().unwrap();
    let cluster = &cluster;
    let count_empty = |extra: &'static [&'static str]| {
        let mut args = vec![
            "submit",
            "wordcount",
            "--input",
            empty_arg,
            "--output",
            out_arg,
        ];
        args.extend_from_slice(extra);
        async move { cluster.cli(&args).await }
    };
    let run = count_empty(&[]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(read_word_counts(&out, 2), BTreeMap::new());
    let again = count_empty(&[]).await;
    assert_eq!(again.code, Some(2), "{}", again.stderr);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let overwrite = count_empty(&["--overwrite"]).await;
    assert_eq!(overwrite.code, Some(0), "{}", overwrite.stderr);
}

/// Returns every file named `name` under `dir`.
pub(crate) fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(find_files(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
    found
}

/// An mrjob script, unmodified, run by a real cluster through `--mrjob` (every step, the
/// script's own `--step-num=N --mapper/--combiner/--reducer` modes), prints what mrjob's
/// own runner prints. Python and mrjob come from `scripts/python-env.sh`;
/// `ESSAIM_SKIP_PYTHON=1` skips the test (and says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmodified_mrjob_script_gives_what_mrjob_gives() {
    let Some(python) = essaim_testkit::python::python_env("mrjob") else {
        return;
    };
    let examples = essaim_testkit::python::mrjob_examples(&python);
    let script = examples.join("mr_most_used_word.py");

    let cluster = Cluster::start(2, 1).await;
    let corpus = cluster.path("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    let mut inputs = Vec::new();
    for (index, text) in [
        "The quick brown fox jumps over the lazy dog\nthe fox again and again\n",
        "A fox, a dog; the end of the story of the fox.\n",
        "Dogs and foxes: fox fox fox!\n",
    ]
    .iter()
    .enumerate()
    {
        let path = corpus.join(format!("text-{index}.txt"));
        std::fs::write(&path, text.repeat(50)).unwrap();
        inputs.push(path);
    }
    let mrjob_alone = std::process::Command::new(&python)
        .arg(&script)
        .args(["-r", "inline", "--no-conf"])
        .args(&inputs)
        .output()
        .unwrap();
    assert!(mrjob_alone.status.success(), "{mrjob_alone:?}");

    let output = cluster.path("out");
    let run = cluster
        .cli(&[
            "submit",
            "streaming",
            "--mrjob",
            script.to_str().unwrap(),
            "--python",
            python.to_str().expect("a UTF-8 path"),
            "--input",
            corpus.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--reducers",
            "2",
        ])
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let mut ours: Vec<String> = Vec::new();
    for part in ["part-00000", "part-00001"] {
        let text = std::fs::read_to_string(output.join(part)).unwrap();
        ours.extend(text.lines().map(str::to_string));
    }
    ours.sort();
    let theirs = sorted_lines(&mrjob_alone.stdout);
    assert!(!theirs.is_empty());
    assert_eq!(ours, theirs);
}
