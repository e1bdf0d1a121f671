//! The TLS options of the command line: a server's certificate and key (`--tls-cert`,
//! `--tls-key` on the coordinator and the worker) and, for mutual TLS, the CA its
//! clients' certificates must chain to (`--tls-client-ca`); the CA a client trusts
//! (`--tls-ca`, shared by every client verb and the worker as `[cluster] tls_ca`) and
//! the certificate it presents (`--tls-client-cert`, `--tls-client-key`, as
//! `[cluster] tls_client_cert` and `tls_client_key`).
//!
//! The files are read when the command starts: a missing, unreadable or mismatched file
//! is a usage error (exit code 2) naming the file, never a failure at the first
//! connection.

use std::path::PathBuf;

use essaim_tls::{ClientTrust, ServerTls};

use crate::client::usage;

/// The certificate and key a server serves TLS with.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerTlsArgs {
    /// PEM certificate chain (this server's certificate first) to serve TLS with on
    /// every port of this process; clients then use `https://`. Default: plain HTTP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: PEM file of the CA(s) every client's certificate must chain to; a
    /// client without such a certificate fails its handshake. Default: no client
    /// certificate asked for.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// Reads the certificate and key, if TLS is asked for.
    pub fn load(&self) -> anyhow::Result<Option<ServerTls>> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            // Both come together on the command line; one may come from a lower layer.
            (Some(_), None) => return Err(usage("--tls-cert needs --tls-key")),
            (None, Some(_)) => return Err(usage("--tls-key needs --tls-cert")),
        };
        ServerTls::load_requiring_clients(cert, key, self.tls_client_ca.as_deref())
            .map(Some)
            .map_err(|error| usage(essaim_core::error_chain::error_chain(&error)))
    }
}

/// The roots a client verifies `https://` servers with.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrustArgs {
    /// PEM file of the CA(s) whose certificates this client trusts for `https://` URLs
    /// (the coordinator's, and the workers' file servers). Default: the system's roots.
    #[arg(long, env = "ESSAIM_CLUSTER_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS: PEM certificate chain this process presents to servers that ask for
    /// one (their --tls-client-ca signed it).
    #[arg(long, env = "ESSAIM_CLUSTER_TLS_CLIENT_CERT", value_name = "FILE")]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM private key of --tls-client-cert.
    #[arg(long, env = "ESSAIM_CLUSTER_TLS_CLIENT_KEY", value_name = "FILE")]
    pub tls_client_key: Option<PathBuf>,
}

impl TrustArgs {
    /// Reads the CA file and the client certificate, if any.
    pub fn load(&self) -> anyhow::Result<ClientTrust> {
        let failed =
            |error: essaim_tls::TlsError| usage(essaim_core::error_chain::error_chain(&error));
        let trust = ClientTrust::from_optional_ca_file(self.tls_ca.as_deref()).map_err(failed)?;
        match (&self.tls_client_cert, &self.tls_client_key) {
            (None, None) => Ok(trust),
            (Some(cert), Some(key)) => trust.with_identity(cert, key).map_err(failed),
            (Some(_), None) => Err(usage("--tls-client-cert needs --tls-client-key")),
            (None, Some(_)) => Err(usage("--tls-client-key needs --tls-client-cert")),
        }
    }
}
