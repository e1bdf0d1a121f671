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
            Self::Failed(reason) => write!(
                f,
                "the TLS handshake failed ({reason}); does the server serve TLS on this \
                 port, and does the URL say https:// only if it does?"
            ),
        }
    }
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
        next = current.source();
    }
    None
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
    match error {
        rustls::Error::InvalidCertificate(reason) => {
            HandshakeFailure::Untrusted(format!("{reason:?}"))
        }
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
    fn a_refused_connection_is_no_handshake_failure() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(handshake_failure(&refused), None);
    }
}
