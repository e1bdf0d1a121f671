//! Servers for tests, started by the project's own scripts (`scripts/nats.sh`,
//! `scripts/postgres.sh`, `scripts/kafka.sh`, `scripts/etcd.sh`, `scripts/s3.sh`): one
//! [`ScriptServer`] type for all of them, and one constructor per server ([`nats`],
//! [`postgres`], [`kafka`], [`etcd`], [`s3`]).
//!
//! The scripts own everything about a server (installing it, its configuration, its
//! port, waiting until it answers); this module owns only the life of one test's
//! server. Every script has the same command line, `X.sh start|stop DIR`: `start`
//! prints the server's URL on its last line of output and keeps the port recorded in
//! DIR, so starting again in the same DIR is a restart on the same store and URL.
//!
//! A server is stopped when dropped. When the test is failing (the drop runs during a
//! panic), the tail of the server's log is printed and its directory is kept, so a
//! failure shows what the server saw.
//!
//! Each server has a variable that skips the tests needing it (`ESSAIM_SKIP_NATS=1`,
//! `ESSAIM_SKIP_POSTGRES=1`, `ESSAIM_SKIP_KAFKA=1`, `ESSAIM_SKIP_ETCD=1`, `ESSAIM_SKIP_S3=1`): the
//! constructors then return `None`. Otherwise a server that cannot be installed or started fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

/// Lines of a server's log printed when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// One of the project's server scripts, and how tests name and skip its server.
#[derive(Debug, Clone, Copy)]
pub struct ServerScript {
    /// The script's file name in `scripts/`, e.g. `nats.sh`.
    pub file_name: &'static str,
    /// What it runs, for messages: `nats-server`, `PostgreSQL`.
    pub server: &'static str,
    /// The variable that, set to `1`, skips the tests needing this server.
    pub skip_variable: &'static str,
}

/// NATS JetStream (`scripts/nats.sh`), which fsyncs every write before acknowledging.
pub const NATS: ServerScript = ServerScript {
    file_name: "nats.sh",
    server: "nats-server",
    skip_variable: "ESSAIM_SKIP_NATS",
};

/// A private PostgreSQL cluster (`scripts/postgres.sh`).
pub const POSTGRES: ServerScript = ServerScript {
    file_name: "postgres.sh",
    server: "PostgreSQL",
    skip_variable: "ESSAIM_SKIP_POSTGRES",
};

/// The Kafka-protocol broker Tansu (`scripts/kafka.sh`); its URL is a bootstrap
/// address `127.0.0.1:PORT`.
pub const KAFKA: ServerScript = ServerScript {
    file_name: "kafka.sh",
    server: "the Kafka broker",
    skip_variable: "ESSAIM_SKIP_KAFKA",
};

/// A single-member etcd (`scripts/etcd.sh`); its URL is the client URL
/// `http://127.0.0.1:PORT`.
pub const ETCD: ServerScript = ServerScript {
    file_name: "etcd.sh",
    server: "etcd",
    skip_variable: "ESSAIM_SKIP_ETCD",
};

/// The S3-compatible object store s3s-fs (`scripts/s3.sh`); its URL is the endpoint
/// `http://127.0.0.1:PORT`, its buckets the directories of `dir()/store`, and it
/// accepts only requests signed with [`S3_ACCESS_KEY`] and [`S3_SECRET_KEY`].
pub const S3: ServerScript = ServerScript {
    file_name: "s3.sh",
    server: "the S3 server",
    skip_variable: "ESSAIM_SKIP_S3",
};

/// The access key `scripts/s3.sh` gives its server.
pub const S3_ACCESS_KEY: &str = "essaim-test";
/// The secret key `scripts/s3.sh` gives its server.
pub const S3_SECRET_KEY: &str = "essaim-test-secret";

/// Returns the path of a script in the repository's `scripts/` folder.
pub fn script_path(file_name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(file_name)
}

/// Starts a nats-server in a directory of its own, or returns `None` when
/// `ESSAIM_SKIP_NATS=1`.
pub fn nats() -> Option<ScriptServer> {
    ScriptServer::start(NATS)
}

