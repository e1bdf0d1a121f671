//! One-shot runs of a binary under test, as a user would type them: the test's own
//! `ESSAIM_*` variables are not inherited, so only the flags and the environment a test
//! passes configure the run.

use std::path::Path;
use std::process::Stdio;

use crate::deadline::EVENTUALLY;

/// Returns the `ESSAIM_*` variables of the test's environment, which a child must not
/// inherit (every option of the binary has one).
pub fn inherited_essaim_variables() -> Vec<std::ffi::OsString> {
    std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.to_string_lossy().starts_with("ESSAIM_"))
        .collect()
}

/// What every child gets first: no configuration file (not even one on the search path
/// of the machine running the tests); a test names its own with `ESSAIM_CONFIG`.
pub const HERMETIC_VARIABLES: [(&str, &str); 2] = [("NO_COLOR", "1"), ("ESSAIM_CONFIG", "")];

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
    for variable in inherited_essaim_variables() {
        command.env_remove(variable);
    }
    command
        .envs(HERMETIC_VARIABLES)
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
