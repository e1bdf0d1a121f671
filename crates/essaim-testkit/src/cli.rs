//! One-shot runs of a binary under test, as a user would type them: the test's own
//! `ESSAIM_*` variables are not inherited, so only the flags and the environment a test
//! passes configure the run.

use std::path::Path;
use std::process::Stdio;

use crate::deadline::EVENTUALLY;

/// The `ESSAIM_*` variables a child must not inherit from the test's environment.
pub const INHERITED_VARIABLES_REMOVED: [&str; 3] =
    ["ESSAIM_TOKEN", "ESSAIM_COORDINATOR", "ESSAIM_LOG_JSON"];

/// What a finished run printed.
#[derive(Debug)]
pub struct CliOutput {
    /// The exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `BINARY ARGS` to completion with `env` set and no other `ESSAIM_*` variable;
/// fails the test if it takes longer than [`EVENTUALLY`] (a demo runs a whole cluster).
pub async fn run(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let mut command = tokio::process::Command::new(binary);
    command.args(args);
    for variable in INHERITED_VARIABLES_REMOVED {
        command.env_remove(variable);
    }
    command
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let what = format!("`{} {}`", binary.display(), args.join(" "));
    let output = match tokio::time::timeout(EVENTUALLY, command.output()).await {
        Ok(output) => output.unwrap_or_else(|error| panic!("{what} cannot run: {error}")),
        Err(_) => panic!("{what} did not finish within {EVENTUALLY:?}"),
    };
    CliOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
