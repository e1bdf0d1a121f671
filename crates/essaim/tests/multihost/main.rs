//! Failures of real hosts: every node is a container with its own address on a private
//! Docker network, and a node is killed, cut off the network, added or stopped while a
//! job runs on it.
//!
//! Each test has a small cluster of its own (`multihost/cluster.rs`: a coordinator with
//! a 3 s worker timeout, workers with 2 slots and no prefetch) and submits jobs of
//! shell commands from the host. Task `i` notes `i` and its attempt id in the worker's
//! `/tmp/executions.log` (the test reads it with `docker cp`, so it knows what each
//! worker began), sleeps, and prints `i²`: the oracle every committed output is
//! compared with.
//!
//! The assertions are what the system guarantees (README, "Semantics"): exactly one
//! committed result per task, all equal to the oracle; the attempts a lost worker was
//! running are committed by other workers; a late result never replaces a commit; a
//! drained worker's running attempts are committed by that worker. Recovery times are
//! printed for the record.
//!
//! Without a Docker engine the tests fail, unless `ESSAIM_SKIP_DOCKER=1` says to skip
//! them (as for `tests/containers.rs`, whose image they reuse).

mod cluster;

use cluster::{Cluster, EVENTUALLY, WORKER_TIMEOUT, docker, eventually};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Where each task notes the attempt that ran it, in the worker's container.
const EXECUTIONS_LOG: &str = "/tmp/executions.log";

/// The coordinator's counters read here.
const WORKERS_LOST: &str = "essaim_coordinator_workers_lost_total";
const RESULTS_REJECTED: &str = "essaim_coordinator_results_rejected_total";

/// An attempt a worker began: the line its command wrote in the executions log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Execution {
    task: u32,
    attempt: String,
}

/// A committed result, as `/api/v1/jobs/ID/results` shows it.
#[derive(Debug)]
struct Committed {
    attempt: String,
    worker_id: String,
    output: String,
}

/// Submits `tasks` tasks that each note their attempt, sleep `sleep_secs` and print the
/// square of their index; returns the job id.
fn submit_squares(cluster: &Cluster, tasks: u32, sleep_secs: &str) -> u64 {
    let script = format!(
        "echo \"$ESSAIM_TASK_INDEX $ESSAIM_ATTEMPT_ID\" >> {EXECUTIONS_LOG}; \
         sleep {sleep_secs}; echo $((ESSAIM_TASK_INDEX * ESSAIM_TASK_INDEX))"
    );
    let count = tasks.to_string();
    let submitted = cluster.essaim(&[
        "submit", "--count", &count, "--output", "json", "--", "sh", "-c", &script,
    ]);
    let submitted: Value = serde_json::from_str(&submitted).expect("submit prints JSON");
    submitted["job_id"].as_u64().expect("a job id")
}

/// Returns the job as listed (state, counts, attempts started, failed, rejected).
fn job_summary(cluster: &Cluster, job_id: u64) -> Value {
    cluster.get_json(&format!("/api/v1/jobs/{job_id}"))["job"].clone()
}

/// Waits until the job has finished; returns its summary.
fn wait_for_job(cluster: &Cluster, job_id: u64) -> Value {
    eventually(&format!("job {job_id} to finish"), EVENTUALLY, || {
        let job = job_summary(cluster, job_id);
        let state = job["state"].as_str().unwrap_or_default();
        (!matches!(state, "pending" | "running")).then_some(job)
    })
}

/// Returns the committed results of a job by task index.
fn committed_results(cluster: &Cluster, job_id: u64) -> BTreeMap<u32, Committed> {
    let page = cluster.get_json(&format!("/api/v1/jobs/{job_id}/results?limit=10000"));
    let mut results = BTreeMap::new();
    for result in page["results"].as_array().cloned().unwrap_or_default() {
        let task = result["task_index"].as_u64().expect("a task index");
        let committed = Committed {
            attempt: result["attempt_id"].as_str().unwrap_or_default().into(),
            worker_id: result["worker_id"].as_str().unwrap_or_default().into(),
            output: result["inline_text"].as_str().unwrap_or_default().into(),
        };
        let previous = results.insert(u32::try_from(task).expect("a u32 index"), committed);
        assert!(previous.is_none(), "task {task} has two results");
    }
    results
}

/// Checks that the job succeeded with exactly one result per task, each the square of
/// its index.
fn assert_matches_oracle(cluster: &Cluster, job_id: u64, tasks: u32) {
    let job = job_summary(cluster, job_id);
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["tasks"]["succeeded"], tasks, "{job:#}");
    let results = committed_results(cluster, job_id);
    let outputs: BTreeMap<u32, String> = results
        .iter()
        .map(|(&task, committed)| (task, committed.output.clone()))
        .collect();
    let oracle: BTreeMap<u32, String> = (0..tasks)
        .map(|task| (task, format!("{}\n", u64::from(task) * u64::from(task))))
        .collect();
    assert_eq!(outputs, oracle, "job {job_id}: outputs against the oracle");
}

