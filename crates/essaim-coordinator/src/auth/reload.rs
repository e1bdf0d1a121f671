//! The principals file reloaded while the coordinator runs.
//!
//! Tokens are revoked and granted by editing the file, as with the password files of
//! web servers and Kubernetes' mounted secrets (which are replaced behind a symbolic
//! link, so the file's content is watched, not its modification time). The file is read
//! again on `SIGHUP`, and its content checked every [`CHECK_EVERY`]; a new version goes
//! through the same validation as at start and replaces the principals in force all at
//! once. A refused version (unreadable, invalid, reusing the cluster token, empty where
//! that would admit anyone) changes nothing: the error is logged and counted in
//! `essaim_principals_reloads_total{outcome="refused"}`, so that a typo cannot lock
//! everyone out or let everyone in.

use super::{Authenticator, load_principals, sha256_bytes};
use essaim_telemetry::{PrincipalsMetrics, ReloadOutcome};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// How often the file's content is compared with the one in force.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Watches the principals file at `path` until `stop`, putting each new valid version
/// in force in `authenticator`.
pub async fn watch_principals_file(
    authenticator: Authenticator,
    path: PathBuf,
    metrics: PrincipalsMetrics,
    stop: CancellationToken,
) {
    let mut hangups = hangup_signals();
    let mut in_force = std::fs::read(&path).ok().map(|bytes| sha256_bytes(&bytes));
    loop {
        let asked = tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => false,
            Some(()) = next_hangup(&mut hangups) => true,
        };
        let content = std::fs::read(&path).ok().map(|bytes| sha256_bytes(&bytes));
        if !asked && content == in_force {
            continue;
        }
        in_force = content;
        match load_principals(&path)
            .map_err(|error| essaim_core::error_chain::error_chain(&error))
            .and_then(|principals| {
                let count = principals.len();
                authenticator.replace_principals(principals).map(|()| count)
            }) {
            Ok(count) => {
                metrics.record_reload(ReloadOutcome::Loaded);
                metrics.set_in_force(count);
                info!(path = %path.display(), principals = count, "principals file reloaded");
            }
            Err(refusal) => {
                metrics.record_reload(ReloadOutcome::Refused);
                error!(path = %path.display(), %refusal, "principals file refused; the previous principals stay in force");
            }
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangup_signals() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signals() -> Hangups {}

/// Waits for the next `SIGHUP`; never returns where there is none.
#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    match hangups {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) -> Option<()> {
    std::future::pending().await
}
