//! Queue statistics: how fast work arrives and leaves, how long the backlog will take,
//! and how many workers the cluster needs — the numbers an autoscaler acts on.
//!
//! # The model
//!
//! Each job is a queue served by the cluster's slots. Once a second, per job:
//!
//! - `λ`, the **arrival rate** (tasks/s): tasks submitted, as an exponentially weighted
//!   moving average with a time constant of [`RATE_TIME_CONSTANT_S`] seconds (a batch
//!   job's tasks all arrive at once, so its λ jumps then decays: no more work is coming);
//! - `X`, the **completion rate** (tasks/s): results committed, averaged the same way;
//! - `S`, the **mean service time** (s): the mean duration of the job's committed attempts;
//! - `B`, the **backlog** (tasks): pending, retrying and running tasks;
//! - `c`, the **capacity** (slots): the cluster's slots, capped by the job's concurrency
//!   limit;
//! - `U`, the **utilisation**: the job's running attempts over the cluster's slots.
//!
//! From these, with Little's law (`L = λ·S`: the slots that arrivals keep busy):
//!
//! - **backlog growth** `g = λ − c/S` tasks/s: positive means the queue saturates (the
//!   backlog grows without bound at the current rates);
//! - **time to drain** `T = B / (c/S − λ)` when `g < 0`, `+∞` when `g ≥ 0`, `0` when the
//!   backlog is empty, unknown until a first attempt committed (no `S` yet);
//! - **slots needed** `n = λ·S + B·S / T*`: the slots arrivals keep busy, plus those that
//!   clear the backlog within the target drain time `T*` ([`QueueTargets::drain_target_s`]);
//! - **recommended workers** `⌈Σn / (s·ρ*)⌉` over all running jobs, where `s` is the
//!   mean slots per worker and `ρ*` the target utilisation (default 0.8: a little
//!   headroom so that queues do not grow on every burst). It is at least 1 while any
//!   backlog exists, and 0 for an idle cluster. A job with a backlog but no committed
//!   attempt yet borrows the cluster's mean service time, or counts one slot per task
//!   until any attempt has committed.

use std::collections::BTreeMap;

use essaim_core::{JobId, Millis};

/// Time constant of the rate averages, in seconds.
pub const RATE_TIME_CONSTANT_S: f64 = 60.0;

/// What the recommendation aims for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueTargets {
    /// The backlog should clear within this many seconds (default 300).
    pub drain_target_s: f64,
    /// Fraction of the slots meant to be busy (default 0.8).
    pub utilisation: f64,
}

impl Default for QueueTargets {
    fn default() -> Self {
        Self {
            drain_target_s: 300.0,
            utilisation: 0.8,
        }
    }
}

/// An exponentially weighted rate, fed with a running total.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateAverage {
    last_total: u64,
    last_at: Option<Millis>,
    rate: f64,
}

impl RateAverage {
    /// Feeds the running total at time `now` and returns the averaged rate per second.
    pub fn update(&mut self, total: u64, now: Millis) -> f64 {
        let Some(last_at) = self.last_at else {
            self.last_at = Some(now);
            self.last_total = total;
            return self.rate;
        };
        if now <= last_at {
            return self.rate;
        }
        let elapsed_s = (now - last_at) as f64 / 1000.0;
        let instant = total.saturating_sub(self.last_total) as f64 / elapsed_s;
        let weight = 1.0 - (-elapsed_s / RATE_TIME_CONSTANT_S).exp();
        self.rate += weight * (instant - self.rate);
        self.last_at = Some(now);
        self.last_total = total;
        self.rate
    }

    /// Starts from an observed first count (a job submitted with all its tasks counts as
    /// arrivals in its first second rather than being missed by the first sample).
    pub fn starting_at(total_before: u64, at: Millis) -> Self {
        Self {
            last_total: total_before,
            last_at: Some(at),
            rate: 0.0,
        }
    }
}

/// One job's measurements at one instant: the input of [`job_stats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobLoad {
    /// Arrival rate, tasks/s.
    pub arrival_rate: f64,
    /// Completion rate, tasks/s.
    pub completion_rate: f64,
    /// Mean service time, seconds, once an attempt committed.
    pub mean_service_s: Option<f64>,
    /// Pending + retrying + running tasks.
    pub backlog: u64,
    /// Attempts running now.
    pub running: u64,
    /// The job's concurrency limit, if any.
    pub max_concurrency: Option<u32>,
}

/// The queue statistics of one job or of the cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueStats {
    /// Arrival rate, tasks/s.
    pub arrival_rate: f64,
    /// Completion rate, tasks/s.
    pub completion_rate: f64,
    /// Mean service time in seconds (`None` until an attempt committed).
    pub mean_service_s: Option<f64>,
    /// Pending + retrying + running tasks.
    pub backlog: u64,
    /// Running attempts over the cluster's slots (0 when there are no slots).
    pub utilisation: f64,
    /// `λ − c/S`, tasks/s; positive when the queue saturates (`None` without `S`).
    pub backlog_growth: Option<f64>,
    /// Seconds until the backlog is empty at the current rates (`None` when unknown,
    /// `+∞` when it never drains).
    pub drain_seconds: Option<f64>,
    /// Slots needed to absorb arrivals and drain the backlog within the target.
    pub slots_needed: f64,
    /// Workers needed for that, at the target utilisation.
    pub recommended_workers: u64,
}

