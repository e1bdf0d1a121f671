//! `essaim registry`, the model registry as a process of its own: driven by `essaim
//! models --coordinator URL` as a coordinator's registry is, on the embedded store and
//! restarted; two registry processes sharing one PostgreSQL database (started by
//! `scripts/postgres.sh`) and one bucket of artifacts (on the S3-compatible server of
//! `scripts/s3.sh`), each seeing the other's changes and serving the other's uploads,
//! refusing an object overwritten in the bucket, and their racing promotions
//! serialised; coordinators elected through etcd on one
//! PostgreSQL store serving the same registry across a failover; and stores it cannot
//! use refused at start with a clear message and the exit code of whose fault it is.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use crate::harness::{
    CliOutput, Deadline, EVENTUALLY, Process, assert_refused, essaim, free_port, one_at_a_time,
    spawn_essaim,
};
use essaim_testkit::process::{http_status, log_tail};
use serde_json::Value;
use std::path::Path;

const TOKEN: &str = "registry-secret";

/// One `essaim registry` process; its log is printed if the test fails.
struct RegistryProcess {
    process: Process,
    url: String,
}

impl RegistryProcess {
    /// Starts `essaim registry` on a free port with `store` (and `artifacts`, a
    /// directory or a bucket, and `env`), and waits until it is ready.
    async fn start(
        dir: &Path,
        name: &str,
        store: &str,
        artifacts: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let mut args: Vec<String> = [
            "registry",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            store,
            "--token",
            TOKEN,
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        if let Some(artifacts) = artifacts {
            args.extend(["--artifacts".to_string(), artifacts.to_string()]);
        }
        let log = dir.join(format!("{name}.log"));
        let mut process = spawn_essaim(name, &args, env, log.clone());
        let deadline = Deadline::after(EVENTUALLY, format!("registry {name} ready"));
        while http_status(port, "/readyz").await != Some(200) {
            if let Some(status) = process.exit_status() {
                panic!("registry {name} exited ({status}): {}", log_tail(&log, 40));
            }
            deadline.tick().await;
        }
        Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Runs `essaim models ARGS` against this registry, with its token.
    async fn models(&self, args: &[&str]) -> CliOutput {
        let mut all = vec!["models"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--coordinator", &self.url, "--token", TOKEN]);
        essaim(&all).await
    }

    /// Like [`RegistryProcess::models`], asking for JSON and requiring success.
    async fn models_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--output", "json"]);
        let output = self.models(&all).await;
        assert_eq!(output.code, Some(0), "{output:?}");
        serde_json::from_str(&output.stdout).unwrap_or_else(|error| panic!("{error}: {output:?}"))
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} ({}) ---\n{}",
                self.process.name,
                self.url,
                log_tail(&self.process.log, 40)
            );
        }
    }
}

/// Writes `bytes` as a model file in `dir` and registers it; returns the version.
async fn register(registry: &RegistryProcess, dir: &Path, name: &str, bytes: &[u8]) -> u64 {
    let file = dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    let registered = registry
        .models_json(&[
            "register",
            "spam-filter",
            "--artifact",
            file.to_str().unwrap(),
            "--metric",
            "accuracy=0.9",
        ])
        .await;
    registered["version"].as_u64().unwrap()
}

