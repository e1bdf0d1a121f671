//! Workers die with SIGKILL — no deregistration, no last report — and the job still
//! commits every task exactly once, re-running what the dead workers held.
//!
//! The oracle: task `i` prints `out-i`, and every execution appends `i <attempt id>` to a
//! side file before doing anything else, so the side file counts executions (interrupted
//! ones included) while the results count commits.

use crate::harness::{
    Cluster, Deadline, EVENTUALLY, assert_job_commits_every_task_once, executions_by_task,
    job_spec, output_text, shell_task,
};
use essaim_core::rng::SeededRng;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Appends `<index> <attempt>` to `$SIDE_FILE`, works a little, prints `out-<index>`.
///
/// Why 0.15 s of work: 200 tasks on 6 slots then take at least 5 s even on a fast
/// machine, longer than 5 chaos pauses of at most 800 ms, so the job cannot finish
/// before the chaos has killed 5 workers. With 0.05 s the job took 3.2 s here and the
/// kill count sat right at 5.
const RECORDED_TASK: &str = "echo \"$ESSAIM_TASK_INDEX $ESSAIM_ATTEMPT_ID\" >> \"$SIDE_FILE\"; sleep 0.15; echo out-$ESSAIM_TASK_INDEX";

/// Returns the chaos seed: `ESSAIM_E2E_SEED` to replay a failure, else the clock.
fn chaos_seed() -> u64 {
    if let Ok(text) = std::env::var("ESSAIM_E2E_SEED") {
        return text.parse().expect("ESSAIM_E2E_SEED is a number");
    }
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since_epoch.expect("the clock is after 1970").as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_random_workers_during_a_200_task_job_commits_every_task_exactly_once() {
    const TASKS: u32 = 200;
    const SLOTS: u32 = 2;
    const MIN_KILLS: u32 = 5;
    let mut cluster = Cluster::start(3, SLOTS).await;
    let side_file = cluster.path("executions.log");
    let tasks = (0..TASKS)
        .map(|_| shell_task(RECORDED_TASK, &[("SIDE_FILE", &side_file)]))
        .collect();
    let job_id = cluster.submit(job_spec(tasks, 20)).await;

    let seed = chaos_seed();
    eprintln!("chaos seed {seed} (ESSAIM_E2E_SEED={seed} replays the same kill schedule)");
    let mut rng = SeededRng::new(seed);
    let mut kills = 0;
    let started = Instant::now();
    let deadline = Deadline::after(EVENTUALLY, format!("job {job_id} to finish under chaos"));
    loop {
        // Chaos pacing chosen by the test, not a wait for a condition.
        tokio::time::sleep(Duration::from_millis(300 + rng.up_to(500))).await;
        if cluster.job(job_id).await.state != "running" {
            break;
        }
        deadline.check();
        let names = cluster.worker_names();
        let victim = names[rng.up_to(names.len() as u64 - 1) as usize].clone();
        eprintln!("{:>6} ms: SIGKILL {victim}", started.elapsed().as_millis());
        cluster.kill_worker(&victim);
        cluster.start_worker(SLOTS);
        kills += 1;
    }
    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    eprintln!(
        "job {job_id} {} after {kills} kills in {:?}: {} attempts started, {} failed, {} results rejected",
        job.state,
        started.elapsed(),
        job.attempts_started,
        job.attempts_failed,
        job.results_rejected
    );
    assert!(
        kills >= MIN_KILLS,
        "the job finished after only {kills} kills: the chaos proved little"
    );
    assert_eq!(job.state, "succeeded", "{job:?}");
    assert_eq!(job.succeeded, TASKS);
    assert!(
        job.attempts_failed >= 1,
        "no kill hit a running attempt: {job:?}"
    );

    let results = cluster.results(job_id).await;
    assert_eq!(
        results.len(),
        TASKS as usize,
        "one committed result per task"
    );
    let committed: BTreeSet<u32> = results.iter().map(|result| result.task_index).collect();
    assert_eq!(
        committed,
        (0..TASKS).collect::<BTreeSet<u32>>(),
        "every task committed exactly once"
    );
    let executions = executions_by_task(&side_file);
    for result in &results {
        let index = result.task_index;
        assert_eq!(
            output_text(result),
            format!("out-{index}\n"),
            "output of task {index}"
        );
        let committed_attempt = format!("{:x}", result.attempt_id);
        let ran = executions
            .get(&index)
            .is_some_and(|attempts| attempts.contains(&committed_attempt));
        assert!(
            ran,
            "task {index}: the committed attempt {committed_attempt} never ran: {:?}",
            executions.get(&index)
        );
    }
    let execution_count: usize = executions.values().map(Vec::len).sum();
    eprintln!("{execution_count} executions for {TASKS} commits");
    assert!(
        execution_count >= TASKS as usize,
        "fewer executions ({execution_count}) than commits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_workers_die_and_a_new_one_joins_later_the_job_completes() {
    const TASKS: u32 = 20;
    let mut cluster = Cluster::start(2, 2).await;
    let side_file = cluster.path("executions.log");
    let script = "echo \"$ESSAIM_TASK_INDEX $ESSAIM_ATTEMPT_ID\" >> \"$SIDE_FILE\"; sleep 0.5; echo out-$ESSAIM_TASK_INDEX";
    let tasks = (0..TASKS)
        .map(|_| shell_task(script, &[("SIDE_FILE", &side_file)]))
        .collect();
    let job_id = cluster.submit(job_spec(tasks, 10)).await;

    let job = cluster
        .wait_job_until(job_id, "2 tasks committed", |job| job.succeeded >= 2)
        .await;
    assert_eq!(
        job.state, "running",
        "the job must still run when the workers die: {job:?}"
    );
    for name in cluster.worker_names() {
        cluster.kill_worker(&name);
    }
    // Once the coordinator has declared both workers dead, anything they sent before
    // dying has been handled: from then on nothing may progress.
    let deadline = Deadline::after(
        EVENTUALLY,
        "the coordinator to declare the dead workers gone",
    );
    while !cluster.workers().await.is_empty() {
        deadline.tick().await;
    }
    let stalled = cluster.job(job_id).await;
    assert_eq!(stalled.state, "running", "{stalled:?}");
    assert!(stalled.succeeded < TASKS, "{stalled:?}");
    assert_eq!(
        stalled.running, 0,
        "no worker, so no running attempt: {stalled:?}"
    );
    let window_end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < window_end {
        let job = cluster.job(job_id).await;
        assert_eq!(
            job.state, "running",
            "the job must wait for workers: {job:?}"
        );
        assert_eq!(
            job.succeeded, stalled.succeeded,
            "progress without any worker: {job:?}"
        );
        assert_eq!(job.running, 0, "{job:?}");
        // The window is the point of this pause: nothing must happen during it.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    cluster.start_worker(2);
    assert_job_commits_every_task_once(&cluster, job_id, TASKS).await;
}
