//! The coordinator's admission-control metrics, `essaim_coordinator_journal_*` and
//! `essaim_coordinator_submissions_refused_total`.
//!
//! Kept apart from [`CoordinatorMetrics`](crate::CoordinatorMetrics) because they
//! describe the disk under the journal rather than the scheduler: the alerts "near the
//! reserve" and "below the reserve" compare the first two.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// Labels of the refused-submission counter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The coordinator's admission-control metrics. Clones update the same series.
#[derive(Clone, Debug)]
pub struct AdmissionMetrics {
    /// Free bytes of the journal's file system, as last sampled.
    pub journal_disk_free_bytes: Gauge,
    /// The reserve under which new submissions are refused (0: admission control off).
    pub journal_reserve_bytes: Gauge,
    submissions_refused_total: Family<ReasonLabels, Counter>,
}

impl AdmissionMetrics {
    /// Creates the admission metrics and registers them in `registry` (once per
    /// registry).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            journal_disk_free_bytes: Gauge::default(),
            journal_reserve_bytes: Gauge::default(),
            submissions_refused_total: Family::default(),
        };
        registry.register_with_unit(
            "essaim_coordinator_journal_disk_free",
            "Free space of the journal's file system, as last sampled",
            Unit::Bytes,
            metrics.journal_disk_free_bytes.clone(),
        );
        registry.register_with_unit(
            "essaim_coordinator_journal_reserve",
            "Free space under which new submissions are refused (0: never)",
            Unit::Bytes,
            metrics.journal_reserve_bytes.clone(),
        );
        registry.register(
            "essaim_coordinator_submissions_refused",
            "Job submissions refused by admission control, by reason",
            metrics.submissions_refused_total.clone(),
        );
        // Present from the start, so that `increase()` sees the first refusal.
        drop(
            metrics
                .submissions_refused_total
                .get_or_create(&ReasonLabels { reason: "disk" }),
        );
        metrics
    }

    /// Counts a submission refused because the journal's disk is below the reserve.
    pub fn record_refused_for_disk(&self) {
        self.submissions_refused_total
            .get_or_create(&ReasonLabels { reason: "disk" })
            .inc();
    }
}
