//! Telling a failed TLS handshake from an unreachable server.
//!
//! Clients retry an unreachable coordinator for a minute (it may be restarting). A
//! certificate the client does not trust, or a server that does not speak TLS, will
//! still be so a minute later: retrying would only make the user wait for the same
//! failure. Callers look for a handshake failure in the error chain and give up at once
//! with words that say what to fix.

use std::error::Error;

/// A TLS handshake that failed for a reason no retry fixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The server's certificate does not chain to a trusted root, names another host,
    /// or has expired.
    Untrusted(String),
    /// The server requires a client certificate (mutual TLS) and was given none, or
    /// one it does not trust.
    ClientRefused(String),
    /// Anything else: the server does not speak TLS, refused ours, or no common
    /// protocol was found.
    Failed(String),
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Untrusted(reason) => write!(
                f,
                "the server's TLS certificate is not trusted ({reason}); pass the CA that \
                 signed it with --tls-ca"
            ),
            Self::ClientRefused(reason) => write!(
                f,
                "the server refused this client's TLS certificate or asked for one \
                 ({reason}); pass --tls-client-cert and --tls-client-key with a certificate \
                 signed by the CA of the server's --tls-client-ca"
            ),
            Self::Failed(reason) => write!(
                f,
                "the TLS handshake failed ({reason}); does the server serve TLS on this \
                 port, and does the URL say https:// only if it does?"
            ),
        }
    }
}

/// Asks `host:port` over a connection of its own why it refused this client, when a
/// request failed without saying (`None`: it did not refuse the handshake, or did not
/// answer within `within`).
///
/// Under TLS 1.3 a server checks a client's certificate after the client's handshake
/// has ended, so its refusal (an alert) arrives on a connection the client believes
/// open. An HTTP client's connection task may read it before any request is sent; the
/// request then fails with the client's own words ("connection was not ready") and the
/// alert is lost. This probe completes a handshake with the same trust and reads: a
/// refusing server answers with its alert at once, an accepting one waits for a
/// request until `within` runs out. Only failed requests pay for it.
pub async fn probe_refusal(
    trust: &crate::ClientTrust,
    host: &str,
    port: u16,
    within: std::time::Duration,
) -> Option<HandshakeFailure> {
    use tokio::io::AsyncReadExt;
    let probe = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let mut stream = match trust.connect(tcp, host).await {
            Ok(stream) => stream,
            Err(error) => return handshake_failure(&error),
        };
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await {
            Err(error) => handshake_failure(&error),
            Ok(_) => None,
        }
    };
    tokio::time::timeout(within, probe).await.ok().flatten()
}

/// Longest wait for a TLS peer to say why it refused a failed call: a refusing server
/// answers at once, an accepting one waits for a request.
pub const REFUSAL_PROBE_WITHIN: std::time::Duration = std::time::Duration::from_millis(500);

/// What to fix after a call to `uri` failed with `error`: the handshake failure in the
/// error's chain, else, for an `https://` peer, the one it gives a probe
/// ([`probe_refusal`], within [`REFUSAL_PROBE_WITHIN`]); `None` when neither says.
pub async fn explain_failure(
    trust: &crate::ClientTrust,
    uri: &axum::http::Uri,
    error: &(dyn Error + Send + Sync + 'static),
) -> Option<HandshakeFailure> {
    if let Some(failure) = handshake_failure(error) {
        return Some(failure);
    }
    if uri.scheme() != Some(&axum::http::uri::Scheme::HTTPS) {
        return None;
    }
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    probe_refusal(trust, host, port, REFUSAL_PROBE_WITHIN).await
}

/// Returns the handshake failure somewhere in `error`'s chain, if there is one.
///
/// rustls errors travel inside `std::io::Error`s, whose `source` skips the error they
/// wrap, so each I/O error of the chain is opened too.
pub fn handshake_failure(error: &(dyn Error + 'static)) -> Option<HandshakeFailure> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(failure) = rustls_error_in(current).map(classify) {
            return Some(failure);
        }
        let words = current.to_string();
        if let Some(failure) = alert_in_words(&words).or_else(|| untrusted_in_words(&words)) {
            return Some(failure);
        }
        next = current.source();
    }
    None
}