/// The cluster's capacity at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Slots of live workers.
    pub slots: u64,
    /// Busy slots of live workers.
    pub busy_slots: u64,
    /// Live workers.
    pub workers: u64,
}

impl Capacity {
    fn slots_per_worker(&self) -> f64 {
        if self.workers == 0 || self.slots == 0 {
            // Nothing to learn from: assume the default worker (one slot per core of
            // this machine is unknown here; one slot is the safe over-estimate).
            1.0
        } else {
            self.slots as f64 / self.workers as f64
        }
    }
}

/// Computes a job's statistics; `fallback_service_s` stands in for `S` while the job has
/// none of its own.
pub fn job_stats(
    load: &JobLoad,
    capacity: &Capacity,
    targets: &QueueTargets,
    fallback_service_s: Option<f64>,
) -> QueueStats {
    let usable_slots = match load.max_concurrency {
        Some(limit) => capacity.slots.min(u64::from(limit)),
        None => capacity.slots,
    };
    let utilisation = if capacity.slots == 0 {
        0.0
    } else {
        load.running as f64 / capacity.slots as f64
    };
    let service = load.mean_service_s.map(|s| s.max(1e-6));
    let backlog_growth = service.map(|s| load.arrival_rate - usable_slots as f64 / s);
    let drain_seconds = drain_estimate(load.backlog, backlog_growth);
    let slots_needed = match service.or(fallback_service_s) {
        Some(s) => load.arrival_rate * s + load.backlog as f64 * s / targets.drain_target_s,
        None => load.backlog as f64,
    };
    let slots_needed = match load.max_concurrency {
        Some(limit) => slots_needed.min(f64::from(limit)),
        None => slots_needed,
    };
    QueueStats {
        arrival_rate: load.arrival_rate,
        completion_rate: load.completion_rate,
        mean_service_s: load.mean_service_s,
        backlog: load.backlog,
        utilisation,
        backlog_growth,
        drain_seconds,
        slots_needed,
        recommended_workers: workers_for(slots_needed, load.backlog, capacity, targets),
    }
}

/// `T = B / −g` while the backlog shrinks, `+∞` while it grows, 0 without a backlog,
/// unknown without a growth rate.
fn drain_estimate(backlog: u64, backlog_growth: Option<f64>) -> Option<f64> {
    if backlog == 0 {
        return Some(0.0);
    }
    backlog_growth.map(|growth| {
        if growth >= 0.0 {
            f64::INFINITY
        } else {
            backlog as f64 / -growth
        }
    })
}

fn workers_for(
    slots_needed: f64,
    backlog: u64,
    capacity: &Capacity,
    targets: &QueueTargets,
) -> u64 {
    if backlog == 0 && slots_needed <= 0.0 {
        return 0;
    }
    let per_worker = capacity.slots_per_worker() * targets.utilisation.clamp(0.05, 1.0);
    ((slots_needed / per_worker).ceil() as u64).max(1)
}

