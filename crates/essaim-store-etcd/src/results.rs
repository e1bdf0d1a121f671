//! [`EtcdResults`]: the committed results in etcd, read by any coordinator of the
//! cluster (the coordinator's `ResultStore`).

use crate::fenced::replicated;
use crate::layout::Layout;
use essaim_core::{CommittedResult, JobId};
use essaim_etcd::{Etcd, prefix_end};
use essaim_store::{ResultStore, StoreError};
use tokio::runtime::Handle;

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
    fn results(
        &self,
        job: JobId,
        from_task: u32,
        limit: usize,
    ) -> Result<Vec<CommittedResult>, StoreError> {
        let from = self.layout.result(job.0, from_task);
        let end = prefix_end(&self.layout.job_results(job.0));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let page = self
            .runtime
            .block_on(self.etcd.range(&from, &end, limit, 0))
            .map_err(|error| replicated("read committed results", error))?;
        page.kvs
            .iter()
            .map(|kv| {
                let task = self.layout.result_of(&kv.key).map_or(0, |(_, task)| task);
                postcard::from_bytes(&kv.value).map_err(|source| StoreError::Corrupt {
                    sequence: u64::from(task),
                    source,
                })
            })
            .collect()
    }
}
