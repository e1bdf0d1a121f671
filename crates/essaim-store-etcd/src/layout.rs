//! Where everything of one essaim cluster lives in etcd: one prefix per cluster, so that
//! several clusters can share one etcd without seeing each other.
//!
//! ```text
//! /essaim/<cluster>/leader                          the elected coordinator's URL, on its lease
//! /essaim/<cluster>/standbys/<url>                  each standby, on its own lease
//! /essaim/<cluster>/journal/format                  the journal's format version
//! /essaim/<cluster>/journal/epoch                   the last coordinator epoch handed out
//! /essaim/<cluster>/journal/head                    which snapshot is current, where the log starts
//! /essaim/<cluster>/journal/snapshot/<gen>/<chunk>  a compacted log, in chunks
//! /essaim/<cluster>/journal/log/<seq>               one group-committed batch of events
//! /essaim/<cluster>/journal/part/<seq>/<n>          pieces of a batch too big for one value
//! /essaim/<cluster>/results/<job>/<block>/<seq>/<n>  committed results with their inline output
//! ```
//!
//! Numbers are zero-padded so that etcd's key order is numeric order.
//!
//! Results are grouped: the results of the tasks of one block (of
//! [`RESULT_BLOCK_TASKS`] consecutive task indexes) that log batch `seq` commits are one
//! value (or `n` values, when they are large). A key per result would cost etcd a
//! revision, a Raft entry and an index entry per task: it was what limited the HA task
//! farm's throughput. Grouped by block, results are still found in task order by a range
//! read from the block of the first task wanted.

/// A cluster name that is not usable as a key prefix.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid cluster name `{0}`: use 1 to 64 letters, digits, `-`, `_` or `.` (it names the cluster's keys in etcd)"
)]
pub struct InvalidClusterName(pub String);

/// The keys of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: String,
    cluster: String,
}

