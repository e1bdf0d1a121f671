//! TLS on every port of a cluster: a coordinator and two workers serving TLS with a
//! certificate of a CA made by the test, a wordcount whose shuffle fetches over
//! `https://` from the workers' file servers, `essaim workers` and `essaim jobs` over
//! `https://`, and clear refusals: a client without the CA, a plain-HTTP client of the
//! TLS port, a mismatched key at start-up. With mutual TLS (`--tls-client-ca`), the
//! same word count runs with the workers and the command line presenting client
//! certificates, and a client without one, or with one another CA signed, is refused
//! at once with words that say what to pass. A renewed certificate written over the
//! files is served to new connections after `SIGHUP`, without a restart, while open
//! connections keep working; a half-written pair is refused and the old one kept.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::{
    Cluster, Deadline, ESSAIM, EVENTUALLY, assert_refused, essaim, essaim_with_env, job_spec,
};
use crate::mapreduce::{coreutils_word_counts, read_word_counts, write_corpus};
use essaim_testkit::cluster::ClusterOptions;
use essaim_tls::testing::TestCertificates;

/// The CLI variable of the CA file (`[cluster] tls_ca`).
pub(crate) const TLS_CA_VARIABLE: &str = "ESSAIM_CLUSTER_TLS_CA";

pub(crate) fn path_text(path: &std::path::Path) -> String {
    path.display().to_string()
}

/// Starts a coordinator and `workers` workers, all serving TLS with `certificates`,
/// the workers and the command line trusting its CA.
pub(crate) async fn start_tls_cluster(certificates: &TestCertificates, workers: usize) -> Cluster {
    let serve_tls = vec![
        "--tls-cert".to_string(),
        path_text(&certificates.cert),
        "--tls-key".to_string(),
        path_text(&certificates.key),
    ];
    let options = ClusterOptions {
        coordinator_args: serve_tls.clone(),
        worker_args: serve_tls,
        env: vec![(TLS_CA_VARIABLE.to_string(), path_text(&certificates.ca))],
        tls_ca: Some(certificates.ca.clone()),
        ..ClusterOptions::new(ESSAIM, workers, 2)
    };
    Cluster::start_with(options).await
}