/// Starts the `members` servers of one JetStream cluster (each in a directory of its
/// own, routed to the others), or returns `None` when `ESSAIM_SKIP_NATS=1`. Clients
/// take every member's URL, comma-separated ([`nats_cluster_url`]). The cluster elects
/// its JetStream leader a moment after the start: a first stream may have to be asked
/// for again.
pub fn nats_cluster(members: usize) -> Option<Vec<ScriptServer>> {
    let route_ports: Vec<u16> = (0..members).map(|_| crate::process::free_port()).collect();
    let routes: Vec<String> = route_ports
        .iter()
        .map(|port| format!("nats-route://127.0.0.1:{port}"))
        .collect();
    let routes = routes.join(",");
    let mut servers = Vec::with_capacity(members);
    for (member, port) in route_ports.iter().enumerate() {
        let port = port.to_string();
        let name = format!("n{member}");
        let env = [
            ("NATS_CLUSTER_PORT", port.as_str()),
            ("NATS_ROUTES", routes.as_str()),
            ("NATS_SERVER_NAME", name.as_str()),
        ];
        servers.push(ScriptServer::start_with_env(NATS, &env)?);
    }
    Some(servers)
}

/// The URL of a cluster's members, comma-separated, as every NATS client takes them.
pub fn nats_cluster_url(members: &[ScriptServer]) -> String {
    let urls: Vec<&str> = members.iter().map(ScriptServer::url).collect();
    urls.join(",")
}

/// Starts a private PostgreSQL cluster, or returns `None` when
/// `ESSAIM_SKIP_POSTGRES=1`.
pub fn postgres() -> Option<ScriptServer> {
    ScriptServer::start(POSTGRES)
}

/// Starts a Kafka-protocol broker, or returns `None` when `ESSAIM_SKIP_KAFKA=1`. When
/// `$ESSAIM_KAFKA_BOOTSTRAP` names a broker, that one is used and left alone.
pub fn kafka() -> Option<ScriptServer> {
    if skipped(KAFKA) {
        return None;
    }
    if let Ok(bootstrap) = std::env::var("ESSAIM_KAFKA_BOOTSTRAP") {
        return Some(ScriptServer::external(KAFKA, bootstrap));
    }
    ScriptServer::start(KAFKA)
}

/// Starts an S3-compatible object store, or returns `None` when `ESSAIM_SKIP_S3=1`.
pub fn s3() -> Option<ScriptServer> {
    ScriptServer::start(S3)
}

/// Starts a single-member etcd, or returns `None` when `ESSAIM_SKIP_ETCD=1`.
pub fn etcd() -> Option<ScriptServer> {
    ScriptServer::start(ETCD)
}

/// True (and says so) when the tests needing this server are skipped on purpose.
pub fn skipped(script: ServerScript) -> bool {
    let skip = std::env::var(script.skip_variable).as_deref() == Ok("1");
    if skip {
        eprintln!(
            "{}=1: skipping a test that needs {}",
            script.skip_variable, script.server
        );
    }
    skip
}

/// A server of one test, started by its script in a directory of its own and stopped
/// when dropped; or a server given from outside, which is left alone.
pub struct ScriptServer {
    script: ServerScript,
    /// `None` for a server given from outside.
    dir: Option<TempDir>,
    url: String,
    /// Variables the script is run with, at every start.
    env: Vec<(String, String)>,
}

impl ScriptServer {
    /// Starts a server in a new temporary directory, or returns `None` when its tests
    /// are skipped. Panics, with the script's error output, when it cannot start.
    pub fn start(script: ServerScript) -> Option<ScriptServer> {
        Self::start_with_env(script, &[])
    }

