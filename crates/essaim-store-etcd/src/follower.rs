//! [`JournalFollower`]: a standby's copy of the journal, kept up to date as the leader
//! writes it, so that a takeover reads only the last few entries rather than the whole
//! history ([`crate::EtcdJournal::open_following`]).
//!
//! It reads; it never writes the journal. Its position (the next log entry it would read)
//! is what the cluster view compares with the leader's to say how far it is behind.

use crate::layout::Layout;
use crate::recovery::{self, Read};
use essaim_etcd::Etcd;
use essaim_store::StoreError;

/// A copy of the journal of one cluster, as far as it was read.
#[derive(Debug)]
pub struct JournalFollower {
    pub(crate) etcd: Etcd,
    pub(crate) layout: Layout,
    pub(crate) read: Read,
}

impl JournalFollower {
    /// A follower that has read nothing yet.
    pub fn new(etcd: Etcd, layout: Layout) -> Self {
        Self {
            etcd,
            layout,
            read: Read::default(),
        }
    }

    /// Reads what the leader wrote since the last call (everything again if the journal
    /// was compacted meanwhile); returns how many log entries were new.
    pub async fn catch_up(&mut self) -> Result<u64, StoreError> {
        let read = std::mem::take(&mut self.read);
        let (read, new_entries) = recovery::catch_up(&self.etcd, &self.layout, read).await?;
        self.read = read;
        Ok(new_entries)
    }

    /// The sequence number of the next log entry it would read.
    pub fn position(&self) -> u64 {
        self.read.next_sequence
    }

    /// The events read so far.
    pub fn event_count(&self) -> usize {
        self.read.events.len()
    }
}

/// The sequence number the leader's next log entry gets, as etcd says now.
pub async fn leader_position(etcd: &Etcd, layout: &Layout) -> Result<u64, StoreError> {
    let last = etcd
        .last_key(&layout.log())
        .await
        .map_err(|error| crate::fenced::replicated("read the journal log", error))?;
    Ok(last
        .and_then(|key| layout.sequence_of(&key, &layout.log()))
        .map_or(0, |sequence| sequence + 1))
}
