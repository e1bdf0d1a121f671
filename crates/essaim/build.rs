//! Records which build this is, for `essaim_build_info` (see `essaim_telemetry::BuildInfo`):
//! the git commit of the source and the compiler's version, as `ESSAIM_BUILD_REVISION`
//! and `ESSAIM_BUILD_RUSTC` at compile time.
//!
//! `ESSAIM_BUILD_REVISION` in the environment wins (a build from a source archive, with
//! no `.git`); without it and without git, the revision is `unknown`. Only this binary
//! crate has the script, so a new commit rebuilds this crate alone, not the libraries.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ESSAIM_BUILD_REVISION");
    let revision = std::env::var("ESSAIM_BUILD_REVISION")
        .ok()
        .filter(|revision| !revision.is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=ESSAIM_BUILD_REVISION={revision}");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc_version = command_output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ESSAIM_BUILD_RUSTC={rustc_version}");
}

/// Returns the short commit of HEAD, and asks to run again when HEAD moves.
fn git_revision() -> Option<String> {
    let revision = command_output("git", &["rev-parse", "--short=12", "HEAD"])?;
    // HEAD names a branch whose ref file moves at each commit (in a worktree, HEAD is
    // the worktree's own and the branch ref is in the common directory: `--git-path`
    // resolves both). A ref that only exists packed is watched through packed-refs.
    let watched = [
        Some("HEAD".to_string()),
        command_output("git", &["symbolic-ref", "-q", "HEAD"]),
        Some("packed-refs".to_string()),
    ];
    for name in watched.into_iter().flatten() {
        if let Some(path) = command_output("git", &["rev-parse", "--git-path", &name]) {
            let path = PathBuf::from(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(revision)
}

/// Runs `program args` and returns its trimmed standard output, or `None` on failure.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_string()).filter(|text| !text.is_empty())
}
