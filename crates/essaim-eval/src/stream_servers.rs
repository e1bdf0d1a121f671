//! The servers of the streaming stack, NATS JetStream and PostgreSQL, as `essaim demo
//! stream` and the evaluation's stream scenarios get them: given by URL, or started
//! in a directory of their own by the project's scripts (`scripts/nats.sh`,
//! `scripts/postgres.sh`), which own everything about them (installing them when
//! missing, their configuration, their durability settings).
//!
//! A started server is stopped when its handle is dropped, unless it is kept.

use std::path::{Path, PathBuf};

/// The environment variables naming servers to use instead of starting some: the same
/// names `essaim stream` reads.
pub const NATS_URL_VARIABLE: &str = "ESSAIM_NATS_URL";
/// See [`NATS_URL_VARIABLE`].
pub const POSTGRES_URL_VARIABLE: &str = "ESSAIM_POSTGRES_URL";

/// What can go wrong starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The script could not be run at all.
    #[error("cannot run `{script}`: {source}")]
    Run {
        /// The script.
        script: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The script ran and failed.
    #[error("`{script} start` failed: {stderr}")]
    Failed {
        /// The script.
        script: PathBuf,
        /// What it said.
        stderr: String,
    },
    /// The script succeeded but printed no URL.
    #[error("`{0}` printed no URL")]
    NoUrl(PathBuf),
}

/// A server started by one of the project's scripts, stopped when dropped.
#[derive(Debug)]
pub struct ScriptServer {
    script: PathBuf,
    dir: PathBuf,
    url: String,
    keep: bool,
}

impl ScriptServer {
    /// Runs `script start dir` and reads the URL it prints last; a `keep` server is left
    /// running when dropped.
    pub fn start(script: PathBuf, dir: PathBuf, keep: bool) -> Result<ScriptServer, ServerError> {
        let output = std::process::Command::new(&script)
            .arg("start")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| ServerError::Run {
                script: script.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(ServerError::Failed {
                script,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let url = stdout.lines().last().unwrap_or_default().trim().to_owned();
        if url.is_empty() {
            return Err(ServerError::NoUrl(script));
        }
        Ok(ScriptServer {
            script,
            dir,
            url,
            keep,
        })
    }

    /// The URL the script printed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's directory (its store, log and URL files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether it is left running when dropped.
    pub fn kept(&self) -> bool {
        self.keep
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _stopped_or_gone = std::process::Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .output();
    }
}

/// Finds the project's `scripts/` (holding `nats.sh` and `postgres.sh`): `flag`, else
/// the source tree this binary was built from, else `./scripts`.
pub fn scripts_dir(flag: Option<PathBuf>) -> Option<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts");
    flag.into_iter()
        .chain([built_from, PathBuf::from("scripts")])
        .find(|candidate| {
            candidate.join("nats.sh").is_file() && candidate.join("postgres.sh").is_file()
        })
}
