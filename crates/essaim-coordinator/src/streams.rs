//! The coordinator's view of running pipelines: each unit's worker, lag, throughput and
//! last commit, as workers report them in their heartbeats, and the number of workers
//! each pipeline needs to keep up.
//!
//! Positions are committed in the pipeline's PostgreSQL, not here, so the scheduler
//! knows a stream job's tasks but not how far their units are. Workers add the
//! progress of the units they run to every heartbeat; this board keeps the latest
//! report of each unit (not journaled: the next heartbeats rebuild it after a restart)
//! and derives throughput from successive reports.
//!
//! **Recommended workers.** A pipeline whose lag grows needs more workers, up to one
//! per unit (a unit is the grain of parallelism). With `W` workers running its units at
//! `R` records/s in all, a backlog `L` cleared within the drain target `T` needs
//! `W × (1 + L / (R × T))` workers, rounded up and kept between 1 and the number of
//! units; a backlog with no throughput yet asks for one more worker. The figure is
//! exported as `essaim_stream_recommended_workers{pipeline}` so that an autoscaler
//! (KEDA, an HPA on external metrics) scales stream workers on lag.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use essaim_core::WorkerId;
use essaim_proto::v1::StreamUnitProgress;
use essaim_telemetry::StreamBoardMetrics;
use serde::Serialize;
use utoipa::ToSchema;

/// How much a new throughput sample weighs against the running estimate.
const RATE_SMOOTHING: f64 = 0.5;

/// Where a unit is: its pipeline, its stage and its number.
type UnitKey = (String, String, u32);

/// The latest report of one unit.
#[derive(Debug, Clone)]
struct UnitEntry {
    worker: WorkerId,
    reported_at: Instant,
    progress: StreamUnitProgress,
    /// Records read per second, smoothed over successive reports.
    rate: f64,
}

/// The latest progress of every unit that a live worker runs. Clones share it.
#[derive(Debug, Clone)]
pub struct StreamBoard {
    units: Arc<Mutex<BTreeMap<UnitKey, UnitEntry>>>,
    /// A report older than this is a dead worker's, or a unit that moved.
    stale_after: Duration,
    /// The time within which a backlog should be cleared.
    drain_target: Duration,
    metrics: StreamBoardMetrics,
}

/// One unit as the API shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct UnitView {
    /// `source` or `shuffled`.
    pub stage: String,
    /// The unit's number within its stage.
    pub unit: u32,
    /// The worker running it, by id (hexadecimal).
    pub worker: String,
    /// The worker's name (empty when the board alone answers).
    pub worker_name: String,
    /// Messages not yet read from its partition.
    pub lag: i64,
    /// Records read since the unit started on this worker.
    pub records_in: u64,
    /// Records that reached a sink.
    pub records_out: u64,
    /// Records read per second, recently.
    pub records_per_second: f64,
    /// Seconds since its last commit (`None` before the first).
    pub last_commit_age_s: Option<f64>,
    /// Records sent to the dead-letter table.
    pub dead_letters: u64,
}

/// One pipeline as the API shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct PipelineView {
    /// The pipeline's name.
    pub pipeline: String,
    /// Its units, by stage and number.
    pub units: Vec<UnitView>,
    /// Distinct workers running its units.
    pub workers: u32,
    /// Lag summed over its units.
    pub lag: i64,
    /// Records read per second, summed over its units.
    pub records_per_second: f64,
    /// Workers it needs to clear its lag within the drain target (see the module doc).
    pub recommended_workers: u32,
}

impl StreamBoard {
    /// Returns an empty board.
    pub fn new(stale_after: Duration, drain_target: Duration, metrics: StreamBoardMetrics) -> Self {
        Self {
            units: Arc::default(),
            stale_after,
            drain_target,
            metrics,
        }
    }

