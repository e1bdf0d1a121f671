//! Reading certificates, keys and CA roots from PEM files, with errors naming the file.
//!
//! Reading happens at start-up, on the caller's thread: the files are small and a
//! process that cannot read them must not start. A server's certificate and key are read
//! again when they change (`reload.rs`).

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

const CERTIFICATE: &str = "certificate";
const KEY: &str = "key";
const CA: &str = "CA";

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn parse_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Parse {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Returns the certificates of a PEM file, in order; at least one.
fn certificates_in(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut certificates = Vec::new();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        certificates.push(certificate.map_err(|error| parse_error(what, path, error))?);
    }
    if certificates.is_empty() {
        return Err(parse_error(what, path, "no BEGIN CERTIFICATE block"));
    }
    Ok(certificates)
}

/// Reads a certificate chain (the server's own certificate first).
pub(crate) fn read_certificate_chain(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(CERTIFICATE, path)?;
    certificates_in(CERTIFICATE, path, &pem)
}

/// Reads a private key (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(KEY, path)?;
    private_key_in(path, &pem)
}

fn private_key_in(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| parse_error(KEY, path, error))
}

/// The text of a server's certificate chain file and key file, as read: what a reload
/// compares to notice a change.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CertificateAndKeyPem {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl CertificateAndKeyPem {
    /// Reads both files.
    pub(crate) fn read(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            cert: read(CERTIFICATE, cert)?,
            key: read(KEY, key)?,
        })
    }

    /// Parses the chain (the server's certificate first) and the key; `cert` and `key`
    /// are the files they were read from, for errors.
    pub(crate) fn parse(
        &self,
        cert: &Path,
        key: &Path,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let chain = certificates_in(CERTIFICATE, cert, &self.cert)?;
        Ok((chain, private_key_in(key, &self.key)?))
    }
}

/// A CA file: its PEM bytes (tonic wants them as they are) and its roots.
pub(crate) struct CaFile {
    pub(crate) pem: Vec<u8>,
    pub(crate) roots: RootCertStore,
}

/// Reads the CA certificates a peer's certificate must chain to.
pub(crate) fn read_ca(path: &Path) -> Result<CaFile, TlsError> {
    let pem = read(CA, path)?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates_in(CA, path, &pem)? {
        roots
            .add(certificate)
            .map_err(|error| TlsError::UnusableCa {
                path: path.to_path_buf(),
                reason: error.to_string(),
            })?;
    }
    Ok(CaFile { pem, roots })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named() {
        let error =
            read_certificate_chain(Path::new("/nonexistent/cert.pem")).expect_err("no such file");
        assert!(
            error.to_string().contains("/nonexistent/cert.pem"),
            "{error}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = read_certificate_chain(&path).expect_err("no PEM block");
        let message = error.to_string();
        assert!(message.contains("cert.pem"), "{message}");
        assert!(message.contains("no usable PEM certificate"), "{message}");
        let error = read_private_key(&path).expect_err("no PEM key");
        assert!(error.to_string().contains("no usable PEM key"), "{error}");
    }
}
