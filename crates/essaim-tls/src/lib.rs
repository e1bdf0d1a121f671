//! TLS for every essaim port and every client of one, with rustls and its ring provider.
//!
//! A server is given a certificate chain and its key as PEM files ([`ServerTls`]); a
//! client is given the CA file it trusts ([`ClientTrust`]), or trusts the system's roots.
//! Everything that can be wrong with those files is found when the process starts, with
//! an error naming the file ([`TlsError`]), never at the first connection; a server's
//! renewed certificate is taken without a restart, after the same checks.
//!
//! | file | concept |
//! |---|---|
//! | `pem.rs` | reading certificates, keys and CA roots from PEM files |
//! | `server.rs` | [`ServerTls`], the [`TlsListener`] axum serves on, and [`serve`] |
//! | `reload.rs` | a server's certificate and key read again on `SIGHUP` or when their files change; a broken new pair refused, the old one kept |
//! | `peer.rs` | [`TlsPeer`]: the identity a client's verified certificate names, in every request's extensions |
//! | `client.rs` | [`ClientTrust`]: the roots a client verifies servers with, its HTTPS connector |
//! | `failure.rs` | telling a TLS handshake failure (no retry helps) from an unreachable host |
//!
//! Why rustls with ring: ring and rustls are already in the build (the S3 client), so
//! TLS adds no second crypto stack and no OpenSSL to link.
#![warn(missing_docs)]

mod client;
mod failure;
mod peer;
mod pem;
mod reload;
mod server;

use std::path::PathBuf;

pub use client::{ClientTrust, HttpsConnector};
pub use failure::{
    HandshakeFailure, REFUSAL_PROBE_WITHIN, explain_failure, handshake_failure, probe_refusal,
};
pub use peer::{ClientCertificate, TlsPeer, client_certificate};
pub use reload::{CHECK_EVERY as CERTIFICATE_CHECK_EVERY, CertificateReload};
pub use server::{ServerTls, TlsListener, serve, url_scheme};

/// Why a certificate, a key or a CA file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read the {what} file `{path}`")]
    Read {
        /// What the file should hold (certificate, key, CA).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not PEM, or holds nothing of the expected kind.
    #[error("the {what} file `{path}` holds no usable PEM {what}: {reason}")]
    Parse {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is unusable or is not the key of the certificate.
    #[error("the key `{key}` does not go with the certificate `{cert}`: {source}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's words.
        #[source]
        source: rustls::Error,
    },
    /// The CA file's certificates cannot verify clients or servers.
    #[error("the CA file `{path}` cannot be used: {reason}")]
    UnusableCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
