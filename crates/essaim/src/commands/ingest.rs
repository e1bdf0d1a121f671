//! `essaim ingest`: the HTTP ingest endpoint in front of NATS JetStream.
//!
//! `POST /ingest/{source}` with newline-delimited records answers 200 only once every
//! line is stored in JetStream, on subject `<subject>.<partition>`, which is what a
//! pipeline's `nats` source with the same subject and partitions reads.
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args as ClapArgs;
use essaim_connect_http::{IngestConfig, IngestServer, IngestSource};

use crate::client::usage;

/// Options of `essaim ingest`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7080")]
    listen: SocketAddr,
    /// The NATS server.
    #[arg(long, env = "ESSAIM_NATS_URL")]
    nats: String,
    /// A source clients may post to, as `NAME[:PARTITIONS[:STREAM[:SUBJECT]]]`
    /// (default: one partition, stream and subject named like the source). Repeatable.
    #[arg(long = "source", required = true)]
    sources: Vec<String>,
    /// Bearer token clients must present.
    #[arg(long, env = "ESSAIM_INGEST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File whose first line is the bearer token, instead of --token.
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    token_file: Option<std::path::PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_body_bytes: usize,
    #[command(flatten)]
    tls: crate::tls_args::ServerTlsArgs,
}

fn parse_source(text: &str) -> anyhow::Result<IngestSource> {
    let mut parts = text.split(':');
    let name = parts.next().unwrap_or_default();
    let partitions = match parts.next() {
        Some(partitions) => partitions
            .parse::<u32>()
            .map_err(|_| usage(format!("--source {text}: partitions must be a number")))?,
        None => 1,
    };
    let mut source = IngestSource::new(name, partitions);
    if let Some(stream) = parts.next() {
        source.stream = stream.to_owned();
    }
    if let Some(subject) = parts.next() {
        source.subject_prefix = subject.to_owned();
    }
    Ok(source)
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sources = args
        .sources
        .iter()
        .map(|text| parse_source(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = IngestConfig::new(args.listen, &args.nats, sources);
    config.bearer_token = crate::client::TokenArgs {
        token: args.token,
        token_file: args.token_file,
    }
    .resolve()?;
    config.max_body_bytes = args.max_body_bytes;
    config
        .validate()
        .map_err(|error| usage(error.to_string()))?;
    let tls = args.tls.load()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = IngestServer::start_with_tls(config, tls).await?;
    eprintln!(
        "ingest endpoint on {scheme}://{}/ingest/{{source}}",
        server.local_addr()
    );
    super::shutdown_signal().await;
    server.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}
