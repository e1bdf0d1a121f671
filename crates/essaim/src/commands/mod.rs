//! One module per subcommand, each with its `Args` and `run`.

pub mod bench;
mod bench_cache;
mod bench_predict;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod demo;
pub mod demo_stream;
pub mod demo_wordcount;
pub mod dlq;
pub mod eval;
pub mod generate;
pub mod index;
pub mod ingest;
mod job_files;
pub mod jobs;
pub mod local;
pub mod mapreduce;
pub mod models;
pub mod query;
pub mod registry;
pub mod replay;
pub mod report;
pub mod results;
pub mod serve;
pub mod server_auth;
pub mod skipped;
pub mod slo;
pub mod stream;
pub mod stream_status;
pub mod submit;
pub mod task_cache;
pub mod train;
pub mod worker;

/// Resolves when the process receives Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// Resolves when a serving job (`essaim index serve`, `essaim serve --on-cluster`) is
/// no longer running: its tasks run until cancelled, so it ended on a failure.
pub(crate) async fn serving_job_ended(
    coordinator: &crate::client::CoordinatorCalls,
    job_id: u64,
) -> anyhow::Result<essaim_proto::v1::JobStatus> {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let job = coordinator
            .read(|mut client| async move {
                client
                    .get_job(essaim_proto::v1::GetJobRequest { job_id })
                    .await
            })
            .await?;
        if job.state != "running" {
            return Ok(job);
        }
    }
}

/// Cancels a serving job, which stops its tasks.
pub(crate) async fn cancel_serving_job(
    coordinator: &crate::client::CoordinatorCalls,
    job_id: u64,
) -> anyhow::Result<()> {
    coordinator
        .read(|mut client| async move {
            client
                .cancel_job(essaim_proto::v1::CancelJobRequest { job_id })
                .await
        })
        .await?;
    Ok(())
}
