//! The process-wide log subscriber, installed the same way by every essaim binary.
//!
//! Logs go to stderr so that stdout stays free for command output (e.g. `essaim job
//! status --json`). The filter comes from `RUST_LOG`, defaulting to `info`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Installs the global tracing subscriber: JSON lines when `json` is true, human-readable
/// text otherwise, filtered by `RUST_LOG` (default `info`).
///
/// Safe to call more than once: only the first call installs a subscriber, later calls
/// (for example from several tests in one binary) do nothing.
pub fn init_tracing(json: bool) {
    init_tracing_with_default(json, LevelFilter::INFO);
}

/// Like [`init_tracing`], with another level when `RUST_LOG` is not set (demos run quieter).
pub fn init_tracing_with_default(json: bool, default_level: LevelFilter) {
    // Lossy: an invalid directive in RUST_LOG is skipped rather than preventing the
    // process from starting or silencing all logs.
    let filter = EnvFilter::builder()
        .with_default_directive(default_level.into())
        .from_env_lossy();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // The error only says a global subscriber already exists, which is the case this
    // function promises to tolerate.
    let _already_installed = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calling_init_tracing_twice_does_not_panic() {
        init_tracing(false);
        init_tracing(true);
        tracing::info!("logged after double initialisation");
    }
}
