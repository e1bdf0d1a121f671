//! Many small files packed into few map tasks: every job that cares about files (word
//! count across them, `index`, `grep` line numbers, `dedup by=file`) gives byte for byte
//! what it gives with one map task per file, and what an oracle computed another way
//! (the test kit's word counts, GNU grep, grouping the files' bytes in the test).

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::Cluster;
use essaim_core::rng::SeededRng;
use essaim_testkit::oracle::word_counts;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Writes 150 small files (empty ones, ones without a final newline, some identical,
/// CRLF lines, invalid UTF-8) and one file of about 200 KB that the split size cuts;
/// returns them sorted by path bytes, the order the planner uses.
fn write_small_files(dir: &Path, seed: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = SeededRng::new(seed);
    let words: Vec<Vec<u8>> = (0..300)
        .map(|i| match i % 60 {
            0 => vec![0xff, b'x', b'0' + (i % 10) as u8],
            1 => b"(Hello,".to_vec(),
            _ => format!("w{i}").into_bytes(),
        })
        .collect();
    let text = |rng: &mut SeededRng, bytes: u64| {
        let mut text = Vec::new();
        while (text.len() as u64) < bytes {
            let ceiling = rng.up_to(words.len() as u64 - 1);
            text.extend_from_slice(&words[rng.up_to(ceiling) as usize]);
            let separator: &[u8] = match rng.below(12) {
                0 => b"\n",
                1 => b"\r\n",
                2 => b"\t",
                _ => b" ",
            };
            text.extend_from_slice(separator);
        }
        text
    };
    let mut paths = Vec::new();
    let mut previous = Vec::new();
    for index in 0..150 {
        let mut content = match index % 25 {
            0 => Vec::new(),
            // A copy of the previous file, for dedup.
            7 => previous.clone(),
            _ => {
                let bytes = 200 + rng.below(6_000);
                text(&mut rng, bytes)
            }
        };
        if index % 9 == 4 {
            content.extend_from_slice(b"no final newline w1");
        }
        let path = dir.join(format!("doc-{index:03}.txt"));
        std::fs::write(&path, &content).unwrap();
        previous = content;
        paths.push(path);
    }
    let large = dir.join("large.txt");
    std::fs::write(&large, text(&mut rng, 200_000)).unwrap();
    paths.push(large);
    paths.sort();
    paths
}

/// Runs `essaim submit JOB` over `input` and returns the number of map tasks.
async fn run_job(cluster: &Cluster, job: &str, input: &Path, output: &Path, extra: &[&str]) -> u64 {
    let mut args = vec![
        "submit",
        job,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--split-size",
        "64KiB",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let run = cluster.cli(&args).await;
    assert_eq!(run.code, Some(0), "{job}: {}\n{}", run.stdout, run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    summary["map_tasks"].as_u64().unwrap()
}

/// Returns the bytes of every part of an output directory, in part order.
fn parts(output: &Path, reducers: u32) -> Vec<Vec<u8>> {
    assert!(
        output.join("_SUCCESS").is_file(),
        "no _SUCCESS in {output:?}"
    );
    (0..reducers)
        .map(|part| std::fs::read(output.join(format!("part-{part:05}"))).unwrap())
        .collect()
}

/// Returns the non-empty lines of the parts, in order.
fn lines(parts: &[Vec<u8>]) -> Vec<Vec<u8>> {
    parts
        .iter()
        .flat_map(|part| part.split(|byte| *byte == b'\n'))
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Packs with a 4 KiB open cost (so a 64 KiB split holds about ten of the files) and
/// compares with `--no-packing`; returns the packed output's parts.
async fn packed_equals_unpacked(
    cluster: &Cluster,
    job: &str,
    input: &Path,
    reducers: u32,
    extra: &[&str],
) -> Vec<Vec<u8>> {
    let reducers_arg = reducers.to_string();
    let mut packed_args = vec!["--reducers", &reducers_arg, "--open-cost", "4KiB"];
    packed_args.extend_from_slice(extra);
    let mut unpacked_args = vec!["--reducers", &reducers_arg, "--no-packing"];
    unpacked_args.extend_from_slice(extra);
    let packed_dir = cluster.path(&format!("{job}-packed"));
    let unpacked_dir = cluster.path(&format!("{job}-unpacked"));
    let packed_tasks = run_job(cluster, job, input, &packed_dir, &packed_args).await;
    let unpacked_tasks = run_job(cluster, job, input, &unpacked_dir, &unpacked_args).await;
    // 150 small files and a large one cut in 4 (whole-file jobs do not cut it).
    assert!(
        unpacked_tasks >= 151,
        "{job}: {unpacked_tasks} map tasks unpacked"
    );
    assert!(
        packed_tasks * 5 < unpacked_tasks,
        "{job}: {packed_tasks} map tasks packed, {unpacked_tasks} unpacked"
    );
    let packed = parts(&packed_dir, reducers);
    assert!(
        packed == parts(&unpacked_dir, reducers),
        "{job}: the packed output differs from the unpacked one"
    );
    packed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_small_files_give_the_bytes_of_one_task_per_file_and_equal_oracles() {
    let cluster = Cluster::start(2, 1).await;
    let input = cluster.path("docs");
    let files = write_small_files(&input, 18);
    let texts: Vec<Vec<u8>> = files
        .iter()
        .map(|file| std::fs::read(file).unwrap())
        .collect();

    let counted = packed_equals_unpacked(&cluster, "wordcount", &input, 2, &[]).await;
    let mut counts = BTreeMap::new();
    for line in lines(&counted) {
        let tab = line.iter().rposition(|byte| *byte == b'\t').unwrap();
        let count: u64 = std::str::from_utf8(&line[tab + 1..])
            .unwrap()
            .parse()
            .unwrap();
        assert!(counts.insert(line[..tab].to_vec(), count).is_none());
    }
    assert_eq!(counts, word_counts(texts.iter().map(Vec::as_slice)));

    // GNU grep numbers lines per file, over the files in path order (one reducer sorts
    // the whole output by path, then line).
    let pattern = "w1[0-9]";
    let grepped =
        packed_equals_unpacked(&cluster, "grep", &input, 1, &["--pattern", pattern]).await;
    let gnu = std::process::Command::new("grep")
        .args(["-a", "-n", "-H", "-E", pattern])
        .args(&files)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(gnu.status.success(), "GNU grep: {gnu:?}");
    let expected = lines(&[gnu.stdout]);
    assert!(expected.len() > 500, "too few matches to prove anything");
    assert!(lines(&grepped) == expected, "grep differs from GNU grep");

    // dedup by=file: the groups of files with the same bytes.
    let deduped = packed_equals_unpacked(&cluster, "dedup", &input, 2, &["-D", "by=file"]).await;
    let mut by_content: BTreeMap<&[u8], Vec<String>> = BTreeMap::new();
    for (file, text) in files.iter().zip(&texts) {
        by_content
            .entry(text)
            .or_default()
            .push(file.display().to_string());
    }
    let mut expected_groups: Vec<String> = by_content
        .into_values()
        .filter(|members| members.len() > 1)
        .map(|members| format!("{}\t{}", members.len(), members.join(",")))
        .collect();
    expected_groups.sort();
    let mut groups: Vec<String> = lines(&deduped)
        .iter()
        .map(|line| {
            let line = String::from_utf8(line.clone()).unwrap();
            line.split_once('\t').unwrap().1.to_string()
        })
        .collect();
    groups.sort();
    assert!(expected_groups.len() >= 6, "{expected_groups:?}");
    assert_eq!(groups, expected_groups);

    // index: every file's terms, flushed per file although one mapper reads many.
    packed_equals_unpacked(&cluster, "index", &input, 2, &[]).await;
}
