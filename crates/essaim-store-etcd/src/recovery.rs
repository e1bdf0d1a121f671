//! Reading the journal back from etcd, and deleting what a leader that died in the
//! middle of a multi-transaction write left behind.

use crate::fenced::{Fenced, Op, replicated};
use crate::journal::Entry;
use crate::layout::Layout;
use essaim_core::JournalEvent;
use essaim_etcd::Etcd;
use essaim_store::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Which snapshot is current and where the log after it starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Head {
    /// The snapshot's generation (0: none yet).
    pub(crate) generation: u64,
    /// Its number of chunks.
    pub(crate) chunks: u32,
    /// The sequence number of the first log entry after it.
    pub(crate) first_sequence: u64,
}

/// The journal as read back.
#[derive(Debug)]
pub(crate) struct Read {
    pub(crate) head: Head,
    pub(crate) events: Vec<JournalEvent>,
    pub(crate) next_sequence: u64,
    /// The sequence numbers of the log entries read.
    pub(crate) sequences: HashSet<u64>,
}

fn corrupt(sequence: u64, source: postcard::Error) -> StoreError {
    StoreError::Corrupt { sequence, source }
}

fn decode_events(bytes: &[u8], sequence: u64) -> Result<Vec<JournalEvent>, StoreError> {
    postcard::from_bytes(bytes).map_err(|source| corrupt(sequence, source))
}

/// Reads head, snapshot and log: every event in order.
pub(crate) async fn read(etcd: &Etcd, layout: &Layout) -> Result<Read, StoreError> {
    let (head, _) = etcd
        .get(&layout.head())
        .await
        .map_err(|error| replicated("read the journal head", error))?;
    let head: Head = match head {
        Some(kv) => postcard::from_bytes(&kv.value).map_err(|source| corrupt(0, source))?,
        None => Head::default(),
    };
    let mut events = Vec::new();
    if head.generation > 0 {
        let chunks = etcd
            .get_prefix(&layout.snapshot(head.generation))
            .await
            .map_err(|error| replicated("read the journal snapshot", error))?;
        if chunks.len() != head.chunks as usize {
            return Err(StoreError::Replicated {
                operation: "read the journal snapshot",
                source: format!("{} chunks found, {} expected", chunks.len(), head.chunks).into(),
            });
        }
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|kv| kv.value).collect();
        events = decode_events(&bytes, 0)?;
    }
    let log = etcd
        .get_prefix(&layout.log())
        .await
        .map_err(|error| replicated("read the journal log", error))?;
    let mut next_sequence = head.first_sequence;
    let mut sequences = HashSet::new();
    for kv in log {
        let Some(sequence) = layout.sequence_of(&kv.key, &layout.log()) else {
            continue;
        };
        if sequence < head.first_sequence {
            continue;
        }
        let entry: Entry =
            postcard::from_bytes(&kv.value).map_err(|source| corrupt(sequence, source))?;
        let batch = match entry {
            Entry::Inline(bytes) => decode_events(&bytes, sequence)?,
            Entry::Pieces(count) => {
                let pieces = etcd
                    .get_prefix(&layout.parts_of(sequence))
                    .await
                    .map_err(|error| replicated("read the journal log", error))?;
                if pieces.len() != count as usize {
                    return Err(StoreError::Replicated {
                        operation: "read the journal log",
                        source: format!(
                            "entry {sequence}: {} pieces found, {count} expected",
                            pieces.len()
                        )
                        .into(),
                    });
                }
                let bytes: Vec<u8> = pieces.into_iter().flat_map(|kv| kv.value).collect();
                decode_events(&bytes, sequence)?
            }
        };
        events.extend(batch);
        sequences.insert(sequence);
        next_sequence = next_sequence.max(sequence + 1);
    }
    Ok(Read {
        head,
        events,
        next_sequence,
        sequences,
    })
}

/// Deletes pieces of batches that were never committed, snapshots that are not current
/// and results of tasks the journal does not say were committed.
pub(crate) async fn delete_orphans(store: &Fenced, read: &Read) -> Result<(), StoreError> {
    let layout = &store.layout;
    let etcd = &store.etcd;
    let mut ops = Vec::new();
    let parts = etcd
        .get_prefix_keys(&layout.parts())
        .await
        .map_err(|error| replicated("list journal pieces", error))?;
    let mut orphan_batches: Vec<u64> = parts
        .iter()
        .filter_map(|key| layout.sequence_of(key, &layout.parts()))
        .filter(|sequence| !read.sequences.contains(sequence))
        .collect();
    orphan_batches.dedup();
    ops.extend(
        orphan_batches
            .into_iter()
            .map(|sequence| Op::DeletePrefix(layout.parts_of(sequence))),
    );

    let snapshots = etcd
        .get_prefix_keys(&layout.snapshots())
        .await
        .map_err(|error| replicated("list journal snapshots", error))?;
    let current = layout.snapshot(read.head.generation);
    ops.extend(
        snapshots
            .into_iter()
            .filter(|key| !key.starts_with(&current))
            .map(|key| Op::DeleteRange(key, Vec::new())),
    );

    let committed = committed_tasks(&read.events);
    let results = etcd
        .get_prefix_keys(&layout.results())
        .await
        .map_err(|error| replicated("list committed results", error))?;
    ops.extend(
        results
            .into_iter()
            .filter(|key| {
                layout
                    .result_of(key)
                    .is_some_and(|task| !committed.contains(&task))
            })
            .map(|key| Op::DeleteRange(key, Vec::new())),
    );
    if ops.is_empty() {
        return Ok(());
    }
    tracing::info!(
        deletions = ops.len(),
        "deleting what an interrupted journal write left behind"
    );
    store
        .write("delete unreferenced journal data", ops, Vec::new())
        .await?;
    Ok(())
}

/// The (job, task) pairs whose commit the events record.
fn committed_tasks(events: &[JournalEvent]) -> HashSet<(u64, u32)> {
    let mut committed = HashSet::new();
    for event in events {
        match event {
            JournalEvent::TaskSucceeded { result, .. } => {
                committed.insert((result.task.job.0, result.task.index));
            }
            JournalEvent::TasksCommitted { job, tasks, .. } => {
                committed.extend(tasks.iter().map(|task| (job.0, *task)));
            }
            _ => {}
        }
    }
    committed
}
