//! Connection options shared by every client subcommand.

use clap::Args;
use essaim_proto::CoordinatorClient;
use std::time::Duration;

/// Where the coordinator is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Coordinator URL.
    #[arg(
        long,
        env = "ESSAIM_COORDINATOR",
        default_value = "http://127.0.0.1:7070"
    )]
    pub coordinator: String,
    /// Cluster token (also read from ESSAIM_TOKEN).
    #[arg(long, env = "ESSAIM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ConnectArgs {
    /// Connects, failing within 5 s when nothing answers.
    pub async fn connect(&self) -> anyhow::Result<CoordinatorClient> {
        Ok(essaim_proto::connect(
            &self.coordinator,
            self.token.as_deref(),
            Duration::from_secs(5),
        )
        .await?)
    }
}

/// A mistake in the command line or its input files.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Returns a usage error as an `anyhow::Error`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}
