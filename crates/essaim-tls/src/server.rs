//! The server side: a certificate and key ([`ServerTls`], renewed without a restart by
//! `reload.rs`), and a listener that hands axum only connections whose TLS handshake
//! succeeded ([`TlsListener`]).
//!
//! Handshakes run in their own tasks, not in `accept`: axum accepts one connection at a
//! time, and a client that opens a connection and says nothing must not stop the others
//! from being accepted. A handshake that has not finished after [`HANDSHAKE_TIMEOUT`] is
//! dropped.
//!
//! A client that speaks plain HTTP to a TLS port would otherwise see the connection
//! close with no word of why. Its first byte tells it apart (every TLS connection starts
//! with a handshake record, byte 0x16), and it is answered in its own protocol: an
//! HTTP/1 client gets a plain-text 400 that says to use `https://`, an HTTP/2 client
//! (gRPC over `http://`) a GOAWAY frame whose debug data says the same.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::pem::read_ca;
use crate::reload::ReloadingCertificate;
use crate::{CertificateReload, TlsError};

/// Longest a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of a TLS record carrying a handshake message (RFC 8446 §5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain-text client is told, in its protocol.
const USE_HTTPS: &str = "this port speaks TLS: use an https:// URL instead";

/// How every HTTP/2 connection starts (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Returns the answer of a plain-text client whose first bytes are `first`.
fn plain_text_answer(first: &[u8]) -> Vec<u8> {
    if first.starts_with(HTTP2_PREFACE) {
        // The server's preface (an empty SETTINGS frame), then GOAWAY: last stream 0,
        // PROTOCOL_ERROR, and the words as debug data.
        let mut frames = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
        let length = u32::try_from(8 + USE_HTTPS.len()).expect("a short message");
        frames.extend_from_slice(&length.to_be_bytes()[1..]);
        frames.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]);
        frames.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x1]);
        frames.extend_from_slice(USE_HTTPS.as_bytes());
        return frames;
    }
    let body = format!("{USE_HTTPS}\n");
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Tells a plain-text client to use TLS, then closes without resetting: its request is
/// read first and the socket drained until it closes (unread bytes at close would send
/// a reset, and the client could lose the answer).
async fn answer_plain_text_client(mut tcp: TcpStream) -> std::io::Result<()> {
    let mut received = [0u8; 4096];
    let length = tcp.read(&mut received).await?;
    tcp.write_all(&plain_text_answer(&received[..length]))
        .await?;
    tcp.shutdown().await?;
    let drain = async { while tcp.read(&mut received).await.is_ok_and(|read| read > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    Ok(())
}

/// A server's certificate and key, ready to accept TLS connections (and, for mutual
/// TLS, the CA its clients' certificates must chain to).
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    /// The pair every handshake gets, read again when its files change (`reload.rs`).
    certificate: Arc<ReloadingCertificate>,
    cert_path: PathBuf,
    client_ca: Option<PathBuf>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert_path)
            .field("client_ca", &self.client_ca)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the certificate chain at `cert` (PEM, the server's certificate first) and
    /// its private key at `key`, and checks that they go together.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Self::load_requiring_clients(cert, key, None)
    }

    /// Reads the certificate and key as [`ServerTls::load`] does; with `client_ca`,
    /// every client must present a certificate that chains to that CA file (mutual
    /// TLS), or its handshake fails.
    pub fn load_requiring_clients(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<Self, TlsError> {
        let certificate = Arc::new(ReloadingCertificate::load(cert, key)?);
        let mismatch = |source| TlsError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        };
        let builder = rustls::ServerConfig::builder_with_provider(crate::client::provider())
            .with_safe_default_protocol_versions()
            .map_err(mismatch)?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => builder.with_client_cert_verifier(client_verifier(path)?),
        };
        // `ReloadingCertificate::load` checked that the key is the certificate's.
        let resolver: Arc<dyn rustls::server::ResolvesServerCert> = certificate.clone();
        let mut config = builder.with_cert_resolver(resolver);
        // gRPC clients insist on negotiating h2; HTTP/1.1 for everyone else.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            certificate,
            cert_path: cert.to_path_buf(),
            client_ca: client_ca.map(Path::to_path_buf),
        })
    }

    /// Reads the certificate and key files again and, when they changed and are valid,
    /// serves the new pair to new connections (connections already open keep theirs).
    /// [`serve`] does this on `SIGHUP` and when the files change.
    pub fn reload_if_changed(&self) -> CertificateReload {
        self.certificate.reload_if_changed()
    }

    /// Returns the certificate file, for logs.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Returns the CA clients' certificates must chain to (`None`: no client
    /// certificate asked for).
    pub fn client_ca(&self) -> Option<&Path> {
        self.client_ca.as_deref()
    }
}

