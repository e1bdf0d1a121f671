//! MapReduce with inputs and outputs in an S3-compatible object store (s3s-fs, started
//! by `scripts/s3.sh`), on workers whose scratch directories are their own: nothing
//! but the bucket is shared. The server keeps a bucket as a directory of files, so the
//! test puts inputs there and reads outputs back as files: an oracle that does not go
//! through the code under test.
//!
//! - a word count over plain objects (cut into ranged splits), `.gz` objects and a
//!   marker to skip equals coreutils, and publishes `part-NNNNN` and `_SUCCESS` with no
//!   `_temporary/` left; with `--compress-output gz`, parts that gzip decodes to those;
//! - a job stopped while one reducer has staged its part and the other has not leaves
//!   nothing published: no part, no `_SUCCESS`;
//! - a missing bucket and wrong credentials are refused before anything runs, with the
//!   bucket and the store's reason; a corrupt `.gz` object fails its task for good,
//!   named by its URL; workers whose credentials are refused fail the job after one
//!   attempt, publishing nothing and leaving the input as it was.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::{Cluster, Deadline, EVENTUALLY};
use crate::mapreduce::{coreutils_word_counts, read_word_counts, write_corpus};
use essaim_testkit::server::{S3_ACCESS_KEY, S3_SECRET_KEY, ScriptServer};
use std::path::{Path, PathBuf};

/// The environment of processes that may use the test server.
pub(crate) const CREDENTIALS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
];

