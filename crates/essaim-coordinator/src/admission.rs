//! Admission control: new submissions are refused while the journal's disk is nearly
//! full, so that the space left goes to the jobs already running.
//!
//! The journal fail-stops when a write fails ("journal before acknowledging": nothing
//! unjournaled may be acknowledged), and one large submission on a nearly full disk
//! used to stop the whole cluster that way (issue 13). Fail-stop stays the last resort;
//! this is the first line of defence. While the free space of the journal's file
//! system is under the reserve (`--journal-reserve-bytes`), `SubmitJob` answers
//! RESOURCE_EXHAUSTED with the free space and the reserve. Everything else a running
//! job needs (pulls, heartbeats, reports, commits) is never refused here: those writes
//! are small, and refusing them would turn a full disk into lost work.
//!
//! Free space is sampled by one task every [`SAMPLE_PERIOD`], not per request: a
//! `statvfs` is cheap but blocking, and a flood of submissions must not become a flood
//! of system calls. A submission therefore sees a sample at most that old; the reserve
//! is there to absorb what arrives in between.

use essaim_telemetry::AdmissionMetrics;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the free space of the journal's file system is sampled.
pub const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Free space before the first sample (and when sampling fails): admit. A failing
/// `statvfs` must not stop submissions; the journal's fail-stop still protects.
const UNKNOWN_FREE_BYTES: u64 = u64::MAX;

/// Why a submission was refused: the journal's disk is below the reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the journal's disk has {free_bytes} bytes free, below the reserve of {reserve_bytes} \
     bytes (--journal-reserve-bytes): new submissions are refused until space is freed; \
     running jobs continue"
)]
pub struct DiskBelowReserve {
    /// Free bytes of the journal's file system at the last sample.
    pub free_bytes: u64,
    /// The reserve.
    pub reserve_bytes: u64,
}

/// Returns whether a submission is admitted with `free_bytes` free and a reserve of
/// `reserve_bytes` (0: admission control off).
pub fn admits(free_bytes: u64, reserve_bytes: u64) -> bool {
    reserve_bytes == 0 || free_bytes >= reserve_bytes
}

/// The admission decision shared by the request handlers; clones share the sample.
#[derive(Clone, Debug)]
pub struct Admission {
    reserve_bytes: u64,
    free_bytes: Arc<AtomicU64>,
    metrics: AdmissionMetrics,
}

impl Admission {
    /// Returns an admission with a reserve of `reserve_bytes` (0: off), admitting
    /// everything until the first sample.
    pub fn new(reserve_bytes: u64, metrics: AdmissionMetrics) -> Self {
        metrics
            .journal_reserve_bytes
            .set(i64::try_from(reserve_bytes).unwrap_or(i64::MAX));
        Self {
            reserve_bytes,
            free_bytes: Arc::new(AtomicU64::new(UNKNOWN_FREE_BYTES)),
            metrics,
        }
    }

    /// Admits a new submission, or refuses it (and counts the refusal) while the disk
    /// is below the reserve.
    pub fn check_submission(&self) -> Result<(), DiskBelowReserve> {
        let free_bytes = self.free_bytes.load(Ordering::Relaxed);
        if admits(free_bytes, self.reserve_bytes) {
            return Ok(());
        }
        self.metrics.record_refused_for_disk();
        Err(DiskBelowReserve {
            free_bytes,
            reserve_bytes: self.reserve_bytes,
        })
    }

    /// Samples the free space of the file system holding `dir` now (on a blocking
    /// thread), and publishes it.
    pub async fn sample(&self, dir: &Path) {
        if self.reserve_bytes == 0 {
            // Off (or the journal is not on this disk): nothing to watch.
            return;
        }
        let dir = dir.to_path_buf();
        let sampled =
            tokio::task::spawn_blocking(move || essaim_telemetry::disk::free_bytes(&dir)).await;
        match sampled {
            Ok(Ok(free_bytes)) => self.store(free_bytes),
            Ok(Err(error)) => {
                tracing::warn!(%error, "failed to read the journal disk's free space; admitting submissions");
                self.store(UNKNOWN_FREE_BYTES);
            }
            Err(error) => tracing::warn!(%error, "the free-space sampler failed"),
        }
    }

    /// Samples the free space of `dir`'s file system every [`SAMPLE_PERIOD`] until
    /// `stop`.
    pub async fn sample_until_stopped(self, dir: PathBuf, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(SAMPLE_PERIOD) => {}
            }
            self.sample(&dir).await;
        }
    }

    fn store(&self, free_bytes: u64) {
        let was_admitting = admits(self.free_bytes.load(Ordering::Relaxed), self.reserve_bytes);
        self.free_bytes.store(free_bytes, Ordering::Relaxed);
        if free_bytes != UNKNOWN_FREE_BYTES {
            self.metrics
                .journal_disk_free_bytes
                .set(i64::try_from(free_bytes).unwrap_or(i64::MAX));
        }
        let admitting = admits(free_bytes, self.reserve_bytes);
        if was_admitting && !admitting {
            tracing::error!(
                free_bytes,
                reserve_bytes = self.reserve_bytes,
                "the journal's disk is below its reserve: refusing new submissions"
            );
        } else if !was_admitting && admitting {
            tracing::info!(
                free_bytes,
                "the journal's disk is above its reserve again: admitting submissions"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_telemetry::prometheus_client::registry::Registry;

    fn admission(reserve_bytes: u64) -> Admission {
        Admission::new(
            reserve_bytes,
            AdmissionMetrics::register(&mut Registry::default()),
        )
    }

    #[test]
    fn a_submission_is_refused_only_below_a_nonzero_reserve() {
        assert!(admits(100, 100));
        assert!(!admits(99, 100));
        assert!(admits(0, 0), "a reserve of 0 turns admission control off");
    }

    #[test]
    fn the_refusal_names_the_free_space_and_the_reserve() {
        let admission = admission(1_000);
        assert_eq!(admission.check_submission(), Ok(()), "nothing sampled yet");
        admission.store(10);
        let refusal = admission.check_submission().expect_err("below the reserve");
        let message = refusal.to_string();
        assert!(message.contains("10 bytes free"), "{message}");
        assert!(message.contains("reserve of 1000 bytes"), "{message}");
        assert_eq!(admission.metrics.journal_disk_free_bytes.get(), 10);
        admission.store(1_000);
        assert_eq!(admission.check_submission(), Ok(()));
    }

    #[tokio::test]
    async fn a_sample_reads_the_file_system_of_the_directory() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let admission = admission(1);
        admission.sample(dir.path()).await;
        let free = admission.free_bytes.load(Ordering::Relaxed);
        assert!(free > 0 && free != UNKNOWN_FREE_BYTES, "{free}");
        assert_eq!(admission.check_submission(), Ok(()));
        admission.sample(&dir.path().join("missing")).await;
        assert_eq!(admission.check_submission(), Ok(()), "unknown space admits");
    }
}
