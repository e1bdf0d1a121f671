//! `essaim.toml`: a coordinator, a worker and the client verbs configured by one file and
//! nothing else (the file named once by `--config`, once by `ESSAIM_CONFIG`), its
//! effect seen through the cluster, `essaim config show` explaining every value, and a
//! bad file refused with its line.

use std::path::Path;

use serde_json::Value;

use crate::harness::{
    CliOutput, Deadline, EVENTUALLY, assert_refused, essaim_with_env, free_port, one_at_a_time,
    spawn_essaim,
};

/// Writes the file every process of the test reads; returns its path.
fn write_config(dir: &Path, port: u16) -> String {
    std::fs::write(dir.join("token"), "s3cret-from-a-file\n").expect("the token file is written");
    let text = format!(
        r#"version = 1

[cluster]
coordinator = "http://127.0.0.1:{port}"
token_file = "token"
connect_timeout = "20s"

[coordinator]
listen = "127.0.0.1:{port}"
data_dir = "{dir}/journal"
heartbeat = "200ms"
worker_timeout = "2s"

[worker]
slots = 3
name = "configured"
allow_commands = true
scratch_dir = "{dir}/scratch"
drain_grace = "1s"
"#,
        dir = dir.display()
    );
    let path = dir.join("essaim.toml");
    std::fs::write(&path, text).expect("the configuration is written");
    path.display().to_string()
}

/// Parses standard output as one JSON document after a successful run.
fn json(what: &str, output: &CliOutput) -> Value {
    assert_eq!(output.code, Some(0), "{what}: {output:?}");
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|error| panic!("{what}: not JSON ({error}): {output:?}"))
}

/// Returns the setting `key` of the one verb `essaim config show VERB -o json` printed.
fn setting<'a>(shown: &'a Value, key: &str) -> &'a Value {
    shown["verbs"][0]["settings"]
        .as_array()
        .and_then(|settings| settings.iter().find(|setting| setting["key"] == key))
        .unwrap_or_else(|| panic!("{key} missing from {shown:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_configured_only_by_a_file_runs_and_explains_its_settings() {
    let _serial = one_at_a_time().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let config = write_config(dir.path(), port);
    let with_file = [("ESSAIM_CONFIG", config.as_str())];

    let coordinator_args = [
        "--config".to_string(),
        config.clone(),
        "coordinator".to_string(),
    ];
    let _coordinator = spawn_essaim(
        "coordinator",
        &coordinator_args,
        &[],
        dir.path().join("coordinator.log"),
    );
    let _worker = spawn_essaim(
        "worker",
        &["worker".to_string()],
        &with_file,
        dir.path().join("worker.log"),
    );

    // The worker registers under the file's name and slots, with the file's token.
    let deadline = Deadline::after(EVENTUALLY, "the configured worker to register");
    let workers = loop {
        let listed = essaim_with_env(&["workers", "-o", "json"], &with_file).await;
        if listed.code == Some(0) {
            let workers = json("workers", &listed);
            if workers
                .as_array()
                .is_some_and(|workers| !workers.is_empty())
            {
                break workers;
            }
        }
        deadline.tick().await;
    };
    assert_eq!(workers[0]["name"], "configured", "{workers:#}");
    assert_eq!(workers[0]["slots"], 3, "{workers:#}");
    // The token came from the file: without it the REST API is closed.
    let status = essaim_testkit::process::http_status(port, "/api/v1/workers").await;
    assert_eq!(
        status,
        Some(401),
        "the coordinator requires the file's token"
    );
    // `allow_commands = true` from the file: a command job runs.
    let submitted = essaim_with_env(
        &[
            "submit", "--count", "2", "--wait", "-o", "json", "--", "true",
        ],
        &with_file,
    )
    .await;
    assert_eq!(json("submit", &submitted)["state"], "succeeded");

    // `config show` says where each value came from; a variable beats the file, a flag
    // beats the variable, and the token is masked.
    let env_over_file = [
        ("ESSAIM_CONFIG", config.as_str()),
        ("ESSAIM_WORKER_SLOTS", "5"),
    ];
    let shown = essaim_with_env(
        &[
            "config", "show", "worker", "-o", "json", "--", "--name", "flagged",
        ],
        &env_over_file,
    )
    .await;
    let shown = json("config show", &shown);
    assert_eq!(shown["file"], config.as_str());
    let slots = setting(&shown, "worker.slots");
    assert_eq!(
        (&slots["value"][0], &slots["source"], &slots["from"]),
        (&"5".into(), &"env".into(), &"ESSAIM_WORKER_SLOTS".into())
    );
    let name = setting(&shown, "worker.name");
    assert_eq!(
        (&name["value"][0], &name["source"]),
        (&"flagged".into(), &"flag".into())
    );
    let scratch = setting(&shown, "worker.scratch_dir");
    assert_eq!(scratch["source"], "file");
    assert_eq!(scratch["from"], format!("{config}:18"), "the file and line");
    let token = setting(&shown, "cluster.token");
    assert_eq!(
        (&token["value"][0], &token["source"]),
        (&"******".into(), &"file".into())
    );
    assert_eq!(setting(&shown, "worker.prefetch")["source"], "default");
    assert_eq!(setting(&shown, "worker.drain_grace")["value"][0], "1s");
    let text = essaim_with_env(&["config", "show", "coordinator"], &with_file).await;
    assert_eq!(text.code, Some(0), "{text:?}");
    assert!(
        text.stdout.contains("coordinator.heartbeat")
            && text.stdout.contains(&format!("{config}:11")),
        "{}",
        text.stdout
    );
    assert!(
        !text.stdout.contains("s3cret"),
        "secrets are masked: {}",
        text.stdout
    );

    // A mistake in the file is refused with the file, the line and the reason, whatever
    // the verb.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[cluster]\ntoken = \"t\"\n\n[worker]\nslots = \"many\"\n",
    )
    .expect("written");
    let bad = bad.display().to_string();
    let refused = essaim_with_env(&["--config", &bad, "jobs"], &[]).await;
    assert_refused(
        &refused,
        2,
        &format!("{bad}:5: `worker.slots`: `many` is invalid"),
    );
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[worker]\nslot = 4\n").expect("written");
    let refused = essaim_with_env(
        &["worker"],
        &[("ESSAIM_CONFIG", &typo.display().to_string())],
    )
    .await;
    assert_refused(&refused, 2, ":2: unknown key `slot` in [worker]");
    let missing = essaim_with_env(&["--config", "/nonexistent/essaim.toml", "jobs"], &[]).await;
    assert_refused(
        &missing,
        2,
        "cannot read configuration file `/nonexistent/essaim.toml`",
    );
}
