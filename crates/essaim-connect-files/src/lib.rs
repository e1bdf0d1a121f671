//! File I/O of essaim's streaming pipelines: a directory of rolling logs read as a
//! partitioned, resumable source, and a sink writing rolling JSON-lines files.
//!
//! Files are the connector of last resort and of first tests: every machine has a
//! disk, and a log shipper, a cron job or `cp` can feed a pipeline without a broker.
//! What makes them usable for effectively-once results is that the same promise as a
//! broker's can be made of an append-only directory: **a position (a byte offset) names
//! the same line forever** (see [`tail`] for the contract the producer must keep, and
//! how its violations are detected rather than silently producing wrong results).
//!
//! | module | concept |
//! |---|---|
//! | [`tail`] | [`DirectoryReader`]: a partition's directory tailed as one ordered log of lines |
//! | [`rolling`] | [`RollingFileWriter`]: results as JSON lines in files rolled by size and age, recovered after a crash |
//!
//! Both do their file I/O with the standard library on tokio's blocking threads: a
//! read or an fsync never stalls the runtime's workers, and reads go through a bounded
//! buffer, never a whole file in memory.
#![warn(missing_docs)]

pub mod rolling;
pub mod tail;

mod names;

pub use rolling::{RollingConfig, RollingFileWriter};
pub use tail::{DirectoryConfig, DirectoryReader, OversizedLines};

use essaim_connect::ConnectorError;

/// The connector's name in its errors.
const CONNECTOR: &str = "files";

/// Maps an I/O error to a connector error: a full disk, an interrupted or timed-out
/// call may succeed later; a missing permission or a read-only file system will not.
fn io_error(
    action: &'static str,
    context: impl std::fmt::Display,
    error: std::io::Error,
) -> ConnectorError {
    use std::io::ErrorKind;
    let message = if error.kind() == ErrorKind::StorageFull {
        format!("the disk is full: {context}: {error}")
    } else {
        format!("{context}: {error}")
    };
    match error.kind() {
        ErrorKind::PermissionDenied
        | ErrorKind::ReadOnlyFilesystem
        | ErrorKind::InvalidInput
        | ErrorKind::InvalidData
        | ErrorKind::IsADirectory
        | ErrorKind::NotADirectory
        | ErrorKind::Unsupported => ConnectorError::permanent(CONNECTOR, action, message),
        _ => ConnectorError::transient(CONNECTOR, action, message),
    }
}

/// Runs blocking file I/O on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    action: &'static str,
    work: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        ConnectorError::permanent(CONNECTOR, action, format!("the I/O task failed: {error}"))
    })?
}
