//! Connection options shared by every client subcommand, and the one way they call the
//! coordinator: through [`essaim_proto::Coordinators`], so that every verb rides through
//! a coordinator's restart or a failover to another coordinator of the list, within a
//! deadline, and says what it is waiting for.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use essaim_proto::v1;
use essaim_proto::{
    CallError, CoordinatorClient, CoordinatorUrls, Coordinators, Idempotence, RetryNotice,
};
use tokio::time::Instant;

/// How long a command keeps trying while no coordinator can serve it, unless
/// `--connect-timeout` says otherwise (a coordinator restart takes a few seconds, a
/// failover about as long).
pub const DEFAULT_CONNECT_TIMEOUT: &str = "60s";

/// Where the coordinator is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Coordinator URL, or several separated by commas
    /// (`http://c1:7070,http://c2:7070`): calls go to whichever leads.
    #[arg(
        long,
        env = "ESSAIM_COORDINATOR",
        default_value = "http://127.0.0.1:7070"
    )]
    pub coordinator: String,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(flatten)]
    pub trust: crate::tls_args::TrustArgs,
    /// How long to keep retrying while no coordinator can serve a call (restarting, or
    /// failing over), before giving up with exit code 3: `60s`, `2m`, or seconds.
    #[arg(
        long = "connect-timeout",
        env = "ESSAIM_CONNECT_TIMEOUT",
        value_name = "DURATION",
        value_parser = crate::durations::seconds,
        default_value = DEFAULT_CONNECT_TIMEOUT
    )]
    pub connect_timeout: Duration,
}

/// The cluster token, given itself or as a file that holds it.
#[derive(Args, Debug, Clone, Default)]
pub struct TokenArgs {
    /// Cluster token.
    #[arg(long, env = "ESSAIM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File whose first line is the cluster token, instead of --token (a mounted
    /// secret, say).
    #[arg(
        long,
        env = "ESSAIM_TOKEN_FILE",
        value_name = "PATH",
        conflicts_with = "token"
    )]
    pub token_file: Option<std::path::PathBuf>,
}

impl TokenArgs {
    /// Returns the token: `--token`, or the first line of `--token-file`.
    ///
    /// Both are set only when one came from `essaim.toml` and the other from the command
    /// line or a variable (clap refuses both there, and the file cannot hold both). The
    /// file's `token_file` is read into `token`'s default when the file is loaded, so a
    /// `token_file` seen here always comes from a higher layer and wins.
    pub fn resolve(&self) -> anyhow::Result<Option<String>> {
        match &self.token_file {
            Some(path) => Ok(Some(
                crate::secrets::read_secret(path).map_err(|error| usage(error.to_string()))?,
            )),
            None => Ok(self.token.clone()),
        }
    }
}

impl ConnectArgs {
    /// Returns options for the coordinator at `url` with the default timeout.
    pub fn for_url(url: &str, token: Option<String>) -> Self {
        Self {
            coordinator: url.to_string(),
            token: TokenArgs {
                token,
                token_file: None,
            },
            trust: crate::tls_args::TrustArgs::default(),
            connect_timeout: crate::durations::seconds(DEFAULT_CONNECT_TIMEOUT)
                .expect("the default connect timeout is a duration"),
        }
    }

    /// Returns the cluster token, if any (read from its file if given so).
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        self.token.resolve()
    }

    /// Validates the URL list and returns the caller of the leading coordinator.
    pub fn coordinator(&self) -> anyhow::Result<CoordinatorCalls> {
        // A malformed list is the user's mistake (exit code 2), not an unreachable host.
        let urls =
            CoordinatorUrls::parse(&self.coordinator).map_err(|error| usage(error.to_string()))?;
        let trust = self.trust.load()?;
        Ok(CoordinatorCalls::new(
            urls,
            self.token()?,
            trust,
            self.connect_timeout,
        ))
    }

    /// Connects to the leading coordinator, retrying within the connect timeout; for the
    /// commands that drive a raw client (benchmarks).
    pub async fn connect(&self) -> anyhow::Result<CoordinatorClient> {
        self.coordinator()?.client().await
    }
}

/// Calls the leading coordinator, retrying while none can serve the call.
#[derive(Clone, Debug)]
pub struct CoordinatorCalls {
    coordinators: Coordinators,
    retry_for: Duration,
}

