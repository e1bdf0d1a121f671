//! Certificates made on the fly for tests: a CA, a server certificate it signed for
//! `localhost` and `127.0.0.1` and a client certificate (mutual TLS), and a second CA
//! that signed only a client certificate (a client trusting only it must refuse the
//! server; a server requiring the first CA's clients must refuse that client). More
//! client certificates of the CA, each with a common name of the test's choosing, come
//! from [`TestCertificates::issue_client`] (a principal named by its certificate).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The PEM files of a test CA and the server certificate it signed.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA that signed the server certificate.
    pub ca: PathBuf,
    /// The CA's key (to issue more client certificates).
    pub ca_key: PathBuf,
    /// The server certificate (for `localhost` and `127.0.0.1`).
    pub cert: PathBuf,
    /// The server certificate's key.
    pub key: PathBuf,
    /// Another CA, which signed nothing here.
    pub other_ca: PathBuf,
    /// The key of another certificate (for mismatch tests).
    pub other_key: PathBuf,
    /// A client certificate the CA signed (for mutual TLS).
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A client certificate the other CA signed.
    pub stranger_cert: PathBuf,
    /// Its key.
    pub stranger_key: PathBuf,
}

impl TestCertificates {
    /// Generates the certificates and writes them in `dir` (`ca.pem`, `ca.key`,
    /// `server.pem`, `server.key`, `other-ca.pem`, `other.key`, the client certificates).
    pub fn generate(dir: &Path) -> std::io::Result<Self> {
        let (ca_pem, issuer) = make_ca(TEST_CA_NAME, KeyPair::generate())?;
        let (other_ca_pem, other_issuer) = make_ca("another test CA", KeyPair::generate())?;
        let server_key = KeyPair::generate().map_err(std::io::Error::other)?;
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let mut params = CertificateParams::new(names).map_err(std::io::Error::other)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "essaim test server");
        let server = params
            .signed_by(&server_key, &issuer)
            .map_err(std::io::Error::other)?;
        let (client, client_key) = make_client("essaim test client", &issuer)?;
        let (stranger, stranger_key) = make_client("a stranger", &other_issuer)?;
        let files = Self {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            other_ca: dir.join("other-ca.pem"),
            other_key: dir.join("other.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            stranger_cert: dir.join("stranger.pem"),
            stranger_key: dir.join("stranger.key"),
        };
        std::fs::write(&files.client_cert, client)?;
        std::fs::write(&files.client_key, client_key)?;
        std::fs::write(&files.stranger_cert, stranger)?;
        std::fs::write(&files.stranger_key, stranger_key)?;
        std::fs::write(&files.ca, ca_pem)?;
        std::fs::write(&files.ca_key, issuer.key().serialize_pem())?;
        std::fs::write(&files.cert, server.pem())?;
        std::fs::write(&files.key, server_key.serialize_pem())?;
        std::fs::write(&files.other_ca, other_ca_pem)?;
        std::fs::write(&files.other_key, other_issuer.key().serialize_pem())?;
        Ok(files)
    }

    /// Issues a client certificate of the CA whose subject's common name is
    /// `common_name`, and writes it and its key beside the CA (`client-<common
    /// name>.pem` and `.key`); returns their paths.
    pub fn issue_client(&self, common_name: &str) -> std::io::Result<(PathBuf, PathBuf)> {
        let ca_key = KeyPair::from_pem(&std::fs::read_to_string(&self.ca_key)?);
        // The same subject and key as the CA file's: certificates chain to it.
        let (_, issuer) = make_ca(TEST_CA_NAME, ca_key)?;
        let (certificate, key) = make_client(common_name, &issuer)?;
        let dir = self.ca.parent().unwrap_or(Path::new("."));
        let cert_path = dir.join(format!("client-{common_name}.pem"));
        let key_path = dir.join(format!("client-{common_name}.key"));
        std::fs::write(&cert_path, certificate)?;
        std::fs::write(&key_path, key)?;
        Ok((cert_path, key_path))
    }
}

/// The subject of the test CA.
const TEST_CA_NAME: &str = "essaim test CA";

fn make_ca(
    name: &str,
    key: Result<KeyPair, rcgen::Error>,
) -> std::io::Result<(String, Issuer<'static, KeyPair>)> {
    let key = key.map_err(std::io::Error::other)?;
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

/// Returns a client certificate for `name` signed by `issuer`, and its key (PEM).
fn make_client(name: &str, issuer: &Issuer<'static, KeyPair>) -> std::io::Result<(String, String)> {
    let key = KeyPair::generate().map_err(std::io::Error::other)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(std::io::Error::other)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let certificate = params
        .signed_by(&key, issuer)
        .map_err(std::io::Error::other)?;
    Ok((certificate.pem(), key.serialize_pem()))
}
