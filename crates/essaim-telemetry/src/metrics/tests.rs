//! The metrics as a scraper sees them: names with their suffixes, bounded label sets,
//! the exposition's end marker.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::encoding::text::encode;

use prometheus_client::registry::Registry;

use super::*;

fn exposition(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("encoding to a String cannot fail");
    text
}

#[test]
fn coordinator_exposition_has_suffixed_names_and_eof() {
    let mut registry = Registry::default();
    let metrics = CoordinatorMetrics::register(&mut registry);
    metrics.jobs_submitted_total.inc();
    metrics.record_job_finished(JobOutcome::Cancelled, Duration::from_secs(45));
    metrics.record_rpc("Heartbeat", Duration::from_millis(2));
    metrics.journal_commit_seconds.observe(0.001);
    let text = exposition(&registry);
    for expected in [
        "essaim_coordinator_jobs_submitted_total 1\n",
        "essaim_coordinator_jobs_finished_total{state=\"cancelled\"} 1\n",
        "essaim_coordinator_jobs_finished_total{state=\"succeeded\"} 0\n",
        "essaim_coordinator_results_rejected_total 0\n",
        "essaim_coordinator_attempts_from_older_epoch_total 0\n",
        "essaim_coordinator_workers_lost_total 0\n",
        "essaim_coordinator_tasks_pending 0\n",
        "# UNIT essaim_coordinator_journal_commit_seconds seconds\n",
        "essaim_coordinator_journal_commit_seconds_count 1\n",
        "essaim_coordinator_journal_batch_events_bucket{le=\"4096.0\"} 0\n",
        "essaim_coordinator_rpc_duration_seconds_count{method=\"Heartbeat\"} 1\n",
        "essaim_coordinator_task_duration_seconds_sum 0.0\n",
        "essaim_coordinator_job_duration_seconds_bucket{le=\"30.0\",state=\"cancelled\"} 0\n",
        "essaim_coordinator_job_duration_seconds_bucket{le=\"60.0\",state=\"cancelled\"} 1\n",
        "essaim_coordinator_job_duration_seconds_count{state=\"succeeded\"} 0\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("_total_total"), "double suffix in:\n{text}");
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn worker_exposition_has_suffixed_names_and_eof() {
    let mut registry = Registry::default();
    let metrics = WorkerMetrics::register(&mut registry);
    metrics.attempts_succeeded_total.inc();
    metrics.slots.set(4);
    let text = exposition(&registry);
    for expected in [
        "essaim_worker_attempts_succeeded_total 1\n",
        "essaim_worker_attempts_cancelled_total 0\n",
        "essaim_worker_heartbeat_failures_total 0\n",
        "essaim_worker_stale_epoch_grants_total 0\n",
        "essaim_worker_results_fenced_total 0\n",
        "essaim_worker_results_reported_total 0\n",
        "essaim_worker_slots 4\n",
        "essaim_worker_task_duration_seconds_count 0\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn task_series_follow_what_is_published_and_kinds_stay_bounded() {
    let mut registry = Registry::default();
    let metrics = CoordinatorMetrics::register(&mut registry);
    let mut counts = BTreeMap::new();
    counts.insert(("pending", "noop".to_string()), 3);
    counts.insert(("running", "mapreduce.map".to_string()), 2);
    metrics.set_tasks_by_state_and_kind(&counts);
    let text = exposition(&registry);
    assert!(
        text.contains("essaim_coordinator_tasks{state=\"pending\",kind=\"noop\"} 3\n"),
        "{text}"
    );
    // The map task finished: its series goes rather than reading a stale 2.
    counts.remove(&("running", "mapreduce.map".to_string()));
    metrics.set_tasks_by_state_and_kind(&counts);
    let text = exposition(&registry);
    assert!(!text.contains("mapreduce.map"), "{text}");
    // Past the kind limit, the rest are summed under `other`.
    let many: BTreeMap<(&'static str, String), i64> = (0..MAX_TASK_KINDS + 10)
        .map(|index| (("pending", format!("kind-{index:03}")), 1))
        .collect();
    metrics.set_tasks_by_state_and_kind(&many);
    let text = exposition(&registry);
    assert!(
        text.contains("essaim_coordinator_tasks{state=\"pending\",kind=\"other\"} 10\n"),
        "{text}"
    );
    assert_eq!(
        text.matches("essaim_coordinator_tasks{").count(),
        MAX_TASK_KINDS + 1
    );
}

#[test]
fn job_queue_series_are_bounded_and_leave_with_their_job() {
    let mut registry = Registry::default();
    let metrics = CoordinatorMetrics::register(&mut registry);
    let values = QueueGaugeValues {
        backlog: 7.0,
        drain_seconds: f64::INFINITY,
        recommended_workers: 2.0,
        service_time_seconds: f64::NAN,
        ..QueueGaugeValues::default()
    };
    let jobs: Vec<(u64, QueueGaugeValues)> = (1..=MAX_JOBS_WITH_QUEUE_SERIES as u64 + 5)
        .map(|job| (job, values))
        .collect();
    metrics.set_job_queues(&jobs);
    metrics.set_cluster_queue(&values);
    let text = exposition(&registry);
    let backlog_series = text
        .matches("essaim_coordinator_job_queue_backlog_tasks{")
        .count();
    assert_eq!(backlog_series, MAX_JOBS_WITH_QUEUE_SERIES, "{text}");
    assert!(
        !text.contains("job_id=\"1\""),
        "the oldest jobs are left out: {text}"
    );
    assert!(
        text.contains("essaim_coordinator_job_queue_drain_time_seconds{job_id=\"69\"} NaN\n"),
        "{text}"
    );
    assert!(
        text.contains("essaim_coordinator_queue_recommended_workers 2.0\n"),
        "{text}"
    );
    assert!(
        text.contains("essaim_coordinator_queue_service_time_seconds NaN\n"),
        "{text}"
    );
    metrics.set_job_queues(&[]);
    let text = exposition(&registry);
    assert!(
        !text.contains("essaim_coordinator_job_queue_backlog_tasks{"),
        "{text}"
    );
}

#[test]
fn clones_update_the_same_series() {
    let mut registry = Registry::default();
    let metrics = WorkerMetrics::register(&mut registry);
    metrics.clone().busy_slots.inc();
    assert_eq!(metrics.busy_slots.get(), 1);
}

#[test]
fn auth_refusals_are_present_from_the_start_and_counted_by_surface_and_reason() {
    let mut registry = Registry::default();
    let metrics = AuthMetrics::register(&mut registry, &[AuthSurface::Grpc, AuthSurface::Rest]);
    metrics.record_refusal(AuthSurface::Rest, AuthRefusal::MissingRole);
    let text = exposition(&registry);
    for expected in [
        "essaim_auth_refusals_total{surface=\"grpc\",reason=\"unknown_token\"} 0\n",
        "essaim_auth_refusals_total{surface=\"rest\",reason=\"missing_role\"} 1\n",
        "essaim_auth_refusals_total{surface=\"rest\",reason=\"bad_capability\"} 0\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("surface=\"files\""), "{text}");
}