impl CoordinatorCalls {
    fn new(
        urls: CoordinatorUrls,
        token: Option<String>,
        trust: essaim_tls::ClientTrust,
        retry_for: Duration,
    ) -> Self {
        let seed = u64::from(std::process::id());
        let coordinators = Coordinators::new(urls, token, seed)
            .with_trust(trust)
            .with_observer(tell_user());
        Self {
            coordinators,
            retry_for,
        }
    }

    /// Returns the caller of the local cluster at `url` (the demos, `essaim run`).
    pub fn local(url: &str) -> anyhow::Result<Self> {
        ConnectArgs::for_url(url, None).coordinator()
    }

    /// Returns the default deadline of one call: the connect timeout from now.
    pub fn default_deadline(&self) -> Instant {
        Instant::now() + self.retry_for
    }

    /// Runs a read (or a change that a repeat leaves as it is), retrying until the
    /// connect timeout.
    pub async fn read<T, F, Fut>(&self, rpc: F) -> anyhow::Result<T>
    where
        F: FnMut(CoordinatorClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_until(self.default_deadline(), Idempotence::Idempotent, rpc)
            .await
    }

    /// Runs a change that must not happen twice (a submission): retried only while it
    /// surely did not reach the leader.
    pub async fn change_once<T, F, Fut>(&self, rpc: F) -> anyhow::Result<T>
    where
        F: FnMut(CoordinatorClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_until(self.default_deadline(), Idempotence::NotIdempotent, rpc)
            .await
    }

    /// Submits a job (once: see [`Self::change_once`]) and returns its id.
    pub async fn submit_job(&self, spec: v1::JobSpec) -> anyhow::Result<u64> {
        let request = v1::SubmitJobRequest { spec: Some(spec) };
        let submitted = self
            .change_once(|mut client| {
                let request = request.clone();
                async move { client.submit_job(request).await }
            })
            .await?;
        Ok(submitted.job_id)
    }

    /// Runs `rpc`, retrying until `deadline`.
    pub async fn call_until<T, F, Fut>(
        &self,
        deadline: Instant,
        idempotence: Idempotence,
        rpc: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut(CoordinatorClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.coordinators
            .call(Some(deadline), idempotence, rpc)
            .await
            .map_err(|error| match error {
                // Unwrapped, so that the exit code is chosen from what failed.
                CallError::Status(status) => anyhow::Error::from(status),
                CallError::Client(error) => anyhow::Error::from(error),
            })
    }

    /// Returns a connected client of the leading coordinator, trying every URL until the
    /// connect timeout.
    pub async fn client(&self) -> anyhow::Result<CoordinatorClient> {
        // A cheap read finds the leader (following hints) before the client is handed out.
        self.read(|mut client| async move {
            client
                .list_workers(essaim_proto::v1::ListWorkersRequest {})
                .await
        })
        .await?;
        Ok(self.coordinators.client().await?.0)
    }
}

/// Returns the observer that tells the user, on standard error, what the command waits
/// for: at the first failure of an outage, and then every tenth try.
fn tell_user() -> essaim_proto::failover::RetryObserver {
    Arc::new(|notice: &RetryNotice| {
        let outage_starts = notice.failures == 1;
        if outage_starts || notice.failures.is_multiple_of(10) {
            eprintln!("{}", retry_message(notice));
        }
    })
}

/// Words the user reads while a command waits for a coordinator.
fn retry_message(notice: &RetryNotice) -> String {
    let budget = match notice.remaining {
        Some(remaining) => format!("for up to {} s", remaining.as_secs()),
        None => "until it answers".to_string(),
    };
    let elsewhere = if notice.next_url == notice.url {
        String::new()
    } else {
        format!(", trying {}", notice.next_url)
    };
    format!(
        "coordinator {} unreachable ({}){elsewhere}, retrying {budget}",
        notice.url, notice.reason
    )
}

/// A mistake in the command line or its input files.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Returns a usage error as an `anyhow::Error`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_told_which_coordinator_is_awaited_and_for_how_long() {
        let notice = RetryNotice {
            url: "http://c1:7070".into(),
            next_url: "http://c2:7070".into(),
            reason: "connection refused".into(),
            failures: 1,
            remaining: Some(Duration::from_millis(58_400)),
        };
        assert_eq!(
            retry_message(&notice),
            "coordinator http://c1:7070 unreachable (connection refused), trying http://c2:7070, retrying for up to 58 s"
        );
    }

    #[test]
    fn a_bad_url_in_the_list_is_refused() {
        let args = ConnectArgs::for_url("http://c1:7070,c2", None);
        let error = args.coordinator().expect_err("c2 has no scheme");
        assert!(error.to_string().contains("`c2`"), "{error}");
    }
}
