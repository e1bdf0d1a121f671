//! Who is at the other end of a TLS connection, as far as its verified certificate says.
//!
//! With mutual TLS the handshake proves that the client holds a certificate the client
//! CA signed, but the handshake alone says nothing to the request handlers. [`serve`]
//! therefore records, once per connection, the peer's address and the identity its
//! certificate names ([`TlsPeer`]), and every request of the connection carries it in
//! its extensions, where [`client_certificate`] finds it: the coordinator maps it to a
//! principal as it maps a bearer token.
//!
//! The identity is the certificate's subject common name (CN), as Kubernetes (the CN is
//! the user name), etcd (`--client-cert-auth`: the CN is the user) and Kafka's usual
//! `ssl.principal.mapping.rules` (`RULE:^CN=([^,]+).*$/$1/`) take it. Subject
//! alternative names are not read: a DNS or IP name says which host a certificate may
//! serve, not who a caller is, and one field to match keeps a certificate from naming
//! two principals.
//!
//! Only a certificate the verifier accepted is ever seen here: rustls reports the peer's
//! certificates only after they chained to the client CA, and a server without a client
//! CA asks for none.
//!
//! [`serve`]: crate::serve

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use x509_cert::der::Decode;
use x509_cert::der::asn1::PrintableStringRef;

use crate::TlsListener;

/// What the verified certificate of a client says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject's common name, if it has one (and it is text).
    common_name: Option<String>,
}

impl ClientCertificate {
    /// Reads the identity of the DER certificate `der`; a certificate that cannot be
    /// parsed (the verifier parsed it, so this should not happen) names nobody.
    pub fn from_der(der: &[u8]) -> Self {
        let common_name = x509_cert::Certificate::from_der(der)
            .ok()
            .and_then(|certificate| subject_common_name(&certificate.tbs_certificate.subject));
        Self { common_name }
    }

    /// Returns a certificate whose subject's common name is `name` (for tests of what
    /// maps a certificate to a principal).
    pub fn with_common_name(name: &str) -> Self {
        Self {
            common_name: Some(name.to_string()),
        }
    }

    /// Returns the subject's common name (CN): the identity a principal is named by.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }
}

/// Returns the last common name of `subject` (the most specific, as OpenSSL's and
/// Go's `Subject.CommonName` take it), if it is a UTF-8 or printable string.
fn subject_common_name(subject: &x509_cert::name::Name) -> Option<String> {
    const COMMON_NAME: x509_cert::der::oid::ObjectIdentifier =
        x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");
    let mut found = None;
    for attribute in subject.0.iter().flat_map(|rdn| rdn.0.iter()) {
        if attribute.oid != COMMON_NAME {
            continue;
        }
        // RFC 5280 asks CAs for UTF8String or PrintableString (DirectoryString).
        let value = &attribute.value;
        found = value.decode_as::<String>().ok().or_else(|| {
            value
                .decode_as::<PrintableStringRef<'_>>()
                .ok()
                .map(|text| text.to_string())
        });
    }
    found
}

/// The other end of one connection: its address and, when it presented one, what its
/// verified certificate names. Every request of the connection carries it in its
/// extensions (as axum's [`ConnectInfo`]).
#[derive(Clone, Debug)]
pub struct TlsPeer {
    /// The peer's address.
    pub address: SocketAddr,
    /// Its verified client certificate (`None`: it presented none, or the server asks
    /// for none).
    pub certificate: Option<ClientCertificate>,
}

impl Connected<IncomingStream<'_, TlsListener>> for TlsPeer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, connection) = stream.io().get_ref();
        // The end entity comes first; the rest is its chain.
        let certificate = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|end_entity| ClientCertificate::from_der(end_entity.as_ref()));
        Self {
            address: *stream.remote_addr(),
            certificate,
        }
    }
}

/// Returns the verified client certificate of the connection a request came on, if it
/// came over TLS with one.
pub fn client_certificate(extensions: &axum::http::Extensions) -> Option<&ClientCertificate> {
    extensions
        .get::<ConnectInfo<TlsPeer>>()
        .and_then(|ConnectInfo(peer)| peer.certificate.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn certificate_der(subject: &[(DnType, &str)]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["client.example".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_identity_is_the_subjects_common_name_not_another_field() {
        let der = certificate_der(&[
            (DnType::OrganizationName, "system:masters"),
            (DnType::CommonName, "worker-7"),
        ]);
        assert_eq!(
            ClientCertificate::from_der(&der).common_name(),
            Some("worker-7")
        );
    }

    #[test]
    fn a_certificate_without_a_common_name_or_unreadable_names_nobody() {
        // Its DNS name is not an identity.
        let der = certificate_der(&[(DnType::OrganizationName, "essaim")]);
        assert_eq!(ClientCertificate::from_der(&der).common_name(), None);
        assert_eq!(ClientCertificate::from_der(b"not DER").common_name(), None);
    }
}