impl Layout {
    /// The keys of cluster `cluster`.
    pub fn new(cluster: &str) -> Result<Self, InvalidClusterName> {
        let valid = !cluster.is_empty()
            && cluster.len() <= 64
            && cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid || cluster.starts_with('.') {
            return Err(InvalidClusterName(cluster.to_string()));
        }
        Ok(Self {
            root: format!("/essaim/{cluster}/"),
            cluster: cluster.to_string(),
        })
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Every key of the cluster starts with this.
    pub fn root(&self) -> &str {
        &self.root
    }

    fn key(&self, rest: &str) -> Vec<u8> {
        format!("{}{rest}", self.root).into_bytes()
    }

    /// The leader's key.
    pub fn leader(&self) -> Vec<u8> {
        self.key("leader")
    }

    /// A standby's key.
    pub fn standby(&self, url: &str) -> Vec<u8> {
        self.key(&format!("standbys/{url}"))
    }

    /// Where the standbys are.
    pub fn standbys(&self) -> Vec<u8> {
        self.key("standbys/")
    }

    /// The journal's format version.
    pub fn format(&self) -> Vec<u8> {
        self.key("journal/format")
    }

    /// The last epoch handed out.
    pub fn epoch(&self) -> Vec<u8> {
        self.key("journal/epoch")
    }

    /// The journal's head.
    pub fn head(&self) -> Vec<u8> {
        self.key("journal/head")
    }

    /// The chunks of snapshot `generation`.
    pub fn snapshot(&self, generation: u64) -> Vec<u8> {
        self.key(&format!("journal/snapshot/{generation:020}/"))
    }

    /// Chunk `index` of snapshot `generation`.
    pub fn snapshot_chunk(&self, generation: u64, index: u32) -> Vec<u8> {
        self.key(&format!("journal/snapshot/{generation:020}/{index:08}"))
    }

    /// Every snapshot.
    pub fn snapshots(&self) -> Vec<u8> {
        self.key("journal/snapshot/")
    }

    /// Log batch `sequence`.
    pub fn log_entry(&self, sequence: u64) -> Vec<u8> {
        self.key(&format!("journal/log/{sequence:020}"))
    }

    /// The log.
    pub fn log(&self) -> Vec<u8> {
        self.key("journal/log/")
    }

    /// Piece `index` of log batch `sequence`.
    pub fn part(&self, sequence: u64, index: u32) -> Vec<u8> {
        self.key(&format!("journal/part/{sequence:020}/{index:08}"))
    }

    /// The pieces of log batch `sequence`.
    pub fn parts_of(&self, sequence: u64) -> Vec<u8> {
        self.key(&format!("journal/part/{sequence:020}/"))
    }

    /// Every piece of every batch.
    pub fn parts(&self) -> Vec<u8> {
        self.key("journal/part/")
    }

    /// Group `piece` of the results of `job`'s task block `block` that log batch
    /// `sequence` commits.
    pub fn result_group(&self, job: u64, block: u32, sequence: u64, piece: u32) -> Vec<u8> {
        self.key(&format!(
            "results/{job:020}/{block:010}/{sequence:020}/{piece:05}"
        ))
    }

    /// Where the result groups of `job`'s task `task` and the tasks after it start.
    pub fn results_from(&self, job: u64, task: u32) -> Vec<u8> {
        let block = task / RESULT_BLOCK_TASKS;
        self.key(&format!("results/{job:020}/{block:010}/"))
    }

    /// The committed results of `job`.
    pub fn job_results(&self, job: u64) -> Vec<u8> {
        self.key(&format!("results/{job:020}/"))
    }

    /// Every committed result.
    pub fn results(&self) -> Vec<u8> {
        self.key("results/")
    }

    /// The sequence number of a log or part key (the first number after `journal/x/`).
    pub fn sequence_of(&self, key: &[u8], prefix: &[u8]) -> Option<u64> {
        let rest = key.strip_prefix(prefix)?;
        let digits = rest.split(|b| *b == b'/').next()?;
        std::str::from_utf8(digits).ok()?.parse().ok()
    }

    /// The job, block and log batch of a result group's key.
    pub fn result_group_of(&self, key: &[u8]) -> Option<ResultGroupKey> {
        let rest = key.strip_prefix(self.results().as_slice())?;
        let mut fields = std::str::from_utf8(rest).ok()?.split('/');
        let key = ResultGroupKey {
            job: fields.next()?.parse().ok()?,
            block: fields.next()?.parse().ok()?,
            sequence: fields.next()?.parse().ok()?,
        };
        fields.next()?.parse::<u32>().ok()?;
        fields.next().is_none().then_some(key)
    }
}

/// Consecutive task indexes whose results of one log batch share a value.
pub const RESULT_BLOCK_TASKS: u32 = 64;

/// What a result group's key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultGroupKey {
    /// The job.
    pub job: u64,
    /// The task block (task index / [`RESULT_BLOCK_TASKS`]).
    pub block: u32,
    /// The log batch that committed the results.
    pub sequence: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_have_disjoint_prefixes_and_keys_sort_numerically() {
        let a = Layout::new("a").unwrap();
        let ab = Layout::new("ab").unwrap();
        assert!(!ab.leader().starts_with(a.root().as_bytes()));
        assert!(a.log_entry(9) < a.log_entry(10));
        assert_eq!(a.sequence_of(&a.log_entry(42), &a.log()), Some(42));
        assert_eq!(a.sequence_of(&a.part(7, 3), &a.parts()), Some(7));
        let group = a.result_group(5, 2, 9, 0);
        let expected = ResultGroupKey {
            job: 5,
            block: 2,
            sequence: 9,
        };
        assert_eq!(a.result_group_of(&group), Some(expected));
        assert!(group.starts_with(&a.results_from(5, 2 * RESULT_BLOCK_TASKS + 3)));
        assert!(a.results_from(5, RESULT_BLOCK_TASKS) < group);
        assert_eq!(a.result_group_of(&a.key("results/5/17")), None);
    }

    #[test]
    fn names_that_would_escape_the_prefix_are_refused() {
        for name in ["", "a/b", "..", ".", "x y", &"n".repeat(65)] {
            assert!(Layout::new(name).is_err(), "{name:?}");
        }
        assert!(Layout::new("prod-eu_1.blue").is_ok());
    }
}
