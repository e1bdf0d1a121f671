//! Incremental re-runs (`essaim run --task-cache DIR`): change one file of 100 and run
//! the word count again, and only that file's map task runs; the output equals a run
//! without the cache and coreutils' counts. A changed parameter or reducer count
//! reuses nothing.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::essaim;
use crate::mapreduce::{coreutils_word_counts, read_word_counts, write_corpus};
use std::path::Path;

const FILES: usize = 100;

/// Runs wordcount on the embedded cluster over `input` into `output`, with `extra`
/// options; returns the JSON summary.
async fn wordcount(input: &Path, output: &Path, extra: &[&str]) -> serde_json::Value {
    let (input, output) = (input.display().to_string(), output.display().to_string());
    let mut args = vec![
        "run",
        "wordcount",
        "--input",
        &input,
        "--output-dir",
        &output,
        // One map task per file.
        "--no-packing",
        "--workers",
        "2",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let run = essaim(&args).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["succeeded"], true, "{summary:#}");
    assert_eq!(summary["map_tasks"], FILES, "{summary:#}");
    summary
}

fn reused(summary: &serde_json::Value) -> u64 {
    summary["reused_map_tasks"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_maps_only_the_changed_file_and_writes_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let files = write_corpus(&input, FILES, 2_000, 41);
    let cache = dir.path().join("task-cache").display().to_string();
    let cached = ["--task-cache", cache.as_str()];

    let first = wordcount(&input, &dir.path().join("first"), &cached).await;
    assert_eq!(reused(&first), 0, "an empty cache reuses nothing");

    // One file changes: a word more at its end.
    let changed = &files[57];
    let mut bytes = std::fs::read(changed).unwrap();
    bytes.extend_from_slice(b"\nincremental w7\n");
    std::fs::write(changed, bytes).unwrap();

    let second_dir = dir.path().join("second");
    let second = wordcount(&input, &second_dir, &cached).await;
    assert_eq!(reused(&second), FILES as u64 - 1, "{second:#}");
    // The counters of the reused tasks are the stored ones: the sums read every input.
    let total_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert_eq!(
        second["counters"]["map.input.bytes"], total_bytes,
        "{second:#}"
    );

    let fresh_dir = dir.path().join("fresh");
    let fresh = wordcount(&input, &fresh_dir, &[]).await;
    assert_eq!(reused(&fresh), 0);
    for part in 0..2 {
        let name = format!("part-{part:05}");
        assert_eq!(
            std::fs::read(second_dir.join(&name)).unwrap(),
            std::fs::read(fresh_dir.join(&name)).unwrap(),
            "{name} differs from a run without the cache"
        );
    }
    let counts = read_word_counts(&second_dir, 2);
    assert_eq!(counts, coreutils_word_counts(&files));
    assert_eq!(counts[b"incremental".as_slice()], 1);

    // What changes every map output reuses nothing.
    let lowercase = wordcount(
        &input,
        &dir.path().join("lowercase"),
        &[cached[0], cached[1], "-D", "lowercase=true"],
    )
    .await;
    assert_eq!(reused(&lowercase), 0, "{lowercase:#}");
    let three = wordcount(
        &input,
        &dir.path().join("three"),
        &[cached[0], cached[1], "--reducers", "3"],
    )
    .await;
    assert_eq!(reused(&three), 0, "{three:#}");
    assert_eq!(read_word_counts(&dir.path().join("three"), 3), counts);
}
