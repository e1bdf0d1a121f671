//! The registry's HTTP API through its Rust client, on a real socket: registration,
//! aliases, promotions racing each other, rollback, the audit log, corrupt artifacts
//! refused, and bad input answered with a clear error.
#![allow(clippy::unwrap_used)]

use essaim_registry::client::{ClientError, RegistryClient};
use essaim_registry::http::PromoteRequest;
use essaim_registry::names::{AliasName, ModelName, ModelRef};
use essaim_registry::record::{AuditAction, Lineage, NewVersion};
use essaim_registry::{DEFAULT_MAX_ARTIFACT_BYTES, Registry};
use std::collections::BTreeMap;
use std::sync::Arc;

struct Server {
    dir: tempfile::TempDir,
    url: String,
}

async fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let registry =
        Registry::open(&dir.path().join("registry"), DEFAULT_MAX_ARTIFACT_BYTES).unwrap();
    let router = essaim_registry::http::router(Arc::new(registry));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Server { dir, url }
}

fn client(server: &Server) -> RegistryClient {
    RegistryClient::new(&server.url, None, "alice").unwrap()
}

fn name(text: &str) -> ModelName {
    ModelName::parse(text).unwrap()
}

fn alias(text: &str) -> AliasName {
    AliasName::parse(text).unwrap()
}

fn reference(text: &str) -> ModelRef {
    ModelRef::parse(text).unwrap()
}

