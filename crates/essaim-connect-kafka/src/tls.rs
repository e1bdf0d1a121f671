//! TLS to Kafka brokers, asked for in the bootstrap string, so that the one string a
//! pipeline carries to every worker says it all (as for NATS):
//!
//! | bootstrap | connection |
//! |---|---|
//! | `host:9092,other:9092` | plain |
//! | `ssl://host:9093,ssl://other:9093` | TLS (Kafka's `SSL` listeners), verified with the system's roots |
//! | `…?tls_ca=/etc/essaim/kafka-ca.pem` | TLS, verified with the CAs of that PEM file |
//! | `…&tls_cert=FILE&tls_key=FILE` | TLS with a client certificate, for brokers that require one (`ssl.client.auth=required`) |
//!
//! The query, written once at the end, applies to every broker; the files are read on
//! each machine that connects. A broker's certificate is always verified and its name
//! (or IP address) checked, with the roots of `essaim-tls` as on every other port of
//! essaim. The client's connections and the group requests of [`crate::group`] both
//! go through here.

use std::path::PathBuf;

use essaim_connect::ConnectorError;
use essaim_tls::ClientTrust;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error;

/// The query parameter naming the CA file.
pub const TLS_CA_PARAM: &str = "tls_ca";
/// The query parameter naming the client certificate (PEM chain).
pub const TLS_CERT_PARAM: &str = "tls_cert";
/// The query parameter naming the client certificate's key.
pub const TLS_KEY_PARAM: &str = "tls_key";

/// The schemes that ask for TLS (Kafka names its TLS listeners `SSL`).
const TLS_SCHEMES: [&str; 2] = ["ssl://", "tls://"];

/// A bootstrap string taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// `host:port` of each broker, without scheme.
    pub brokers: Vec<String>,
    /// Whether TLS is required (a TLS scheme or any `tls_*` parameter).
    pub tls: bool,
    /// `tls_ca`: the CA file (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// `tls_cert` and `tls_key`: the client's certificate and key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl Bootstrap {
    /// Parses `bootstrap`; refuses a query parameter it does not know (a typo must
    /// not silently leave a connection plain), a certificate without its key, and a
    /// list that mixes TLS and plain brokers.
    pub fn parse(bootstrap: &str) -> Result<Bootstrap, ConnectorError> {
        let invalid = |reason: String| error::permanent("connect", reason);
        let (list, query) = bootstrap.split_once('?').unwrap_or((bootstrap, ""));
        let (mut ca_file, mut cert, mut key) = (None, None, None);
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let slot = match pair.split_once('=') {
                Some((TLS_CA_PARAM, path)) if !path.is_empty() => (&mut ca_file, path),
                Some((TLS_CERT_PARAM, path)) if !path.is_empty() => (&mut cert, path),
                Some((TLS_KEY_PARAM, path)) if !path.is_empty() => (&mut key, path),
                _ => {
                    return Err(invalid(format!(
                        "unknown or empty bootstrap parameter `{pair}` (known: \
                         {TLS_CA_PARAM}=FILE, {TLS_CERT_PARAM}=FILE, {TLS_KEY_PARAM}=FILE)"
                    )));
                }
            };
            *slot.0 = Some(PathBuf::from(slot.1));
        }
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(invalid(format!(
                    "{TLS_CERT_PARAM} and {TLS_KEY_PARAM} go together"
                )));
            }
        };
        let mut brokers = Vec::new();
        let mut schemes = Vec::new();
        for broker in list.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            let scheme = TLS_SCHEMES
                .iter()
                .find(|scheme| broker.starts_with(**scheme));
            schemes.push(scheme.is_some());
            brokers.push(check_address(
                broker.trim_start_matches(scheme.map_or("", |s| *s)),
            )?);
        }
        if brokers.is_empty() {
            return Err(invalid("no bootstrap address given".to_owned()));
        }
        if schemes.iter().any(|tls| *tls) && !schemes.iter().all(|tls| *tls) {
            return Err(invalid(format!(
                "`{list}` mixes TLS and plain brokers: give every broker the same scheme"
            )));
        }
        let tls = schemes[0] || ca_file.is_some() || identity.is_some();
        Ok(Bootstrap {
            brokers,
            tls,
            ca_file,
            identity,
        })
    }

    /// The roots and identity TLS connections use, read from their files; `None` for
    /// plain connections. A file that cannot be used is a permanent error naming it.
    pub fn trust(&self) -> Result<Option<ClientTrust>, ConnectorError> {
        if !self.tls {
            return Ok(None);
        }
        let unusable = |failure: essaim_tls::TlsError| {
            error::permanent("connect", essaim_connect::error_chain(&failure))
        };
        let mut trust =
            ClientTrust::from_optional_ca_file(self.ca_file.as_deref()).map_err(unusable)?;
        if let Some((cert, key)) = &self.identity {
            trust = trust.with_identity(cert, key).map_err(unusable)?;
        }
        Ok(Some(trust))
    }
}