/// Returns the attempts a worker began (of every job), from its executions log.
fn executions(cluster: &Cluster, container: &str) -> Vec<Execution> {
    let log = cluster.read_file(container, EXECUTIONS_LOG);
    let mut begun = Vec::new();
    for line in log.lines() {
        let (task, attempt) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("a `TASK ATTEMPT` line: {line:?}"));
        begun.push(Execution {
            task: task.parse().expect("a task index"),
            attempt: attempt.to_string(),
        });
    }
    begun
}

/// Returns the attempts of `begun` whose task was committed by another attempt (all
/// of them must be committed).
fn superseded(begun: &[Execution], results: &BTreeMap<u32, Committed>) -> Vec<Execution> {
    let mut superseded = Vec::new();
    for execution in begun {
        let committed = results
            .get(&execution.task)
            .unwrap_or_else(|| panic!("task {} was never committed", execution.task));
        if committed.attempt != execution.attempt {
            superseded.push(execution.clone());
        }
    }
    superseded
}

/// Returns, per worker id, what the job's history says it committed and failed.
fn shares_by_worker_id(cluster: &Cluster, job_id: u64) -> BTreeMap<String, (u64, u64)> {
    let detail = cluster.get_json(&format!("/api/v1/jobs/{job_id}"));
    let mut shares = BTreeMap::new();
    for share in detail["history"]["workers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let id = share["worker_id"].as_str().unwrap_or_default().to_string();
        let committed = share["committed"].as_u64().unwrap_or(0);
        let failed = share["failed"].as_u64().unwrap_or(0);
        shares.insert(id, (committed, failed));
    }
    shares
}

fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

#[test]
fn killed_worker_container_has_its_tasks_committed_by_the_others() {
    if !cluster::docker_is_usable("the multi-host tests") {
        return;
    }
    cluster::build_image();
    let cluster = Cluster::start("kill", 3);
    let victim = cluster.worker_container(1);
    let victim_id = cluster.wait_for_worker(&victim);
    let tasks = 60;
    let job_id = submit_squares(&cluster, tasks, "0.3");

    // Mid-job: a fifth of the tasks committed, the victim busy with more.
    eventually("a fifth of the job to be committed", EVENTUALLY, || {
        let succeeded = job_summary(&cluster, job_id)["tasks"]["succeeded"].as_u64();
        let victim_took_part = !executions(&cluster, &victim).is_empty();
        (succeeded.unwrap_or(0) >= u64::from(tasks / 5) && victim_took_part).then_some(())
    });
    let killed_at = Instant::now();
    docker(&["kill", "--signal", "KILL", &victim]);
    let succeeded_at_kill = job_summary(&cluster, job_id)["tasks"]["succeeded"].clone();
    assert!(
        succeeded_at_kill.as_u64().unwrap_or(0) < u64::from(tasks),
        "the job was over before the kill"
    );
    // Dead, its log is final: every attempt it began.
    let begun = executions(&cluster, &victim);

    let lost_after = eventually("the victim to be counted lost", EVENTUALLY, || {
        (cluster.metric(WORKERS_LOST) >= 1.0).then(|| killed_at.elapsed())
    });
    let recovered_after = eventually("the victim's tasks to be committed", EVENTUALLY, || {
        let results = committed_results(&cluster, job_id);
        let all_committed = begun.iter().all(|e| results.contains_key(&e.task));
        all_committed.then(|| killed_at.elapsed())
    });
    let job = wait_for_job(&cluster, job_id);
    let finished_after = killed_at.elapsed();
    assert_matches_oracle(&cluster, job_id, tasks);

    // The attempts the kill cut short were committed by other workers.
    let results = committed_results(&cluster, job_id);
    let cut_short = superseded(&begun, &results);
    assert!(
        !cut_short.is_empty(),
        "the kill cut no attempt short: {begun:?}"
    );
    for execution in &cut_short {
        assert_ne!(
            results[&execution.task].worker_id, victim_id,
            "{execution:?} was committed by the dead worker"
        );
    }
    assert!(
        job["attempts_failed"].as_u64().unwrap_or(0) >= cut_short.len() as u64,
        "each cut-short attempt counts as failed: {job:#}"
    );
    assert_eq!(cluster.metric(WORKERS_LOST), 1.0);
    assert!(
        !cluster.live_workers().contains_key(&victim),
        "the dead worker is no longer listed"
    );
    eprintln!(
        "kill: {} attempts cut short ({succeeded_at_kill} of {tasks} tasks committed at the \
         kill); worker counted lost {} after SIGKILL (worker timeout {}), its tasks committed \
         elsewhere after {}, job finished after {}",
        cut_short.len(),
        seconds(lost_after),
        seconds(WORKER_TIMEOUT),
        seconds(recovered_after),
        seconds(finished_after),
    );
}