    /// Records a heartbeat's report: the units `worker` runs now. Its units missing from
    /// the report stopped there (they moved, or their job ended).
    pub fn record(&self, worker: WorkerId, reports: Vec<StreamUnitProgress>, now: Instant) {
        let mut units = self.units.lock().unwrap_or_else(PoisonError::into_inner);
        let reported: Vec<UnitKey> = reports.iter().map(key_of).collect();
        units.retain(|key, entry| entry.worker != worker || reported.contains(key));
        for progress in reports {
            let key = key_of(&progress);
            let rate = match units.get(&key) {
                Some(before) if before.worker == worker => smoothed_rate(before, &progress, now),
                _ => 0.0,
            };
            units.insert(
                key,
                UnitEntry {
                    worker,
                    reported_at: now,
                    progress,
                    rate,
                },
            );
        }
        let pipelines = self.pipelines_locked(&mut units, now, wall_clock_ms());
        drop(units);
        self.metrics.set(
            pipelines
                .iter()
                .map(|view| (view.pipeline.as_str(), view.lag, view.recommended_workers)),
        );
    }

    /// Returns every pipeline with units reported recently, by name.
    pub fn pipelines(&self, now: Instant, now_unix_ms: u64) -> Vec<PipelineView> {
        let mut units = self.units.lock().unwrap_or_else(PoisonError::into_inner);
        self.pipelines_locked(&mut units, now, now_unix_ms)
    }

    fn pipelines_locked(
        &self,
        units: &mut BTreeMap<UnitKey, UnitEntry>,
        now: Instant,
        now_unix_ms: u64,
    ) -> Vec<PipelineView> {
        units.retain(|_, entry| {
            now.saturating_duration_since(entry.reported_at) <= self.stale_after
        });
        let mut pipelines: BTreeMap<&str, Vec<&UnitEntry>> = BTreeMap::new();
        for ((pipeline, _, _), entry) in units.iter() {
            pipelines.entry(pipeline).or_default().push(entry);
        }
        pipelines
            .into_iter()
            .map(|(pipeline, entries)| self.pipeline_view(pipeline, &entries, now_unix_ms))
            .collect()
    }

    fn pipeline_view(
        &self,
        pipeline: &str,
        entries: &[&UnitEntry],
        now_unix_ms: u64,
    ) -> PipelineView {
        let units: Vec<UnitView> = entries
            .iter()
            .map(|entry| unit_view(entry, now_unix_ms))
            .collect();
        let mut workers: Vec<WorkerId> = entries.iter().map(|entry| entry.worker).collect();
        workers.sort_unstable();
        workers.dedup();
        let lag = units.iter().map(|unit| unit.lag.max(0)).sum();
        let rate = units.iter().map(|unit| unit.records_per_second).sum();
        let recommended = recommended_workers(
            workers.len() as u32,
            units.len() as u32,
            lag,
            rate,
            self.drain_target,
        );
        PipelineView {
            pipeline: pipeline.to_string(),
            units,
            workers: workers.len() as u32,
            lag,
            records_per_second: rate,
            recommended_workers: recommended,
        }
    }
}

fn key_of(progress: &StreamUnitProgress) -> UnitKey {
    (
        progress.pipeline.clone(),
        progress.stage.clone(),
        progress.unit,
    )
}

/// Records read per second between two reports of a unit on one worker, smoothed.
fn smoothed_rate(before: &UnitEntry, now_progress: &StreamUnitProgress, now: Instant) -> f64 {
    let elapsed = now
        .saturating_duration_since(before.reported_at)
        .as_secs_f64();
    let read = now_progress
        .records_in
        .checked_sub(before.progress.records_in);
    match read {
        // The unit restarted on this worker (its counter began again): no sample.
        None => before.rate,
        Some(_) if elapsed <= 0.0 => before.rate,
        Some(read) => {
            let sample = read as f64 / elapsed;
            RATE_SMOOTHING * sample + (1.0 - RATE_SMOOTHING) * before.rate
        }
    }
}