/// A `host:port` checked: a malformed one is a permanent error.
fn check_address(broker: &str) -> Result<String, ConnectorError> {
    let port = broker.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
    if !matches!(port, Some(Ok(port)) if port > 0) {
        return Err(error::permanent(
            "connect",
            format!("bootstrap address `{broker}` is not host:port"),
        ));
    }
    Ok(broker.to_owned())
}

/// A connection to a broker: plain TCP or TLS over it.
pub(crate) trait BrokerIo: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> BrokerIo for T {}

/// Opens a connection to `address` (`host:port`), over TLS when `trust` is given.
pub(crate) async fn open(
    address: &str,
    trust: Option<&ClientTrust>,
) -> std::io::Result<Box<dyn BrokerIo>> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let Some(trust) = trust else {
        return Ok(Box::new(tcp));
    };
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    Ok(Box::new(trust.connect(tcp, host).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bootstrap: &str) -> Bootstrap {
        Bootstrap::parse(bootstrap).unwrap_or_else(|error| panic!("{bootstrap}: {error}"))
    }

    #[test]
    fn a_plain_list_stays_plain() {
        let plain = parsed(" 127.0.0.1:9092, other:19092 ");
        assert_eq!(plain.brokers, ["127.0.0.1:9092", "other:19092"]);
        assert!(!plain.tls);
        assert!(plain.trust().unwrap().is_none());
    }

    #[test]
    fn a_tls_scheme_or_a_tls_parameter_asks_for_tls() {
        let scheme = parsed("ssl://a:9093,ssl://b:9093");
        assert_eq!(scheme.brokers, ["a:9093", "b:9093"]);
        assert!(scheme.tls && scheme.ca_file.is_none());
        let ca = parsed("a:9093?tls_ca=/etc/ca.pem");
        assert!(ca.tls);
        assert_eq!(ca.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        let mutual = parsed("tls://a:9093?tls_ca=ca.pem&tls_cert=c.pem&tls_key=c.key");
        assert_eq!(
            mutual.identity,
            Some((PathBuf::from("c.pem"), PathBuf::from("c.key")))
        );
    }

    #[test]
    fn malformed_bootstraps_are_permanent_errors_that_say_why() {
        for (bad, why) in [
            ("", "no bootstrap address"),
            ("localhost", "not host:port"),
            ("localhost:port", "not host:port"),
            ("127.0.0.1:0", "not host:port"),
            (",", "no bootstrap address"),
            ("ssl://a:9093,b:9092", "mixes TLS and plain"),
            (
                "a:9093?tls_cafile=x",
                "unknown or empty bootstrap parameter `tls_cafile=x`",
            ),
            ("a:9093?tls_ca=", "unknown or empty"),
            ("a:9093?tls_cert=c.pem", "go together"),
        ] {
            let error = Bootstrap::parse(bad).expect_err(bad);
            assert!(!error.transient, "{bad}: {error}");
            assert!(error.to_string().contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn an_unreadable_ca_file_is_a_permanent_error_naming_it() {
        let error = parsed("a:9093?tls_ca=/no/such/ca.pem").trust().unwrap_err();
        assert!(!error.transient);
        assert!(error.to_string().contains("/no/such/ca.pem"), "{error}");
    }
}
