//! Runners' usage reports through the HTTP API and the Rust client, on a real socket:
//! a heartbeat shows in `GET usage` and in the governance view beside the version it
//! names, a withdrawal removes it at once, a report that stops expires after three
//! beats, and a malformed one is refused with a clear error.
#![allow(clippy::unwrap_used)]

use essaim_registry::client::{ClientError, RegistryClient};
use essaim_registry::names::{AliasName, ModelName};
use essaim_registry::record::NewVersion;
use essaim_registry::usage::{ServedUsage, SlotUsage, UsageReport};
use essaim_registry::{DEFAULT_MAX_ARTIFACT_BYTES, Registry};
use std::sync::Arc;
use std::time::Duration;

async fn serve() -> (tempfile::TempDir, RegistryClient) {
    let dir = tempfile::tempdir().unwrap();
    let registry =
        Registry::open(&dir.path().join("registry"), DEFAULT_MAX_ARTIFACT_BYTES).unwrap();
    let router = essaim_registry::http::router(Arc::new(registry));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (dir, RegistryClient::new(&url, None, "alice").unwrap())
}

fn report(heartbeat_ms: u64, version: Option<u64>) -> UsageReport {
    UsageReport {
        kind: essaim_registry::usage::ReporterKind::Runner,
        address: "http://10.0.0.7:8080".into(),
        heartbeat_ms,
        models: vec![ServedUsage {
            name: "spam".into(),
            rollout: "none".into(),
            slots: vec![SlotUsage {
                role: "primary".into(),
                model: "spam".into(),
                reference: "production".into(),
                version,
            }],
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_shows_beside_its_version_until_withdrawn_or_expired() {
    let (_dir, client) = serve().await;
    let spam = ModelName::parse("spam").unwrap();
    let artifact = client.upload_bytes(b"model one".to_vec()).await.unwrap();
    let new = NewVersion {
        artifact: Some(artifact),
        ..NewVersion::default()
    };
    client.register(&spam, &new).await.unwrap();
    let production = AliasName::parse("production").unwrap();
    client.set_alias(&spam, &production, "1").await.unwrap();

    // A name with a colon and a slash travels as one path segment.
    let runner = "host/a:8080";
    client
        .report_usage(runner, &report(60_000, Some(1)))
        .await
        .unwrap();
    let usage = client.usage().await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].runner, runner);
    let view = client.governance().await.unwrap();
    let version = &view.models[0].versions[0];
    assert_eq!(version.stage.as_deref(), Some("production"));
    assert_eq!(version.used_by.len(), 1);
    assert_eq!(version.used_by[0].runner, runner);
    assert_eq!(version.used_by[0].address, "http://10.0.0.7:8080");

    client.withdraw_usage(runner).await.unwrap();
    assert!(client.usage().await.unwrap().is_empty());

    // Beats every 100 ms, then stops: gone after three missed beats (at least 1 s).
    client
        .report_usage("short", &report(100, None))
        .await
        .unwrap();
    let view = client.governance().await.unwrap();
    assert_eq!(view.models[0].waiting.len(), 1, "not loaded yet: {view:?}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(client.usage().await.unwrap().is_empty());

    let mut bad = report(1000, None);
    bad.address = String::new();
    let refused = client.report_usage("r", &bad).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Refused { status: 400, message } if message.contains("address")),
        "{refused:?}"
    );
}
