//! Client certificates naming principals: on a coordinator requiring client
//! certificates (`--tls-client-ca`) with a principals file and no token anywhere, a
//! worker whose certificate's common name is a `worker` principal's registers, pulls
//! and reports by its certificate alone; a client whose certificate names a `read-only`
//! principal lists jobs (gRPC and REST) but is refused a submission (PERMISSION_DENIED,
//! HTTP 403); a certificate the CA signed whose name no principal has is refused
//! (UNAUTHENTICATED, HTTP 401) with the name it carries, and counted.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::{Cluster, ESSAIM, assert_refused, essaim};
use crate::tls::{TLS_CA_VARIABLE, path_text};
use essaim_testkit::cluster::ClusterOptions;
use essaim_tls::testing::TestCertificates;
use std::path::{Path, PathBuf};

/// The principals, each known by the common name of its client certificates only.
const PRINCIPALS: &str = r#"version = 1

[[principal]]
name = "reader"
certificate = "essaim-reader"
roles = ["read-only"]

[[principal]]
name = "ci"
certificate = "essaim-ci"
roles = ["submit"]

[[principal]]
name = "agents"
certificate = "essaim-worker"
roles = ["worker"]
"#;

/// A client certificate of the test CA and its key.
struct Identity {
    cert: String,
    key: String,
}

impl Identity {
    fn issue(certificates: &TestCertificates, common_name: &str) -> Self {
        let (cert, key) = certificates.issue_client(common_name).unwrap();
        Self {
            cert: path_text(&cert),
            key: path_text(&key),
        }
    }

    /// The CLI's flags presenting this certificate.
    fn flags<'a>(&'a self, ca: &'a str) -> [&'a str; 6] {
        [
            "--tls-ca",
            ca,
            "--tls-client-cert",
            &self.cert,
            "--tls-client-key",
            &self.key,
        ]
    }
}

/// Starts a coordinator requiring client certificates, with `principals` and no
/// token, and one worker presenting `worker`'s certificate and no token either; the
/// cluster's own client presents `observer`'s.
async fn start_cluster(
    certificates: &TestCertificates,
    principals: &Path,
    worker: &Identity,
    observer: (PathBuf, PathBuf),
) -> Cluster {
    let coordinator_args: Vec<String> = [
        "--tls-cert",
        &path_text(&certificates.cert),
        "--tls-key",
        &path_text(&certificates.key),
        "--tls-client-ca",
        &path_text(&certificates.ca),
        "--principals",
        &path_text(principals),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let env = [
        (TLS_CA_VARIABLE, path_text(&certificates.ca)),
        ("ESSAIM_CLUSTER_TLS_CLIENT_CERT", worker.cert.clone()),
        ("ESSAIM_CLUSTER_TLS_CLIENT_KEY", worker.key.clone()),
    ];
    let options = ClusterOptions {
        coordinator_args,
        env: env
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect(),
        tls_ca: Some(certificates.ca.clone()),
        tls_identity: Some(observer),
        ..ClusterOptions::new(ESSAIM, 1, 2)
    };
    Cluster::start_with(options).await
}

/// Calls the REST API at `url` with curl presenting `identity`; returns the status and
/// the body.
async fn curl(url: &str, ca: &str, identity: &Identity, method: &str, body: &str) -> (u16, String) {
    let mut command = tokio::process::Command::new("curl");
    // HTTP/1.1: over HTTP/2, curl may report a refusal answered before it finished
    // sending the body as a reset stream instead of the answer.
    command.args([
        "--http1.1",
        "--silent",
        "--show-error",
        "--cacert",
        ca,
        "--cert",
        &identity.cert,
        "--key",
        &identity.key,
        "--request",
        method,
        "--write-out",
        "\n%{http_code}",
        url,
    ]);
    if !body.is_empty() {
        command.args(["--header", "content-type: application/json", "--data", body]);
    }
    let output = command.output().await.expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = status.trim().parse().unwrap_or(0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(
        status, 0,
        "curl {method} {url} got no answer: {text}\n{stderr}"
    );
    (status, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_name_principals_without_any_token() {
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(certificates_dir.path()).unwrap();
    let principals = certificates_dir.path().join("principals.toml");
    std::fs::write(&principals, PRINCIPALS).unwrap();
    let worker = Identity::issue(&certificates, "essaim-worker");
    let reader = Identity::issue(&certificates, "essaim-reader");
    let ci = Identity::issue(&certificates, "essaim-ci");
    let stranger = Identity::issue(&certificates, "mallory");
    let observer = (PathBuf::from(&reader.cert), PathBuf::from(&reader.key));
    // Started, the cluster has seen its worker register by its certificate alone.
    let cluster = start_cluster(&certificates, &principals, &worker, observer).await;
    let url = cluster.url();
    let ca = path_text(&certificates.ca);
    let cli = |identity: &Identity, args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        all.extend(["--coordinator".to_string(), url.clone()]);
        all.extend(identity.flags(&ca).map(str::to_string));
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            essaim(&all).await
        }
    };

    // A submitter's certificate submits; the worker pulls and reports by its own.
    let submitted = cli(&ci, &["submit", "--kind", "noop", "--count", "3", "--wait"]).await;
    assert_eq!(submitted.code, Some(0), "{submitted:?}");

    // The read-only principal's certificate lists jobs, over gRPC and REST…
    let listed = cli(&reader, &["jobs"]).await;
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let jobs_url = format!("{url}/api/v1/jobs");
    let (status, body) = curl(&jobs_url, &ca, &reader, "GET", "").await;
    assert_eq!(status, 200, "{body}");
    // …but may not submit: PERMISSION_DENIED (exit code 3), HTTP 403.
    let refused = cli(&reader, &["submit", "--kind", "noop", "--count", "1"]).await;
    assert_refused(&refused, 3, "principal `reader` lacks the role `submit`");
    let job = r#"{"name": "x", "tasks": [{"kind": "noop"}]}"#;
    let (status, body) = curl(&jobs_url, &ca, &reader, "POST", job).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("lacks the role `submit`"), "{body}");

    // A certificate of the CA naming no principal: UNAUTHENTICATED, naming the name.
    let unknown = cli(&stranger, &["jobs"]).await;
    assert_refused(&unknown, 3, "`CN=mallory` names no principal");
    let (status, body) = curl(&jobs_url, &ca, &stranger, "GET", "").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("CN=mallory"), "{body}");
    let (status, metrics) = curl(&format!("{url}/metrics"), &ca, &reader, "GET", "").await;
    assert_eq!(status, 200);
    for surface in ["grpc", "rest"] {
        let series = format!(
            "essaim_auth_refusals_total{{surface=\"{surface}\",reason=\"unknown_certificate\"}}"
        );
        let counted = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .map(|value| value.trim().parse::<u64>().unwrap());
        assert!(counted >= Some(1), "{series}: {counted:?}");
    }

    // A token still decides beside a certificate: the worker's certificate with an
    // unknown token is refused for the token.
    let with_token = cli(&worker, &["jobs", "--token", "guess"]).await;
    assert_refused(&with_token, 3, "unknown token");
}
