//! TLS on the serving ports: a cluster whose workers serve TLS builds an index and
//! serves it with `essaim index serve` given a certificate. The leaves serve with their
//! workers' certificate and register `https://` addresses with the root, which serves
//! `https://` itself and verifies the leaves with the CA; `essaim query` with the CA
//! answers exactly as the batch index does. A client without the CA is refused at once
//! with words that say what to pass; a plain `http://` query is told to use `https://`.
//! With mutual TLS (workers and root given `--tls-client-ca`), leaves and root require
//! each other's client certificates, and a query without one is refused.
//! Likewise `essaim serve --on-cluster` with a certificate: the replicas load their
//! model from the `https://` registry, serve with their workers' certificate and
//! register `https://` addresses with the front, which answers predictions over TLS.
//! And cache nodes and their proxy given a certificate: a value written through the
//! proxy reaches both nodes over `https://`.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use essaim_cache_runtime::client::NodeClient;
use essaim_serve_runtime::client::HttpClient;
use essaim_tls::ClientTrust;
use essaim_tls::testing::TestCertificates;

use std::path::{Path, PathBuf};

use crate::harness::{
    Cluster, Deadline, EVENTUALLY, Process, assert_refused, essaim, free_port, spawn_essaim,
};
use crate::serve::{batch_answer, index_on_cluster};
use crate::tls::{TLS_CA_VARIABLE, path_text, start_mutual_tls_cluster, start_tls_cluster};

/// Writes a small corpus whose words give queries with many, few and no matches.
fn write_corpus(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    for file in 0..12 {
        // File f holds w0 … w(4 + 3f): later words are in fewer files.
        let words: Vec<String> = (0..300)
            .map(|index| format!("w{}", index % (5 + 3 * file)))
            .collect();
        std::fs::write(dir.join(format!("doc-{file:02}.txt")), words.join(" ")).unwrap();
    }
}

/// Waits until `listing` (a root's `/shards`, a front's `/replicas`) shows two ready
/// entries, and checks that each registered an `https://` address; `process` is the
/// server, whose log a timeout shows.
async fn wait_two_ready_over_https(client: &HttpClient, listing: &str, process: &Process) {
    let deadline = Deadline::after(
        EVENTUALLY,
        format!("two ready entries at {listing}: {}", process.log_text()),
    );
    let entries = loop {
        let view: Vec<serde_json::Value> = client.get_json(listing).await.unwrap_or_default();
        if view.len() == 2 && view.iter().all(|entry| entry["ready"] == true) {
            break view;
        }
        deadline.tick().await;
    };
    for entry in &entries {
        let url = entry["url"].as_str().unwrap();
        assert!(url.starts_with("https://127.0.0.1:"), "{entry}");
    }
}

