//! The redb implementation of the [`Journal`]: an embedded, group-committed log of
//! scheduler events plus the committed results of tasks, in one file of the data
//! directory.
//!
//! Why redb: an embedded, pure-Rust, crash-safe B-tree store with checksummed pages and
//! ACID transactions; a commit with the default durability is on disk when `commit`
//! returns. The coordinator appends one *batch* of events per transaction (group commit),
//! so the fsync cost is shared by every request that arrived while the previous batch was
//! being written.
//!
//! Layout (format version [`JOURNAL_FORMAT_VERSION`], checked on open):
//! - `meta`: `format_version`, `epoch` (incremented at every open);
//! - `events`: sequence number → postcard-encoded [`JournalEvent`]; a `TaskSucceeded`
//!   event is stored without its inline output bytes (it keeps the output file's
//!   location and the counters, which recovery needs: the next stage reads the file, the
//!   job's counter sums add the counters), the bytes go to
//! - `results`: (job, task) → postcard-encoded [`CommittedResult`], read by `results`.

use crate::{Journal, Recovered, ResultStore, StoreError};
use essaim_core::journal::JOURNAL_FORMAT_VERSION;
use essaim_core::{CommittedResult, JobId, JournalEvent};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const RESULTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("results");

/// File name of the journal inside the data directory.
pub const JOURNAL_FILE: &str = "journal.redb";

macro_rules! storage {
    ($expr:expr) => {
        $expr.map_err(|error| StoreError::Storage(error.into()))
    };
}

/// The open journal in a redb file. Methods block on disk I/O: call them from a blocking
/// thread.
#[derive(Debug)]
pub struct RedbJournal {
    database: Arc<Database>,
    next_sequence: u64,
    epoch: u64,
}

/// A read-only handle on the committed results, usable while the journal appends
/// (redb serves readers from the last committed snapshot). Methods block on disk I/O.
#[derive(Debug, Clone)]
pub struct ResultReader {
    database: Arc<Database>,
}

impl RedbJournal {
    /// Opens (or creates) the journal in `data_dir`, bumps the epoch and reads every event.
    pub fn open(data_dir: &Path) -> Result<(Self, Recovered), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(JOURNAL_FILE);
        let database = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let transaction = storage!(database.begin_write())?;
        let epoch;
        {
            let mut meta = storage!(transaction.open_table(META))?;
            let version = storage!(meta.get("format_version"))?.map(|v| v.value());
            match version {
                None => {
                    storage!(meta.insert("format_version", u64::from(JOURNAL_FORMAT_VERSION)))?;
                }
                Some(found) if found != u64::from(JOURNAL_FORMAT_VERSION) => {
                    return Err(StoreError::Version {
                        location: path.display().to_string(),
                        found,
                    });
                }
                Some(_) => {}
            }
            epoch = storage!(meta.get("epoch"))?.map(|v| v.value()).unwrap_or(0) + 1;
            storage!(meta.insert("epoch", epoch))?;
            storage!(transaction.open_table(EVENTS))?;
            storage!(transaction.open_table(RESULTS))?;
        }
        storage!(transaction.commit())?;

        let (events, next_sequence) = read_log(&database)?;
        Ok((
            Self {
                database: Arc::new(database),
                next_sequence,
                epoch,
            },
            Recovered { epoch, events },
        ))
    }

    /// Returns a reader of committed results that does not wait for appends.
    pub fn result_reader(&self) -> ResultReader {
        ResultReader {
            database: Arc::clone(&self.database),
        }
    }
}

/// Reads the whole event log; returns it and the sequence number the next event gets.
fn read_log(database: &Database) -> Result<(Vec<JournalEvent>, u64), StoreError> {
    let read = storage!(database.begin_read())?;
    let table = storage!(read.open_table(EVENTS))?;
    let mut events = Vec::new();
    let mut next_sequence = 0;
    for entry in storage!(table.iter())? {
        let (sequence, bytes) = storage!(entry)?;
        let sequence = sequence.value();
        let event = postcard::from_bytes(bytes.value())
            .map_err(|source| StoreError::Corrupt { sequence, source })?;
        events.push(event);
        next_sequence = sequence + 1;
    }
    Ok((events, next_sequence))
}

impl Journal for RedbJournal {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn read_events(&self) -> Result<Vec<JournalEvent>, StoreError> {
        read_log(&self.database).map(|(events, _)| events)
    }

