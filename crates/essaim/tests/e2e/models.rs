//! The model registry served by a real coordinator process, driven by `essaim models`:
//! versions and aliases, two promotions racing (serialised, both audited), "which
//! version did the alias name at T", the cluster token, a corrupt artifact refused,
//! clear errors with the right exit codes, and a restart that loses nothing.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::{Cluster, assert_refused, essaim};
use serde_json::Value;

fn json(output: &crate::harness::CliOutput) -> Value {
    assert_eq!(output.code, Some(0), "{output:?}");
    serde_json::from_str(&output.stdout).unwrap_or_else(|error| panic!("{error}: {output:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_versions_aliases_and_audits_through_the_coordinator() {
    let mut cluster = Cluster::start_with_token(Some("secret"), 0, 1).await;
    let first = cluster.path("first.bin");
    let second = cluster.path("second.bin");
    std::fs::write(&first, b"model bytes one").unwrap();
    std::fs::write(&second, b"model bytes two").unwrap();
    for (file, accuracy) in [(&first, "0.91"), (&second, "0.93")] {
        let metric = format!("accuracy={accuracy}");
        let args = [
            "models",
            "register",
            "spam-filter",
            "--artifact",
            file.to_str().unwrap(),
        ];
        let registered = json(
            &cluster
                .cli(&[&args[..], &["--metric", &metric, "--output", "json"]].concat())
                .await,
        );
        assert_eq!(
            registered["metrics"]["accuracy"],
            accuracy.parse::<f64>().unwrap()
        );
    }
    let staged = json(
        &cluster
            .cli(&[
                "models",
                "alias",
                "spam-filter",
                "staging",
                "2",
                "--output",
                "json",
            ])
            .await,
    );
    assert_eq!(staged["version"], 2);
    let promoted = json(
        &cluster
            .cli(&["models", "promote", "spam-filter", "--output", "json"])
            .await,
    );
    assert_eq!(
        (
            promoted["version"].as_u64(),
            promoted["from_version"].as_u64()
        ),
        (Some(2), None)
    );
    let between = promoted["at_unix_ms"].as_u64().unwrap();

    // Two promotions of one alias at once: both succeed, one after the other.
    let (one, two) = tokio::join!(
        cluster.cli(&["models", "promote", "spam-filter", "1", "--actor", "alice"]),
        cluster.cli(&["models", "promote", "spam-filter", "2", "--actor", "bob"]),
    );
    assert_eq!((one.code, two.code), (Some(0), Some(0)), "{one:?}\n{two:?}");
    let moves = json(
        &cluster
            .cli(&[
                "models",
                "audit",
                "spam-filter",
                "--alias",
                "production",
                "--output",
                "json",
            ])
            .await,
    );
    let moves = moves.as_array().unwrap();
    assert_eq!(moves.len(), 3, "{moves:#?}");
    let actors: Vec<&str> = moves[1..]
        .iter()
        .map(|m| m["actor"].as_str().unwrap())
        .collect();
    assert!(
        actors.contains(&"alice") && actors.contains(&"bob"),
        "{actors:?}"
    );
    for pair in moves.windows(2) {
        assert_eq!(pair[1]["from_version"], pair[0]["version"], "{moves:#?}");
    }
    let now = json(
        &cluster
            .cli(&[
                "models",
                "show",
                "spam-filter@production",
                "--output",
                "json",
            ])
            .await,
    );
    assert_eq!(now["version"], moves[2]["version"]);

    // What production named just after the first promotion, in ms and as a UTC time.
    let at = between.to_string();
    let answer = json(
        &cluster
            .cli(&[
                "models",
                "audit",
                "spam-filter",
                "--alias",
                "production",
                "--at",
                &at,
                "--output",
                "json",
            ])
            .await,
    );
    assert_eq!(answer["version"], 2);
    let before = cluster
        .cli(&[
            "models",
            "audit",
            "spam-filter",
            "--alias",
            "production",
            "--at",
            "2001-01-01T00:00:00Z",
        ])
        .await;
    assert!(before.stdout.contains("named no version"), "{before:?}");

    // The cluster token is required, as on the rest of the API.
    let url = cluster.url();
    let anonymous = essaim(&["models", "list", "--coordinator", &url]).await;
    assert_refused(&anonymous, 3, "token");

    // Clear errors, exit code 2 for the caller's mistakes.
    assert_refused(
        &cluster.cli(&["models", "show", "ham"]).await,
        2,
        "unknown model `ham`",
    );
    assert_refused(
        &cluster
            .cli(&["models", "show", "spam-filter@champion"])
            .await,
        2,
        "no alias `champion`",
    );
    assert_refused(
        &cluster.cli(&["models", "show", "spam-filter@7"]).await,
        2,
        "no version 7",
    );
    assert_refused(
        &cluster.cli(&["models", "show", "../etc"]).await,
        2,
        "invalid model name",
    );
    assert_refused(
        &cluster
            .cli(&["models", "rollback", "spam-filter", "staging"])
            .await,
        2,
        "no earlier version",
    );
    let missing = cluster.path("missing.bin");
    let register_missing = [
        "models",
        "register",
        "m",
        "--artifact",
        missing.to_str().unwrap(),
    ];
    assert_refused(&cluster.cli(&register_missing).await, 2, "no such file");

    // A corrupt artifact is refused at load, and nothing is written.
    let version_one = json(
        &cluster
            .cli(&["models", "show", "spam-filter@1", "--output", "json"])
            .await,
    );
    let sha = version_one["artifact"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let stored = cluster
        .path("coordinator-data/registry/artifacts/sha256")
        .join(&sha[..2])
        .join(&sha);
    std::fs::write(&stored, b"model bytes 0ne").unwrap();
    let out = cluster.path("downloaded.bin");
    let download = [
        "models",
        "download",
        "spam-filter@1",
        "--out",
        out.to_str().unwrap(),
    ];
    assert_refused(&cluster.cli(&download).await, 1, "corrupt");
    assert!(!out.exists());

    // A restarted coordinator serves the same registry.
    cluster.kill_coordinator();
    cluster.restart_coordinator().await;
    let log = json(
        &cluster
            .cli(&["models", "audit", "spam-filter", "--output", "json"])
            .await,
    );
    assert_eq!(log.as_array().unwrap().len(), 6, "{log:#?}");
    let listed = json(&cluster.cli(&["models", "list", "--output", "json"]).await);
    assert_eq!(listed[0]["aliases"]["staging"], 2);
}
