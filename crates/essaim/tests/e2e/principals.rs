//! Principals with roles beside the cluster token: every call is checked against the
//! role its method needs, a job with commands needs the `commands` role, refusals are
//! counted by reason, and a worker's file server asks for the job's capability, which
//! the cluster token is not.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::{Cluster, job_spec, shell_task};
use crate::mapreduce::{coreutils_word_counts, read_word_counts, write_corpus};
use essaim_testkit::http::request;
use std::path::Path;
use std::time::Duration;

const CLUSTER_TOKEN: &str = "cluster-secret";

/// Writes the principals file the coordinator reads.
fn write_principals(dir: &Path) -> std::path::PathBuf {
    let ops_hash = sha256_hex("ops-token");
    let text = format!(
        r#"version = 1

[[principal]]
name = "reader"
token = "reader-token"
roles = ["read-only"]

[[principal]]
name = "ci"
token = "ci-token"
roles = ["submit"]

[[principal]]
name = "ops"
token_sha256 = "{ops_hash}"
roles = ["submit", "commands"]

[[principal]]
name = "agent"
token = "worker-token"
roles = ["worker"]
"#
    );
    let path = dir.join("principals.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The hex SHA-256 of `text`, by `sha256sum`, as an operator computes it.
fn sha256_hex(text: &str) -> String {
    let output = std::process::Command::new("sh")
        .args(["-c", &format!("printf %s '{text}' | sha256sum")])
        .output()
        .unwrap();
    let line = String::from_utf8(output.stdout).unwrap();
    let hash = line.split_whitespace().next().unwrap().to_string();
    assert_eq!(hash.len(), 64, "{line}");
    hash
}

/// Returns the value of the series `name{labels}` in the exposition at `base`.
fn metric(base: &str, series: &str) -> u64 {
    let (status, body) = request(base, "GET", "/metrics", None, None).unwrap();
    assert_eq!(status, 200, "{body}");
    let line = body
        .lines()
        .find(|line| line.starts_with(series))
        .unwrap_or_else(|| panic!("no {series} in\n{body}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

async fn start_cluster(workers: usize) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let principals = write_principals(dir.path());
    let args = ["--principals", principals.to_str().unwrap()];
    let cluster = Cluster::start_with_options(Some(CLUSTER_TOKEN), &args, workers, 1).await;
    (cluster, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_principal_may_do_what_its_roles_allow_and_refusals_are_counted() {
    let (mut cluster, _dir) = start_cluster(1).await;
    let url = cluster.url();
    let grpc = |reason: &str| {
        format!("essaim_auth_refusals_total{{surface=\"grpc\",reason=\"{reason}\"}}")
    };
    let rest = |reason: &str| {
        format!("essaim_auth_refusals_total{{surface=\"rest\",reason=\"{reason}\"}}")
    };
    assert_eq!(metric(&url, &grpc("missing_role")), 0);

    // A read-only principal lists, but may not submit: PERMISSION_DENIED, exit code 3.
    let listed = cluster.cli(&["jobs", "--token", "reader-token"]).await;
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let submitted = cluster
        .cli(&[
            "submit",
            "--token",
            "reader-token",
            "--kind",
            "noop",
            "--count",
            "1",
        ])
        .await;
    assert_eq!(submitted.code, Some(3), "{submitted:?}");
    assert!(
        submitted
            .stderr
            .contains("principal `reader` lacks the role `submit`"),
        "{submitted:?}"
    );
    assert_eq!(metric(&url, &grpc("missing_role")), 1);

    // A submitter without `commands` submits built-in kinds but no command job.
    let noop = cluster
        .cli(&[
            "submit", "--token", "ci-token", "--kind", "noop", "--count", "1",
        ])
        .await;
    assert_eq!(noop.code, Some(0), "{noop:?}");
    let command = cluster
        .cli(&[
            "submit", "--token", "ci-token", "--count", "1", "--", "true",
        ])
        .await;
    assert_eq!(command.code, Some(3), "{command:?}");
    assert!(
        command.stderr.contains("lacks the role `commands`"),
        "{command:?}"
    );
    assert_eq!(metric(&url, &grpc("missing_role")), 2);
    // A streaming MapReduce job runs shell commands too: refused before it runs.
    let corpus = cluster.path("streaming-in");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("a.txt"), "one line\n").unwrap();
    let output = cluster.path("streaming-out");
    let streaming = crate::mapreduce::streaming_args(&corpus, &output, "cat", "cat", &[]);
    let mut args: Vec<&str> = streaming.iter().map(String::as_str).collect();
    args.extend(["--token", "ci-token"]);
    let refused = cluster.cli(&args).await;
    assert_eq!(refused.code, Some(3), "{refused:?}");
    assert!(
        refused.stderr.contains("lacks the role `commands`"),
        "{refused:?}"
    );
    assert!(!output.join("_SUCCESS").exists());
    assert_eq!(metric(&url, &grpc("missing_role")), 3);
    // With `commands` (its token known to the coordinator by hash only), it runs.
    let command = cluster
        .cli(&[
            "submit",
            "--token",
            "ops-token",
            "--wait",
            "--count",
            "1",
            "--",
            "true",
        ])
        .await;
    assert_eq!(command.code, Some(0), "{command:?}");

    // An unknown token is UNAUTHENTICATED, exit code 3.
    let unknown = cluster.cli(&["jobs", "--token", "guess"]).await;
    assert_eq!(unknown.code, Some(3), "{unknown:?}");
    assert!(unknown.stderr.contains("unknown token"), "{unknown:?}");
    assert_eq!(metric(&url, &grpc("unknown_token")), 1);

    // REST: the same roles, as 401 and 403.
    let reader = request(&url, "GET", "/api/v1/jobs", Some("reader-token"), None).unwrap();
    assert_eq!(reader.0, 200, "{reader:?}");
    let purge = r#"{"job_id": 1}"#;
    let refused = request(
        &url,
        "POST",
        "/api/v1/dead-letters/purge",
        Some("ci-token"),
        Some(purge),
    )
    .unwrap();
    assert_eq!(refused.0, 403, "{refused:?}");
    assert!(refused.1.contains("lacks the role `admin`"), "{refused:?}");
    let unknown = request(&url, "GET", "/api/v1/jobs", Some("guess"), None).unwrap();
    assert_eq!(unknown.0, 401, "{unknown:?}");
    assert_eq!(metric(&url, &rest("missing_role")), 1);
    assert_eq!(metric(&url, &rest("unknown_token")), 1);

    // A worker principal registers; it may not submit.
    let agent = cluster.start_worker_with_token(1, Some("worker-token"));
    cluster.wait_for_workers(2).await;
    assert!(
        cluster
            .workers()
            .await
            .iter()
            .any(|worker| worker.name == agent)
    );
    let as_worker = cluster
        .cli(&[
            "submit",
            "--token",
            "worker-token",
            "--kind",
            "noop",
            "--count",
            "1",
        ])
        .await;
    assert_eq!(as_worker.code, Some(3), "{as_worker:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapreduce_runs_with_capabilities_and_the_cluster_token_opens_no_files() {
    let (cluster, _dir) = start_cluster(2).await;

    // Two workers: reducers fetch map outputs from both, with the job's capability.
    let corpus = cluster.path("corpus");
    let inputs = write_corpus(&corpus, 3, 40_000, 5);
    let output = cluster.path("out");
    let run = cluster
        .cli(&[
            "submit",
            "wordcount",
            "--token",
            "ci-token",
            "--input",
            corpus.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--reducers",
            "2",
            "--split-size",
            "32KiB",
        ])
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(read_word_counts(&output, 2), coreutils_word_counts(&inputs));

    // A result too large to travel inline stays on its worker, behind the capability.
    let big = shell_task("head -c 100000 /dev/zero | tr '\\0' x", &[]);
    let job = cluster.submit(job_spec(vec![big], 1)).await;
    let status = cluster.wait_job(job, Duration::from_secs(30)).await;
    assert_eq!(status.state, "succeeded", "{status:?}");
    let results = cluster.results(job).await;
    let file = results[0]
        .output
        .as_ref()
        .and_then(|output| output.file.clone())
        .expect("a file result");
    let (origin, path) = split_url(&file.url);
    let refused = request(origin, "GET", path, Some(CLUSTER_TOKEN), None).unwrap();
    assert_eq!(refused.0, 403, "{refused:?}");
    assert!(refused.1.contains("capability"), "{refused:?}");
    let bad_capability = "essaim_auth_refusals_total{surface=\"files\",reason=\"bad_capability\"}";
    assert_eq!(metric(origin, bad_capability), 1);

    // The results' reader gets the job's capability with them, and the CLI fetches the
    // file with it.
    let downloads = cluster.path("downloads");
    let job_text = job.to_string();
    let fetched = cluster
        .cli(&[
            "results",
            &job_text,
            "--token",
            "ci-token",
            "--download",
            downloads.to_str().unwrap(),
        ])
        .await;
    assert_eq!(fetched.code, Some(0), "{fetched:?}");
    let bytes = std::fs::read(downloads.join("task-00000")).unwrap();
    assert_eq!(bytes, vec![b'x'; 100_000]);
    assert_eq!(metric(origin, bad_capability), 1, "no refusal on the way");
}

/// Splits `http://host:port/path` into `http://host:port` and `/path`.
fn split_url(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").unwrap() + 3;
    let slash = after_scheme + url[after_scheme..].find('/').unwrap();
    (&url[..slash], &url[slash..])
}

/// Rewrites the principals file with one principal, `name` holding `token` with `role`.
fn rewrite_principals(path: &Path, name: &str, token: &str, role: &str) {
    let text = format!(
        "version = 1\n\n[[principal]]\nname = \"{name}\"\ntoken = \"{token}\"\nroles = [\"{role}\"]\n"
    );
    std::fs::write(path, text).unwrap();
}

/// Waits until `essaim jobs --token TOKEN` exits with `code`.
async fn wait_for_jobs_exit(cluster: &Cluster, token: &str, code: i32, what: &str) {
    let deadline = crate::harness::Deadline::after(Duration::from_secs(20), what);
    loop {
        let listed = cluster.cli(&["jobs", "--token", token]).await;
        if listed.code == Some(code) {
            return;
        }
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_principals_file_is_reloaded_and_a_bad_version_changes_nothing() {
    let (cluster, dir) = start_cluster(0).await;
    let url = cluster.url();
    let path = dir.path().join("principals.toml");
    let reloads =
        |outcome: &str| format!("essaim_principals_reloads_total{{outcome=\"{outcome}\"}}");
    assert_eq!(metric(&url, "essaim_principals "), 4);

    // An edit is picked up by itself: the new token works, the removed ones stop.
    rewrite_principals(&path, "auditor", "audit-token", "read-only");
    wait_for_jobs_exit(&cluster, "audit-token", 0, "the edited file in force").await;
    let removed = cluster.cli(&["jobs", "--token", "reader-token"]).await;
    assert_eq!(removed.code, Some(3), "{removed:?}");
    assert_eq!(metric(&url, &reloads("loaded")), 1);
    assert_eq!(metric(&url, "essaim_principals "), 1);

    // A broken version (a typo, then the cluster token given to a principal) is refused
    // and counted; the principals in force stay, even on SIGHUP.
    std::fs::write(&path, "version = 1\n[[principal]]\nname = \"x\"\n").unwrap();
    let deadline = crate::harness::Deadline::after(Duration::from_secs(20), "a refused reload");
    while metric(&url, &reloads("refused")) < 1 {
        deadline.tick().await;
    }
    rewrite_principals(&path, "sneaky", CLUSTER_TOKEN, "read-only");
    cluster.signal_coordinator(nix::sys::signal::Signal::SIGHUP);
    while metric(&url, &reloads("refused")) < 2 {
        deadline.tick().await;
    }
    let kept = cluster.cli(&["jobs", "--token", "audit-token"]).await;
    assert_eq!(kept.code, Some(0), "{kept:?}");
    assert!(
        cluster.coordinator_log().contains("has the cluster token"),
        "the refusal is logged with its reason"
    );

    // SIGHUP reads a fixed file at once, and the coordinator keeps running.
    rewrite_principals(&path, "auditor", "audit-token-2", "read-only");
    cluster.signal_coordinator(nix::sys::signal::Signal::SIGHUP);
    wait_for_jobs_exit(&cluster, "audit-token-2", 0, "the fixed file in force").await;
    let stale = cluster.cli(&["jobs", "--token", "audit-token"]).await;
    assert_eq!(stale.code, Some(3), "{stale:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_with_the_cluster_token_or_a_reserved_name_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("principals.toml");
    let port = crate::harness::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    for (name, token, fragment) in [
        (
            "ops",
            CLUSTER_TOKEN,
            "principal `ops` has the cluster token",
        ),
        ("cluster", "other", "principal name `cluster` is reserved"),
    ] {
        rewrite_principals(&path, name, token, "read-only");
        let started = crate::harness::essaim(&[
            "coordinator",
            "--listen",
            &listen,
            "--data-dir",
            data,
            "--token",
            CLUSTER_TOKEN,
            "--principals",
            path.to_str().unwrap(),
        ])
        .await;
        crate::harness::assert_refused(&started, 2, fragment);
    }
}

/// Submits a no-op job of one task as the holder of `token`; returns its id.
async fn submit_noop_as(cluster: &Cluster, token: &str) -> String {
    let submitted = cluster
        .cli(&[
            "submit", "--token", token, "--kind", "noop", "--count", "1", "--output", "json",
        ])
        .await;
    assert_eq!(submitted.code, Some(0), "{submitted:?}");
    let answer: serde_json::Value = serde_json::from_str(&submitted.stdout).unwrap();
    answer["job_id"].as_u64().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_its_owner_or_an_admin_may_cancel_a_job() {
    // No worker: the jobs stay running.
    let (cluster, _dir) = start_cluster(0).await;
    let url = cluster.url();
    let ci_job = submit_noop_as(&cluster, "ci-token").await;
    let (status, body) = request(
        &url,
        "GET",
        &format!("/api/v1/jobs/{ci_job}"),
        Some("reader-token"),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["job"]["owner"], "ci", "{view:#}");

    // Another submitter may not, over gRPC (exit 3) or REST (403).
    let refused = cluster
        .cli(&["cancel", &ci_job, "--token", "ops-token"])
        .await;
    crate::harness::assert_refused(&refused, 3, "belongs to principal `ci`");
    let path = format!("/api/v1/jobs/{ci_job}/cancel");
    let (status, body) = request(&url, "POST", &path, Some("ops-token"), Some("")).unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        metric(&url, "essaim_coordinator_jobs_submitted_total"),
        1,
        "nothing else was submitted"
    );

    // Its owner may; so may the cluster token (every role) on another principal's job.
    let cancelled = cluster
        .cli(&["cancel", &ci_job, "--token", "ci-token"])
        .await;
    assert_eq!(cancelled.code, Some(0), "{cancelled:?}");
    let ops_job = submit_noop_as(&cluster, "ops-token").await;
    let by_admin = cluster
        .cli(&["cancel", &ops_job, "--token", CLUSTER_TOKEN])
        .await;
    assert_eq!(by_admin.code, Some(0), "{by_admin:?}");
    let (_, body) = request(
        &url,
        "GET",
        &format!("/api/v1/jobs/{ops_job}"),
        Some("reader-token"),
        None,
    )
    .unwrap();
    assert!(body.contains("cancelled by principal `cluster`"), "{body}");
}
