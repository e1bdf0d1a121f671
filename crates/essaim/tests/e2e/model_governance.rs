//! The governance view with real processes: a runner (`essaim serve`) reports the
//! versions it serves as a heartbeat, and `essaim models list --usage` (JSON and text)
//! and the dashboard's Models page (in headless Chromium) show which runner serves
//! which version of which model, with its stage and metrics; an alias moved is
//! reported by the runner at its next beat; a runner killed with SIGKILL drops out once
//! it missed three heartbeats; and two registries (two coordinators, one per project)
//! are read side by side, each row naming its registry.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::dashboard::{Browser, assert_has, find_chromium};
use crate::harness::{Cluster, Deadline, EVENTUALLY, Process, free_port, spawn_essaim};
use crate::model_runner::{alias, artifact, start_runner, wait_ready};
use essaim_testkit::process::http_status;
use serde_json::Value;
use std::time::{Duration, Instant};

const RUNNER: &str = "governed-runner";
/// The runner's heartbeat: the registry forgets it three beats after its last.
const BEAT: Duration = Duration::from_millis(500);

/// Registers versions 1 and 2 of `model` with an accuracy each in the registry of the
/// coordinator at `url`.
pub(crate) async fn register(cluster: &Cluster, url: &str, model: &str) {
    for (number, bytes, accuracy) in [
        (1, artifact("win", "meeting"), "0.91"),
        (2, artifact("meeting", "win"), "0.93"),
    ] {
        let path = cluster.path(&format!("{model}-{number}.json"));
        std::fs::write(&path, bytes).unwrap();
        let metric = format!("accuracy={accuracy}");
        let registered = cluster
            .cli(&[
                "models",
                "register",
                "--coordinator",
                url,
                model,
                "--artifact",
                path.to_str().unwrap(),
                "--metric",
                &metric,
            ])
            .await;
        assert_eq!(registered.code, Some(0), "{registered:?}");
    }
}

