//! The metrics of a highly available coordinator (`essaim coordinator --etcd`),
//! `essaim_coordinator_*`: whether this process leads, under which epoch and fence, how
//! often leadership changed hands and how many writes the store refused because it no
//! longer led. They live through the process's changes of role: the leader's and the
//! standby's endpoints export the same values.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a leader stopped leading, from a fixed set.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The leadership metrics of one coordinator process; clones share the values.
#[derive(Clone, Debug, Default)]
pub struct LeadershipMetrics {
    /// 1 while this process leads, 0 while it stands by.
    pub leader: Gauge,
    /// The epoch of this process's current or last leadership.
    pub epoch: Gauge,
    /// The fencing token (the leader key's etcd create revision) of that leadership.
    pub fence: Gauge,
    /// Elections this process won.
    pub elections_won: Counter,
    step_downs: Family<ReasonLabels, Counter>,
    /// Journal writes the store refused because another leader had been elected.
    pub fenced_writes: Counter,
    /// Log entries the standby has not read yet (0 on the leader).
    pub standby_lag_entries: Gauge,
}

impl LeadershipMetrics {
    /// Registers the metrics in `registry` (call once per registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "essaim_coordinator_leader",
            "1 while this coordinator leads its cluster, 0 while it stands by",
            self.leader.clone(),
        );
        registry.register(
            "essaim_coordinator_epoch",
            "Epoch of this coordinator's current or last leadership",
            self.epoch.clone(),
        );
        registry.register(
            "essaim_coordinator_fence",
            "Fencing token (etcd create revision of the leader key) of this coordinator's current or last leadership",
            self.fence.clone(),
        );
        registry.register(
            "essaim_coordinator_elections_won",
            "Elections this coordinator won",
            self.elections_won.clone(),
        );
        registry.register(
            "essaim_coordinator_step_downs",
            "Times this coordinator stopped leading, by reason (lease_lost, fenced, store_failed)",
            self.step_downs.clone(),
        );
        registry.register(
            "essaim_coordinator_fenced_writes",
            "Journal writes refused by the store because another coordinator had been elected",
            self.fenced_writes.clone(),
        );
        registry.register(
            "essaim_coordinator_standby_lag_entries",
            "Journal log entries this standby has not read yet (0 on the leader)",
            self.standby_lag_entries.clone(),
        );
    }

    /// Counts a step-down for `reason` (`lease_lost`, `fenced` or `store_failed`).
    pub fn stepped_down(&self, reason: &'static str) {
        self.step_downs
            .get_or_create(&ReasonLabels { reason })
            .inc();
        self.leader.set(0);
    }
}
