//! What the container tests (the binary's `tests/containers.rs` and
//! `tests/multihost/`) share: finding Docker, running commands that must succeed,
//! packaging the binary under test for an image, and plain HTTP GETs to published ports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

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
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\n{authorization}\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or((response.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}
