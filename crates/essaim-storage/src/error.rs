//! What can go wrong reading or writing a job's data, and whether a retry can help.

use crate::codec::Codec;

/// A failure of the storage layer, naming the file or object it happened to.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Reading or writing a local file failed.
    #[error("failed to {action} `{location}`")]
    Io {
        /// What was being done: `open`, `read`, …
        action: &'static str,
        /// The file.
        location: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A compressed input does not decode: its bytes are wrong, and reading them again
    /// gives the same error.
    #[error("`{location}` is not valid {codec} data (corrupt or truncated)")]
    Corrupt {
        /// The file or object.
        location: String,
        /// The codec it was read with.
        codec: Codec,
        /// What the decoder said.
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// Returns false when running the task again cannot help: the data is wrong, not
    /// the machine or the network.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Io { .. } => true,
            Self::Corrupt { .. } => false,
        }
    }
}
