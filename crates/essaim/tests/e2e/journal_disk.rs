//! A nearly full journal disk refuses new submissions and lets running jobs finish
//! (issue 13: one large submission on a nearly full disk used to stop the coordinator).
//!
//! The disk is really filled: the coordinator's reserve is set just under the free
//! space of the file system the test's directories are on, and a file allocated there
//! takes it below. (A private tmpfs would need `mount` rights the tests do not have;
//! margins of gigabytes keep other writers on the machine from mattering.)

use crate::harness::{Cluster, Deadline, EVENTUALLY, job_spec, shell_task};
use essaim_proto::v1;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Free space left above the reserve when the test starts.
const MARGIN_BYTES: u64 = 2 << 30;
/// The file that takes the disk below the reserve: twice the margin.
const FILLER_BYTES: u64 = 2 * MARGIN_BYTES;
/// How long a refusal may take to appear: the free space is sampled every second.
const REFUSAL_WITHIN: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_disk_below_its_reserve_refuses_submissions_while_running_jobs_finish() {
    let free = free_bytes(&std::env::temp_dir());
    if free < FILLER_BYTES + MARGIN_BYTES {
        eprintln!(
            "skipped: {free} bytes free, the test needs {}",
            FILLER_BYTES + MARGIN_BYTES
        );
        return;
    }
    let reserve = free - MARGIN_BYTES;
    let reserve_arg = reserve.to_string();
    let cluster =
        Cluster::start_with_options(None, &["--journal-reserve-bytes", &reserve_arg], 1, 2).await;
    assert_eq!(
        device_of(cluster.dir()),
        device_of(&std::env::temp_dir()),
        "the cluster's directory is on the file system that was measured"
    );
    // About 6 s of work on 2 slots: still running when the disk fills.
    let tasks = (0..60)
        .map(|_| shell_task("sleep 0.2; echo done", &[]))
        .collect();
    let running = cluster.submit(job_spec(tasks, 3)).await;

    let filler = cluster.path("filler");
    let allocated = Command::new("fallocate")
        .args(["-l", &FILLER_BYTES.to_string()])
        .arg(&filler)
        .status()
        .expect("fallocate runs");
    assert!(allocated.success(), "fallocate failed: {allocated}");
    let refusal = wait_for_refusal(&cluster).await;
    eprintln!("refused: {}", refusal.message());
    assert_eq!(
        refusal.code(),
        tonic::Code::ResourceExhausted,
        "{refusal:?}"
    );
    assert!(
        refusal.message().contains("bytes free")
            && refusal
                .message()
                .contains(&format!("reserve of {reserve} bytes")),
        "{}",
        refusal.message()
    );
    assert_eq!(
        cluster.job(running).await.state,
        "running",
        "the job was still running while submissions were refused"
    );
    let refused_cli = cluster
        .cli(&["submit", "--kind", "noop", "--count", "1"])
        .await;
    assert!(
        refused_cli.stderr.contains("below the reserve"),
        "{refused_cli:?}"
    );

    let finished = cluster.wait_job(running, EVENTUALLY).await;
    assert_eq!(finished.state, "succeeded", "{finished:?}");

    std::fs::remove_file(&filler).expect("the filler is removed");
    let deadline = Deadline::after(REFUSAL_WITHIN, "submissions to be admitted again");
    loop {
        if submit_noop(&cluster).await.is_ok() {
            break;
        }
        deadline.tick().await;
    }
}

/// Submits one-task jobs until one is refused; returns the refusal.
async fn wait_for_refusal(cluster: &Cluster) -> tonic::Status {
    let deadline = Deadline::after(REFUSAL_WITHIN, "a submission refused for disk space");
    loop {
        if let Err(status) = submit_noop(cluster).await {
            return status;
        }
        deadline.tick().await;
    }
}

async fn submit_noop(cluster: &Cluster) -> Result<u64, tonic::Status> {
    let spec = v1::JobSpec {
        tasks: vec![v1::TaskSpec {
            kind: "noop".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let reply = cluster
        .client()
        .submit_job(v1::SubmitJobRequest { spec: Some(spec) })
        .await?;
    Ok(reply.into_inner().job_id)
}

fn device_of(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("the path exists").dev()
}

/// Returns the bytes an unprivileged process may write on the file system of `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let output = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .expect("df runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let available = text.lines().nth(1).unwrap_or_default().trim();
    available
        .parse()
        .unwrap_or_else(|_| panic!("df printed no free space: {text}"))
}