    /// One redb write transaction per batch; `commit` returns once it is on disk.
    fn append(&mut self, events: &[JournalEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let transaction = storage!(self.database.begin_write())?;
        let mut sequence = self.next_sequence;
        {
            let mut log = storage!(transaction.open_table(EVENTS))?;
            let mut results = storage!(transaction.open_table(RESULTS))?;
            let mut buffer = Vec::new();
            for event in events {
                buffer.clear();
                if let JournalEvent::TaskSucceeded { result, at } = event {
                    let encoded =
                        postcard::to_extend(result, Vec::new()).map_err(StoreError::Encode)?;
                    storage!(
                        results.insert((result.task.job.0, result.task.index), encoded.as_slice())
                    )?;
                    // The log keeps the fact (with where the output file is and the
                    // counters: replay needs both), the results table keeps the bytes.
                    let mut slim = result.clone();
                    slim.output.inline = Vec::new();
                    let slim_event = JournalEvent::TaskSucceeded {
                        result: slim,
                        at: *at,
                    };
                    buffer =
                        postcard::to_extend(&slim_event, buffer).map_err(StoreError::Encode)?;
                } else {
                    buffer = postcard::to_extend(event, buffer).map_err(StoreError::Encode)?;
                }
                storage!(log.insert(sequence, buffer.as_slice()))?;
                sequence += 1;
            }
        }
        storage!(transaction.commit())?;
        self.next_sequence = sequence;
        Ok(())
    }

    /// One redb write transaction: the old log, the snapshot and the deletions commit
    /// together or not at all.
    fn compact(
        &mut self,
        snapshot: &[JournalEvent],
        forgotten: &[JobId],
    ) -> Result<(), StoreError> {
        let transaction = storage!(self.database.begin_write())?;
        {
            let mut log = storage!(transaction.open_table(EVENTS))?;
            storage!(log.retain(|_, _| false))?;
            let mut buffer = Vec::new();
            for (sequence, event) in snapshot.iter().enumerate() {
                debug_assert!(
                    !matches!(event, JournalEvent::TaskSucceeded { .. }),
                    "a snapshot names committed tasks without outputs, which must stay"
                );
                buffer.clear();
                buffer = postcard::to_extend(event, buffer).map_err(StoreError::Encode)?;
                storage!(log.insert(sequence as u64, buffer.as_slice()))?;
            }
            let mut results = storage!(transaction.open_table(RESULTS))?;
            for job in forgotten {
                storage!(results.retain_in((job.0, 0)..=(job.0, u32::MAX), |_, _| false))?;
            }
        }
        storage!(transaction.commit())?;
        self.next_sequence = snapshot.len() as u64;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.next_sequence
    }
}

impl ResultStore for ResultReader {
    fn results(
        &self,
        job: JobId,
        from_task: u32,
        limit: usize,
    ) -> Result<Vec<CommittedResult>, StoreError> {
        let read = storage!(self.database.begin_read())?;
        let table = storage!(read.open_table(RESULTS))?;
        let mut found = Vec::new();
        for entry in storage!(table.range((job.0, from_task)..=(job.0, u32::MAX)))? {
            if found.len() == limit {
                break;
            }
            let (key, bytes) = storage!(entry)?;
            let (_, task) = key.value();
            let result =
                postcard::from_bytes(bytes.value()).map_err(|source| StoreError::Corrupt {
                    sequence: u64::from(task),
                    source,
                })?;
            found.push(result);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_core::{AttemptId, TaskId, TaskOutput, WorkerId};

    fn success(job: u64, task: u32, output: &[u8]) -> JournalEvent {
        JournalEvent::TaskSucceeded {
            result: CommittedResult {
                task: TaskId::new(JobId(job), task),
                attempt: AttemptId(7),
                worker: WorkerId(3),
                duration_ms: 12,
                output: TaskOutput {
                    inline: output.to_vec(),
                    file: None,
                    counters: Default::default(),
                },
            },
            at: 99,
        }
    }

    #[test]
    fn the_journal_reads_back_what_a_reopen_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, first) = RedbJournal::open(dir.path()).unwrap();
        assert_eq!(journal.epoch(), first.epoch);
        assert!(journal.is_empty());
        journal
            .append(&[success(1, 0, b"first"), success(1, 1, b"second")])
            .unwrap();
        let events = journal.read_events().unwrap();
        assert_eq!(journal.len(), 2);
        drop(journal);
        let (journal, recovered) = RedbJournal::open(dir.path()).unwrap();
        assert_eq!(events, recovered.events);
        assert_eq!(journal.epoch(), first.epoch + 1);
        let JournalEvent::TaskSucceeded { result, .. } = &events[0] else {
            panic!("expected a commit, got {:?}", events[0]);
        };
        assert!(
            result.output.inline.is_empty(),
            "the log keeps no output bytes"
        );
    }

