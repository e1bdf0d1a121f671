//! The custom binary runs its own job on an embedded local cluster of its own worker
//! processes, and the output matches a direct count.

use std::collections::BTreeMap;
use std::process::Command;

#[test]
fn bigrams_run_on_a_local_cluster_of_this_binary() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let mut text = String::new();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for line in 0..5_000u64 {
        let words: Vec<String> = (0..6)
            .map(|i| format!("w{}", (line * 7 + i * 3) % 11))
            .collect();
        for pair in words.windows(2) {
            *expected
                .entry(format!("{} {}", pair[0], pair[1]))
                .or_default() += 1;
        }
        text.push_str(&words.join(" "));
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let output = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_bigrams"))
        .args([
            "run",
            "bigrams",
            "--reducers",
            "2",
            "--split-size",
            "16KiB",
            "--input",
        ])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(output.join("_SUCCESS").is_file());
    let mut actual = BTreeMap::new();
    for part in ["part-00000", "part-00001"] {
        for line in std::fs::read_to_string(output.join(part)).unwrap().lines() {
            let (pair, count) = line.rsplit_once('\t').unwrap();
            actual.insert(pair.to_string(), count.parse::<u64>().unwrap());
        }
    }
    assert_eq!(actual, expected);
}
