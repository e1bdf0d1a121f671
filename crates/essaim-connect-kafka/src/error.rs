//! Which failures are worth retrying.
//!
//! A broker that is down, restarting or slow, a broken connection, a leader election:
//! transient, the runtime retries with backoff. An unknown topic, an offset no longer
//! retained, a protocol the broker does not speak, a malformed address: permanent, the
//! pipeline's configuration (or the data) must change first.

use essaim_connect::ConnectorError;
use rskafka::ConnectionError;
use rskafka::client::error::{Error, ProtocolError, RequestError};

/// The `connector` field of this crate's errors.
pub const CONNECTOR: &str = "kafka";

/// An error of the client, classified.
pub(crate) fn from_client(action: &'static str, failure: Error) -> ConnectorError {
    // A refused TLS handshake (an unknown CA, a name the certificate does not carry, a
    // client certificate the broker wants): no retry helps.
    if essaim_tls::handshake_failure(&failure).is_some() {
        return permanent(action, tls_refused(&failure));
    }
    let transient = is_transient(&failure);
    ConnectorError {
        connector: CONNECTOR,
        action,
        message: failure.to_string(),
        transient,
        retry_in: None,
    }
}

/// What to say of a refused TLS handshake: the bootstrap string holds the settings.
pub(crate) fn tls_refused(failure: &dyn std::fmt::Display) -> String {
    format!(
        "the TLS handshake was refused ({failure}); check the bootstrap's \
         tls_ca (the CA that signed the brokers' certificates) and, for brokers that \
         require one, tls_cert and tls_key"
    )
}

pub(crate) fn transient(action: &'static str, message: impl ToString) -> ConnectorError {
    ConnectorError::transient(CONNECTOR, action, message)
}

pub(crate) fn permanent(action: &'static str, message: impl ToString) -> ConnectorError {
    ConnectorError::permanent(CONNECTOR, action, message)
}

fn is_transient(failure: &Error) -> bool {
    match failure {
        Error::Connection(failure) => connection_is_transient(failure),
        Error::Request(failure) => request_is_transient(failure),
        Error::ServerError { protocol_error, .. } => protocol_is_transient(protocol_error),
        Error::InvalidResponse(_) => false,
        // The client gave up retrying what it judged retriable (a broken connection,
        // a leader not available) within our deadline.
        Error::RetryFailed(_) | Error::Timeout => true,
        _ => true,
    }
}

fn connection_is_transient(failure: &ConnectionError) -> bool {
    match failure {
        ConnectionError::Metadata(failure) => request_is_transient(failure),
        ConnectionError::Transport { .. } | ConnectionError::RetryFailed(_) => true,
        // No protocol version in common, or credentials refused: retrying won't help.
        ConnectionError::SyncVersions(_) | ConnectionError::SaslFailed(_) => false,
        _ => true,
    }
}

fn request_is_transient(failure: &RequestError) -> bool {
    matches!(
        failure,
        RequestError::IO(_) | RequestError::Poisoned(_) | RequestError::ReadFramedMessageError(_)
    )
}

/// The broker's error codes that Kafka itself documents as retriable, plus an unknown
/// server error (a broker whose store hiccups answers with it).
pub(crate) fn protocol_is_transient(code: &ProtocolError) -> bool {
    matches!(
        code,
        ProtocolError::UnknownServerError
            | ProtocolError::LeaderNotAvailable
            | ProtocolError::NotLeaderOrFollower
            | ProtocolError::RequestTimedOut
            | ProtocolError::BrokerNotAvailable
            | ProtocolError::ReplicaNotAvailable
            | ProtocolError::NetworkException
            | ProtocolError::CoordinatorLoadInProgress
            | ProtocolError::CoordinatorNotAvailable
            | ProtocolError::NotCoordinator
            | ProtocolError::NotEnoughReplicas
            | ProtocolError::NotEnoughReplicasAfterAppend
            | ProtocolError::KafkaStorageError
            | ProtocolError::OffsetNotAvailable
            | ProtocolError::PreferredLeaderNotAvailable
            | ProtocolError::FencedLeaderEpoch
            | ProtocolError::UnknownLeaderEpoch
            | ProtocolError::ThrottlingQuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rskafka::client::error::RequestContext;

    fn server_error(code: ProtocolError) -> Error {
        Error::ServerError {
            protocol_error: code,
            error_message: None,
            request: RequestContext::Topic("orders".to_owned()),
            response: None,
            is_virtual: false,
        }
    }

    #[test]
    fn an_unknown_topic_is_permanent_and_a_leader_election_transient() {
        let unknown = from_client(
            "fetch",
            server_error(ProtocolError::UnknownTopicOrPartition),
        );
        assert!(!unknown.transient);
        assert_eq!(unknown.connector, "kafka");
        assert_eq!(unknown.action, "fetch");
        assert!(!from_client("fetch", server_error(ProtocolError::OffsetOutOfRange)).transient);
        assert!(from_client("produce", server_error(ProtocolError::NotLeaderOrFollower)).transient);
        assert!(from_client("produce", server_error(ProtocolError::RequestTimedOut)).transient);
    }

    #[test]
    fn a_broken_connection_is_transient_and_a_garbled_answer_permanent() {
        let broken = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(from_client("fetch", Error::Request(RequestError::IO(broken))).transient);
        assert!(from_client("fetch", Error::Timeout).transient);
        assert!(!from_client("fetch", Error::InvalidResponse("garbled".into())).transient);
    }
}
