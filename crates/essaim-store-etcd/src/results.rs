//! Committed results in etcd: written in groups by the leader's journal (one value per
//! task block and log batch, see the `layout` module), read by [`EtcdResults`] — the
//! coordinator's `ResultStore` — in task order.

use crate::fenced::{MAX_VALUE_BYTES, Op, replicated};
use crate::layout::{Layout, RESULT_BLOCK_TASKS};
use essaim_core::{CommittedResult, JobId};
use essaim_etcd::{Etcd, prefix_end};
use essaim_store::{ResultStore, StoreError};
use std::collections::BTreeMap;
use tokio::runtime::Handle;

/// Result groups read per etcd request.
const GROUPS_PAGE: i64 = 16;
/// Largest value of one result group: a result alone may exceed it (its inline output
/// is at most 64 KiB), a group of several never does.
const MAX_GROUP_BYTES: usize = MAX_VALUE_BYTES / 2;

/// The writes of the result groups of `results`, all committed by log batch `sequence`.
pub(crate) fn result_groups<'a>(
    layout: &Layout,
    sequence: u64,
    results: impl IntoIterator<Item = &'a CommittedResult>,
) -> Result<Vec<Op>, StoreError> {
    let mut by_block: BTreeMap<(u64, u32), Vec<Vec<u8>>> = BTreeMap::new();
    for result in results {
        let block = (result.task.job.0, result.task.index / RESULT_BLOCK_TASKS);
        let encoded = postcard::to_allocvec(result).map_err(StoreError::Encode)?;
        by_block.entry(block).or_default().push(encoded);
    }
    let mut groups = Vec::new();
    for ((job, block), encoded) in by_block {
        let mut piece = 0;
        let mut group: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        for result in encoded {
            if !group.is_empty() && bytes + result.len() > MAX_GROUP_BYTES {
                let key = layout.result_group(job, block, sequence, piece);
                let value = postcard::to_allocvec(&group).map_err(StoreError::Encode)?;
                groups.push(Op::Put(key, value));
                (group, bytes, piece) = (Vec::new(), 0, piece + 1);
            }
            bytes += result.len();
            group.push(result);
        }
        let key = layout.result_group(job, block, sequence, piece);
        let value = postcard::to_allocvec(&group).map_err(StoreError::Encode)?;
        groups.push(Op::Put(key, value));
    }
    Ok(groups)
}

/// The results of one group's value.
fn decode_group(value: &[u8], sequence: u64) -> Result<Vec<CommittedResult>, StoreError> {
    let corrupt = |source| StoreError::Corrupt { sequence, source };
    let encoded: Vec<Vec<u8>> = postcard::from_bytes(value).map_err(corrupt)?;
    encoded
        .iter()
        .map(|result| postcard::from_bytes(result).map_err(corrupt))
        .collect()
}

/// Reads committed results from etcd; blocks, so call it from a blocking thread.
#[derive(Debug, Clone)]
pub struct EtcdResults {
    etcd: Etcd,
    layout: Layout,
    runtime: Handle,
}

impl EtcdResults {
    /// A reader of `layout`'s results; must be made inside a tokio runtime.
    pub fn new(etcd: Etcd, layout: Layout) -> Self {
        Self {
            etcd,
            layout,
            runtime: Handle::current(),
        }
    }
}

impl ResultStore for EtcdResults {
    /// Reads whole blocks from `from_task`'s on, until `limit` results are found and the
    /// block of the last one is read whole (its groups may come in any task order).
    fn results(
        &self,
        job: JobId,
        from_task: u32,
        limit: usize,
    ) -> Result<Vec<CommittedResult>, StoreError> {
        let end = prefix_end(&self.layout.job_results(job.0));
        let mut from = self.layout.results_from(job.0, from_task);
        let mut found = Vec::new();
        let mut last_block = None;
        loop {
            let answer = self
                .runtime
                .block_on(self.etcd.range(&from, &end, GROUPS_PAGE, 0))
                .map_err(|error| replicated("read committed results", error))?;
            for kv in &answer.kvs {
                let Some(key) = self.layout.result_group_of(&kv.key) else {
                    continue;
                };
                if found.len() >= limit && last_block != Some(key.block) {
                    return Ok(in_order(found, limit));
                }
                last_block = Some(key.block);
                let group = decode_group(&kv.value, key.sequence)?;
                found.extend(group.into_iter().filter(|r| r.task.index >= from_task));
            }
            match answer.kvs.last() {
                Some(last) if answer.more => {
                    from = last.key.clone();
                    from.push(0);
                }
                _ => return Ok(in_order(found, limit)),
            }
        }
    }
}

/// The first `limit` of `results` in task order.
fn in_order(mut results: Vec<CommittedResult>, limit: usize) -> Vec<CommittedResult> {
    results.sort_unstable_by_key(|result| result.task.index);
    results.truncate(limit);
    results
}
