//! Jobs that open their input files themselves, over a bucket of the S3-compatible test
//! server (s3s-fs, started by `scripts/s3.sh`) holding plain and compressed objects.
//! The workers' environment has the credentials but names no endpoint: only the job's
//! `--s3-endpoint` leads to the server, as for the splits.
//!
//! - `dedup by=file` hashes each object's decoded content: an object, its copy and its
//!   `.zst` form are one group, a text and its `.gz` and `.bz2` forms another; the
//!   oracle groups files whose contents, decoded by the system's `zstd`, `gzip` and
//!   `bzip2`, are equal byte for byte;
//! - `join kind=left` of a plain object cut into ranged splits (the tasks that start
//!   mid-file read its header from the bucket) with a `.gz` right side (whose header
//!   gives the padding of unmatched rows) equals the join computed here;
//! - `sort` samples plain objects with ranged reads and a `.gz` object decoded, and its
//!   parts, concatenated, equal the system's `sort` of the decoded inputs, each part
//!   holding a fair share.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::harness::Cluster;
use crate::mapreduce_s3::{CREDENTIALS, bucket, gzip};

/// Compresses `file` into `into` with the system's `tool` (`zstd`, `bzip2`, `gzip`).
fn compress(tool: &str, file: &Path, into: &Path) {
    let output = std::process::Command::new(tool)
        .args(["-c", "-q", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{tool}: {output:?}");
    std::fs::write(into, output.stdout).unwrap();
}

/// Returns what the system's decoder of `path` (by its extension) prints.
fn decoded(path: &Path) -> Vec<u8> {
    let tool = match path.extension().and_then(|extension| extension.to_str()) {
        Some("gz") => "gzip",
        Some("zst") => "zstd",
        Some("bz2") => "bzip2",
        _ => return std::fs::read(path).unwrap(),
    };
    let output = std::process::Command::new(tool)
        .args(["-dc", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{tool}: {output:?}");
    output.stdout
}

/// Pseudo-random bytes of a fixed seed.
fn noise(length: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..length)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

/// Returns the lines of the committed parts `part-00000`… of `dir`, in part order,
/// and the number of lines of each part.
fn read_parts(dir: &Path, reducers: u32) -> (Vec<String>, Vec<usize>) {
    assert!(
        dir.join("_SUCCESS").is_file(),
        "{} is committed",
        dir.display()
    );
    let mut lines = Vec::new();
    let mut sizes = Vec::new();
    for part in 0..reducers {
        let text = std::fs::read_to_string(dir.join(format!("part-{part:05}"))).unwrap();
        sizes.push(text.lines().count());
        lines.extend(text.lines().map(str::to_string));
    }
    (lines, sizes)
}

/// Runs `essaim submit JOB ARGS` against the bucket's server; asserts it succeeds.
async fn submit(cluster: &Cluster, endpoint: &str, job: &str, args: &[&str]) {
    let mut all = vec!["submit", job, "--s3-endpoint", endpoint, "--s3-allow-http"];
    all.extend_from_slice(args);
    let run = cluster.cli(&all).await;
    assert_eq!(run.code, Some(0), "{job}: {}\n{}", run.stdout, run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_by_file_hashes_objects_and_compressed_files_by_their_decoded_content() {
    let Some(server) = essaim_testkit::server::s3() else {
        return;
    };
    let data = bucket(&server, "data").join("dedup");
    let out = bucket(&server, "results");
    std::fs::create_dir_all(&data).unwrap();
    let cluster = Cluster::start_with_env(2, 1, &CREDENTIALS).await;
    std::fs::write(data.join("a.bin"), noise(300_000, 1)).unwrap();
    std::fs::write(data.join("a-copy.bin"), noise(300_000, 1)).unwrap();
    compress("zstd", &data.join("a.bin"), &data.join("a.bin.zst"));
    let text: String = (0..5_000).map(|line| format!("line {line}\n")).collect();
    std::fs::write(data.join("b.txt"), &text).unwrap();
    gzip(&data.join("b.txt"), &data.join("b.txt.gz"));
    compress("bzip2", &data.join("b.txt"), &data.join("b.txt.bz2"));
    std::fs::write(data.join("unique.txt"), noise(1_000, 2)).unwrap();
    // Same compressed bytes as nothing else once decoded.
    std::fs::write(cluster.path("other.txt"), noise(1_000, 3)).unwrap();
    gzip(&cluster.path("other.txt"), &data.join("other.gz"));

    // The oracle: files whose decoded contents are equal, members by URL.
    let mut by_content: BTreeMap<Vec<u8>, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        by_content
            .entry(decoded(&path))
            .or_default()
            .insert(format!("s3://data/dedup/{name}"));
    }
    let expected: BTreeSet<Vec<String>> = by_content
        .into_values()
        .filter(|members| members.len() > 1)
        .map(|members| members.into_iter().collect())
        .collect();
    assert_eq!(expected.len(), 2, "two groups of three: {expected:?}");

    let endpoint = server.url().to_string();
    let args = [
        "-i",
        "s3://data/dedup",
        "--output",
        "s3://results/dedup",
        "--reducers",
        "2",
    ];
    submit(&cluster, &endpoint, "dedup", &args).await;
    let (lines, _) = read_parts(&out.join("dedup"), 2);
    let mut groups = BTreeSet::new();
    for line in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        let [signature, count, members] = fields.as_slice() else {
            panic!("malformed line {line:?}");
        };
        assert_eq!(signature.len(), 64, "{line}");
        let members: Vec<String> = members.split(',').map(str::to_string).collect();
        assert_eq!(count.parse::<usize>().unwrap(), members.len(), "{line}");
        groups.insert(members);
    }
    assert_eq!(groups, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_left_join_of_objects_reads_headers_from_the_bucket_and_equals_the_oracle() {
    let Some(server) = essaim_testkit::server::s3() else {
        return;
    };
    let data = bucket(&server, "data").join("join");
    let out = bucket(&server, "results");
    std::fs::create_dir_all(data.join("left")).unwrap();
    std::fs::create_dir_all(data.join("right")).unwrap();
    let cluster = Cluster::start_with_env(2, 1, &CREDENTIALS).await;
    // 120 KB of left rows: two ranged splits at 64 KiB, the second without the header.
    let left_rows: Vec<String> = (0..5_000)
        .map(|row| format!("{},person-{row},city-{}", row % 2_000, row % 7))
        .collect();
    let left_text = format!("id,name,city\n{}\n", left_rows.join("\n"));
    std::fs::write(data.join("left/people.csv"), left_text).unwrap();
    // Scores of every third id, twice for every ninth: a gzipped right side.
    let mut right_rows: Vec<(u32, String)> = Vec::new();
    for id in (0..2_000).step_by(3) {
        right_rows.push((id, format!("{},grade-{}", id * 10, id % 5)));
        if id % 9 == 0 {
            right_rows.push((id, format!("{},retake", id * 10 + 1)));
        }
    }
    let right_text: String = std::iter::once("id,score,grade".to_string())
        .chain(right_rows.iter().map(|(id, rest)| format!("{id},{rest}")))
        .map(|row| row + "\n")
        .collect();
    let plain_right = cluster.path("scores.csv");
    std::fs::write(&plain_right, right_text).unwrap();
    gzip(&plain_right, &data.join("right/scores.csv.gz"));

    // The oracle: each left row with each right row of its id, or empty right fields.
    let mut expected: Vec<String> = Vec::new();
    for row in &left_rows {
        let id: u32 = row.split(',').next().unwrap().parse().unwrap();
        let matches: Vec<&String> = right_rows
            .iter()
            .filter(|(right_id, _)| *right_id == id)
            .map(|(_, rest)| rest)
            .collect();
        if matches.is_empty() {
            expected.push(format!("{row},,"));
        }
        expected.extend(matches.iter().map(|rest| format!("{row},{rest}")));
    }
    expected.sort();

    let endpoint = server.url().to_string();
    let args = [
        "-i",
        "s3://data/join",
        "--output",
        "s3://results/joined",
        "--reducers",
        "2",
        "--split-size",
        "64KiB",
        "-D",
        "left=s3://data/join/left",
        "-D",
        "right=s3://data/join/right",
        "-D",
        "left_key=id",
        "-D",
        "right_key=id",
        "-D",
        "kind=left",
    ];
    submit(&cluster, &endpoint, "join", &args).await;
    let (mut lines, _) = read_parts(&out.join("joined"), 2);
    lines.sort();
    assert_eq!(lines.len(), expected.len());
    assert!(lines == expected, "the join differs from the oracle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_samples_plain_and_compressed_objects_and_equals_the_system_sort() {
    let Some(server) = essaim_testkit::server::s3() else {
        return;
    };
    let data = bucket(&server, "data").join("sort");
    let out = bucket(&server, "results");
    std::fs::create_dir_all(&data).unwrap();
    let cluster = Cluster::start_with_env(2, 1, &CREDENTIALS).await;
    // Three files of 3,000 lines with distinct 10-letter keys: two plain objects (cut
    // into 64 KiB ranges), one gzipped.
    let mut keys = BTreeSet::new();
    let mut state: u64 = 7;
    let mut local: Vec<PathBuf> = Vec::new();
    for file in 0..3 {
        let mut text = String::new();
        for row in 0..3_000 {
            let key = loop {
                let key: String = (0..10)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1);
                        char::from(b'a' + ((state >> 33) % 26) as u8)
                    })
                    .collect();
                if keys.insert(key.clone()) {
                    break key;
                }
            };
            text.push_str(&format!(
                "{key} file {file} row {row:05} and some padding\n"
            ));
        }
        let path = cluster.path(&format!("sort-{file}.txt"));
        std::fs::write(&path, text).unwrap();
        local.push(path);
    }
    std::fs::copy(&local[0], data.join("a.txt")).unwrap();
    std::fs::copy(&local[1], data.join("b.txt")).unwrap();
    gzip(&local[2], &data.join("c.txt.gz"));
    let sorted = std::process::Command::new("sort")
        .env("LC_ALL", "C")
        .args(local.iter().map(|path| path.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(sorted.status.success(), "{sorted:?}");
    let expected: Vec<String> = String::from_utf8(sorted.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();

    let endpoint = server.url().to_string();
    let args = [
        "-i",
        "s3://data/sort",
        "--output",
        "s3://results/sorted",
        "--reducers",
        "3",
        "--split-size",
        "64KiB",
    ];
    submit(&cluster, &endpoint, "sort", &args).await;
    let (lines, sizes) = read_parts(&out.join("sorted"), 3);
    assert!(lines == expected, "the parts differ from the system's sort");
    // Sampled cut points: every reducer got a fair share (a third, give or take).
    for (part, size) in sizes.iter().enumerate() {
        assert!(
            *size * 5 >= expected.len(),
            "part {part} holds {size} of {} lines: {sizes:?}",
            expected.len()
        );
    }
}
