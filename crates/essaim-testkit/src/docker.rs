//! What the container tests (the binary's `tests/containers.rs` and
//! `tests/multihost/`) share: finding Docker, running commands that must succeed,
//! packaging the binary under test for an image, and plain HTTP GETs to published ports.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Returns the repository's root folder (where `deploy/` and `scripts/` are).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Returns whether to run, or panics when Docker is missing and skipping is not allowed.
/// `skipped` names what ESSAIM_SKIP_DOCKER=1 skips, for the message.
pub fn docker_is_usable(skipped: &str) -> bool {
    let engine_answers = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if engine_answers {
        return true;
    }
    let skip = std::env::var("ESSAIM_SKIP_DOCKER").is_ok_and(|value| value == "1");
    assert!(
        skip,
        "no Docker engine answers `docker info`: start one, or set ESSAIM_SKIP_DOCKER=1 \
         to skip {skipped}"
    );
    eprintln!("no Docker engine and ESSAIM_SKIP_DOCKER=1: skipped");
    false
}

/// Panics with the command's output unless it succeeded; returns its stdout.
pub fn succeeded(what: &str, output: std::io::Result<Output>) -> String {
    let output = output.unwrap_or_else(|error| panic!("{what}: cannot run: {error}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Returns the binary to put in an image and whether it is a copy to delete afterwards:
/// `ESSAIM_BINARY` if set, else a copy of `binary` without debug info (named `name` in
/// `scratch`; the name must differ between test processes that run at the same time),
/// else `binary` itself when `strip` is not installed.
pub fn binary_to_package(binary: &Path, scratch: &Path, name: &str) -> (PathBuf, bool) {
    if let Ok(path) = std::env::var("ESSAIM_BINARY") {
        return (PathBuf::from(path), false);
    }
    let stripped = scratch.join(name);
    let status = Command::new("strip")
        .args(["--strip-debug", "-o"])
        .arg(&stripped)
        .arg(binary)
        .status();
    match status {
        Ok(status) if status.success() => (stripped, true),
        _ => (binary.to_path_buf(), false),
    }
}

/// Sends an HTTP/1.0 GET (neither chunked nor kept alive), with the bearer token if
/// any; returns the status and the body.
pub fn http_get(address: &str, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    crate::http::request(address, "GET", path, token, None)
}
