//! Mistakes get a message that names them and the exit code that classifies them:
//! 2 for bad usage or input, 3 for an unreachable coordinator, and a command that cannot
//! start fails its task at once instead of retrying what cannot succeed.

use crate::harness::{Cluster, EVENTUALLY, assert_refused, essaim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error() {
    let cluster = Cluster::start(1, 1).await;

    let empty = cluster
        .cli(&["submit", "--kind", "noop", "--count", "0"])
        .await;
    assert_refused(&empty, 2, "no task");
    let unknown = cluster.cli(&["submit", "--kind", "nope"]).await;
    assert_refused(&unknown, 2, "unknown kind");

    let missing_program = cluster
        .cli(&["submit", "--max-attempts", "4", "--", "/nonexistent/prog"])
        .await;
    assert_eq!(missing_program.code, Some(0), "{missing_program:?}");
    let job_id: u64 = missing_program
        .stdout
        .trim()
        .parse()
        .expect("submit prints the job id");
    let job = cluster.wait_job(job_id, EVENTUALLY).await;
    assert_eq!(job.state, "failed", "{job:?}");
    assert_eq!(
        job.attempts_started, 1,
        "a program that does not exist is not retried: {job:?}"
    );
    let letters = cluster.dead_letters(job_id).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let errors = &letters[0].errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let failure = errors[0].failure.clone().expect("the error has a failure");
    assert!(failure.message.contains("not found"), "{failure:?}");
    assert!(!failure.retryable, "{failure:?}");

    // Clients retry an unreachable coordinator for the connect timeout (60 s by default).
    let unreachable = essaim(&[
        "jobs",
        "--coordinator",
        "http://127.0.0.1:1",
        "--connect-timeout",
        "1",
    ])
    .await;
    assert_refused(&unreachable, 3, "cannot reach the coordinator");

    let inputs = cluster.path("inputs.bin");
    std::fs::write(&inputs, b"fine\n\xff\xfe not text\n").expect("the inputs file can be written");
    let inputs = inputs.display().to_string();
    let not_utf8 = cluster
        .cli(&["submit", "--inputs", &inputs, "--", "echo"])
        .await;
    assert_refused(&not_utf8, 2, "UTF-8");

    let no_such_job = cluster.cli(&["status", "999999"]).await;
    assert_refused(&no_such_job, 2, "does not exist");
}