#[test]
fn partitioned_worker_is_fenced_off_its_tasks_run_elsewhere_and_it_rejoins() {
    if !cluster::docker_is_usable("the multi-host tests") {
        return;
    }
    cluster::build_image();
    let cluster = Cluster::start("partition", 3);
    let victim = cluster.worker_container(1);
    let victim_id = cluster.wait_for_worker(&victim);
    let tasks = 36;
    // Tasks shorter than the worker timeout: whatever the victim runs when it is cut
    // off finishes while it is cut off, and it has late results to report.
    let job_id = submit_squares(&cluster, tasks, "1.5");

    eventually("the victim to begin two tasks", EVENTUALLY, || {
        (executions(&cluster, &victim).len() >= 2).then_some(())
    });
    let cut_at = Instant::now();
    cluster.disconnect(&victim);
    let lost_after = eventually("the victim to be counted lost", EVENTUALLY, || {
        (cluster.metric(WORKERS_LOST) >= 1.0).then(|| cut_at.elapsed())
    });
    // Cut off, it can take no more work: what it began so far is final until it
    // reconnects. Wait until all of that is committed, by the victim before the cut or
    // by others after its leases expired.
    let begun = executions(&cluster, &victim);
    let rerun_after = eventually("the victim's tasks to be committed", EVENTUALLY, || {
        let results = committed_results(&cluster, job_id);
        let all_committed = begun.iter().all(|e| results.contains_key(&e.task));
        all_committed.then(|| cut_at.elapsed())
    });
    assert_eq!(
        executions(&cluster, &victim),
        begun,
        "the cut-off worker began nothing new"
    );

    let reconnected_at = Instant::now();
    cluster.reconnect(&victim);
    // It learns that its session is over and registers afresh, under a new id.
    let rejoined_after = eventually("the victim to register again", EVENTUALLY, || {
        let id = cluster.live_workers().remove(&victim)?;
        (id != victim_id).then(|| reconnected_at.elapsed())
    });
    let rejoined_id = cluster.live_workers()[&victim].clone();

    let job = wait_for_job(&cluster, job_id);
    assert_matches_oracle(&cluster, job_id, tasks);
    let results = committed_results(&cluster, job_id);
    let cut_short = superseded(&begun, &results);
    assert!(
        !cut_short.is_empty(),
        "the cut left no attempt in flight: {begun:?}"
    );
    for execution in &cut_short {
        let winner = &results[&execution.task];
        assert_ne!(
            winner.worker_id, victim_id,
            "{execution:?}: a late result of the cut-off worker was committed"
        );
    }

    // Its late results met one of the two fences (ARCHITECTURE.md, "Life of a job"):
    // reported, the coordinator rejects and counts them; if a heartbeat answers first,
    // the worker learns its session is over and drops them without reporting.
    let log = cluster.logs(&victim);
    let reported_and_rejected = log.contains("its results are fenced off");
    let rejected = job["results_rejected"].as_u64().unwrap_or(0);
    if reported_and_rejected {
        assert!(rejected >= 1, "reported late results are counted: {job:#}");
        assert!(cluster.metric(RESULTS_REJECTED) >= 1.0);
    } else {
        assert!(
            log.contains("registering again"),
            "the worker neither reported its late results nor learnt it was forgotten"
        );
    }
    let fence = if reported_and_rejected {
        "reported, rejected by the coordinator"
    } else {
        "dropped by the worker before reporting"
    };

    // Back in the cluster, it takes new work.
    let next_tasks = 24;
    let next_job_id = submit_squares(&cluster, next_tasks, "0.3");
    wait_for_job(&cluster, next_job_id);
    assert_matches_oracle(&cluster, next_job_id, next_tasks);
    let shares = shares_by_worker_id(&cluster, next_job_id);
    let (rejoined_committed, _) = shares.get(&rejoined_id).copied().unwrap_or_default();
    assert!(
        rejoined_committed > 0,
        "the rejoined worker committed nothing of the next job: {shares:?}"
    );
    eprintln!(
        "partition: {} attempts in flight at the cut; worker counted lost {} after the cut \
         (worker timeout {}), its tasks committed elsewhere after {}; registered again {} \
         after reconnecting; late results {fence} (results_rejected {rejected}); it then \
         committed {rejoined_committed} of {next_tasks} tasks of the next job",
        cut_short.len(),
        seconds(lost_after),
        seconds(WORKER_TIMEOUT),
        seconds(rerun_after),
        seconds(rejoined_after),
    );
}