    /// Like [`ScriptServer::start`], the script run with `env` (at every start: a
    /// restarted server keeps its settings), e.g. `NATS_TLS_CERT` for `scripts/nats.sh`.
    pub fn start_with_env(script: ServerScript, env: &[(&str, &str)]) -> Option<ScriptServer> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        if skipped(script) {
            return None;
        }
        // A script picks a free port, then the server binds it: another process may take
        // the port in between. That start is tried again, on another port.
        let mut tries = 0;
        loop {
            tries += 1;
            let dir = tempfile::Builder::new()
                .prefix(&format!(
                    "essaim-{}-",
                    script.file_name.trim_end_matches(".sh")
                ))
                .tempdir()
                .expect("a temporary directory");
            match try_script(script, "start", dir.path(), &env) {
                Ok(url) => {
                    return Some(ScriptServer {
                        script,
                        dir: Some(dir),
                        url,
                        env,
                    });
                }
                Err(failure) if port_was_taken(&failure) && tries < 3 => {
                    eprintln!("{}: its port was taken; starting again", script.server);
                }
                Err(failure) => panic!("{failure}"),
            }
        }
    }

    /// Returns a server that runs elsewhere, at `url`: never stopped nor restarted.
    pub fn external(script: ServerScript, url: String) -> ScriptServer {
        ScriptServer {
            script,
            dir: None,
            url,
            env: Vec::new(),
        }
    }

    /// Returns the URL the script printed (a bootstrap address for Kafka).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// True for a server given from outside, which this test may not stop or restart.
    pub fn is_external(&self) -> bool {
        self.dir.is_none()
    }

    /// Returns the server's directory (its store, log, pid and port files).
    pub fn dir(&self) -> &Path {
        self.own_dir().path()
    }

    fn own_dir(&self) -> &TempDir {
        self.dir.as_ref().unwrap_or_else(|| {
            panic!(
                "{} at {} is not this test's: it cannot be stopped or restarted",
                self.script.server, self.url
            )
        })
    }

    /// Stops the server (SIGTERM, the script's way), keeping its store.
    pub fn stop(&self) {
        run_script(self.script, "stop", self.dir(), &[]);
    }

    /// Starts the server again on the same store; panics unless it kept its URL.
    pub fn start_again(&self) {
        let url = run_script(self.script, "start", self.dir(), &self.env);
        assert_eq!(
            url, self.url,
            "{} keeps its URL across a restart",
            self.script.server
        );
    }

    /// Stops the server, waits `down`, and starts it again on the same store and URL.
    pub fn restart(&self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.start_again();
    }

    /// SIGKILLs the server (its pid is in `DIR/pid`): no chance to flush anything.
    pub fn kill_9(&self) {
        let pid_file = self.dir().join("pid");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|error| panic!("no pid file {}: {error}", pid_file.display()));
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -9 {pid} failed");
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else {
            return;
        };
        let _ = Command::new(script_path(self.script.file_name))
            .arg("stop")
            .arg(dir.path())
            .status();
        if std::thread::panicking() {
            let log = dir.path().join("log");
            eprintln!(
                "---------- {} of the failed test: tail of {} ----------\n{}\n\
                 the server's directory is kept: {}",
                self.script.server,
                log.display(),
                crate::process::log_tail(&log, LOG_TAIL_LINES),
                dir.keep().display()
            );
        }
    }
}

/// Runs `scripts/X.sh ACTION DIR`; returns the last line it printed (the URL of
/// `start`). Panics with its error output if it failed.
fn run_script(script: ServerScript, action: &str, dir: &Path, env: &[(String, String)]) -> String {
    try_script(script, action, dir, env).unwrap_or_else(|failure| panic!("{failure}"))
}

/// Runs `scripts/X.sh ACTION DIR`; returns the last line it printed, or what it said
/// when it failed.
/// True when a server's start failed because its port was taken before it bound it.
/// Servers word it differently ("Address already in use", "address already in use"),
/// so the match ignores case.
pub(crate) fn port_was_taken(failure: &str) -> bool {
    failure.to_lowercase().contains("address already in use")
}

fn try_script(
    script: ServerScript,
    action: &str,
    dir: &Path,
    env: &[(String, String)],
) -> Result<String, String> {
    let output = Command::new(script_path(script.file_name))
        .arg(action)
        .arg(dir)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .output()
        .unwrap_or_else(|error| panic!("scripts/{} cannot run: {error}", script.file_name));
    if !output.status.success() {
        return Err(format!(
            "scripts/{} {action} failed: {} could not be installed or started \
             (set {}=1 to skip the tests that need it):\n{}",
            script.file_name,
            script.server,
            script.skip_variable,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::port_was_taken;

    #[test]
    fn a_taken_port_is_recognised_however_the_server_words_it() {
        assert!(port_was_taken(
            "error: Address already in use (os error 98)"
        ));
        assert!(port_was_taken("listen tcp: bind: address already in use"));
        assert!(!port_was_taken("permission denied"));
    }
}
