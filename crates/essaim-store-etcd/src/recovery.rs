//! Reading the journal back from etcd, and deleting what a leader that died in the
//! middle of a multi-transaction write left behind.

use crate::fenced::{Fenced, Op, replicated};
use crate::journal::Entry;
use crate::layout::Layout;
use essaim_core::JournalEvent;
use essaim_etcd::Etcd;
use essaim_store::StoreError;
use serde::{Deserialize, Serialize};

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

/// The journal as read back, and how far: a standby keeps it and reads only what was
/// written since ([`catch_up`]), so that taking over does not read history again.
#[derive(Debug, Clone, Default)]
pub(crate) struct Read {
    pub(crate) head: Head,
    pub(crate) events: Vec<JournalEvent>,
    /// One more than the last log entry read. Entries are contiguous from
    /// `head.first_sequence` (each append writes the next one, its log key last), so this
    /// says which entries exist.
    pub(crate) next_sequence: u64,
}

fn corrupt(sequence: u64, source: postcard::Error) -> StoreError {
    StoreError::Corrupt { sequence, source }
}

fn decode_events(bytes: &[u8], sequence: u64) -> Result<Vec<JournalEvent>, StoreError> {
    postcard::from_bytes(bytes).map_err(|source| corrupt(sequence, source))
}

async fn read_head(etcd: &Etcd, layout: &Layout) -> Result<Head, StoreError> {
    let (head, _) = etcd
        .get(&layout.head())
        .await
        .map_err(|error| replicated("read the journal head", error))?;
    match head {
        Some(kv) => postcard::from_bytes(&kv.value).map_err(|source| corrupt(0, source)),
        None => Ok(Head::default()),
    }
}

async fn read_snapshot(
    etcd: &Etcd,
    layout: &Layout,
    head: &Head,
) -> Result<Vec<JournalEvent>, StoreError> {
    if head.generation == 0 {
        return Ok(Vec::new());
    }
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
    decode_events(&bytes, 0)
}

/// Reads head, snapshot and log: every event in order.
pub(crate) async fn read(etcd: &Etcd, layout: &Layout) -> Result<Read, StoreError> {
    catch_up(etcd, layout, Read::default())
        .await
        .map(|(read, _)| read)
}

/// Brings `read` up to date: the log entries written since, or everything again when the
/// journal was compacted meanwhile (its head changed). Returns it and the number of
/// entries that were new.
pub(crate) async fn catch_up(
    etcd: &Etcd,
    layout: &Layout,
    previous: Read,
) -> Result<(Read, u64), StoreError> {
    let mut previous = Some(previous);
    loop {
        let head = read_head(etcd, layout).await?;
        let mut read = match previous.take() {
            Some(read) if read.head == head && (head.generation > 0 || read.next_sequence > 0) => {
                read
            }
            _ => Read {
                head,
                events: read_snapshot(etcd, layout, &head).await?,
                next_sequence: head.first_sequence,
            },
        };
        let from = layout.log_entry(read.next_sequence.max(head.first_sequence));
        let log = etcd
            .get_range(&from, &essaim_etcd::prefix_end(&layout.log()))
            .await
            .map_err(|error| replicated("read the journal log", error))?;
        let mut new_entries = 0;
        for kv in log {
            let Some(sequence) = layout.sequence_of(&kv.key, &layout.log()) else {
                continue;
            };
            read.events
                .extend(read_entry(etcd, layout, sequence, &kv.value).await?);
            read.next_sequence = read.next_sequence.max(sequence + 1);
            new_entries += 1;
        }
        // A compaction between reading the head and the log: read it all again.
        if read_head(etcd, layout).await? == head {
            return Ok((read, new_entries));
        }
    }
}

/// Decodes log entry `sequence`, reading its pieces when it has some.
async fn read_entry(
    etcd: &Etcd,
    layout: &Layout,
    sequence: u64,
    value: &[u8],
) -> Result<Vec<JournalEvent>, StoreError> {
    let entry: Entry = postcard::from_bytes(value).map_err(|source| corrupt(sequence, source))?;
    match entry {
        Entry::Inline(bytes) => decode_events(&bytes, sequence),
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
            decode_events(&bytes, sequence)
        }
    }
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
        .filter(|sequence| !(read.head.first_sequence..read.next_sequence).contains(sequence))
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

    // Result groups of a batch whose log entry was never written.
    let results = etcd
        .get_prefix_keys(&layout.results())
        .await
        .map_err(|error| replicated("list committed results", error))?;
    ops.extend(
        results
            .into_iter()
            .filter(|key| {
                layout
                    .result_group_of(key)
                    .is_none_or(|group| group.sequence >= read.next_sequence)
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