fn unit_view(entry: &UnitEntry, now_unix_ms: u64) -> UnitView {
    let progress = &entry.progress;
    UnitView {
        stage: progress.stage.clone(),
        unit: progress.unit,
        worker: entry.worker.to_string(),
        worker_name: String::new(),
        lag: progress.lag,
        records_in: progress.records_in,
        records_out: progress.records_out,
        records_per_second: entry.rate,
        last_commit_age_s: (progress.last_commit_unix_ms > 0)
            .then(|| now_unix_ms.saturating_sub(progress.last_commit_unix_ms) as f64 / 1000.0),
        dead_letters: progress.dead_letters,
    }
}

/// The workers a pipeline needs (see the module doc).
pub fn recommended_workers(
    workers: u32,
    units: u32,
    lag: i64,
    rate: f64,
    drain_target: Duration,
) -> u32 {
    let workers = workers.max(1);
    let ceiling = units.max(1);
    if lag <= 0 {
        return workers.min(ceiling);
    }
    let target = drain_target.as_secs_f64().max(1.0);
    let wanted = if rate > 0.0 {
        (f64::from(workers) * (1.0 + lag as f64 / (rate * target))).ceil()
    } else {
        f64::from(workers + 1)
    };
    (wanted.min(f64::from(ceiling)) as u32).max(1)
}

fn wall_clock_ms() -> u64 {
    crate::actor::wall_clock_ms()
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_telemetry::prometheus_client::registry::Registry;

    fn report(pipeline: &str, unit: u32, lag: i64, records_in: u64) -> StreamUnitProgress {
        StreamUnitProgress {
            pipeline: pipeline.into(),
            stage: "source".into(),
            unit,
            lag,
            records_in,
            records_out: records_in,
            dead_letters: 0,
            last_commit_unix_ms: 0,
        }
    }

    fn board() -> StreamBoard {
        let metrics = StreamBoardMetrics::register(&mut Registry::default());
        StreamBoard::new(Duration::from_secs(5), Duration::from_secs(60), metrics)
    }

    #[test]
    fn recommended_workers_follow_the_backlog_and_stop_at_one_per_unit() {
        let minute = Duration::from_secs(60);
        // (workers, units, lag, rate) → recommended
        let table = [
            ((2, 8, 0, 1000.0), 2),
            ((2, 8, 60_000, 1000.0), 4),
            ((2, 8, 6_000_000, 1000.0), 8),
            ((2, 8, 10, 0.0), 3),
            ((0, 4, 0, 0.0), 1),
            ((4, 2, 0, 10.0), 2),
        ];
        for ((workers, units, lag, rate), expected) in table {
            assert_eq!(
                recommended_workers(workers, units, lag, rate, minute),
                expected,
                "{workers} workers, {units} units, lag {lag}, {rate}/s"
            );
        }
    }

    #[test]
    fn reports_give_rates_and_units_that_moved_or_went_silent_are_dropped() {
        let board = board();
        let start = Instant::now();
        let (a, b) = (WorkerId(1), WorkerId(2));
        board.record(
            a,
            vec![report("p", 0, 500, 1_000), report("p", 1, 0, 0)],
            start,
        );
        board.record(b, vec![report("q", 0, 0, 10)], start);
        let later = start + Duration::from_secs(2);
        // Unit 1 moved from A to B.
        board.record(a, vec![report("p", 0, 100, 3_000)], later);
        board.record(b, vec![report("p", 1, 0, 5), report("q", 0, 0, 10)], later);
        let pipelines = board.pipelines(later, 0);
        assert_eq!(pipelines.len(), 2);
        let p = &pipelines[0];
        assert_eq!((p.pipeline.as_str(), p.workers, p.lag), ("p", 2, 100));
        assert_eq!(p.units[0].worker, a.to_string());
        assert_eq!(p.units[1].worker, b.to_string());
        // 2,000 records in 2 s, half-weighted against the first report's 0.
        assert!((p.units[0].records_per_second - 500.0).abs() < 1e-9);

        // B goes silent: its units leave the board once its report is stale.
        let much_later = later + Duration::from_secs(6);
        board.record(a, vec![report("p", 0, 0, 3_000)], much_later);
        let pipelines = board.pipelines(much_later, 0);
        assert_eq!(pipelines.len(), 1);
        assert_eq!(pipelines[0].units.len(), 1);
    }
}
