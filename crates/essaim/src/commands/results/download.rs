//! `essaim results JOB --download DIR`: fetches the job's file results (outputs too
//! large to travel inline, kept on the worker that made them) from the workers' file
//! servers, with the job's file capability the coordinator handed over with the
//! results, into `DIR/task-NNNNN`.
//!
//! A file is streamed to a temporary name beside its destination and renamed once
//! whole and of the size the result records, so `DIR` never holds half a file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use essaim_proto::capability::FILE_CAPABILITY_HEADER;
use essaim_proto::v1;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;

/// Longest wait for a worker's file server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a download of file results needs: where they go and how to reach workers.
pub struct Downloads {
    dir: PathBuf,
    capability: String,
    client: Client<essaim_tls::HttpsConnector, Empty<Bytes>>,
    /// Files written so far.
    pub written: Vec<PathBuf>,
}

impl Downloads {
    /// Prepares downloads into `dir` (created if missing) with the job's `capability`,
    /// verifying `https://` workers with `trust`.
    pub fn new(
        dir: &Path,
        capability: String,
        trust: &essaim_tls::ClientTrust,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|error| anyhow::anyhow!("cannot create `{}`: {error}", dir.display()))?;
        let connector = trust.http_connector(CONNECT_TIMEOUT);
        Ok(Self {
            dir: dir.to_path_buf(),
            capability,
            client: Client::builder(TokioExecutor::new()).build(connector),
            written: Vec::new(),
        })
    }

    /// Fetches `result`'s file, if it has one, into `task-NNNNN`.
    pub async fn fetch(&mut self, result: &v1::TaskResult) -> anyhow::Result<()> {
        let Some(file) = result
            .output
            .as_ref()
            .and_then(|output| output.file.as_ref())
        else {
            return Ok(());
        };
        let destination = self.dir.join(format!("task-{:05}", result.task_index));
        let aside = destination.with_extension("part");
        let request = http::Request::get(&file.url)
            .header(FILE_CAPABILITY_HEADER, &self.capability)
            .body(Empty::new())?;
        let failed =
            |reason: String| anyhow::anyhow!("task {}: {}: {reason}", result.task_index, file.url);
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| failed(essaim_core::error_chain::error_chain(&error)))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(failed(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        let mut out = tokio::fs::File::create(&aside)
            .await
            .map_err(|error| failed(format!("cannot create `{}`: {error}", aside.display())))?;
        let mut body = response.into_body();
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|error| failed(essaim_core::error_chain::error_chain(&error)))?;
            if let Ok(data) = frame.into_data() {
                written += data.len() as u64;
                out.write_all(&data).await?;
            }
        }
        out.flush().await?;
        drop(out);
        if written != file.size_bytes {
            let _ = tokio::fs::remove_file(&aside).await;
            return Err(failed(format!(
                "{written} bytes received, {} recorded",
                file.size_bytes
            )));
        }
        tokio::fs::rename(&aside, &destination).await?;
        self.written.push(destination);
        Ok(())
    }
}
