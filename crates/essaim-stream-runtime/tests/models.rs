//! The models of `predict` operators against a real registry on a real socket: loaded
//! at start with their hash checked, an unknown alias and an unreachable registry
//! refused with the reference named, an alias move followed, and a registry that goes
//! away leaving the loaded version predicting (degraded in the metrics).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use essaim_models::naive_bayes::model::NaiveBayes;
use essaim_registry::client::RegistryClient;
use essaim_registry::names::{AliasName, ModelName};
use essaim_registry::record::NewVersion;
use essaim_registry::usage::ReporterKind;
use essaim_registry::{DEFAULT_MAX_ARTIFACT_BYTES, Registry};
use essaim_stream_runtime::models::metrics::ModelMetrics;
use essaim_stream_runtime::models::{ModelLoadError, ModelSource, PipelineModels};
use tokio_util::sync::CancellationToken;

/// A naive Bayes artifact calling `spam_word` spam and `ham_word` ham.
fn artifact(spam_word: &str, ham_word: &str) -> Vec<u8> {
    let documents = BTreeMap::from([("ham".to_string(), 5), ("spam".to_string(), 5)]);
    let occurrences = BTreeMap::from([
        (spam_word.into(), BTreeMap::from([("spam".to_string(), 20)])),
        (ham_word.into(), BTreeMap::from([("ham".to_string(), 20)])),
    ]);
    NaiveBayes::from_counts(1.0, &documents, &occurrences)
        .unwrap()
        .to_bytes()
}

struct Server {
    _dir: tempfile::TempDir,
    url: String,
    stop: CancellationToken,
}

/// A registry holding `mail` versions 1 (`win` is spam) and 2 (`win` is ham), its
/// alias `production` on version 1.
async fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let registry =
        Registry::open(&dir.path().join("registry"), DEFAULT_MAX_ARTIFACT_BYTES).unwrap();
    let router = essaim_registry::http::router(Arc::new(registry));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let shutdown = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    });
    let client = RegistryClient::new(&url, None, "test").unwrap();
    let model = ModelName::parse("mail").unwrap();
    for bytes in [artifact("win", "meeting"), artifact("meeting", "win")] {
        let new = NewVersion {
            artifact: Some(client.upload_bytes(bytes).await.unwrap()),
            ..NewVersion::default()
        };
        client.register(&model, &new).await.unwrap();
    }
    let production = AliasName::parse("production").unwrap();
    client.set_alias(&model, &production, "1").await.unwrap();
    Server {
        _dir: dir,
        url,
        stop,
    }
}

fn source(url: &str, download_dir: &std::path::Path) -> ModelSource {
    ModelSource {
        client: RegistryClient::new(url, None, "pipeline:mail").unwrap(),
        pipeline: "mail".into(),
        download_dir: download_dir.to_path_buf(),
        poll_interval: Duration::from_millis(50),
    }
}

/// The label and version the models predict `text` with now.
fn predicted(models: &PipelineModels, text: &str) -> (String, u64) {
    let current = models.current();
    let (_, model) = &current[0];
    let label = model.predict_batch(&[text]).unwrap().remove(0).label;
    (label, model.version())
}

fn metrics_text(metrics: &ModelMetrics) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_load_follow_their_alias_and_outlive_the_registry() {
    let server = serve().await;
    let downloads = tempfile::tempdir().unwrap();
    let metrics = ModelMetrics::default();

    let unknown = PipelineModels::load(
        source(&server.url, downloads.path()),
        &["mail@nope".to_owned()],
        metrics.clone(),
    )
    .await;
    let Err(error @ ModelLoadError::Registry { .. }) = unknown else {
        panic!("an unknown alias is refused");
    };
    assert_eq!(error.to_string(), "model `mail@nope`");

    let references = ["mail@production".to_owned()];
    let models = PipelineModels::load(
        source(&server.url, downloads.path()),
        &references,
        metrics.clone(),
    )
    .await
    .unwrap();
    let models = Arc::new(models);
    assert_eq!(predicted(&models, "win"), ("spam".into(), 1));
    let stop = CancellationToken::new();
    let follower = tokio::spawn({
        let (models, stop) = (Arc::clone(&models), stop.clone());
        async move { models.follow(stop).await }
    });

    let client = RegistryClient::new(&server.url, None, "test").unwrap();
    let production = AliasName::parse("production").unwrap();
    let model = ModelName::parse("mail").unwrap();
    client.set_alias(&model, &production, "2").await.unwrap();
    wait_until("version 2", || {
        predicted(&models, "win") == ("ham".into(), 2)
    })
    .await;
    let report = models.usage_report(Duration::from_secs(1));
    assert_eq!(report.kind, ReporterKind::Pipeline);
    assert_eq!(report.address, "stream:mail");
    assert_eq!(report.models[0].slots[0].version, Some(2));
    assert!(metrics_text(&metrics).contains(
        "essaim_stream_model_loaded_version{pipeline=\"mail\",model=\"mail@production\"} 2"
    ));

    // The registry goes away: the loaded version predicts on, and the metrics say so.
    server.stop.cancel();
    wait_until("the degraded gauge", || {
        metrics_text(&metrics)
            .contains("essaim_stream_model_registry_reachable{pipeline=\"mail\"} 0")
    })
    .await;
    assert_eq!(predicted(&models, "win"), ("ham".into(), 2));
    stop.cancel();
    follower.await.unwrap();

    let unreachable =
        PipelineModels::load(source(&server.url, downloads.path()), &references, metrics).await;
    let Err(error) = unreachable else {
        panic!("a registry that does not answer at start is an error");
    };
    let chain = essaim_connect::error_chain(&error);
    assert!(
        chain.contains("mail@production") && chain.contains("cannot reach"),
        "{chain}"
    );
    assert_eq!(
        std::fs::read_dir(downloads.path()).unwrap().count(),
        0,
        "no download left"
    );
}
