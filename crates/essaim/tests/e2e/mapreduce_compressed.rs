//! Compressed inputs and outputs on a real cluster: a word count over `.gz`, `.zst` and
//! `.bz2` files (made by the system's own gzip, zstd and bzip2 tools) and a gzip file
//! without its extension equals coreutils on the plain files and the uncompressed run
//! byte for byte; `--compress-output` parts decompress, with the same tools, to the plain
//! run's parts; a corrupt `.gz` fails its map task for good, naming the file.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::Cluster;
use crate::mapreduce::{coreutils_word_counts, read_word_counts, write_corpus};
use std::path::{Path, PathBuf};

/// Runs `TOOL ARGS` and fails the test with its stderr if it fails.
fn run_tool(tool: &str, args: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{tool} cannot run (scripts/test.sh installs it): {error}"));
    assert!(output.status.success(), "{tool} {args:?}: {output:?}");
    output.stdout
}

/// Compresses `file` into `into` with `tool -c` and returns the compressed file.
fn compress_with(tool: &str, file: &Path, into: PathBuf) -> PathBuf {
    let bytes = run_tool(tool, &["-c", file.to_str().unwrap()]);
    std::fs::write(&into, bytes).unwrap();
    into
}

/// Runs `essaim submit wordcount` and returns the CLI's JSON summary.
async fn wordcount(
    cluster: &Cluster,
    input: &Path,
    output: &Path,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec![
        "submit",
        "wordcount",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--reducers",
        "2",
        "--split-size",
        "64KiB",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let run = cluster.cli(&args).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

fn read_part(output: &Path, name: &str) -> Vec<u8> {
    std::fs::read(output.join(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_over_compressed_files_equals_the_plain_run_and_coreutils() {
    let cluster = Cluster::start(2, 1).await;
    // Four files of 300 KB: each would be five splits of 64 KiB if it were plain.
    let plain = write_corpus(&cluster.path("plain"), 4, 300_000, 23);
    let oracle = coreutils_word_counts(&plain);
    let compressed_dir = cluster.path("compressed");
    std::fs::create_dir_all(&compressed_dir).unwrap();
    let compressed = [
        compress_with("gzip", &plain[0], compressed_dir.join("a.txt.gz")),
        compress_with("zstd", &plain[1], compressed_dir.join("b.txt.zst")),
        compress_with("bzip2", &plain[2], compressed_dir.join("c.txt.bz2")),
        // No extension: found by its magic number, and not cut although it is larger
        // than a split.
        compress_with("gzip", &plain[3], compressed_dir.join("d.log")),
    ];
    assert!(std::fs::metadata(&compressed[3]).unwrap().len() > 64 * 1024);

    let plain_out = cluster.path("plain-out");
    let plain_run = wordcount(&cluster, &cluster.path("plain"), &plain_out, &[]).await;
    let compressed_out = cluster.path("compressed-out");
    let compressed_run = wordcount(&cluster, &compressed_dir, &compressed_out, &[]).await;
    assert!(
        plain_run["map_tasks"].as_u64().unwrap() >= 16,
        "{plain_run}"
    );
    assert_eq!(
        compressed_run["map_tasks"], 4,
        "one split per compressed file: {compressed_run}"
    );
    assert_eq!(
        compressed_run["counters"]["map.input.bytes"], plain_run["counters"]["map.input.bytes"],
        "decoded bytes are counted"
    );
    assert_eq!(read_word_counts(&compressed_out, 2), oracle);
    for part in ["part-00000", "part-00001"] {
        assert!(
            read_part(&compressed_out, part) == read_part(&plain_out, part),
            "{part} differs from the plain run's"
        );
    }

    // Compressed outputs: `part-NNNNN.gz` and `.zst`, which the tools decode to the
    // plain run's parts.
    for (codec, tool) in [("gz", "gzip"), ("zst", "zstd")] {
        let out = cluster.path(&format!("out-{codec}"));
        wordcount(
            &cluster,
            &compressed_dir,
            &out,
            &["--compress-output", codec],
        )
        .await;
        assert!(out.join("_SUCCESS").is_file());
        assert!(
            !out.join("part-00000").exists(),
            "{codec}: a plain part was written"
        );
        for part in ["part-00000", "part-00001"] {
            let name = format!("{part}.{codec}");
            let path = out.join(&name);
            let decoded = run_tool(tool, &["-dc", path.to_str().unwrap()]);
            assert!(
                decoded == read_part(&plain_out, part),
                "{name} does not decode to the plain part"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_gz_input_fails_the_job_with_an_error_naming_the_file() {
    let cluster = Cluster::start(1, 1).await;
    let plain = write_corpus(&cluster.path("plain"), 1, 50_000, 5);
    let inputs = cluster.path("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let good = compress_with("gzip", &plain[0], inputs.join("good.gz"));
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.truncate(bytes.len() / 2);
    let bad = inputs.join("bad.gz");
    std::fs::write(&bad, &bytes).unwrap();

    let out = cluster.path("out");
    let run = cluster
        .cli(&[
            "submit",
            "wordcount",
            "--input",
            inputs.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--no-packing",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["state"], "failed", "{summary}");
    assert!(
        !out.join("_SUCCESS").exists(),
        "a failed job published its output"
    );
    // Corrupt bytes do not get better: one attempt, then the dead-letter queue.
    let letters = cluster
        .dead_letters(summary["job_id"].as_u64().unwrap())
        .await;
    let [letter] = letters.as_slice() else {
        panic!("one dead letter expected: {letters:?}");
    };
    assert_eq!(letter.errors.len(), 1, "retried: {:?}", letter.errors);
    let errors = format!("{:?}", letter.errors);
    assert!(errors.contains(&bad.display().to_string()), "{errors}");
    assert!(errors.contains("not valid gzip data"), "{errors}");
    assert!(
        !errors.contains("good.gz"),
        "the good file is not blamed: {errors}"
    );
}