/// Finds a client-certificate alert in an error's words. HTTP/2 keeps only the kind and
/// the text of an I/O error, so over gRPC the alert a server sends a client it refuses
/// reaches the caller as text (rustls writes `received fatal alert: CertificateRequired`).
fn alert_in_words(words: &str) -> Option<HandshakeFailure> {
    let alert = word_after(words, "received fatal alert: ")?;
    let refusals = [
        "CertificateRequired",
        "BadCertificate",
        "UnknownCA",
        "CertificateUnknown",
        "AccessDenied",
    ];
    let refused = refusals.contains(&alert.as_str());
    refused.then_some(HandshakeFailure::ClientRefused(alert))
}

/// Finds an untrusted server certificate in an error's words: clients that flatten
/// their causes into text (rskafka's retries) keep only rustls's own words,
/// `invalid peer certificate: UnknownIssuer`.
fn untrusted_in_words(words: &str) -> Option<HandshakeFailure> {
    word_after(words, "invalid peer certificate: ").map(HandshakeFailure::Untrusted)
}

/// The word (letters and digits: rustls's names of alerts and certificate errors) that
/// follows `prefix` in `words`.
fn word_after(words: &str, prefix: &str) -> Option<String> {
    let start = words.find(prefix)? + prefix.len();
    Some(
        words[start..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect(),
    )
}

fn rustls_error_in<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = error;
    loop {
        if let Some(rustls) = current.downcast_ref::<rustls::Error>() {
            return Some(rustls);
        }
        // I/O errors wrap I/O errors (hyper's connector wraps tokio-rustls's): open each.
        let io = current.downcast_ref::<std::io::Error>()?;
        current = io.get_ref()?;
    }
}

fn classify(error: &rustls::Error) -> HandshakeFailure {
    use rustls::AlertDescription as Alert;
    match error {
        rustls::Error::InvalidCertificate(reason) => {
            HandshakeFailure::Untrusted(format!("{reason:?}"))
        }
        // What a server verifying client certificates answers a client without one, or
        // with one it does not trust.
        rustls::Error::AlertReceived(
            alert @ (Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::AccessDenied),
        ) => HandshakeFailure::ClientRefused(format!("{alert:?}")),
        other => HandshakeFailure::Failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_error_wrapped_in_io_errors_is_found() {
        let rustls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls);
        let outer = std::io::Error::other(io);
        let failure = handshake_failure(&outer).expect("a handshake failure");
        assert_eq!(failure, HandshakeFailure::Untrusted("UnknownIssuer".into()));
        assert!(failure.to_string().contains("--tls-ca"), "{failure}");
    }

    #[test]
    fn an_untrusted_certificate_is_found_in_words_as_flattening_clients_keep_it() {
        let flattened = std::io::Error::other(
            "all retries failed: Retry exceeded deadline. Source: error connecting to \
             broker \"127.0.0.1:9093\": IO Error: invalid peer certificate: UnknownIssuer",
        );
        let failure = handshake_failure(&flattened).expect("a handshake failure");
        assert_eq!(failure, HandshakeFailure::Untrusted("UnknownIssuer".into()));
        let plain = std::io::Error::other("connection refused");
        assert_eq!(handshake_failure(&plain), None);
    }

    #[test]
    fn a_client_certificate_alert_is_found_in_words_as_http2_keeps_it() {
        let h2 = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        );
        let failure = handshake_failure(&h2).expect("a handshake failure");
        assert_eq!(
            failure,
            HandshakeFailure::ClientRefused("CertificateRequired".into())
        );
        assert!(
            failure.to_string().contains("--tls-client-cert"),
            "{failure}"
        );
        let other = std::io::Error::other("received fatal alert: DecodeError");
        assert_eq!(handshake_failure(&other), None);
    }

    #[test]
    fn a_refused_connection_is_no_handshake_failure() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(handshake_failure(&refused), None);
    }
}