#[test]
fn workers_started_mid_job_register_and_take_its_tasks() {
    if !cluster::docker_is_usable("the multi-host tests") {
        return;
    }
    cluster::build_image();
    let mut cluster = Cluster::start("scale", 3);
    let tasks = 60;
    let job_id = submit_squares(&cluster, tasks, "1");
    eventually("the first tasks to be committed", EVENTUALLY, || {
        let succeeded = job_summary(&cluster, job_id)["tasks"]["succeeded"].as_u64();
        (succeeded.unwrap_or(0) >= 6).then_some(())
    });

    let added_at = Instant::now();
    let added = [cluster.start_worker(4), cluster.start_worker(5)];
    let mut added_ids = Vec::new();
    for name in &added {
        added_ids.push(cluster.wait_for_worker(name));
    }
    let registered_after = added_at.elapsed();
    let job_then = job_summary(&cluster, job_id);
    let succeeded_then = job_then["tasks"]["succeeded"].clone();
    assert_eq!(
        job_then["tasks"]["pending"]
            .as_u64()
            .map(|pending| pending > 0),
        Some(true),
        "the new workers came too late to take part: {job_then:#}"
    );

    wait_for_job(&cluster, job_id);
    assert_matches_oracle(&cluster, job_id, tasks);
    let shares = shares_by_worker_id(&cluster, job_id);
    for (name, id) in added.iter().zip(&added_ids) {
        let (committed, _) = shares.get(id).copied().unwrap_or_default();
        assert!(committed > 0, "{name} committed nothing: {shares:?}");
    }
    let total: u64 = shares.values().map(|(committed, _)| committed).sum();
    assert_eq!(total, u64::from(tasks), "the shares add up: {shares:?}");
    assert_eq!(cluster.live_workers().len(), 5);
    eprintln!(
        "scale-out: 2 workers registered {} after `docker run` ({succeeded_then} of {tasks} \
         tasks committed then); commits per worker id {shares:?}",
        seconds(registered_after),
    );
}

#[test]
fn stopped_worker_drains_its_running_tasks_and_deregisters() {
    if !cluster::docker_is_usable("the multi-host tests") {
        return;
    }
    cluster::build_image();
    let cluster = Cluster::start("drain", 3);
    let victim = cluster.worker_container(1);
    let victim_id = cluster.wait_for_worker(&victim);
    let tasks = 30;
    let job_id = submit_squares(&cluster, tasks, "2");

    // The victim runs tasks (both slots, as it holds nothing it does not run).
    let running_at_stop = eventually("the victim to run two tasks", EVENTUALLY, || {
        let results = committed_results(&cluster, job_id);
        let running: Vec<Execution> = executions(&cluster, &victim)
            .into_iter()
            .filter(|execution| !results.contains_key(&execution.task))
            .collect();
        (running.len() >= 2).then_some(running)
    });
    // SIGTERM; `docker stop` returns once the container has exited, within the 30 s
    // drain grace (SIGKILL only after 60 s).
    let stopped_at = Instant::now();
    docker(&["stop", "--time", "60", &victim]);
    let drained_after = stopped_at.elapsed();
    let exit_code = docker(&["inspect", "--format", "{{.State.ExitCode}}", &victim]);
    assert_eq!(exit_code.trim(), "0", "the drained worker exits cleanly");
    assert!(
        !cluster.live_workers().contains_key(&victim),
        "the drained worker deregistered"
    );

    let job = wait_for_job(&cluster, job_id);
    assert_matches_oracle(&cluster, job_id, tasks);
    // Everything it began, the attempts running at SIGTERM included, it committed.
    let results = committed_results(&cluster, job_id);
    let begun = executions(&cluster, &victim);
    assert!(
        running_at_stop
            .iter()
            .all(|running| begun.contains(running)),
        "{running_at_stop:?} not in {begun:?}"
    );
    for execution in &begun {
        let committed = &results[&execution.task];
        assert_eq!(
            (&committed.attempt, &committed.worker_id),
            (&execution.attempt, &victim_id),
            "task {} began on the draining worker and was committed elsewhere",
            execution.task
        );
    }
    // No attempt failed or expired: a drain is not a loss.
    assert_eq!(job["attempts_failed"], 0, "{job:#}");
    assert_eq!(job["attempts_started"], tasks, "{job:#}");
    assert_eq!(cluster.metric(WORKERS_LOST), 0.0);
    let shares = shares_by_worker_id(&cluster, job_id);
    assert_eq!(
        shares.get(&victim_id).copied(),
        Some((begun.len() as u64, 0)),
        "{shares:?}"
    );
    eprintln!(
        "drain: {} attempts running at SIGTERM, all committed by the draining worker; it \
         exited {} after SIGTERM, having committed {} tasks",
        running_at_stop.len(),
        seconds(drained_after),
        begun.len(),
    );
}