async fn register(client: &RegistryClient, model: &str, bytes: &[u8], accuracy: f64) -> u64 {
    let artifact = client.upload_bytes(bytes.to_vec()).await.unwrap();
    let new = NewVersion {
        artifact: Some(artifact),
        metrics: BTreeMap::from([("accuracy".to_string(), accuracy)]),
        metadata: BTreeMap::from([("framework".to_string(), "test".to_string())]),
        lineage: Lineage {
            training_job: Some(7),
            ..Lineage::default()
        },
    };
    client.register(&name(model), &new).await.unwrap().version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_aliases_rollback_and_the_audit_log() {
    let server = serve().await;
    let client = client(&server);
    assert_eq!(register(&client, "spam", b"model one", 0.8).await, 1);
    let file = server.dir.path().join("two.bin");
    std::fs::write(&file, b"model two").unwrap();
    let two = client
        .register_file(&name("spam"), &file, NewVersion::default())
        .await
        .unwrap();
    assert_eq!(two.version, 2);
    assert_eq!(two.created_by, "alice");

    client
        .set_alias(&name("spam"), &alias("staging"), "1")
        .await
        .unwrap();
    let promoted = client
        .promote(
            &name("spam"),
            &PromoteRequest {
                version: None,
                to: "production".into(),
                from: "staging".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!((promoted.version, promoted.from_version), (Some(1), None));
    let before_move = promoted.at_unix_ms;
    client
        .set_alias(&name("spam"), &alias("production"), "2")
        .await
        .unwrap();
    let production = client.version(&reference("spam@production")).await.unwrap();
    assert_eq!(production.version, 2);
    assert_eq!(production.aliases, ["production"]);

    let rolled = client
        .rollback(&name("spam"), &alias("production"))
        .await
        .unwrap();
    assert_eq!((rolled.version, rolled.from_version), (Some(1), Some(2)));
    assert_eq!(rolled.action, AuditAction::Rollback);

    let answer = client
        .alias_at(&name("spam"), &alias("production"), before_move)
        .await
        .unwrap();
    assert_eq!(answer.version, Some(1));
    let answer = client
        .alias_at(&name("spam"), &alias("production"), before_move - 1)
        .await
        .unwrap();
    assert!(answer.version.is_none() || answer.since.unwrap().at_unix_ms < before_move);

    let log = client.audit(Some(&name("spam")), None).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "register", "register", "alias", "promote", "alias", "rollback"
        ]
    );
    assert!(log.iter().all(|entry| entry.actor == "alice"));

    // Downloads are checked against the version's hash.
    let destination = server.dir.path().join("downloaded");
    let record = client
        .download(&reference("spam@production"), &destination)
        .await
        .unwrap();
    assert_eq!(record.version, 1);
    assert_eq!(std::fs::read(&destination).unwrap(), b"model one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_promotions_are_serialised_and_each_audited() {
    let server = serve().await;
    let client = client(&server);
    for index in 0..6u8 {
        register(&client, "race", &[index], 0.5).await;
    }
    let mut promotions = Vec::new();
    for version in 1..=6u64 {
        let client = client.clone();
        promotions.push(tokio::spawn(async move {
            let request = PromoteRequest {
                version: Some(version.to_string()),
                to: "production".into(),
                from: "staging".into(),
            };
            client.promote(&name("race"), &request).await.unwrap()
        }));
    }
    for promotion in promotions {
        promotion.await.unwrap();
    }
    let moves = client
        .audit(Some(&name("race")), Some(&alias("production")))
        .await
        .unwrap();
    assert_eq!(moves.len(), 6);
    for pair in moves.windows(2) {
        assert_eq!(pair[1].from_version, pair[0].version, "{moves:#?}");
    }
    let now = client.version(&reference("race@production")).await.unwrap();
    assert_eq!(Some(now.version), moves.last().unwrap().version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_artifact_is_refused_at_load() {
    let server = serve().await;
    let client = client(&server);
    register(&client, "m", b"the real bytes", 0.9).await;
    let record = client.version(&reference("m@1")).await.unwrap();
    let sha = &record.artifact.sha256;
    let stored = server
        .dir
        .path()
        .join("registry/artifacts/sha256")
        .join(&sha[..2])
        .join(sha);
    std::fs::write(&stored, b"the fake bytes").unwrap();
    let destination = server.dir.path().join("out");
    let error = client
        .download(&reference("m@1"), &destination)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(500), "{error}");
    assert!(error.to_string().contains("corrupt"), "{error}");
    assert!(!destination.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error() {
    let server = serve().await;
    let client = client(&server);
    let refused = |result: Result<_, ClientError>| {
        let error = result.expect_err("refused");
        (error.status(), error.to_string())
    };
    let (status, message) = refused(client.model(&name("nope")).await.map(|_| ()));
    assert_eq!(status, Some(404));
    assert!(message.contains("unknown model `nope`"), "{message}");
    register(&client, "m", b"x", 0.1).await;
    let (status, message) = refused(client.version(&reference("m@champion")).await.map(|_| ()));
    assert_eq!(status, Some(404));
    assert!(message.contains("no alias `champion`"), "{message}");
    let (status, _) = refused(client.version(&reference("m@9")).await.map(|_| ()));
    assert_eq!(status, Some(404));
    let (status, message) = refused(
        client
            .set_alias(&name("m"), &alias("champion"), "not a version")
            .await
            .map(|_| ()),
    );
    assert_eq!(status, Some(400), "{message}");
    let (status, message) = refused(
        client
            .promote(
                &name("m"),
                &PromoteRequest {
                    version: Some("1".into()),
                    to: "champion".into(),
                    from: "staging".into(),
                },
            )
            .await
            .map(|_| ()),
    );
    assert_eq!(status, Some(400));
    assert!(message.contains("not a stage"), "{message}");
    // An artifact never uploaded cannot be registered.
    let unknown = NewVersion {
        artifact: Some(essaim_registry::record::ArtifactRef {
            sha256: "0".repeat(64),
            size: 1,
        }),
        ..NewVersion::default()
    };
    let (status, _) = refused(client.register(&name("m"), &unknown).await.map(|_| ()));
    assert_eq!(status, Some(404));
    let (status, _) = refused(client.archive(&name("m"), 5).await.map(|_| ()));
    assert_eq!(status, Some(404));
}

/// A registry that names one version and serves other bytes for it: the client must
/// refuse them even though the server did not.
async fn lying_server(served: &'static [u8]) -> String {
    use axum::routing::get;
    let record = serde_json::json!({
        "model": "m", "version": 1,
        "artifact": {"sha256": essaim_registry::artifacts::sha256_hex(b"the real bytes"), "size": 14},
        "created_unix_ms": 0, "created_by": "x", "metrics": {}, "metadata": {},
        "lineage": {}, "archived": false, "aliases": [],
    });
    let router = axum::Router::new()
        .route(
            "/registry/v1/models/m/versions/1",
            get(move || async move { axum::Json(record) }),
        )
        .route(
            "/registry/v1/models/m/versions/1/artifact",
            get(move || async move { served }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_refuses_bytes_that_do_not_match_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let destination = dir.path().join("model");
    let url = lying_server(b"the fake bytes").await;
    let client = RegistryClient::new(&url, None, "alice").unwrap();
    let error = client
        .download(&reference("m@1"), &destination)
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Corrupt { .. }), "{error}");
    assert!(!destination.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no partial file left"
    );

    let url = lying_server(b"the real bytes").await;
    let client = RegistryClient::new(&url, None, "alice").unwrap();
    client
        .download(&reference("m@1"), &destination)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&destination).unwrap(), b"the real bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_downloads_by_hash_and_a_lying_server_is_refused() {
    let server = serve().await;
    let client = client(&server);
    let uploaded = client.upload_bytes(b"job file".to_vec()).await.unwrap();
    let destination = server.dir.path().join("fetched");
    let fetched = client
        .download_artifact(&uploaded.sha256, &destination)
        .await
        .unwrap();
    assert_eq!(fetched, uploaded);
    assert_eq!(std::fs::read(&destination).unwrap(), b"job file");
    let unknown = client
        .download_artifact(&"0".repeat(64), &server.dir.path().join("unknown"))
        .await
        .unwrap_err();
    assert_eq!(unknown.status(), Some(404), "{unknown}");
    let malformed = client
        .download_artifact("../etc/passwd", &destination)
        .await
        .unwrap_err();
    assert_eq!(malformed.status(), Some(400), "{malformed}");

    // A server (or a network) that delivers other bytes under the hash.
    let claimed = essaim_registry::artifacts::sha256_hex(b"the real bytes");
    let router = axum::Router::new().route(
        &format!("/registry/v1/artifacts/{claimed}"),
        axum::routing::get(|| async { &b"the fake bytes"[..] }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let dir = tempfile::tempdir().unwrap();
    let error = RegistryClient::new(&url, None, "alice")
        .unwrap()
        .download_artifact(&claimed, &dir.path().join("file"))
        .await
        .unwrap_err();
    match &error {
        ClientError::Corrupt { expected, actual } => {
            assert_eq!(expected, &claimed);
            assert_eq!(
                actual,
                &essaim_registry::artifacts::sha256_hex(b"the fake bytes")
            );
        }
        other => panic!("expected a corrupt download, got {other}"),
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}
