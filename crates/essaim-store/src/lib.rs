//! The coordinator journal: what the coordinator needs from durable storage (the
//! [`Journal`] trait) and its embedded implementation on redb ([`RedbJournal`]).
//!
//! Why a trait: the coordinator's actor only appends group-committed batches, compacts
//! the log into a snapshot, and reads it back at recovery; where that lives is a choice
//! of deployment. The embedded redb file is the one implementation today; a replicated,
//! fenced journal (for coordinator high availability) is another implementation of the
//! same trait, and the trait lives here, beside the events it stores and their format
//! version, so that implementation depends on this crate and the coordinator depends on
//! neither's internals.
//!
//! | module | concept |
//! |---|---|
//! | this file | the [`Journal`] trait, its errors, what a journal holds when opened |
//! | `redb_journal` | [`RedbJournal`] and the [`ResultReader`] of committed results |
#![warn(missing_docs)]

mod redb_journal;

pub use redb_journal::{JOURNAL_FILE, RedbJournal, ResultReader};

use essaim_core::journal::JOURNAL_FORMAT_VERSION;
use essaim_core::{CommittedResult, JobId, JournalEvent};
use std::path::PathBuf;
use std::sync::Arc;

/// The durable log of scheduler events, as the coordinator's actor uses it.
///
/// Contract: an event is acknowledged by the coordinator only after the `append` that
/// carries it returned `Ok`; an error from any write is fatal for the coordinator (its
/// state would run ahead of what is durable). Methods block on I/O: call them from a
/// blocking thread.
pub trait Journal: Send + 'static {
    /// Returns this incarnation's epoch: one more than the previous opener's. The
    /// scheduler mints ids within it, so ids double as fencing tokens across restarts.
    fn epoch(&self) -> u64;

    /// Reads every event back, in order, as recovery replays them (`TaskSucceeded`
    /// without its inline output bytes, which stay with the committed results).
    fn read_events(&self) -> Result<Vec<JournalEvent>, StoreError>;

    /// Makes a batch of events durable as one group commit: all of them or none, on
    /// durable storage when it returns.
    fn append(&mut self, events: &[JournalEvent]) -> Result<(), StoreError>;

    /// Replaces the whole log with `snapshot` (see `Scheduler::snapshot`) and deletes the
    /// committed results of the `forgotten` jobs, atomically: after a crash the journal is
    /// either the old log or the snapshot, never a mix.
    fn compact(&mut self, snapshot: &[JournalEvent], forgotten: &[JobId])
    -> Result<(), StoreError>;

    /// Returns the number of events in the log.
    fn len(&self) -> u64;

    /// Returns true when the log holds no event.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where the coordinator reads committed results, whichever journal wrote them.
/// Methods block on I/O: call them from a blocking thread.
pub trait ResultStore: Send + Sync + 'static {
    /// Returns up to `limit` committed results of `job` from task `from_task` on.
    fn results(
        &self,
        job: JobId,
        from_task: u32,
        limit: usize,
    ) -> Result<Vec<CommittedResult>, StoreError>;
}

/// A result store shared by the coordinator's request handlers.
pub type SharedResults = Arc<dyn ResultStore>;

/// Why the journal failed. Any error while appending is fatal for the coordinator: its
/// state would run ahead of what is durable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory cannot be created.
    #[error("failed to create data directory `{path}`")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database cannot be opened (locked by another coordinator, unreadable, corrupt).
    #[error("failed to open journal `{path}`")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: redb::DatabaseError,
    },
    /// The journal was written by an incompatible version.
    #[error(
        "journal `{location}` has format version {found}; this coordinator reads version {JOURNAL_FORMAT_VERSION}"
    )]
    Version {
        /// Where the journal is (a file, or a key prefix in a replicated store).
        location: String,
        /// Version found.
        found: u64,
    },
    /// A storage operation failed.
    #[error("journal storage failed")]
    Storage(#[from] redb::Error),
    /// A record does not decode.
    #[error("journal record {sequence} is corrupt")]
    Corrupt {
        /// Its sequence number.
        sequence: u64,
        /// The cause.
        #[source]
        source: postcard::Error,
    },
    /// The replicated store did not take or give back what was asked (unreachable, no
    /// quorum, a request over its limits).
    #[error("the replicated journal failed to {operation}")]
    Replicated {
        /// What was being done.
        operation: &'static str,
        /// The store's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A write was refused because this coordinator no longer leads: another one was
    /// elected since. Nothing of the refused write is in the journal.
    #[error("journal write refused: this coordinator is no longer the leader ({detail})")]
    Fenced {
        /// Who leads now, as far as the store says.
        detail: String,
    },
    /// A record does not encode (cannot happen with the types journaled).
    #[error("failed to encode a journal record")]
    Encode(#[source] postcard::Error),
}

/// What the journal held when it was opened.
#[derive(Debug)]
pub struct Recovered {
    /// This coordinator's epoch: one more than the previous opener's.
    pub epoch: u64,
    /// Every event, in order (`TaskSucceeded` without inline output bytes).
    pub events: Vec<JournalEvent>,
}
