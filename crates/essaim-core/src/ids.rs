//! Identifiers: one newtype per thing, so a worker id can never be passed as an attempt id.
//!
//! Attempt and worker ids are minted as `epoch << 40 | counter`, where the epoch grows by
//! one at every coordinator start (it is journaled). Ids are therefore unique across
//! restarts, and attempt ids grow with every grant, which is what makes them usable as
//! fencing tokens: a result that names an attempt the coordinator does not hold a lease
//! for is rejected, whichever coordinator incarnation granted it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch, as given by the shell's clock.
pub type Millis = u64;

/// Bits of an id left for the per-epoch counter (about 10^12 ids per coordinator start).
pub const EPOCH_SHIFT: u32 = 40;

/// A job, numbered from 1 in submission order (submission order is also FIFO order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub u64);

/// A task: its job and its index in the job's task list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId {
    /// The job the task belongs to.
    pub job: JobId,
    /// Position of the task in the job's task list.
    pub index: u32,
}

/// One attempt at running a task; also its fencing token (ids only grow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AttemptId(pub u64);

impl AttemptId {
    /// The epoch of the coordinator incarnation that granted it.
    pub fn epoch(self) -> u64 {
        self.0 >> EPOCH_SHIFT
    }
}

/// A registered worker process; a restarted worker registers again under a new id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkerId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.job.0, self.index)
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl TaskId {
    /// Returns the task `index` of `job`.
    pub fn new(job: JobId, index: u32) -> Self {
        Self { job, index }
    }
}

/// Hands out ids of one kind, unique across coordinator restarts.
#[derive(Debug, Clone)]
pub struct IdMint {
    next: u64,
}

impl IdMint {
    /// Starts minting in `epoch` (which must be below 2^24).
    pub fn new(epoch: u64) -> Self {
        debug_assert!(
            epoch < (1 << (64 - EPOCH_SHIFT)),
            "epoch overflows the id space"
        );
        Self {
            next: (epoch << EPOCH_SHIFT) | 1,
        }
    }

    /// Returns a fresh id, larger than every id this mint returned before.
    pub fn mint(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }
}