/// Builds an index of a small corpus on `cluster` and serves it over TLS with
/// `essaim index serve` given `extra` options and `env`; returns the serving process,
/// the root's URL and the index, once both leaves registered `https://` addresses.
async fn serve_index(
    cluster: &Cluster,
    certificates: &TestCertificates,
    extra: &[String],
    env: &[(&str, &str)],
) -> (Process, String, PathBuf) {
    let corpus = cluster.path("corpus");
    write_corpus(&corpus);
    let index = index_on_cluster(cluster, &corpus).await;
    let port = free_port();
    let mut args: Vec<String> = [
        "index",
        "serve",
        "--index",
        index.to_str().unwrap(),
        "--shards",
        "2",
        "--replicas",
        "1",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--coordinator",
        &cluster.url(),
        "--tls-cert",
        &path_text(&certificates.cert),
        "--tls-key",
        &path_text(&certificates.key),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(extra.iter().cloned());
    let serving = spawn_essaim("serve", &args, env, cluster.path("serve.log"));
    let root = format!("https://127.0.0.1:{port}");

    // Every shard's leaf registered with an https:// address, seen through the root
    // (by `essaim query`'s client, with the CA and the client certificate of `env`).
    let mut trust = ClientTrust::from_ca_file(&certificates.ca).unwrap();
    if extra.iter().any(|arg| arg == "--tls-client-ca") {
        trust = trust
            .with_identity(&certificates.client_cert, &certificates.client_key)
            .unwrap();
    }
    let listing = format!("{root}/shards");
    wait_two_ready_over_https(&HttpClient::new(&trust), &listing, &serving).await;
    (serving, root, index)
}

/// Asks `root` queries with `essaim query` and `trust_args`; each answer must be the
/// batch index's.
async fn assert_queries_answer_as_the_batch_index(root: &str, index: &Path, trust_args: &[&str]) {
    for query in ["w0", "w3 w20", "w7 OR w36", "w0 nonexistent"] {
        let mut args = vec!["query", query, "--root", root, "-o", "json"];
        args.extend_from_slice(trust_args);
        let asked = essaim(&args).await;
        assert_eq!(asked.code, Some(0), "{query}: {asked:?}");
        let answer: serde_json::Value = serde_json::from_str(&asked.stdout).unwrap();
        assert_eq!(answer["partial"], false, "{query}: {answer}");
        let documents: Vec<String> = serde_json::from_value(answer["documents"].clone()).unwrap();
        assert_eq!(documents, batch_answer(index, query), "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_served_over_tls_answers_as_the_batch_index() {
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(certificates_dir.path()).unwrap();
    let cluster = start_tls_cluster(&certificates, 2).await;
    let ca = path_text(&certificates.ca);
    let (_serving, root, index) =
        serve_index(&cluster, &certificates, &[], &[(TLS_CA_VARIABLE, &ca)]).await;
    assert_queries_answer_as_the_batch_index(&root, &index, &["--tls-ca", &ca]).await;

    // Without the CA: refused at once, saying what to pass.
    let untrusting = essaim(&["query", "w0", "--root", &root]).await;
    assert_refused(&untrusting, 3, "certificate is not trusted");
    assert_refused(&untrusting, 3, "--tls-ca");
    // A plain-HTTP query of the TLS root is told to use https://.
    let plain_root = root.replace("https://", "http://");
    let plain = essaim(&["query", "w0", "--root", &plain_root]).await;
    assert_refused(&plain, 2, "use an https:// URL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mutual_tls_the_leaves_and_the_root_require_client_certificates() {
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(certificates_dir.path()).unwrap();
    let cluster = start_mutual_tls_cluster(&certificates, 2).await;
    let (ca, cert, key) = (
        path_text(&certificates.ca),
        path_text(&certificates.client_cert),
        path_text(&certificates.client_key),
    );
    // The root requires the leaves' client certificates (their workers'), and the
    // leaves the root's (its --tls-client-cert, here from the environment).
    let require_clients = ["--tls-client-ca".to_string(), ca.clone()];
    let identity = [
        (TLS_CA_VARIABLE, ca.as_str()),
        ("ESSAIM_CLUSTER_TLS_CLIENT_CERT", cert.as_str()),
        ("ESSAIM_CLUSTER_TLS_CLIENT_KEY", key.as_str()),
    ];
    let (_serving, root, index) =
        serve_index(&cluster, &certificates, &require_clients, &identity).await;
    let with_certificate = [
        "--tls-ca",
        &ca,
        "--tls-client-cert",
        &cert,
        "--tls-client-key",
        &key,
    ];
    assert_queries_answer_as_the_batch_index(&root, &index, &with_certificate).await;

    // Without a client certificate: refused, saying what to pass.
    let anonymous = essaim(&["query", "w0", "--root", &root, "--tls-ca", &ca]).await;
    assert_refused(&anonymous, 3, "--tls-client-cert");
}

/// The model whose replicas serve in [`a_model_served_on_a_tls_cluster_answers_over_https`].
const MODEL: &str = "spam-filter";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_served_on_a_tls_cluster_answers_over_https() {
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(certificates_dir.path()).unwrap();
    let cluster = start_tls_cluster(&certificates, 2).await;
    // Registered and aliased over https://, the CA from the cluster's environment.
    crate::model_governance::register(&cluster, &cluster.url(), MODEL).await;
    crate::model_runner::alias(&cluster, MODEL, "production", "1").await;

    let port = free_port();
    let ca = path_text(&certificates.ca);
    let args: Vec<String> = [
        "serve",
        "--on-cluster",
        "--replicas",
        "2",
        "--model",
        "spam-filter@production",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--coordinator",
        &cluster.url(),
        "--tls-cert",
        &path_text(&certificates.cert),
        "--tls-key",
        &path_text(&certificates.key),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let front = spawn_essaim(
        "front",
        &args,
        &[(TLS_CA_VARIABLE, &ca)],
        cluster.path("front.log"),
    );
    let url = format!("https://127.0.0.1:{port}");

    // Both replicas loaded their model from the https:// registry with their worker's
    // trust, serve with its certificate and registered https:// addresses.
    let client = HttpClient::new(&ClientTrust::from_ca_file(&certificates.ca).unwrap());
    wait_two_ready_over_https(&client, &format!("{url}/replicas"), &front).await;

    let texts = ["win money now", "the meeting"];
    let body = serde_json::json!({"inputs": [{
        "name": "text", "shape": [texts.len()], "datatype": "BYTES", "data": texts,
    }]});
    let infer = format!("{url}/v2/models/{MODEL}/infer");
    let answer: serde_json::Value = client.post_json(&infer, &body).await.unwrap();
    assert_eq!(answer["model_version"], "1", "{answer}");
    let labels = answer["outputs"][0]["data"].as_array().unwrap();
    assert_eq!(labels.len(), texts.len(), "{answer}");

    // A client without the CA is refused, with words that say what to pass.
    let untrusting = HttpClient::new(&ClientTrust::system());
    let refused = untrusting
        .post_json::<_, serde_json::Value>(&infer, &body)
        .await;
    let words = refused.unwrap_err().to_string();
    assert!(words.contains("certificate is not trusted"), "{words}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_served_over_tls_replicates_through_its_proxy() {
    let _one_at_a_time = crate::harness::one_at_a_time().await;
    let certificates_dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(certificates_dir.path()).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let serve_tls = [
        "--tls-cert".to_string(),
        path_text(&certificates.cert),
        "--tls-key".to_string(),
        path_text(&certificates.key),
    ];
    let start = |name: &str, mut args: Vec<String>| {
        args.extend(serve_tls.iter().cloned());
        spawn_essaim(name, &args, &[], logs.path().join(format!("{name}.log")))
    };
    let nodes: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let _nodes: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(index, address)| {
            let args = ["cache", "node", "--listen", address].map(String::from);
            start(&format!("cache-node-{index}"), args.to_vec())
        })
        .collect();
    let proxy = format!("127.0.0.1:{}", free_port());
    let args = [
        "cache",
        "proxy",
        "--listen",
        &proxy,
        "--nodes",
        &nodes.join(","),
        "--replicas",
        "2",
        "--tls-ca",
        &path_text(&certificates.ca),
    ]
    .map(String::from);
    let _proxy = start("cache-proxy", args.to_vec());

    // Through the proxy over TLS, once it and its nodes answer.
    let trust = ClientTrust::from_ca_file(&certificates.ca).unwrap();
    let client = NodeClient::over_tls(Duration::from_secs(5), &trust);
    let value = bytes::Bytes::from_static(b"kept over TLS");
    let deadline = Deadline::after(EVENTUALLY, "a PUT through the TLS proxy");
    while client
        .put(&proxy, "key", value.clone(), 0, None, None)
        .await
        .is_err()
    {
        deadline.tick().await;
    }
    let read = client.get(&proxy, "key").await.unwrap().unwrap();
    assert_eq!(read.value, value);
    // Both nodes hold it (R = 2): the proxy wrote to them over https://.
    for node in &nodes {
        let held = client.get(node, "key").await.unwrap();
        assert_eq!(held.map(|held| held.value), Some(value.clone()), "{node}");
    }

    // A client without the CA is refused, with words that say what to pass.
    let untrusting = NodeClient::over_tls(Duration::from_secs(5), &ClientTrust::system());
    let words = untrusting.get(&proxy, "key").await.unwrap_err().to_string();
    assert!(words.contains("certificate is not trusted"), "{words}");
}
