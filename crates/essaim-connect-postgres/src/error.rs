//! The errors of the PostgreSQL sink, each saying whether a retry can help.
//!
//! A lost connection, a stopped server or a serialization conflict are transient: the
//! sink reconnects and retries with backoff, and they count against the circuit
//! breaker. A row that does not fit its table or a bad identifier is the caller's
//! fault: retrying changes nothing, so it is returned at once.
use std::time::Duration;

/// An error of the PostgreSQL sink.
#[derive(Debug, thiserror::Error)]
pub enum PgSinkError {
    /// An identifier (table or column name) cannot be used.
    #[error("invalid identifier `{name}`: {reason}")]
    InvalidIdentifier {
        /// The identifier as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A table description is unusable (no key, duplicate columns).
    #[error("invalid table `{table}`: {reason}")]
    InvalidTable {
        /// The table.
        table: String,
        /// Why it is refused.
        reason: String,
    },
    /// A row does not match the table's columns.
    #[error("row `{key}` does not fit table `{table}`: {reason}")]
    RowMismatch {
        /// The table.
        table: String,
        /// The row's key.
        key: String,
        /// What does not match.
        reason: String,
    },
    /// A batch holds more rows than the configured bound.
    #[error("batch of {rows} rows is over the bound of {max_rows}; split it")]
    BatchTooLarge {
        /// Rows in the batch.
        rows: usize,
        /// The bound.
        max_rows: usize,
    },
    /// The circuit breaker is open: recent attempts failed, so none is made now.
    #[error("postgresql circuit breaker is open; next probe in {retry_in:?}")]
    CircuitOpen {
        /// Time until the breaker lets a probe through.
        retry_in: Duration,
    },
    /// The unit's state was made under another spec, and no migration was asked for.
    #[error(
        "`{unit}` holds state made under another spec (fingerprint {recorded}, recorded \
         {recorded_at}; this spec's is {fingerprint}): submit it with a migration, keep \
         (the state as it is), reset (state dropped, positions kept) or rebuild (state and \
         positions dropped, sources read again), or under another pipeline name"
    )]
    SpecChanged {
        /// The unit (pipeline, stage and unit number).
        unit: String,
        /// The recorded spec's fingerprint.
        recorded: String,
        /// When it was recorded.
        recorded_at: String,
        /// This spec's fingerprint.
        fingerprint: String,
    },
    /// Another owner opened the unit after this writer did (see `owner.rs`): its
    /// writes are refused, and it must open the unit again to go on.
    #[error(
        "`{unit}` was taken over by {} after this writer (attempt {owner}) opened it: \
         reopen it to go on from what that owner committed",
        current.map_or_else(|| "another writer".to_owned(), |owner| format!("attempt {owner}"))
    )]
    Superseded {
        /// The unit (the sink's pipeline key).
        unit: String,
        /// The owner this writer claimed it for.
        owner: u64,
        /// The owner it has now, if any.
        current: Option<u64>,
    },
    /// The PostgreSQL URL, or a file it names (`sslrootcert`), cannot be used.
    #[error("the PostgreSQL URL cannot be used: {reason}")]
    InvalidUrl {
        /// Why.
        reason: String,
    },
    /// PostgreSQL or the connection to it failed.
    #[error("postgresql failed while trying to {action}")]
    Postgres {
        /// What the sink was doing.
        action: &'static str,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl PgSinkError {
    /// Returns true when the writer lost the unit to a newer owner: retrying the call
    /// is refused again, but reopening the unit (and going on from what is committed)
    /// succeeds.
    pub fn is_superseded(&self) -> bool {
        matches!(self, Self::Superseded { .. })
    }

    /// Returns true when reconnecting and retrying later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::CircuitOpen { .. } => true,
            Self::Postgres { source, .. } => is_transient_postgres(source),
            Self::InvalidIdentifier { .. }
            | Self::InvalidTable { .. }
            | Self::RowMismatch { .. }
            | Self::BatchTooLarge { .. }
            | Self::SpecChanged { .. }
            | Self::Superseded { .. }
            | Self::InvalidUrl { .. } => false,
        }
    }
}

/// Returns true for connection failures and for server errors that a retry may not
/// meet again: connection exceptions (class 08), serialization failures and deadlocks
/// (class 40), insufficient resources (53), operator intervention such as a terminated
/// backend or a shutting-down server (57), and system errors (58).
pub(crate) fn is_transient_postgres(error: &tokio_postgres::Error) -> bool {
    let Some(db_error) = error.as_db_error() else {
        // No server error: I/O, a closed connection, a refused connect.
        return true;
    };
    let code = db_error.code().code();
    ["08", "40", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
}
