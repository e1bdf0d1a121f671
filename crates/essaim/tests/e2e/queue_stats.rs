//! Queue statistics on a real cluster: while a job runs, the coordinator's estimates
//! follow from what it measures (service time, backlog, slots), the recommendation reacts
//! to the drain target and to added workers, the REST API and the metrics agree, and the
//! job's series go away when it ends.

use crate::harness::{
    Cluster, Deadline, EVENTUALLY, http_get, job_spec, metric_sample as sample, shell_task,
};
use serde_json::Value;

fn job_queue(base: &str, job: u64) -> (Value, Value) {
    let detail: Value =
        serde_json::from_str(&http_get(base, &format!("/api/v1/jobs/{job}"))).expect("JSON");
    (detail["queue"].clone(), detail["job"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_statistics_follow_the_load_and_the_recommendation_follows_the_target() {
    // One worker of 2 slots; 40 tasks of 0.5 s: 10 s of work at full speed.
    let mut cluster = Cluster::start_with_options(None, &["--drain-target-secs", "5"], 1, 2).await;
    let base = cluster.url();
    let tasks = (0..40).map(|_| shell_task("sleep 0.5", &[])).collect();
    let job = cluster.submit(job_spec(tasks, 3)).await;

    // Wait for a service time measured on a few commits.
    let deadline = Deadline::after(EVENTUALLY, "a measured service time");
    let (queue, _) = loop {
        let (queue, summary) = job_queue(&base, job);
        let committed = summary["tasks"]["succeeded"].as_u64().unwrap_or(0);
        if queue["mean_service_seconds"].is_number() && committed >= 6 {
            break (queue, summary);
        }
        deadline.tick().await;
    };
    eprintln!("queue statistics with 2 slots: {queue}");
    let service = queue["mean_service_seconds"].as_f64().expect("S");
    assert!((0.45..1.5).contains(&service), "S = {service}: {queue:#}");
    let backlog = queue["backlog"].as_f64().expect("B");
    assert!(backlog >= 10.0, "{queue:#}");
    assert_eq!(
        queue["saturated"], false,
        "2 slots outrun arrivals that stopped: {queue:#}"
    );
    // T = B / (c/S − λ), with λ small and c = 2.
    let drain = queue["drain_seconds"].as_f64().expect("T");
    let capacity_only = backlog * service / 2.0;
    assert!(
        (capacity_only * 0.9..capacity_only * 2.0).contains(&drain),
        "T = {drain} for B·S/c = {capacity_only}: {queue:#}"
    );
    // n ≥ B·S/5 slots; at 2 slots per worker and 80%, several workers.
    let recommended = queue["recommended_workers"].as_u64().expect("workers");
    let at_least = (backlog * service / 5.0 / 1.6).ceil() as u64;
    assert!(
        recommended >= at_least.max(2),
        "{recommended} < {at_least}: {queue:#}"
    );

    // The metrics say the same (both come from the same refresh; retry across one).
    let deadline = Deadline::after(EVENTUALLY, "REST and metrics to agree");
    loop {
        let (queue, _) = job_queue(&base, job);
        let metrics = http_get(&base, "/metrics");
        let series =
            format!("essaim_coordinator_job_queue_recommended_workers{{job_id=\"{job}\"}}");
        let exported = sample(&metrics, &series);
        let backlog_series =
            format!("essaim_coordinator_job_queue_backlog_tasks{{job_id=\"{job}\"}}");
        if exported == queue["recommended_workers"].as_f64()
            && sample(&metrics, &backlog_series) == queue["backlog"].as_f64()
        {
            assert!(
                sample(&metrics, "essaim_coordinator_queue_recommended_workers")
                    .is_some_and(|cluster| cluster >= exported.unwrap_or(0.0)),
                "{metrics}"
            );
            assert!(
                metrics.contains("essaim_coordinator_tasks{state=\"running\",kind=\"command\"}")
            );
            break;
        }
        deadline.tick().await;
    }

    // Two more workers: capacity triples, the estimate drops below the 2-slot one.
    let before = job_queue(&base, job).0;
    cluster.start_worker(2);
    cluster.start_worker(2);
    cluster.wait_for_workers(3).await;
    let deadline = Deadline::after(EVENTUALLY, "the drain estimate to use 6 slots");
    loop {
        let (queue, summary) = job_queue(&base, job);
        if summary["state"] != "running" {
            break; // Finished before a refresh saw the new slots: nothing left to check.
        }
        let (Some(backlog), Some(drain), Some(service)) = (
            queue["backlog"].as_f64(),
            queue["drain_seconds"].as_f64(),
            queue["mean_service_seconds"].as_f64(),
        ) else {
            deadline.tick().await;
            continue;
        };
        if backlog > 0.0 && drain < backlog * service / 4.0 {
            eprintln!("queue statistics with 6 slots: {queue}");
            assert!(
                drain < before["drain_seconds"].as_f64().unwrap_or(f64::MAX),
                "{before:#} → {queue:#}"
            );
            break;
        }
        deadline.tick().await;
    }

    // Once the job ends, its series go and the cluster needs no worker.
    let status = cluster.wait_job(job, EVENTUALLY).await;
    assert_eq!(status.state, "succeeded");
    let deadline = Deadline::after(EVENTUALLY, "the job's queue series to go");
    loop {
        let metrics = http_get(&base, "/metrics");
        let gone = !metrics.contains(&format!("job_id=\"{job}\""));
        let idle = sample(&metrics, "essaim_coordinator_queue_recommended_workers") == Some(0.0);
        if gone && idle {
            assert_eq!(
                sample(&metrics, "essaim_coordinator_queue_backlog_tasks"),
                Some(0.0)
            );
            assert_eq!(
                sample(&metrics, "essaim_coordinator_jobs{state=\"succeeded\"}"),
                Some(1.0)
            );
            break;
        }
        deadline.tick().await;
    }
}