/// Combines per-job statistics into the cluster's.
pub fn cluster_stats(
    jobs: &BTreeMap<JobId, QueueStats>,
    capacity: &Capacity,
    targets: &QueueTargets,
) -> QueueStats {
    // `+ 0.0`: an empty sum of floats is -0.0, which would read "-0" on a dashboard.
    let arrival_rate: f64 = jobs.values().map(|j| j.arrival_rate).sum::<f64>() + 0.0;
    let completion_rate: f64 = jobs.values().map(|j| j.completion_rate).sum::<f64>() + 0.0;
    let backlog: u64 = jobs.values().map(|j| j.backlog).sum();
    let slots_needed: f64 = jobs.values().map(|j| j.slots_needed).sum::<f64>() + 0.0;
    // Mean service time weighted by completions (each completed task counts once).
    let (weighted, weight) = jobs
        .values()
        .filter_map(|j| j.mean_service_s.map(|s| (s, j.completion_rate.max(1e-9))))
        .fold((0.0, 0.0), |(sum, total), (s, w)| (sum + s * w, total + w));
    let mean_service_s = (weight > 0.0).then(|| weighted / weight);
    let backlog_growth = mean_service_s.map(|s| arrival_rate - capacity.slots as f64 / s.max(1e-6));
    let drain_seconds = drain_estimate(backlog, backlog_growth);
    let utilisation = if capacity.slots == 0 {
        0.0
    } else {
        capacity.busy_slots as f64 / capacity.slots as f64
    };
    QueueStats {
        arrival_rate,
        completion_rate,
        mean_service_s,
        backlog,
        utilisation,
        backlog_growth,
        drain_seconds,
        slots_needed,
        recommended_workers: workers_for(slots_needed, backlog, capacity, targets),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(workers: u64, slots_per_worker: u64) -> Capacity {
        Capacity {
            slots: workers * slots_per_worker,
            busy_slots: 0,
            workers,
        }
    }

    fn load(arrival: f64, service: Option<f64>, backlog: u64) -> JobLoad {
        JobLoad {
            arrival_rate: arrival,
            completion_rate: 0.0,
            mean_service_s: service,
            backlog,
            running: 0,
            max_concurrency: None,
        }
    }

    #[test]
    fn a_stable_queue_drains_in_backlog_over_spare_capacity() {
        // 4 slots at 0.5 s: capacity 8 tasks/s; 2 tasks/s arrive; 600 queued.
        let stats = job_stats(
            &load(2.0, Some(0.5), 600),
            &capacity(2, 2),
            &QueueTargets::default(),
            None,
        );
        assert_eq!(stats.backlog_growth, Some(-6.0));
        assert_eq!(stats.drain_seconds, Some(100.0));
        // n = 2·0.5 + 600·0.5/300 = 2 slots; at 2 slots/worker and 80%: ⌈1.25⌉ = 2.
        assert!((stats.slots_needed - 2.0).abs() < 1e-9);
        assert_eq!(stats.recommended_workers, 2);
    }

    #[test]
    fn an_overloaded_queue_never_drains_and_asks_for_more_workers() {
        // 2 slots at 1 s: capacity 2 tasks/s; 10 tasks/s arrive.
        let stats = job_stats(
            &load(10.0, Some(1.0), 50),
            &capacity(1, 2),
            &QueueTargets::default(),
            None,
        );
        assert_eq!(stats.backlog_growth, Some(8.0));
        assert_eq!(stats.drain_seconds, Some(f64::INFINITY));
        // n = 10 + 50/300 ≈ 10.17 slots; ⌈10.17 / 1.6⌉ = 7 workers.
        assert_eq!(stats.recommended_workers, 7);
    }

    #[test]
    fn an_idle_queue_needs_no_worker_and_a_new_one_needs_one() {
        let idle = job_stats(
            &load(0.0, Some(1.0), 0),
            &capacity(3, 4),
            &QueueTargets::default(),
            None,
        );
        assert_eq!(idle.drain_seconds, Some(0.0));
        assert_eq!(idle.recommended_workers, 0);
        // No service time yet: unknown drain, at least one worker, one slot per task.
        let fresh = job_stats(
            &load(0.0, None, 3),
            &capacity(0, 0),
            &QueueTargets::default(),
            None,
        );
        assert_eq!(fresh.drain_seconds, None);
        assert!((fresh.slots_needed - 3.0).abs() < 1e-9);
        assert_eq!(
            fresh.recommended_workers, 4,
            "3 slots at 1 slot/worker and 80%"
        );
    }

    #[test]
    fn concurrency_limits_cap_capacity_and_need() {
        let mut limited = load(0.0, Some(1.0), 1000);
        limited.max_concurrency = Some(2);
        let stats = job_stats(&limited, &capacity(10, 4), &QueueTargets::default(), None);
        assert_eq!(stats.drain_seconds, Some(500.0));
        assert!((stats.slots_needed - 2.0).abs() < 1e-9);
    }

    #[test]
    fn the_cluster_sums_its_jobs() {
        let targets = QueueTargets::default();
        let cap = Capacity {
            slots: 4,
            busy_slots: 3,
            workers: 2,
        };
        let mut jobs = BTreeMap::new();
        jobs.insert(
            JobId(1),
            job_stats(&load(1.0, Some(1.0), 300), &cap, &targets, None),
        );
        jobs.insert(
            JobId(2),
            job_stats(&load(1.0, Some(1.0), 300), &cap, &targets, None),
        );
        let cluster = cluster_stats(&jobs, &cap, &targets);
        assert_eq!(cluster.backlog, 600);
        assert!((cluster.slots_needed - 4.0).abs() < 1e-9);
        assert_eq!(cluster.recommended_workers, 3, "4 slots / (2 · 0.8) = 2.5");
        assert!((cluster.utilisation - 0.75).abs() < 1e-9);
        assert_eq!(cluster.drain_seconds, Some(300.0));
    }

    #[test]
    fn rate_average_follows_a_steady_rate() {
        let mut rate = RateAverage::default();
        let mut total = 0;
        let mut value = 0.0;
        rate.update(total, 0);
        for second in 1..=600u64 {
            total += 10;
            value = rate.update(total, second * 1000);
        }
        assert!((value - 10.0).abs() < 0.01, "{value}");
        // Then nothing: after one time constant the rate is down to 1/e.
        for second in 601..=660u64 {
            value = rate.update(total, second * 1000);
        }
        assert!((value - 10.0 / std::f64::consts::E).abs() < 0.1, "{value}");
    }
}
