//! What can go wrong talking to etcd, and which failures are worth retrying.

use std::time::Duration;

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// An endpoint does not parse as a URL.
    #[error("invalid etcd endpoint `{endpoint}`: {reason} (expected e.g. http://127.0.0.1:2379)")]
    InvalidEndpoint {
        /// The endpoint given.
        endpoint: String,
        /// Why it is invalid.
        reason: String,
    },
    /// No endpoint was given.
    #[error("no etcd endpoint given")]
    NoEndpoint,
    /// A call did not finish in time (no quorum, a partition, a paused member).
    #[error("etcd did not answer {operation} within {after:?} (endpoints {endpoints})")]
    Timeout {
        /// What was asked.
        operation: &'static str,
        /// How long we waited.
        after: Duration,
        /// The endpoints tried.
        endpoints: String,
    },
    /// etcd answered with an error status, or the transport failed.
    #[error("etcd {operation} failed (endpoints {endpoints}): {status}")]
    Rpc {
        /// What was asked.
        operation: &'static str,
        /// The endpoints tried.
        endpoints: String,
        /// etcd's status.
        status: Box<tonic::Status>,
    },
    /// A lease expired or was revoked: whatever it held is gone.
    #[error("etcd lease {id:x} expired or was revoked")]
    LeaseLost {
        /// The lease.
        id: i64,
    },
}

impl EtcdError {
    /// True for failures that may pass (a member restarting, a lost connection, no quorum
    /// yet): retry them. False for answers that will not change (bad request, permission).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::Rpc { status, .. } => matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
                    | tonic::Code::Aborted
                    | tonic::Code::Internal
                    | tonic::Code::Cancelled
                    | tonic::Code::ResourceExhausted
            ),
            Self::InvalidEndpoint { .. } | Self::NoEndpoint | Self::LeaseLost { .. } => false,
        }
    }
}
