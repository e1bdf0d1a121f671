//! The CSV jobs on a real cluster: a quoted separator keeps its row through splits,
//! the shuffle and the output commit, and a malformed row shows in the job's counters
//! (the summary `essaim submit` prints) instead of vanishing.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::Cluster;

/// The value of counter `name` in the summary `essaim submit` prints.
fn summary_counter(stdout: &str, name: &str) -> Option<u64> {
    stdout.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(name)).then(|| words.next()?.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_keeps_quoted_separators_and_counts_malformed_rows() {
    let cluster = Cluster::start(2, 1).await;
    let data = cluster.path("data");
    std::fs::create_dir_all(&data).unwrap();
    // The example, plus a row whose quote is never closed.
    std::fs::write(
        data.join("left.csv"),
        "name,id\n\"Smith, John\",1\nAlice,2\n\"Open, quote,2\n",
    )
    .unwrap();
    std::fs::write(data.join("right.csv"), "cid,amount\n1,10\n2,20\n").unwrap();
    let output = cluster.path("joined");
    let left = format!("left={}", data.join("left").display());
    let right = format!("right={}", data.join("right").display());
    let run = cluster
        .cli(&[
            "submit",
            "join",
            "--input",
            data.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--reducers",
            "1",
            "-D",
            &left,
            "-D",
            &right,
            "-D",
            "left_key=id",
            "-D",
            "right_key=cid",
        ])
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let joined = std::fs::read_to_string(output.join("part-00000")).unwrap();
    assert_eq!(joined, "\"Smith, John\",1,10\nAlice,2,20\n");
    assert_eq!(
        summary_counter(&run.stdout, "join.malformed.rows"),
        Some(1),
        "{}",
        run.stdout
    );
}
