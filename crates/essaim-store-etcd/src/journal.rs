//! [`EtcdJournal`]: the coordinator's [`Journal`] in etcd, so that it survives the loss of
//! any single machine — the leader's included — and every write is fenced.
//!
//! - Each group-committed batch is one log entry `journal/log/<seq>` (the events,
//!   postcard-encoded, `TaskSucceeded` without its inline output bytes); a batch larger
//!   than one value is stored in pieces under `journal/part/<seq>/`, written first.
//! - The results, inline outputs included, go to `results/<job>/<block>/<seq>/<n>`, one
//!   value per block of tasks, written with or before the log entry that commits them.
//! - Compaction writes the snapshot in chunks under `journal/snapshot/<gen>/`, then in one
//!   transaction switches `journal/head` to it and deletes the log it replaces; then the
//!   results of forgotten jobs are deleted and etcd's own history is compacted.
//! - Opening bumps `journal/epoch` (the scheduler's id space; etcd revisions are too
//!   large for it), reads head, snapshot and log, and deletes what a leader that died in
//!   the middle of a multi-transaction write left unreferenced.
//!
//! Every write is guarded by the leader's fence (see the `fenced` module). The trait's
//! methods block: they run the async etcd calls on the runtime the journal was opened in,
//! so call them from a blocking thread, as the coordinator's actor does.

use crate::fenced::{Fenced, Op, pieces, replicated};
use crate::follower::JournalFollower;
use crate::layout::Layout;
use crate::leadership::Fence;
use crate::recovery::{self, Head};
use crate::results::result_groups;
use essaim_core::journal::JOURNAL_FORMAT_VERSION;
use essaim_core::{JobId, JournalEvent};
use essaim_etcd::{Etcd, Txn, prefix_end};
use essaim_store::{Journal, Recovered, StoreError};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

/// etcd history is compacted after this many revisions since the last compaction.
const ETCD_COMPACT_EVERY: i64 = 10_000;

/// The value of a log entry.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Entry {
    /// The batch's events, postcard-encoded.
    Inline(Vec<u8>),
    /// The batch is in this many pieces under `journal/part/<seq>/`.
    Pieces(u32),
}

/// The journal of one cluster in etcd, written by its leader.
#[derive(Debug)]
pub struct EtcdJournal {
    store: Fenced,
    runtime: Handle,
    epoch: u64,
    head: Head,
    next_sequence: u64,
    events: u64,
    etcd_compacted_at: i64,
}

impl EtcdJournal {
    /// Opens the journal of `layout`'s cluster as the leader holding `fence`: checks the
    /// format, bumps the epoch, reads every event back and cleans up after a leader that
    /// died mid-write. Must run inside a tokio runtime, whose handle the journal keeps.
    pub async fn open(
        etcd: Etcd,
        layout: Layout,
        fence: Fence,
    ) -> Result<(Self, Recovered), StoreError> {
        Self::open_following(JournalFollower::new(etcd, layout), fence).await
    }

    /// Like [`EtcdJournal::open`], from what a standby's follower has read already: only
    /// the entries written since are read.
    pub async fn open_following(
        follower: JournalFollower,
        fence: Fence,
    ) -> Result<(Self, Recovered), StoreError> {
        let JournalFollower { etcd, layout, read } = follower;
        let store = Fenced {
            etcd,
            layout,
            fence,
        };
        check_format(&store).await?;
        let epoch = bump_epoch(&store).await?;
        let (read, _) = recovery::catch_up(&store.etcd, &store.layout, read).await?;
        recovery::delete_orphans(&store, &read).await?;
        let (_, revision) = store
            .etcd
            .get(&store.layout.head())
            .await
            .map_err(|error| replicated("read the journal head", error))?;
        let journal = Self {
            store,
            runtime: Handle::current(),
            epoch,
            next_sequence: read.next_sequence,
            events: read.events.len() as u64,
            head: read.head,
            etcd_compacted_at: revision,
        };
        Ok((
            journal,
            Recovered {
                epoch,
                events: read.events,
            },
        ))
    }

    /// The fence this journal writes under.
    pub fn fence(&self) -> Fence {
        self.store.fence
    }

    /// The sequence number the next batch gets (how far the log has come).
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    async fn append_async(&mut self, events: &[JournalEvent]) -> Result<(), StoreError> {
        let layout = &self.store.layout;
        let sequence = self.next_sequence;
        let successes = events.iter().filter_map(|event| match event {
            JournalEvent::TaskSucceeded { result, .. } => Some(result),
            _ => None,
        });
        let mut ops = result_groups(layout, sequence, successes)?;
        let slim_events: Vec<JournalEvent> = events.iter().map(slim).collect();
        let encoded = postcard::to_allocvec(&slim_events).map_err(StoreError::Encode)?;
        let entry = if encoded.len() <= crate::fenced::MAX_VALUE_BYTES / 2 {
            Entry::Inline(encoded)
        } else {
            let mut count = 0;
            for (index, piece) in pieces(&encoded).enumerate() {
                ops.push(Op::Put(layout.part(sequence, index as u32), piece.to_vec()));
                count += 1;
            }
            Entry::Pieces(count)
        };
        let value = postcard::to_allocvec(&entry).map_err(StoreError::Encode)?;
        let last = vec![Op::Put(layout.log_entry(sequence), value)];
        let revision = self.store.write("append to the journal", ops, last).await?;
        self.next_sequence += 1;
        self.events += events.len() as u64;
        self.compact_history(revision).await;
        Ok(())
    }