/// Starts a coordinator and `workers` workers serving TLS that require clients'
/// certificates of the test CA (mutual TLS), the workers and the command line
/// presenting one.
pub(crate) async fn start_mutual_tls_cluster(
    certificates: &TestCertificates,
    workers: usize,
) -> Cluster {
    let serve_mutual_tls = vec![
        "--tls-cert".to_string(),
        path_text(&certificates.cert),
        "--tls-key".to_string(),
        path_text(&certificates.key),
        "--tls-client-ca".to_string(),
        path_text(&certificates.ca),
    ];
    let identity = [
        (TLS_CA_VARIABLE, &certificates.ca),
        ("ESSAIM_CLUSTER_TLS_CLIENT_CERT", &certificates.client_cert),
        ("ESSAIM_CLUSTER_TLS_CLIENT_KEY", &certificates.client_key),
    ];
    let options = ClusterOptions {
        coordinator_args: serve_mutual_tls.clone(),
        worker_args: serve_mutual_tls,
        env: identity
            .iter()
            .map(|(name, path)| (name.to_string(), path_text(path)))
            .collect(),
        tls_ca: Some(certificates.ca.clone()),
        tls_identity: Some((
            certificates.client_cert.clone(),
            certificates.client_key.clone(),
        )),
        ..ClusterOptions::new(ESSAIM, workers, 2)
    };
    Cluster::start_with(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_serving_tls_runs_wordcount_and_answers_clients_over_https() {
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(certificates_dir.path()).unwrap();
    let cluster = start_tls_cluster(&certificates, 2).await;
    let url = cluster.url();
    assert!(url.starts_with("https://"), "{url}");

    // A wordcount with three reducers over two workers: reducers fetch map outputs
    // from both workers' file servers, over TLS.
    let inputs = write_corpus(&cluster.path("corpus"), 3, 200_000, 11);
    let oracle = coreutils_word_counts(&inputs);
    let output = cluster.path("counts");
    let corpus = path_text(&cluster.path("corpus"));
    let run = cluster
        .cli(&[
            "submit",
            "wordcount",
            "--input",
            &corpus,
            "--reducers",
            "3",
            "--split-size",
            "64KiB",
            "--output",
            output.to_str().unwrap(),
        ])
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(read_word_counts(&output, 3), oracle);
    let worker_logs: String = cluster
        .worker_names()
        .iter()
        .map(|name| std::fs::read_to_string(cluster.path(&format!("{name}.log"))).unwrap())
        .collect();
    assert!(
        worker_logs.contains("file_server_url=https://127.0.0.1:"),
        "the workers advertise https:// file URLs:\n{worker_logs}"
    );

    // The read verbs, over gRPC and REST, with the CA from the environment.
    let workers = cluster.cli(&["workers"]).await;
    assert_eq!(workers.code, Some(0), "{workers:?}");
    for name in cluster.worker_names() {
        assert!(workers.stdout.contains(&name), "{name}: {workers:?}");
    }
    let jobs = cluster.cli(&["jobs"]).await;
    assert_eq!(jobs.code, Some(0), "{jobs:?}");
    assert!(jobs.stdout.contains("wordcount"), "{jobs:?}");
    let status = cluster.cli(&["cluster", "status"]).await;
    assert_eq!(status.code, Some(0), "{status:?}");
    // The CA as a flag works as the variable does.
    let ca = path_text(&certificates.ca);
    let flagged = essaim(&["workers", "--coordinator", &url, "--tls-ca", &ca]).await;
    assert_eq!(flagged.code, Some(0), "{flagged:?}");
    // The model registry's verbs too (their own connection options).
    let models = essaim(&["models", "list", "--coordinator", &url, "--tls-ca", &ca]).await;
    assert_eq!(models.code, Some(0), "{models:?}");

    // A client without the CA is refused at once (no minute of retries) with words
    // that say what to pass.
    let untrusting = essaim_with_env(&["workers"], &[("ESSAIM_COORDINATOR", &url)]).await;
    assert_refused(&untrusting, 3, "certificate is not trusted");
    assert_refused(&untrusting, 3, "--tls-ca");
    assert!(!untrusting.stderr.contains("retrying"), "{untrusting:?}");
    let other_ca = path_text(&certificates.other_ca);
    let wrong_ca = essaim(&["jobs", "--coordinator", &url, "--tls-ca", &other_ca]).await;
    assert_refused(&wrong_ca, 3, "certificate is not trusted");

    // A plain-HTTP client of the TLS port is told to use https://.
    let plain_url = url.replace("https://", "http://");
    let (status, body) =
        essaim_testkit::http::request(&plain_url, "GET", "/api/v1/workers", None, None).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("use an https:// URL"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mutual_tls_only_clients_with_a_certificate_of_the_client_ca_are_served() {
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(certificates_dir.path()).unwrap();
    let cluster = start_mutual_tls_cluster(&certificates, 2).await;
    let url = cluster.url();

    // Workers register, pull and fetch each other's map outputs with their certificate.
    let inputs = write_corpus(&cluster.path("corpus"), 2, 100_000, 5);
    let oracle = coreutils_word_counts(&inputs);
    let output = cluster.path("counts");
    let corpus = path_text(&cluster.path("corpus"));
    let run = cluster
        .cli(&[
            "submit",
            "wordcount",
            "--input",
            &corpus,
            "--reducers",
            "2",
            "--split-size",
            "64KiB",
            "--output",
            output.to_str().unwrap(),
        ])
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(read_word_counts(&output, 2), oracle);

    // Without a client certificate, or with a stranger's: refused, saying what to pass
    // (within a try or two: the server's alert may come after the connection is seen
    // to close, which looks like an outage).
    let ca = path_text(&certificates.ca);
    let anonymous = essaim(&["workers", "--coordinator", &url, "--tls-ca", &ca]).await;
    assert_refused(&anonymous, 3, "--tls-client-cert");
    let stranger = essaim(&[
        "jobs",
        "--coordinator",
        &url,
        "--tls-ca",
        &ca,
        "--tls-client-cert",
        &path_text(&certificates.stranger_cert),
        "--tls-client-key",
        &path_text(&certificates.stranger_key),
    ])
    .await;
    assert_refused(&stranger, 3, "--tls-client-cert");
    // With the certificate as flags, the same verb works.
    let known = essaim(&[
        "jobs",
        "--coordinator",
        &url,
        "--tls-ca",
        &ca,
        "--tls-client-cert",
        &path_text(&certificates.client_cert),
        "--tls-client-key",
        &path_text(&certificates.client_key),
    ])
    .await;
    assert_eq!(known.code, Some(0), "{known:?}");
    assert!(known.stdout.contains("wordcount"), "{known:?}");
    // A certificate without its key is a usage error.
    let half = essaim(&[
        "jobs",
        "--coordinator",
        &url,
        "--tls-client-cert",
        &path_text(&certificates.client_cert),
    ])
    .await;
    assert_refused(&half, 2, "--tls-client-key");
}

#[tokio::test]
async fn a_missing_or_mismatched_certificate_stops_the_start_naming_the_file() {
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(certificates_dir.path()).unwrap();
    let data_dir = certificates_dir.path().join("data");
    let data = path_text(&data_dir);
    let cert = path_text(&certificates.cert);
    let other_key = path_text(&certificates.other_key);
    let mismatched = essaim(&[
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data,
        "--tls-cert",
        &cert,
        "--tls-key",
        &other_key,
    ])
    .await;
    assert_refused(&mismatched, 2, "other.key");
    assert_refused(&mismatched, 2, "does not go with the certificate");
    let missing = certificates_dir.path().join("missing.pem");
    let missing = path_text(&missing);
    let key = path_text(&certificates.key);
    let worker = essaim(&["worker", "--tls-cert", &missing, "--tls-key", &key]).await;
    assert_refused(&worker, 2, "missing.pem");
    let client = essaim(&["jobs", "--tls-ca", &missing]).await;
    assert_refused(&client, 2, "missing.pem");
    let alone = essaim(&["worker", "--tls-cert", &cert]).await;
    assert_eq!(alone.code, Some(2), "{alone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_refused() {
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(certificates_dir.path()).unwrap();
    // The renewal comes from another CA, so that which certificate a client got shows.
    let renewed_dir = tempfile::tempdir().unwrap();
    let renewed = TestCertificates::generate(renewed_dir.path()).unwrap();
    let cluster = start_tls_cluster(&certificates, 1).await;
    let url = cluster.url();
    let (old_ca, new_ca) = (path_text(&certificates.ca), path_text(&renewed.ca));
    let workers_trusting = |ca: String| {
        let url = url.clone();
        async move { essaim(&["workers", "--coordinator", &url, "--tls-ca", &ca]).await }
    };
    let before = workers_trusting(new_ca.clone()).await;
    assert_refused(&before, 3, "certificate is not trusted");

    // Half written (the new certificate beside the old key): refused, logged, and the
    // old pair keeps serving.
    std::fs::copy(&renewed.cert, &certificates.cert).unwrap();
    cluster.signal_coordinator(nix::sys::signal::Signal::SIGHUP);
    let deadline = Deadline::after(EVENTUALLY, "the half-written pair refused");
    while !cluster
        .coordinator_log()
        .contains("new TLS certificate refused; the previous one keeps serving")
    {
        deadline.tick().await;
    }
    let kept = workers_trusting(old_ca.clone()).await;
    assert_eq!(kept.code, Some(0), "{kept:?}");

    // Complete: new connections get the renewed certificate, on SIGHUP.
    std::fs::copy(&renewed.key, &certificates.key).unwrap();
    cluster.signal_coordinator(nix::sys::signal::Signal::SIGHUP);
    let deadline = Deadline::after(EVENTUALLY, "the renewed certificate served");
    while workers_trusting(new_ca.clone()).await.code != Some(0) {
        deadline.tick().await;
    }
    let old = workers_trusting(old_ca).await;
    assert_refused(&old, 3, "certificate is not trusted");
    assert!(
        cluster
            .coordinator_log()
            .contains("TLS certificate reloaded"),
        "{}",
        cluster.coordinator_log()
    );

    // Connections opened before the renewal (the test's own client, the worker's, both
    // trusting only the old CA) still work: a job is submitted, pulled and reported.
    let noop = essaim_proto::v1::TaskSpec {
        kind: "noop".into(),
        ..Default::default()
    };
    let job_id = cluster.submit(job_spec(vec![noop], 1)).await;
    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "succeeded", "{job:?}");
}