/// Creates `bucket` on the server (a directory of its store); returns its directory.
pub(crate) fn bucket(server: &ScriptServer, bucket: &str) -> PathBuf {
    let dir = server.dir().join("store").join(bucket);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Gzips `file` into `into` with the system's gzip.
pub(crate) fn gzip(file: &Path, into: &Path) {
    let output = std::process::Command::new("gzip")
        .args(["-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    std::fs::write(into, output.stdout).unwrap();
}

/// Returns the names in `dir`, sorted (empty when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Returns the keys of the objects under `dir`, relative to it, sorted: files, since
/// the server leaves a prefix's directory behind when its last object is deleted.
fn objects(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap();
                found.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_from_a_bucket_to_a_bucket_equals_coreutils_and_shares_no_directory() {
    let Some(server) = essaim_testkit::server::s3() else {
        return;
    };
    let data = bucket(&server, "data");
    let out = bucket(&server, "results");
    let cluster = Cluster::start_with_env(2, 1, &CREDENTIALS).await;
    // Four files of 200 KB: two plain (cut into 64 KiB ranges), two gzipped.
    let plain = write_corpus(&cluster.path("plain"), 4, 200_000, 31);
    let oracle = coreutils_word_counts(&plain);
    let corpus = data.join("corpus");
    std::fs::create_dir_all(corpus.join("_logs")).unwrap();
    std::fs::copy(&plain[0], corpus.join("a.txt")).unwrap();
    std::fs::copy(&plain[1], corpus.join("b.txt")).unwrap();
    gzip(&plain[2], &corpus.join("c.txt.gz"));
    gzip(&plain[3], &corpus.join("d.txt.gz"));
    // Markers and hidden objects are not input, as in a directory.
    std::fs::write(corpus.join("_SUCCESS"), b"").unwrap();
    std::fs::write(corpus.join("_logs").join("x.txt"), b"not input\n").unwrap();

    let endpoint = server.url().to_string();
    let run = cluster
        .cli(&[
            "submit",
            "wordcount",
            "--input",
            "s3://data/corpus",
            "--output",
            "s3://results/counts",
            "--s3-endpoint",
            &endpoint,
            "--s3-allow-http",
            "--reducers",
            "2",
            "--split-size",
            "64KiB",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["input_files"], 4, "{summary}");
    // 2 plain files of 3 ranges each, 2 compressed files of one split each.
    assert_eq!(summary["map_tasks"], 8, "{summary}");
    assert_eq!(summary["output"], "s3://results/counts", "{summary}");
    let counts = out.join("counts");
    assert_eq!(
        objects(&counts),
        ["_SUCCESS", "part-00000", "part-00001"],
        "the parts and the marker, and no staged part left"
    );
    // The server's empty directory of the deleted staging prefix holds no object.
    let _ = std::fs::remove_dir(counts.join("_temporary"));
    assert_eq!(read_word_counts(&counts, 2), oracle);
    // Nothing went through a shared directory: the client's output argument was a
    // bucket, and each worker's scratch is its own.
    assert!(!cluster.path("counts").exists());

    // Compressed parts, uploaded and published the same way, decode with gzip to the
    // plain ones.
    let run = cluster
        .cli(&[
            "submit",
            "wordcount",
            "--input",
            "s3://data/corpus",
            "--output",
            "s3://results/counts-gz",
            "--s3-endpoint",
            &endpoint,
            "--s3-allow-http",
            "--reducers",
            "2",
            "--compress-output",
            "gz",
        ])
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let compressed = out.join("counts-gz");
    assert_eq!(
        objects(&compressed),
        ["_SUCCESS", "part-00000.gz", "part-00001.gz"]
    );
    for part in ["part-00000", "part-00001"] {
        let path = compressed.join(format!("{part}.gz"));
        let decoded = std::process::Command::new("gzip")
            .args(["-dc", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(decoded.status.success(), "{decoded:?}");
        assert!(
            decoded.stdout == std::fs::read(counts.join(part)).unwrap(),
            "{part}.gz does not decode to {part}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_before_its_commit_publishes_nothing_in_the_bucket() {
    let Some(server) = essaim_testkit::server::s3() else {
        return;
    };
    let data = bucket(&server, "data");
    let out = bucket(&server, "results");
    let cluster = Cluster::start_with_env(2, 1, &CREDENTIALS).await;
    let plain = write_corpus(&cluster.path("plain"), 2, 20_000, 3);
    std::fs::copy(&plain[0], data.join("a.txt")).unwrap();
    std::fs::copy(&plain[1], data.join("b.txt")).unwrap();
    // The first reducer to finish creates the lock directory and commits its part; the
    // other finds it there and waits while it exists (60 s at most), so the job stays
    // between its reducers' commits. Dropping the cluster removes its directory, lock
    // included, which ends the wait: a killed worker's command would outlive the test.
    let lock = cluster.path("first-reducer-done");
    let reducer = format!(
        "cat && (mkdir '{lock}' 2>/dev/null || {{ i=0; while [ -e '{lock}' ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; }})",
        lock = lock.display()
    );
    let endpoint = server.url().to_string();
    let run = cluster
        .cli(&[
            "submit",
            "streaming",
            "--input",
            "s3://data",
            "--output",
            "s3://results/stopped",
            "--s3-endpoint",
            &endpoint,
            "--s3-allow-http",
            "--mapper",
            "cat",
            "--reducer",
            &reducer,
            "--reducers",
            "2",
            "--detach",
        ])
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let staged_dir = out.join("stopped").join("_temporary");
    let deadline = Deadline::after(EVENTUALLY, "one reducer's part staged in the bucket");
    while names(&staged_dir).is_empty() {
        deadline.tick().await;
    }
    let staged = names(&staged_dir);
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(staged[0].starts_with("part-0000"), "{staged:?}");
    // Every process of the cluster is killed with the job half reduced.
    drop(cluster);
    let left = objects(&out.join("stopped"));
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with("_temporary/part-0000"),
        "nothing but the staged part: no part published, no _SUCCESS: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_wrong_credentials_and_a_corrupt_gz_object_get_clear_errors() {
    let Some(server) = essaim_testkit::server::s3() else {
        return;
    };
    let data = bucket(&server, "data");
    bucket(&server, "results");
    let cluster = Cluster::start_with_env(1, 1, &CREDENTIALS).await;
    std::fs::write(data.join("words.txt"), b"a b c\n").unwrap();
    let endpoint = server.url().to_string();
    let submit = |input: &'static str, output: &'static str| {
        let endpoint = endpoint.clone();
        let cluster = &cluster;
        async move {
            cluster
                .cli(&[
                    "submit",
                    "wordcount",
                    "--input",
                    input,
                    "--output",
                    output,
                    "--s3-endpoint",
                    &endpoint,
                    "--s3-allow-http",
                    "--format",
                    "json",
                ])
                .await
        }
    };

    let missing = submit("s3://no-such-bucket/in", "s3://results/x").await;
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("s3://no-such-bucket/in"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("NoSuchBucket (HTTP 404)"),
        "the store's reason: {}",
        missing.stderr
    );

    // Same request, other keys: the store refuses the signature before anything runs.
    let wrong = essaim_testkit::cli::run(
        cluster.binary(),
        &[
            "submit",
            "wordcount",
            "--input",
            "s3://data/words.txt",
            "--output",
            "s3://results/y",
            "--s3-endpoint",
            &endpoint,
            "--s3-allow-http",
        ],
        &[
            ("ESSAIM_COORDINATOR", cluster.url().as_str()),
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        ],
    )
    .await;
    assert_eq!(wrong.code, Some(2), "{}", wrong.stderr);
    assert!(wrong.stderr.contains("s3://data"), "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("SignatureDoesNotMatch (HTTP 403)"),
        "{}",
        wrong.stderr
    );
    assert!(
        !server.dir().join("store/results/y").exists(),
        "nothing written with refused credentials"
    );

    // A truncated gzip object: one attempt, then the dead-letter queue, named by URL.
    let mut bytes = Vec::new();
    {
        let source = cluster.path("text");
        std::fs::write(&source, "hello world\n".repeat(5_000)).unwrap();
        let packed = cluster.path("text.gz");
        gzip(&source, &packed);
        bytes.extend(std::fs::read(&packed).unwrap());
    }
    bytes.truncate(bytes.len() / 2);
    std::fs::create_dir_all(data.join("bad")).unwrap();
    std::fs::write(data.join("bad/broken.gz"), &bytes).unwrap();
    let corrupt = submit("s3://data/bad", "s3://results/z").await;
    assert_eq!(
        corrupt.code,
        Some(1),
        "{}\n{}",
        corrupt.stdout,
        corrupt.stderr
    );
    let summary: serde_json::Value = serde_json::from_str(&corrupt.stdout).unwrap();
    let letters = cluster
        .dead_letters(summary["job_id"].as_u64().unwrap())
        .await;
    let [letter] = letters.as_slice() else {
        panic!("one dead letter expected: {letters:?}");
    };
    assert_eq!(letter.errors.len(), 1, "retried: {:?}", letter.errors);
    let errors = format!("{:?}", letter.errors);
    assert!(errors.contains("s3://data/bad/broken.gz"), "{errors}");
    assert!(errors.contains("not valid gzip data"), "{errors}");
    assert!(
        !server.dir().join("store/results/z/_SUCCESS").exists(),
        "a failed job published its output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_with_refused_credentials_fail_the_job_for_good_and_publish_nothing() {
    let Some(server) = essaim_testkit::server::s3() else {
        return;
    };
    let data = bucket(&server, "data");
    let out = bucket(&server, "results");
    std::fs::write(data.join("words.txt"), b"a b c\n").unwrap();
    // The client plans with good keys; the workers hold stale ones.
    let cluster = Cluster::start_with_env(
        1,
        1,
        &[
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", "a-rotated-secret"),
        ],
    )
    .await;
    let endpoint = server.url().to_string();
    let url = cluster.url();
    let run = essaim_testkit::cli::run(
        cluster.binary(),
        &[
            "submit",
            "wordcount",
            "--input",
            "s3://data",
            "--output",
            "s3://results/refused",
            "--s3-endpoint",
            &endpoint,
            "--s3-allow-http",
            "--format",
            "json",
        ],
        &[
            ("ESSAIM_COORDINATOR", url.as_str()),
            CREDENTIALS[0],
            CREDENTIALS[1],
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let letters = cluster
        .dead_letters(summary["job_id"].as_u64().unwrap())
        .await;
    let [letter] = letters.as_slice() else {
        panic!("one dead letter expected: {letters:?}");
    };
    // Asking again with the same keys gets the same answer: no retry.
    assert_eq!(letter.errors.len(), 1, "retried: {:?}", letter.errors);
    let errors = format!("{:?}", letter.errors);
    assert!(errors.contains("s3://data/words.txt"), "{errors}");
    assert!(
        errors.contains("SignatureDoesNotMatch (HTTP 403)"),
        "{errors}"
    );
    assert!(objects(&out).is_empty(), "{:?}", objects(&out));
    assert_eq!(
        std::fs::read(data.join("words.txt")).unwrap(),
        b"a b c\n",
        "the input is untouched"
    );
}
