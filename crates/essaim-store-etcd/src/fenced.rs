//! Writes of the leader, each one an etcd transaction guarded by the leader's fence:
//! "the leader key still has the create revision it had when I was elected". After
//! another election the guard fails and the write changes nothing: a deposed leader is
//! stopped by the store itself.
//!
//! A write too large for one transaction (etcd's `--max-txn-ops`, 128 by default, and
//! `--max-request-bytes`, 1.5 MiB) is cut into several, the deciding operation last (see
//! [`Fenced::write`]): until that one commits, what the earlier ones wrote is not
//! referenced by anything, and the next leader deletes it when it opens the journal.

use crate::layout::Layout;
use crate::leadership::{Fence, Leadership};
use essaim_etcd::{Etcd, Txn};
use essaim_store::StoreError;

/// Operations per transaction, below etcd's default `--max-txn-ops` (128).
pub(crate) const MAX_TXN_OPS: usize = 64;
/// Bytes per transaction, below etcd's default `--max-request-bytes` (1.5 MiB).
pub(crate) const MAX_TXN_BYTES: usize = 1 << 20;
/// Transactions of one write sent to etcd before the first is answered.
pub(crate) const WRITES_IN_FLIGHT: usize = 16;
/// Bytes per value: larger ones are cut into pieces.
pub(crate) const MAX_VALUE_BYTES: usize = 512 << 10;

/// The leader's handle on etcd for writing.
#[derive(Debug, Clone)]
pub(crate) struct Fenced {
    pub(crate) etcd: Etcd,
    pub(crate) layout: Layout,
    pub(crate) fence: Fence,
}

/// One operation of a multi-transaction write.
pub(crate) enum Op {
    Put(Vec<u8>, Vec<u8>),
    DeleteRange(Vec<u8>, Vec<u8>),
    DeletePrefix(Vec<u8>),
}

impl Op {
    fn size(&self) -> usize {
        match self {
            Op::Put(key, value) => key.len() + value.len(),
            Op::DeleteRange(from, to) => from.len() + to.len(),
            Op::DeletePrefix(prefix) => prefix.len() * 2,
        }
    }

    fn add_to(self, txn: Txn) -> Txn {
        match self {
            Op::Put(key, value) => txn.put(&key, value, 0),
            Op::DeleteRange(from, to) => txn.delete_range(&from, &to),
            Op::DeletePrefix(prefix) => txn.delete_prefix(&prefix),
        }
    }
}

pub(crate) fn replicated(operation: &'static str, error: essaim_etcd::EtcdError) -> StoreError {
    StoreError::Replicated {
        operation,
        source: Box::new(error),
    }
}

impl Fenced {
    /// A transaction that only applies while this process still leads.
    pub(crate) fn guarded(&self) -> Txn {
        Txn::new().when_created_at(&self.layout.leader(), self.fence.0)
    }

    /// Commits `txn` (built from [`Fenced::guarded`]); returns the store's revision.
    pub(crate) async fn commit(
        &self,
        operation: &'static str,
        txn: Txn,
    ) -> Result<i64, StoreError> {
        let outcome = self
            .etcd
            .txn(txn)
            .await
            .map_err(|error| replicated(operation, error))?;
        if outcome.succeeded {
            return Ok(outcome.revision);
        }
        Err(self.refused().await)
    }

    /// The error of a write whose guard failed, naming who leads now.
    pub(crate) async fn refused(&self) -> StoreError {
        let detail = match Leadership::current(&self.etcd, &self.layout).await {
            Ok(Some(leader)) => format!(
                "{} leads since revision {}; this coordinator's fence is {}",
                leader.url, leader.fence.0, self.fence.0
            ),
            Ok(None) => format!(
                "no leader now; this coordinator's fence was {}",
                self.fence.0
            ),
            Err(error) => format!("fence {} no longer holds ({error})", self.fence.0),
        };
        StoreError::Fenced { detail }
    }

    /// Applies `ops` then `last`, in as few guarded transactions as etcd's limits allow,
    /// `last` in the final one. Returns the revision of the final one.
    ///
    /// The transactions before the final one are independent (nothing refers to what they
    /// write until the final one commits), so they are sent together, up to
    /// [`WRITES_IN_FLIGHT`] at a time: etcd puts concurrent proposals into one Raft round
    /// and one fsync, so a batch of many results costs two round trips, not one per
    /// [`MAX_TXN_OPS`] results.
    pub(crate) async fn write(
        &self,
        operation: &'static str,
        ops: Vec<Op>,
        last: Vec<Op>,
    ) -> Result<i64, StoreError> {
        let (earlier, final_txn) = self.split_into_txns(ops, last);
        let mut in_flight = tokio::task::JoinSet::new();
        for txn in earlier {
            if in_flight.len() >= WRITES_IN_FLIGHT {
                joined(in_flight.join_next().await)?;
            }
            let store = self.clone();
            in_flight.spawn(async move { store.commit(operation, txn).await });
        }
        while let Some(outcome) = in_flight.join_next().await {
            joined(Some(outcome))?;
        }
        self.commit(operation, final_txn).await
    }

    /// Packs `ops` into guarded transactions within etcd's limits, and `last` into the
    /// final one (with the tail of `ops` when it fits).
    fn split_into_txns(&self, ops: Vec<Op>, last: Vec<Op>) -> (Vec<Txn>, Txn) {
        let last_size: usize = last.iter().map(Op::size).sum();
        let mut earlier = Vec::new();
        let mut txn = self.guarded();
        let mut ops_in_txn = 0;
        for op in ops {
            if ops_in_txn + 1 > MAX_TXN_OPS || txn.byte_size() + op.size() > MAX_TXN_BYTES {
                earlier.push(std::mem::replace(&mut txn, self.guarded()));
                ops_in_txn = 0;
            }
            txn = op.add_to(txn);
            ops_in_txn += 1;
        }
        if ops_in_txn + last.len() > MAX_TXN_OPS || txn.byte_size() + last_size > MAX_TXN_BYTES {
            earlier.push(std::mem::replace(&mut txn, self.guarded()));
        }
        for op in last {
            txn = op.add_to(txn);
        }
        (earlier, txn)
    }
}

/// The outcome of one of [`Fenced::write`]'s earlier transactions.
fn joined(
    outcome: Option<Result<Result<i64, StoreError>, tokio::task::JoinError>>,
) -> Result<(), StoreError> {
    match outcome {
        None => Ok(()),
        Some(Ok(written)) => written.map(|_| ()),
        Some(Err(error)) => Err(StoreError::Replicated {
            operation: "write to etcd",
            source: Box::new(error),
        }),
    }
}

/// Cuts `bytes` into pieces of at most [`MAX_VALUE_BYTES`].
pub(crate) fn pieces(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.chunks(MAX_VALUE_BYTES)
}
