//! Who may call a server of essaim: the cluster token, the principals file, and the
//! refusal to listen beyond loopback with neither. One set of flags and one check for
//! every process that serves the coordinator's API or part of it (`essaim
//! coordinator`, `essaim registry`), so their rules cannot drift apart.

use crate::client::usage;
use essaim_coordinator::auth::{Authenticator, PrincipalSpec};
use essaim_telemetry::prometheus_client::registry::Registry;
use essaim_telemetry::{AuthMetrics, AuthSurface, PrincipalsMetrics};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// Options that say who may call this server.
#[derive(clap::Args, Debug)]
pub struct ServerAuthArgs {
    /// Cluster token required from workers and clients.
    #[command(flatten)]
    token: crate::client::TokenArgs,
    /// Principals file (TOML): named tokens, or client certificates' common names (with
    /// --tls-client-ca), with roles (`read-only`, `submit`, `admin`, `worker`,
    /// `commands`), accepted beside the cluster token, which keeps every role.
    /// Read again on SIGHUP and when its content changes (a refused version keeps the
    /// principals in force). See the README's security section. Default: none.
    #[arg(long)]
    principals: Option<PathBuf>,
    /// Accept unauthenticated callers on a non-loopback address.
    #[arg(long)]
    allow_unauthenticated: bool,
}

/// The credentials a server accepts, checked.
#[derive(Debug)]
pub struct ServerCredentials {
    /// The cluster token.
    pub token: Option<String>,
    /// The principals of the file.
    pub principals: Vec<PrincipalSpec>,
    /// The file, watched for changes.
    pub principals_file: Option<PathBuf>,
}

impl ServerAuthArgs {
    /// Reads the token and the principals, and refuses a server on a non-loopback
    /// `listen` address that would accept anyone, unless asked to.
    pub fn resolve(&self, listen: SocketAddr) -> anyhow::Result<ServerCredentials> {
        let token = self.token.resolve()?;
        let principals = match &self.principals {
            Some(path) => essaim_coordinator::auth::load_principals(path)
                .map_err(|error| usage(essaim_core::error_chain::error_chain(&error)))?,
            None => Vec::new(),
        };
        essaim_coordinator::auth::check_principals_against_cluster_token(
            &principals,
            token.as_deref(),
        )
        .map_err(usage)?;
        let no_credentials = token.is_none() && principals.is_empty();
        if no_credentials && !listen.ip().is_loopback() && !self.allow_unauthenticated {
            return Err(usage(format!(
                "refusing to listen on {listen} without a cluster token: pass --token (or ESSAIM_TOKEN) or --principals, or --allow-unauthenticated"
            )));
        }
        Ok(ServerCredentials {
            token,
            principals,
            principals_file: self.principals.clone(),
        })
    }
}

impl ServerCredentials {
    /// Returns the authenticator of an HTTP-only server (its refusals counted in
    /// `metrics`), and watches the principals file, if any, until `stop`.
    pub fn rest_authenticator(
        self,
        metrics: &mut Registry,
        stop: CancellationToken,
    ) -> (Authenticator, Option<tokio::task::JoinHandle<()>>) {
        let authenticator = Authenticator::new(
            self.token.as_deref(),
            self.principals.clone(),
            AuthMetrics::register(metrics, &[AuthSurface::Rest]),
        );
        let watch = self.principals_file.map(|path| {
            let principals_metrics = PrincipalsMetrics::register(metrics);
            principals_metrics.set_in_force(self.principals.len());
            tokio::spawn(essaim_coordinator::auth::watch_principals_file(
                authenticator.clone(),
                path,
                principals_metrics,
                stop,
            ))
        });
        (authenticator, watch)
    }
}
