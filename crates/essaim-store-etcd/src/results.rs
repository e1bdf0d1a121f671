//! [`EtcdResults`]: the committed results in etcd, read by any coordinator of the
//! cluster (the coordinator's `ResultStore`).

use crate::fenced::replicated;
use crate::layout::Layout;
use essaim_core::{CommittedResult, JobId};
use essaim_etcd::{Etcd, prefix_end};
use essaim_store::{ResultStore, StoreError};
use tokio::runtime::Handle;

/// Results read per etcd request.
const RESULTS_PAGE: usize = 64;

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
        let end = prefix_end(&self.layout.job_results(job.0));
        let mut from = self.layout.result(job.0, from_task);
        let mut found = Vec::new();
        // In pages: inline outputs are up to 64 KiB each, and one answer must stay small.
        while found.len() < limit {
            let page = (limit - found.len()).min(RESULTS_PAGE) as i64;
            let answer = self
                .runtime
                .block_on(self.etcd.range(&from, &end, page, 0))
                .map_err(|error| replicated("read committed results", error))?;
            for kv in &answer.kvs {
                let task = self.layout.result_of(&kv.key).map_or(0, |(_, task)| task);
                let result =
                    postcard::from_bytes(&kv.value).map_err(|source| StoreError::Corrupt {
                        sequence: u64::from(task),
                        source,
                    })?;
                found.push(result);
            }
            match answer.kvs.last() {
                Some(last) if answer.more => {
                    from = last.key.clone();
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok(found)
    }
}