async fn download(registry: &RegistryProcess, reference: &str, out: &Path) -> Vec<u8> {
    let output = registry
        .models(&["download", reference, "--out", out.to_str().unwrap()])
        .await;
    assert_eq!(output.code, Some(0), "{output:?}");
    std::fs::read(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_registry_serves_models_without_a_coordinator() {
    let _one = one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("registry");
    let registry =
        RegistryProcess::start(dir.path(), "registry", store.to_str().unwrap(), None, &[]).await;

    assert_eq!(
        register(&registry, dir.path(), "one.bin", b"model one").await,
        1
    );
    let aliased = registry
        .models_json(&["alias", "spam-filter", "champion", "1"])
        .await;
    assert_eq!(aliased["version"], 1);
    let shown = registry
        .models_json(&["show", "spam-filter@champion"])
        .await;
    assert_eq!(shown["version"], 1, "{shown:#}");
    assert_eq!(shown["aliases"][0], "champion", "{shown:#}");
    assert_eq!(shown["metrics"]["accuracy"], 0.9, "{shown:#}");
    let out = dir.path().join("downloaded.bin");
    assert_eq!(
        download(&registry, "spam-filter@champion", &out).await,
        b"model one"
    );

    // The registry checks callers as the coordinator does.
    let anonymous = essaim(&["models", "list", "--coordinator", &registry.url]).await;
    assert_refused(&anonymous, 3, "token");

    // Restarted on the same directory, it serves the same registry.
    drop(registry);
    let registry = RegistryProcess::start(
        dir.path(),
        "registry-again",
        store.to_str().unwrap(),
        None,
        &[],
    )
    .await;
    let log = registry.models_json(&["audit", "spam-filter"]).await;
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["register", "alias"], "{log:#}");
    assert_eq!(
        register(&registry, dir.path(), "two.bin", b"model two").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registry_processes_share_one_postgres_store() {
    let _one = one_at_a_time().await;
    let Some(postgres) = essaim_testkit::server::postgres() else {
        return;
    };
    let Some(s3) = essaim_testkit::server::s3() else {
        return;
    };
    let bucket = crate::mapreduce_s3::bucket(&s3, "shared-models");
    let env = [
        crate::mapreduce_s3::CREDENTIALS[0],
        crate::mapreduce_s3::CREDENTIALS[1],
        ("AWS_ENDPOINT", s3.url()),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let artifacts = "s3://shared-models/registry";
    let (first, second) = tokio::join!(
        RegistryProcess::start(
            dir.path(),
            "registry-a",
            postgres.url(),
            Some(artifacts),
            &env
        ),
        RegistryProcess::start(
            dir.path(),
            "registry-b",
            postgres.url(),
            Some(artifacts),
            &env
        ),
    );

    // Registered through one, seen and moved through the other.
    assert_eq!(
        register(&first, dir.path(), "one.bin", b"model one").await,
        1
    );
    assert_eq!(
        register(&second, dir.path(), "two.bin", b"model two").await,
        2
    );
    second
        .models_json(&["alias", "spam-filter", "staging", "1"])
        .await;
    let staged = first.models_json(&["show", "spam-filter@staging"]).await;
    assert_eq!(staged["version"], 1, "{staged:#}");
    // Uploaded through one, into the bucket under its hash, and served by the other.
    let object = bucket
        .join("registry/sha256")
        .join(&sha256_hex(b"model one")[..2]);
    let object = object.join(sha256_hex(b"model one"));
    assert_eq!(std::fs::read(&object).unwrap(), b"model one");
    let out = dir.path().join("downloaded.bin");
    assert_eq!(download(&second, "spam-filter@1", &out).await, b"model one");
    assert_eq!(download(&first, "spam-filter@2", &out).await, b"model two");

    // Two promotions of one alias at once, one through each process: both succeed,
    // one after the other, and both are audited.
    let (one, two) = tokio::join!(
        first.models(&["promote", "spam-filter", "1", "--actor", "alice"]),
        second.models(&["promote", "spam-filter", "2", "--actor", "bob"]),
    );
    assert_eq!((one.code, two.code), (Some(0), Some(0)), "{one:?}\n{two:?}");
    for registry in [&first, &second] {
        let moves = registry
            .models_json(&["audit", "spam-filter", "--alias", "production"])
            .await;
        let moves = moves.as_array().unwrap();
        assert_eq!(moves.len(), 2, "{moves:#?}");
        let actors: Vec<&str> = moves.iter().map(|m| m["actor"].as_str().unwrap()).collect();
        assert!(
            actors.contains(&"alice") && actors.contains(&"bob"),
            "{actors:?}"
        );
        assert_eq!(moves[0]["from_version"], Value::Null, "{moves:#?}");
        assert_eq!(moves[1]["from_version"], moves[0]["version"], "{moves:#?}");
        let now = registry
            .models_json(&["show", "spam-filter@production"])
            .await;
        assert_eq!(now["version"], moves[1]["version"], "{now:#}");
    }
    let listed = second.models_json(&["list"]).await;
    assert_eq!(listed[0]["versions"], 2, "{listed:#}");

    // Overwritten in the bucket behind the registry's back: refused by both.
    std::fs::write(&object, b"model One").unwrap();
    for registry in [&first, &second] {
        let output = registry
            .models(&["download", "spam-filter@1", "--out", out.to_str().unwrap()])
            .await;
        assert_ne!(output.code, Some(0), "{output:?}");
        assert!(output.stderr.contains("corrupt"), "{output:?}");
    }
}

/// The lowercase hex SHA-256 of `bytes`, by the system's `sha256sum`: an oracle apart
/// from the registry's code.
fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8(output.stdout).unwrap()[..64].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_stores_that_cannot_be_used_are_refused_at_start() {
    let _one = one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    let artifacts = artifacts.to_str().unwrap();
    let start = |store: String, with_artifacts: bool| async move {
        let port = free_port().to_string();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["registry", "--listen", &listen, "--store", &store];
        if with_artifacts {
            args.extend(["--artifacts", artifacts]);
        }
        essaim(&args).await
    };
    // Whose fault: the caller's (2), or a database that cannot be reached (3).
    assert_refused(
        &start("mysql://root@127.0.0.1/registry".into(), true).await,
        2,
        "unknown scheme `mysql`",
    );
    assert_refused(
        &start("postgres://postgres@127.0.0.1/postgres".into(), false).await,
        2,
        "name their directory or s3://bucket/prefix too",
    );
    let closed_port = free_port();
    let unreachable = start(
        format!("postgresql://postgres:hunter2@127.0.0.1:{closed_port}/postgres"),
        true,
    )
    .await;
    assert_refused(
        &unreachable,
        3,
        "failed to connect to the registry's PostgreSQL store",
    );
    assert!(!unreachable.stderr.contains("hunter2"), "{unreachable:?}");

    let Some(postgres) = essaim_testkit::server::postgres() else {
        return;
    };
    let unknown_role = postgres.url().replacen("postgres@", "nobody@", 1);
    assert_refused(&start(unknown_role, true).await, 3, "\"nobody\"");
}

/// Coordinators elected through etcd on one PostgreSQL registry store: the model a
/// client registered through the first leader is served, bytes and aliases, by the
/// next one after the first is SIGKILLed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinators_on_etcd_share_one_postgres_registry_across_a_failover() {
    let Some(postgres) = essaim_testkit::server::postgres() else {
        return;
    };
    let artifacts = tempfile::tempdir().unwrap();
    let artifacts_dir = artifacts.path().to_str().unwrap();
    let registry_args = [
        "--registry-store",
        postgres.url(),
        "--registry-artifacts",
        artifacts_dir,
    ];
    let Some(mut cluster) = essaim_testkit::ha::HaCluster::start_with_coordinator_args(
        crate::harness::ESSAIM,
        1,
        2,
        0,
        1,
        false,
        &registry_args,
    )
    .await
    else {
        return;
    };
    let models = |url: String, args: &'static [&'static str]| async move {
        let mut all = vec!["models"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--coordinator", &url, "--output", "json"]);
        let output = essaim(&all).await;
        assert_eq!(output.code, Some(0), "{output:?}");
        serde_json::from_str::<Value>(&output.stdout).unwrap()
    };
    let file = cluster.path("model.bin");
    std::fs::write(&file, b"shared model").unwrap();
    let file = file.to_str().unwrap().to_string();
    let leader = cluster.url(0);
    let registered = essaim(&[
        "models",
        "register",
        "spam-filter",
        "--artifact",
        &file,
        "--coordinator",
        &leader,
    ])
    .await;
    assert_eq!(registered.code, Some(0), "{registered:?}");
    models(leader, &["alias", "spam-filter", "staging", "1"]).await;

    cluster.kill_coordinator(0);
    let next = cluster.wait_leader_other_than(Some(0)).await;
    let staged = models(cluster.url(next), &["show", "spam-filter@staging"]).await;
    assert_eq!(staged["version"], 1, "{staged:#}");
    let out = cluster.path("downloaded.bin");
    let downloaded = essaim(&[
        "models",
        "download",
        "spam-filter@staging",
        "--out",
        out.to_str().unwrap(),
        "--coordinator",
        &cluster.url(next),
    ])
    .await;
    assert_eq!(downloaded.code, Some(0), "{downloaded:?}");
    assert_eq!(std::fs::read(&out).unwrap(), b"shared model");
}