/// Starts a second coordinator, another project's, with a registry of its own (the
/// test kit runs one cluster at a time); returns it and its URL once ready.
async fn second_registry(cluster: &Cluster) -> (Process, String) {
    let port = free_port();
    let args: Vec<String> = [
        "coordinator",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        cluster.path("project-b").to_str().unwrap(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let process = spawn_essaim("project-b", &args, &[], cluster.path("project-b.log"));
    let deadline = Deadline::after(EVENTUALLY, "the second coordinator ready");
    while http_status(port, "/readyz").await != Some(200) {
        deadline.tick().await;
    }
    (process, format!("http://127.0.0.1:{port}"))
}

/// Returns `essaim models list --usage -o json` with `extra` arguments.
pub(crate) async fn governance(cluster: &Cluster, extra: &[&str]) -> Value {
    let mut args = vec!["models", "list", "--usage", "-o", "json"];
    args.extend(extra);
    let listed = cluster.cli(&args).await;
    assert_eq!(listed.code, Some(0), "{listed:?}");
    serde_json::from_str(&listed.stdout).unwrap()
}

/// Returns the runners that serve `model`'s `version`, as the view says.
pub(crate) fn served_by(view: &Value, model: &str, version: u64) -> Vec<String> {
    let Some(model) = view["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["name"] == model)
    else {
        return vec![];
    };
    let Some(version) = model["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["version"] == version)
    else {
        return vec![];
    };
    version["used_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|used| used["runner"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `essaim models list --usage` says `done`; returns that view.
pub(crate) async fn wait_for_view(
    cluster: &Cluster,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Deadline::after(EVENTUALLY, what.to_string());
    loop {
        let view = governance(cluster, &[]).await;
        if done(&view) {
            return view;
        }
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_governance_view_follows_runners_alias_moves_and_a_killed_runner() {
    let cluster = Cluster::start(0, 1).await;
    register(&cluster, &cluster.url(), "spam-filter").await;
    alias(&cluster, "spam-filter", "production", "1").await;
    let port = free_port();
    let beat = format!("{}ms", BEAT.as_millis());
    let mut runner = start_runner(
        &cluster,
        RUNNER,
        port,
        &[
            "--model",
            "spam-filter@production",
            "--name",
            RUNNER,
            "--usage-interval",
            &beat,
        ],
    );
    wait_ready(port, &runner).await;

    let view = wait_for_view(&cluster, "the runner serving version 1", |view| {
        served_by(view, "spam-filter", 1) == [RUNNER]
    })
    .await;
    let model = &view["models"][0];
    assert_eq!(model["registry"], cluster.url(), "{view:#}");
    assert_eq!(model["aliases"]["production"], 1, "{view:#}");
    let versions = model["versions"].as_array().unwrap();
    assert_eq!(versions[0]["version"], 2, "newest first: {view:#}");
    assert_eq!(versions[1]["stage"], "production", "{view:#}");
    assert_eq!(versions[1]["metrics"]["accuracy"], 0.91, "{view:#}");
    let used = &versions[1]["used_by"][0];
    assert_eq!(used["reference"], "spam-filter@production", "{view:#}");
    assert_eq!(used["role"], "primary", "{view:#}");
    assert_eq!(
        used["address"],
        format!("http://127.0.0.1:{port}"),
        "{view:#}"
    );
    assert!(served_by(&view, "spam-filter", 2).is_empty(), "{view:#}");
    assert_eq!(view["runners"][0]["runner"], RUNNER, "{view:#}");

    let text = cluster.cli(&["models", "list", "--usage"]).await;
    assert_eq!(text.code, Some(0), "{text:?}");
    let row = text
        .stdout
        .lines()
        .find(|line| line.contains("spam-filter") && line.contains(RUNNER))
        .unwrap_or_else(|| panic!("no row of the runner: {text:?}"));
    assert!(row.starts_with(&cluster.url()), "{row}");
    assert!(row.contains("production"), "{row}");
    assert!(row.contains("accuracy=0.9100"), "{row}");

    // The dashboard's Models page, in a real browser.
    if let Some(binary) = find_chromium() {
        let browser = Browser::new(binary, cluster.path("chromium-profile"));
        let dom = browser
            .render(&format!("{}/ui/#/models", cluster.url()), "models")
            .await;
        assert_has(&dom, "data-model-panel=\"spam-filter\"", "models");
        assert_has(&dom, "data-used-by=\"governed-runner\"", "models");
        assert_has(&dom, "data-served-by=\"governed-runner\"", "models");
        assert_has(&dom, "data-runner=\"governed-runner\"", "models");
        assert_has(&dom, "accuracy 0.9100", "models");
        assert_has(&dom, "stage-production", "models");
    }

    // The alias moves: the runner loads version 2 and says so at its next beat.
    alias(&cluster, "spam-filter", "production", "2").await;
    wait_for_view(&cluster, "the runner serving version 2", |view| {
        served_by(view, "spam-filter", 2) == [RUNNER]
            && served_by(view, "spam-filter", 1).is_empty()
    })
    .await;

    // A second project's registry, read beside the first.
    let (_other, other_url) = second_registry(&cluster).await;
    register(&cluster, &other_url, "fraud").await;
    let registries = format!("{},{other_url}", cluster.url());
    let both = governance(&cluster, &["--registry", &registries]).await;
    let rows: Vec<(String, String)> = both["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let registry = row["registry"].as_str().unwrap().to_string();
            (registry, row["name"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(
        rows,
        [
            (cluster.url(), "spam-filter".to_string()),
            (other_url.clone(), "fraud".to_string())
        ],
        "{both:#}"
    );
    assert_eq!(both["runners"][0]["registry"], cluster.url(), "{both:#}");
    assert_eq!(both["unreachable"], serde_json::json!([]), "{both:#}");
    // A registry that does not answer is named; the others are still shown.
    let dead = format!("{},http://127.0.0.1:{}", cluster.url(), free_port());
    let partial = cluster
        .cli(&[
            "models",
            "list",
            "--usage",
            "-o",
            "json",
            "--registry",
            &dead,
        ])
        .await;
    assert_eq!(partial.code, Some(1), "{partial:?}");
    let partial_view: Value = serde_json::from_str(&partial.stdout).unwrap();
    assert_eq!(
        partial_view["models"][0]["name"], "spam-filter",
        "{partial:?}"
    );
    assert_eq!(
        partial_view["unreachable"].as_array().unwrap().len(),
        1,
        "{partial:?}"
    );

    // SIGKILL: no withdrawal; the report expires three beats after the last one.
    runner.kill();
    let killed = Instant::now();
    wait_for_view(&cluster, "the killed runner gone", |view| {
        view["runners"].as_array().unwrap().is_empty()
            && served_by(view, "spam-filter", 2).is_empty()
    })
    .await;
    let gone_after = killed.elapsed();
    // Its last report arrived at most one beat (and a request) before the kill.
    assert!(
        gone_after >= BEAT,
        "gone {gone_after:?} after the kill: sooner than three beats after its last report"
    );
}
