//! The client side: which roots a client verifies a server's certificate with.
//!
//! A client given a CA file (`--tls-ca`) trusts exactly the certificates that chain to
//! it; a client given none trusts the system's roots, so that an `https://` URL with a
//! certificate from a public CA works without options. `http://` URLs are unchanged:
//! the same client speaks plain HTTP to them.
//!
//! For mutual TLS a client also presents a certificate of its own
//! ([`ClientTrust::with_identity`], `--tls-client-cert` and `--tls-client-key`), which a
//! server started with `--tls-client-ca` requires.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::TlsError;
use crate::pem::{read_ca, read_certificate_chain, read_private_key};

/// The connector of every HTTP client: plain for `http://`, TLS for `https://`.
pub type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Returns the one crypto provider of every TLS configuration (ring).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots a client trusts, and the certificate it presents if any; cheap to clone.
#[derive(Clone, Default)]
pub struct ClientTrust {
    /// `None`: the system's roots.
    ca: Option<Arc<Ca>>,
    /// The client's own certificate, for servers that require one.
    identity: Option<Arc<Identity>>,
}

struct Ca {
    path: PathBuf,
    pem: Vec<u8>,
    roots: rustls::RootCertStore,
    config: Arc<rustls::ClientConfig>,
}

/// A client certificate, and the configuration that presents it with the roots.
struct Identity {
    cert_path: PathBuf,
    /// The certificate chain and key as read (tonic wants PEM).
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ca {
            Some(ca) => write!(f, "ClientTrust({}", ca.path.display())?,
            None => f.write_str("ClientTrust(system roots")?,
        }
        if let Some(identity) = &self.identity {
            write!(f, ", as {}", identity.cert_path.display())?;
        }
        f.write_str(")")
    }
}

impl ClientTrust {
    /// Trusts the system's roots (the default).
    pub fn system() -> Self {
        Self::default()
    }

    /// Trusts the certificates of the PEM file at `path`, and only those.
    pub fn from_ca_file(path: &Path) -> Result<Self, TlsError> {
        let ca = read_ca(path)?;
        let config = client_config(ca.roots.clone()).map_err(|error| TlsError::UnusableCa {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
        Ok(Self {
            ca: Some(Arc::new(Ca {
                path: path.to_path_buf(),
                pem: ca.pem,
                roots: ca.roots,
                config: Arc::new(config),
            })),
            identity: None,
        })
    }

    /// Presents the certificate chain at `cert` (PEM, the client's certificate first)
    /// with its key at `key` to servers that ask for one (mutual TLS); the roots stay
    /// these.
    pub fn with_identity(self, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = read_certificate_chain(cert)?;
        let private_key = read_private_key(key)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = match &self.ca {
            Some(ca) => builder.with_root_certificates(ca.roots.clone()),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(system_verifier()),
        };
        let config = builder
            .with_client_auth_cert(chain, private_key)
            .map_err(|source| TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                source,
            })?;
        let read = |path: &Path, what| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let identity = Identity {
            cert_path: cert.to_path_buf(),
            cert_pem: read(cert, "certificate")?,
            key_pem: read(key, "key")?,
            config: Arc::new(config),
        };
        Ok(Self {
            identity: Some(Arc::new(identity)),
            ..self
        })
    }

    /// Returns the client certificate presented (`None`: none).
    pub fn identity_path(&self) -> Option<&Path> {
        self.identity
            .as_ref()
            .map(|identity| identity.cert_path.as_path())
    }

    /// Returns the client certificate chain and key presented, as PEM (`None`: none).
    pub fn identity_pem(&self) -> Option<(&[u8], &[u8])> {
        self.identity
            .as_ref()
            .map(|identity| (identity.cert_pem.as_slice(), identity.key_pem.as_slice()))
    }

    /// Trusts the CA file at `path` when one is given, else the system's roots.
    pub fn from_optional_ca_file(path: Option<&Path>) -> Result<Self, TlsError> {
        path.map_or_else(|| Ok(Self::system()), Self::from_ca_file)
    }

    /// Returns the CA file's PEM bytes (`None`: the system's roots).
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca.as_ref().map(|ca| ca.pem.as_slice())
    }

    /// Returns the CA file (`None`: the system's roots).
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca.as_ref().map(|ca| ca.path.as_path())
    }

    /// Returns the rustls configuration of a client with these roots (and its own
    /// certificate, when it has one).
    pub fn rustls_config(&self) -> Arc<rustls::ClientConfig> {
        if let Some(identity) = &self.identity {
            return Arc::clone(&identity.config);
        }
        match &self.ca {
            Some(ca) => Arc::clone(&ca.config),
            None => system_config(),
        }
    }

    /// Returns an HTTP/1 connector that speaks TLS to `https://` URLs (verified with
    /// these roots) and plain HTTP to `http://` ones, with `TCP_NODELAY` and a connect
    /// timeout.
    pub fn http_connector(&self, connect_timeout: Duration) -> HttpsConnector {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_nodelay(true);
        // hyper-rustls only connects TLS when the URL says https.
        tcp.enforce_http(false);
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.rustls_config().as_ref().clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp)
    }
}

impl ClientTrust {
    /// Opens a TLS connection over `tcp` to `host` (a name or an IP address its
    /// certificate must name), verified with these roots.
    pub async fn connect(
        &self,
        tcp: tokio::net::TcpStream,
        host: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
        tokio_rustls::TlsConnector::from(self.rustls_config())
            .connect(name, tcp)
            .await
    }
}

fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The configuration with the system's roots. The roots are read at the first `https://`
/// connection, not before: reading them takes milliseconds that a command speaking
/// only plain HTTP should not pay.
fn system_config() -> Arc<rustls::ClientConfig> {
    static SYSTEM: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let config = SYSTEM.get_or_init(|| {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(system_verifier())
            .with_no_client_auth();
        Arc::new(config)
    });
    Arc::clone(config)
}

/// The verifier of the system's roots, which reads them at its first use.
fn system_verifier() -> Arc<SystemRootsVerifier> {
    Arc::new(SystemRootsVerifier {
        provider: provider(),
        verifier: OnceLock::new(),
    })
}

/// rustls's own verifier over the system's roots, built at its first use.
#[derive(Debug)]
struct SystemRootsVerifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: OnceLock<Result<Arc<WebPkiServerVerifier>, String>>,
}

impl SystemRootsVerifier {
    fn verifier(&self) -> Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        let built = self.verifier.get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::debug!(%error, "a system root certificate could not be read");
            }
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&self.provider))
                .build()
                .map_err(|error| {
                    format!("no usable system root certificates ({error}); pass --tls-ca")
                })
        });
        built
            .as_ref()
            .map_err(|reason| rustls::Error::General(reason.clone()))
    }
}

impl ServerCertVerifier for SystemRootsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
