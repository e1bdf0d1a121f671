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
mod demo_stream_oracle;
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