/// The verifier of clients' certificates against the CA file at `path`.
fn client_verifier(
    path: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let ca = read_ca(path)?;
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(ca.roots),
        crate::client::provider(),
    )
    .build()
    .map_err(|error| TlsError::UnusableCa {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })
}

/// Accepts TCP connections and yields those whose TLS handshake succeeded.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    /// Serves TLS with `tls` on the connections of `tcp`.
    pub fn new(tcp: TcpListener, tls: &ServerTls) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(Arc::clone(&tls.config)),
            handshakes: JoinSet::new(),
        }
    }
}

/// What the accept loop saw next.
enum Next {
    Connected(TcpStream, SocketAddr),
    /// Boxed: a TLS stream is over a kilobyte, the other variant a few words.
    Handshaken(Option<Box<(TlsStream<TcpStream>, SocketAddr)>>),
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // Both futures are cancel-safe: a handshake in flight stays in the set.
            let next = tokio::select! {
                (tcp, address) = Listener::accept(&mut self.tcp) => Next::Connected(tcp, address),
                Some(joined) = self.handshakes.join_next() => {
                    Next::Handshaken(joined.unwrap_or(None).map(Box::new))
                }
            };
            match next {
                Next::Connected(tcp, address) => {
                    let acceptor = self.acceptor.clone();
                    self.handshakes.spawn(handshake(acceptor, tcp, address));
                }
                Next::Handshaken(Some(connection)) => return *connection,
                Next::Handshaken(None) => {}
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Runs one handshake; `None` when it failed (logged at DEBUG: a scanner or a client
/// that does not trust us is not this server's problem).
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    address: SocketAddr,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    // Small RPCs must not wait for Nagle's algorithm.
    let _ = tcp.set_nodelay(true);
    let handshake = async {
        let mut first = [0u8; 1];
        let peeked = tcp.peek(&mut first).await?;
        if peeked == 1 && first[0] != TLS_HANDSHAKE_RECORD {
            answer_plain_text_client(tcp).await?;
            return Err(std::io::Error::other(
                "a plain-text request on the TLS port",
            ));
        }
        acceptor.accept(tcp).await
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => Some((stream, address)),
        Ok(Err(error)) => {
            tracing::debug!(peer = %address, %error, "TLS handshake failed");
            None
        }
        Err(_elapsed) => {
            tracing::debug!(peer = %address, "TLS handshake timed out");
            None
        }
    }
}

/// Returns the scheme of the URLs of a server serving with `tls`: `https` with a
/// certificate, else `http`; every server that advertises its address asks here.
pub fn url_scheme(tls: Option<&ServerTls>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// Serves `router` on `listener` — over TLS when `tls` is given — until `shutdown`
/// completes, then waits for in-flight requests. Over TLS, every request carries its
/// connection's [`TlsPeer`](crate::TlsPeer) (see [`client_certificate`](crate::client_certificate)),
/// and the certificate and key are read again on `SIGHUP` and when their files change
/// ([`ServerTls::reload_if_changed`]).
///
/// Accepted connections get `TCP_NODELAY` (see `essaim_telemetry::serve_http` for why).
pub async fn serve(
    listener: TcpListener,
    tls: Option<&ServerTls>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return serve_plain(listener, router, shutdown).await;
    };
    // Every request carries its connection's peer and client certificate (`peer.rs`).
    let service = router.into_make_service_with_connect_info::<crate::TlsPeer>();
    let serving = axum::serve(TlsListener::new(listener, tls), service)
        .with_graceful_shutdown(shutdown)
        .into_future();
    // The certificate is watched as long as it is served, and no longer.
    tokio::select! {
        served = serving => served,
        never = tls.certificate.watch() => match never {},
    }
}

async fn serve_plain(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
