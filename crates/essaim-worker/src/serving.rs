//! How a long-running task that serves (a query leaf, a model replica) listens and
//! calls: with its worker's TLS, decided once here for every such task.
//!
//! A worker started with a certificate (`WorkerConfig::tls`) serves its files over
//! `https://`; the tasks it runs serve with the same certificate, on the same advertised
//! host, and advertise `https://` addresses, so a cluster is TLS everywhere or nowhere
//! by the worker's one setting. Their calls (a registration with the front, the
//! registry) verify peers with the worker's `ClientTrust`, which also presents the
//! worker's client certificate to peers requiring one (mutual TLS). Every attempt is
//! given a [`WorkerTls`] in its context ([`crate::AttemptContext::tls`]), so an
//! executor needs no TLS settings of its own.

use essaim_core::TaskFailure;
use essaim_tls::{ClientTrust, ServerTls};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::AttemptContext;

/// The worker's TLS as its tasks use it; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct WorkerTls {
    /// The certificate the worker serves with (`None`: plain HTTP).
    pub server: Option<ServerTls>,
    /// The roots `https://` peers are verified with, and the certificate presented to
    /// those that require one.
    pub trust: ClientTrust,
}

impl WorkerTls {
    /// Returns the scheme of the worker's addresses: `https` with a certificate.
    pub fn scheme(&self) -> &'static str {
        essaim_tls::url_scheme(self.server.as_ref())
    }
}

/// A serving task's socket, bound on the worker's advertised host, and its URL.
pub struct ServingListener {
    listener: tokio::net::TcpListener,
    url: String,
    tls: Option<ServerTls>,
}

impl ServingListener {
    /// Binds a port of the system's choosing on the host the worker advertises (which
    /// other machines reach), for `attempt`. A failure is retryable: another worker,
    /// or this one later, may bind.
    pub async fn bind(attempt: &AttemptContext) -> Result<Self, TaskFailure> {
        let host = attempt
            .advertised_host()
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        let listener = tokio::net::TcpListener::bind((host.as_str(), 0))
            .await
            .map_err(|error| TaskFailure::retryable(format!("cannot listen on {host}: {error}")))?;
        let port = listener
            .local_addr()
            .map_err(|error| TaskFailure::retryable(format!("cannot read the address: {error}")))?
            .port();
        Ok(Self {
            listener,
            url: serving_url(&attempt.tls, &host, port),
            tls: attempt.tls.server.clone(),
        })
    }

    /// Returns the URL peers reach the task at (`https://` on a TLS worker).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves `router` (over TLS on a TLS worker) until `stop` fires.
    pub fn serve(
        self,
        router: axum::Router,
        stop: CancellationToken,
    ) -> JoinHandle<std::io::Result<()>> {
        tokio::spawn(async move {
            essaim_tls::serve(
                self.listener,
                self.tls.as_ref(),
                router,
                stop.cancelled_owned(),
            )
            .await
        })
    }
}

/// Returns the URL of a task of a worker with `tls` listening on `host:port`.
pub fn serving_url(tls: &WorkerTls, host: &str, port: u16) -> String {
    format!("{}://{host}:{port}", tls.scheme())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_worker_advertises_https() {
        let plain = WorkerTls::default();
        assert_eq!(serving_url(&plain, "10.0.0.7", 81), "http://10.0.0.7:81");
        let dir = tempfile::tempdir().unwrap();
        let files = essaim_tls::testing::TestCertificates::generate(dir.path()).unwrap();
        let tls = WorkerTls {
            server: Some(ServerTls::load(&files.cert, &files.key).unwrap()),
            trust: ClientTrust::from_ca_file(&files.ca).unwrap(),
        };
        assert_eq!(serving_url(&tls, "10.0.0.7", 81), "https://10.0.0.7:81");
    }
}
