//! The scratch guard: a worker whose scratch disk is (nearly) full takes no new task
//! until space is freed.
//!
//! Without it a full disk makes a "black hole": every map task the worker pulls fails at
//! once with "no space left on device", its slot frees up, it pulls the next one — and
//! the retries of one task can land on it again and again until the task is
//! dead-lettered and its job failed (the torture suite's disk faults found exactly
//! that). Hadoop's NodeManager marks such a node unhealthy for the same reason. Here the
//! pull loop asks the guard before every pull (the disk itself is read at most every
//! [`RECHECK_PERIOD`] while it has room: pulls of short tasks can be frequent, and a
//! `statvfs` on a blocking thread each time would be wasted): below the reserve
//! (`--scratch-reserve-bytes`) it waits, re-checking every [`RECHECK_PERIOD`], while
//! heartbeats go on (the leases it holds stay valid, its committed outputs stay
//! readable) and attempts already running finish or fail on their own. A reserve of 0
//! turns the guard off; a disk whose free space cannot be read is not held against the
//! worker.

use std::path::PathBuf;
use std::time::Duration;

use essaim_telemetry::WorkerMetrics;

/// How often the guard reads the disk: again after this while below its reserve, and
/// at most this often while above it.
pub(crate) const RECHECK_PERIOD: Duration = Duration::from_millis(500);

/// Holds pulls back while the scratch disk is below its reserve (see the module doc).
pub(crate) struct ScratchGuard {
    dir: PathBuf,
    reserve_bytes: u64,
    metrics: WorkerMetrics,
    /// Whether the last check found the disk below the reserve (for the log lines at
    /// the transitions).
    below: bool,
    /// When the disk was last found above the reserve.
    room_seen_at: Option<std::time::Instant>,
}

impl ScratchGuard {
    pub(crate) fn new(dir: PathBuf, reserve_bytes: u64, metrics: WorkerMetrics) -> Self {
        Self {
            dir,
            reserve_bytes,
            metrics,
            below: false,
            room_seen_at: None,
        }
    }

    /// Returns once the scratch disk has at least the reserve free (at once when it
    /// has, or when the guard is off or the free space cannot be read).
    pub(crate) async fn wait_for_room(&mut self) {
        if self.reserve_bytes == 0 {
            return;
        }
        if self
            .room_seen_at
            .is_some_and(|seen| seen.elapsed() < RECHECK_PERIOD)
        {
            return;
        }
        loop {
            let dir = self.dir.clone();
            let sampled =
                tokio::task::spawn_blocking(move || essaim_telemetry::disk::free_bytes(&dir)).await;
            let Ok(Ok(free_bytes)) = sampled else {
                self.set_below(false, None);
                return;
            };
            self.metrics
                .scratch_free_bytes
                .set(i64::try_from(free_bytes).unwrap_or(i64::MAX));
            if free_bytes >= self.reserve_bytes {
                self.set_below(false, Some(free_bytes));
                self.room_seen_at = Some(std::time::Instant::now());
                return;
            }
            self.room_seen_at = None;
            self.set_below(true, Some(free_bytes));
            tokio::time::sleep(RECHECK_PERIOD).await;
        }
    }

    fn set_below(&mut self, below: bool, free_bytes: Option<u64>) {
        if below == self.below {
            return;
        }
        self.below = below;
        self.metrics.scratch_below_reserve.set(i64::from(below));
        let dir = self.dir.display();
        if below {
            tracing::error!(
                %dir,
                free_bytes,
                reserve_bytes = self.reserve_bytes,
                "the scratch disk is below its reserve (--scratch-reserve-bytes): taking no new task until space is freed"
            );
        } else {
            tracing::info!(%dir, free_bytes, "the scratch disk is above its reserve again: taking tasks");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_telemetry::prometheus_client::registry::Registry;

    fn guard(dir: PathBuf, reserve_bytes: u64) -> ScratchGuard {
        let metrics = WorkerMetrics::register(&mut Registry::default());
        ScratchGuard::new(dir, reserve_bytes, metrics)
    }

    #[tokio::test]
    async fn a_disk_above_its_reserve_lets_the_pull_go_and_reports_its_free_space() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut guard = guard(dir.path().to_path_buf(), 1);
        guard.wait_for_room().await;
        assert!(guard.metrics.scratch_free_bytes.get() > 0);
        assert_eq!(guard.metrics.scratch_below_reserve.get(), 0);
    }

    #[tokio::test]
    async fn a_disk_below_its_reserve_holds_the_pull_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut guard = guard(dir.path().to_path_buf(), u64::MAX);
        let waited = tokio::time::timeout(RECHECK_PERIOD * 3, guard.wait_for_room()).await;
        assert!(waited.is_err(), "no disk has u64::MAX bytes free");
        assert_eq!(guard.metrics.scratch_below_reserve.get(), 1);
    }

    #[tokio::test]
    async fn a_reserve_of_zero_or_an_unreadable_disk_never_holds_back() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        guard(dir.path().to_path_buf(), 0).wait_for_room().await;
        guard(dir.path().join("missing"), u64::MAX)
            .wait_for_room()
            .await;
    }
}
