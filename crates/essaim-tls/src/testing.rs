//! Certificates made on the fly for tests: a CA, a server certificate it signed for
//! `localhost` and `127.0.0.1`, and a second CA that signed nothing (a client trusting
//! only it must refuse the server).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The PEM files of a test CA and the server certificate it signed.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA that signed the server certificate.
    pub ca: PathBuf,
    /// The server certificate (for `localhost` and `127.0.0.1`).
    pub cert: PathBuf,
    /// The server certificate's key.
    pub key: PathBuf,
    /// Another CA, which signed nothing here.
    pub other_ca: PathBuf,
    /// The key of another certificate (for mismatch tests).
    pub other_key: PathBuf,
}

impl TestCertificates {
    /// Generates the certificates and writes them in `dir` (`ca.pem`, `server.pem`,
    /// `server.key`, `other-ca.pem`, `other.key`).
    pub fn generate(dir: &Path) -> std::io::Result<Self> {
        let (ca_pem, issuer) = make_ca("essaim test CA")?;
        let (other_ca_pem, other_issuer) = make_ca("another test CA")?;
        let server_key = KeyPair::generate().map_err(std::io::Error::other)?;
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut params = CertificateParams::new(names).map_err(std::io::Error::other)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "essaim test server");
        let server = params
            .signed_by(&server_key, &issuer)
            .map_err(std::io::Error::other)?;
        let files = Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            other_ca: dir.join("other-ca.pem"),
            other_key: dir.join("other.key"),
        };
        std::fs::write(&files.ca, ca_pem)?;
        std::fs::write(&files.cert, server.pem())?;
        std::fs::write(&files.key, server_key.serialize_pem())?;
        std::fs::write(&files.other_ca, other_ca_pem)?;
        std::fs::write(&files.other_key, other_issuer.key().serialize_pem())?;
        Ok(files)
    }
}

fn make_ca(name: &str) -> std::io::Result<(String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate().map_err(std::io::Error::other)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(std::io::Error::other)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let certificate = params.self_signed(&key).map_err(std::io::Error::other)?;
    Ok((certificate.pem(), Issuer::new(params, key)))
}