    /// Compacts etcd's history now and then: deleted and overwritten keys stay in etcd's
    /// database until then. Best effort: a failure only delays it.
    async fn compact_history(&mut self, revision: i64) {
        if revision - self.etcd_compacted_at >= ETCD_COMPACT_EVERY {
            self.compact_history_now(revision).await;
        }
    }

    /// Compacts etcd's history up to `revision`; best effort.
    async fn compact_history_now(&mut self, revision: i64) {
        match self.store.etcd.compact(revision).await {
            Ok(()) => self.etcd_compacted_at = revision,
            Err(error) => tracing::warn!(error = %error, "etcd history compaction failed"),
        }
    }

    async fn compact_async(
        &mut self,
        snapshot: &[JournalEvent],
        forgotten: &[JobId],
    ) -> Result<(), StoreError> {
        let layout = self.store.layout.clone();
        let generation = self.head.generation + 1;
        let encoded = postcard::to_allocvec(snapshot).map_err(StoreError::Encode)?;
        let mut ops = Vec::new();
        let mut chunks = 0;
        for (index, piece) in pieces(&encoded).enumerate() {
            ops.push(Op::Put(
                layout.snapshot_chunk(generation, index as u32),
                piece.to_vec(),
            ));
            chunks += 1;
        }
        let head = Head {
            generation,
            chunks,
            first_sequence: self.next_sequence,
        };
        let last = vec![
            Op::Put(
                layout.head(),
                postcard::to_allocvec(&head).map_err(StoreError::Encode)?,
            ),
            Op::DeleteRange(layout.log_entry(0), layout.log_entry(self.next_sequence)),
            Op::DeleteRange(layout.parts_of(0), layout.parts_of(self.next_sequence)),
            Op::DeletePrefix(layout.snapshot(self.head.generation)),
        ];
        let mut revision = self.store.write("compact the journal", ops, last).await?;
        self.head = head;
        self.events = snapshot.len() as u64;
        // The snapshot no longer names the forgotten jobs: their results go now (and, if
        // this process dies first, when the next leader opens the journal).
        for jobs in forgotten.chunks(crate::fenced::MAX_TXN_OPS) {
            let mut txn: Txn = self.store.guarded();
            for job in jobs {
                let prefix = layout.job_results(job.0);
                txn = txn.delete_range(&prefix, &prefix_end(&prefix));
            }
            revision = self.store.commit("delete forgotten results", txn).await?;
        }
        self.compact_history_now(revision).await;
        Ok(())
    }
}

impl Journal for EtcdJournal {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn read_events(&self) -> Result<Vec<JournalEvent>, StoreError> {
        let store = &self.store;
        self.runtime
            .block_on(recovery::read(&store.etcd, &store.layout))
            .map(|read| read.events)
    }

    fn append(&mut self, events: &[JournalEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let runtime = self.runtime.clone();
        runtime.block_on(self.append_async(events))
    }

    fn compact(
        &mut self,
        snapshot: &[JournalEvent],
        forgotten: &[JobId],
    ) -> Result<(), StoreError> {
        let runtime = self.runtime.clone();
        runtime.block_on(self.compact_async(snapshot, forgotten))
    }

    fn len(&self) -> u64 {
        self.events
    }
}

/// `event` as the log keeps it: a success without its inline output, which is in the
/// batch's result groups.
fn slim(event: &JournalEvent) -> JournalEvent {
    match event {
        JournalEvent::TaskSucceeded { result, at } => {
            let mut slim = result.clone();
            slim.output.inline = Vec::new();
            JournalEvent::TaskSucceeded {
                result: slim,
                at: *at,
            }
        }
        other => other.clone(),
    }
}

/// Writes the format version into an empty journal; refuses a journal of another one.
async fn check_format(store: &Fenced) -> Result<(), StoreError> {
    let key = store.layout.format();
    let (found, _) = store
        .etcd
        .get(&key)
        .await
        .map_err(|error| replicated("read the journal format", error))?;
    let Some(found) = found else {
        let txn = store.guarded().when_absent(&key).put(
            &key,
            JOURNAL_FORMAT_VERSION.to_string().into_bytes(),
            0,
        );
        return store
            .commit("write the journal format", txn)
            .await
            .map(|_| ());
    };
    let version = String::from_utf8_lossy(&found.value);
    if version.trim() != JOURNAL_FORMAT_VERSION.to_string() {
        return Err(StoreError::Version {
            location: format!("etcd:{}journal", store.layout.root()),
            found: version.trim().parse().unwrap_or(0),
        });
    }
    Ok(())
}

/// Hands out the next epoch: one more than the last leader's.
async fn bump_epoch(store: &Fenced) -> Result<u64, StoreError> {
    let key = store.layout.epoch();
    let (found, _) = store
        .etcd
        .get(&key)
        .await
        .map_err(|error| replicated("read the epoch", error))?;
    let (previous, modified) = match &found {
        Some(kv) => {
            let text = String::from_utf8_lossy(&kv.value);
            let previous = text
                .trim()
                .parse::<u64>()
                .map_err(|_| StoreError::Replicated {
                    operation: "read the epoch",
                    source: format!("`{text}` is not a number").into(),
                })?;
            (previous, kv.mod_revision)
        }
        None => (0, 0),
    };
    let epoch = previous + 1;
    // The fence makes this leader the only writer; the modification guard is a second
    // line against a bug, not a race that can happen.
    let txn = store.guarded().when_modified_at(&key, modified).put(
        &key,
        epoch.to_string().into_bytes(),
        0,
    );
    store.commit("bump the epoch", txn).await?;
    Ok(epoch)
}
