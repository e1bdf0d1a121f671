//! Why a worker could not start, or stopped on its own.
//!
//! Everything that can go wrong *inside* an attempt is a [`TaskFailure`] reported to the
//! coordinator, never a [`WorkerError`]: a worker error means the process itself cannot
//! go on, and the binary turns it into an exit code.
//!
//! [`TaskFailure`]: essaim_core::TaskFailure

use std::net::SocketAddr;
use std::path::PathBuf;

/// A reason the worker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A configuration value is unusable; the operator must fix it.
    #[error("invalid worker configuration: `{key}` {reason}")]
    InvalidConfig {
        /// The offending key of [`WorkerConfig`](crate::WorkerConfig).
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The scratch directory cannot be created.
    #[error("failed to create the scratch directory `{path}`")]
    ScratchDir {
        /// The directory.
        path: PathBuf,
        /// The file system's words.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP address cannot be bound (in use, or not an address of this host).
    #[error("failed to bind the worker HTTP server on {address}")]
    BindHttp {
        /// The address asked for.
        address: SocketAddr,
        /// The operating system's words.
        #[source]
        source: std::io::Error,
    },
    /// The coordinator URL or the token cannot be used at all (not "unreachable", which is
    /// retried).
    #[error("cannot use the coordinator connection settings")]
    Coordinator(#[source] essaim_proto::ClientError),
    /// The coordinator answered the registration with an error no retry can fix (a wrong
    /// token, an incompatible version).
    #[error("the coordinator refused to register this worker ({code:?}): {message}")]
    RegistrationRefused {
        /// The gRPC status code.
        code: tonic::Code,
        /// The coordinator's message.
        message: String,
    },
    /// The HTTP server stopped with an error.
    #[error("the worker HTTP server failed")]
    HttpServer(#[source] std::io::Error),
    /// One of the worker's own tasks panicked: a bug in the worker.
    #[error("the worker's {task} task panicked")]
    TaskPanicked {
        /// Which task.
        task: &'static str,
        /// The runtime's report.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl WorkerError {
    /// Returns true when starting the worker again, unchanged, may succeed (the cause is
    /// outside the configuration: a port still held by a previous process, a coordinator
    /// being upgraded).
    pub fn retry_can_help(&self) -> bool {
        match self {
            Self::InvalidConfig { .. }
            | Self::Coordinator(_)
            | Self::RegistrationRefused { .. } => false,
            Self::ScratchDir { .. } | Self::BindHttp { .. } | Self::HttpServer(_) => true,
            Self::TaskPanicked { .. } => false,
        }
    }
}