    #[test]
    fn events_survive_reopen_and_the_epoch_grows() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, recovered) = RedbJournal::open(dir.path()).unwrap();
        assert_eq!(recovered.epoch, 1);
        assert!(recovered.events.is_empty());
        journal
            .append(&[success(1, 0, b"hello"), success(1, 1, b"world")])
            .unwrap();
        drop(journal);
        let (journal, recovered) = RedbJournal::open(dir.path()).unwrap();
        assert_eq!(recovered.epoch, 2);
        assert_eq!(recovered.events.len(), 2);
        // The log keeps the fact without the bytes; the results table has the bytes.
        let JournalEvent::TaskSucceeded { result, .. } = &recovered.events[0] else {
            panic!()
        };
        assert!(result.output.inline.is_empty());
        let results = journal.result_reader().results(JobId(1), 0, 10).unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1].output.inline, b"world");
        assert_eq!(
            journal
                .result_reader()
                .results(JobId(1), 1, 10)
                .unwrap()
                .len(),
            1
        );
        assert!(
            journal
                .result_reader()
                .results(JobId(2), 0, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn replayed_commits_keep_their_output_file_and_counters() {
        // Regression: the log once dropped the whole output, so after a restart the next
        // stage had no file to read and the job's counters summed to nothing.
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = RedbJournal::open(dir.path()).unwrap();
        let mut event = success(4, 2, b"inline bytes");
        if let JournalEvent::TaskSucceeded { result, .. } = &mut event {
            result.output.file = Some(essaim_core::FileRef {
                url: "http://worker-1:7001/files/4/2/7/map.out".into(),
                size_bytes: 1234,
            });
            result
                .output
                .counters
                .insert("map.output.records".into(), 99);
        }
        journal.append(&[event]).unwrap();
        drop(journal);
        let (_, recovered) = RedbJournal::open(dir.path()).unwrap();
        let JournalEvent::TaskSucceeded { result, .. } = &recovered.events[0] else {
            panic!()
        };
        assert!(result.output.inline.is_empty());
        assert_eq!(
            result.output.file.as_ref().map(|f| f.size_bytes),
            Some(1234)
        );
        assert_eq!(result.output.counters.get("map.output.records"), Some(&99));
    }

    #[test]
    fn a_journal_of_another_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(RedbJournal::open(dir.path()).unwrap());
        {
            let database = Database::create(dir.path().join(JOURNAL_FILE)).unwrap();
            let transaction = database.begin_write().unwrap();
            transaction
                .open_table(META)
                .unwrap()
                .insert("format_version", 999)
                .unwrap();
            transaction.commit().unwrap();
        }
        let error = RedbJournal::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("format version 999"), "{error}");
    }

    #[test]
    fn a_second_coordinator_cannot_open_the_same_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (_first, _) = RedbJournal::open(dir.path()).unwrap();
        assert!(matches!(
            RedbJournal::open(dir.path()),
            Err(StoreError::Open { .. })
        ));
    }

    /// Mutated records (a torn write, bit rot) must decode to an error, never a panic.
    #[test]
    fn mutated_records_never_panic_the_decoder() {
        let valid = postcard::to_allocvec(&success(3, 9, b"payload")).unwrap();
        let mut rng = essaim_core::rng::SeededRng::new(11);
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..1 + rng.up_to(3) {
                let at = rng.up_to(bytes.len() as u64 - 1) as usize;
                bytes[at] = rng.next_u64() as u8;
            }
            if rng.chance(1, 4) {
                bytes.truncate(rng.up_to(bytes.len() as u64) as usize);
            }
            let _ = postcard::from_bytes::<JournalEvent>(&bytes);
        }
    }

    /// A corrupted journal file is refused or read back as committed, never as garbage.
    #[test]
    fn a_corrupted_journal_file_is_refused_or_intact() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = RedbJournal::open(dir.path()).unwrap();
        let events: Vec<JournalEvent> = (0..50).map(|i| success(1, i, b"x")).collect();
        journal.append(&events).unwrap();
        drop(journal);
        let path = dir.path().join(JOURNAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        for byte in &mut bytes[middle..middle + 64] {
            *byte ^= 0xA5;
        }
        std::fs::write(&path, bytes).unwrap();
        match RedbJournal::open(dir.path()) {
            Err(error) => assert!(!error.to_string().is_empty()),
            Ok((_, recovered)) => {
                for event in &recovered.events {
                    assert!(
                        matches!(event, JournalEvent::TaskSucceeded { .. }),
                        "{event:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn compaction_replaces_the_log_and_drops_results_of_forgotten_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = RedbJournal::open(dir.path()).unwrap();
        journal
            .append(&[success(1, 0, b"old"), success(2, 0, b"kept")])
            .unwrap();
        let snapshot = vec![JournalEvent::JobIdsReserved { next_job: 3 }];
        journal.compact(&snapshot, &[JobId(1)]).unwrap();
        journal.append(&[success(2, 1, b"new")]).unwrap();
        drop(journal);
        let (journal, recovered) = RedbJournal::open(dir.path()).unwrap();
        assert_eq!(recovered.events.len(), 2);
        assert_eq!(
            recovered.events[0],
            JournalEvent::JobIdsReserved { next_job: 3 }
        );
        assert!(
            journal
                .result_reader()
                .results(JobId(1), 0, 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            journal
                .result_reader()
                .results(JobId(2), 0, 10)
                .unwrap()
                .len(),
            2
        );
    }
}
