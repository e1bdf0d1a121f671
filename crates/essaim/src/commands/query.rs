//! `essaim query 'word1 word2'`: asks a query root (`essaim index serve`) and prints the
//! matching documents, one per line, or the whole answer as JSON (`documents`,
//! `partial`, `missing_shards`, …).
//!
//! A partial answer (a shard missed the deadline) is printed with a warning on stderr
//! and exit code 4, so a script notices it without reading JSON.
use std::process::ExitCode;

use clap::Args;
use essaim_serve_runtime::client::{HttpClient, encode_query_value};
use essaim_serve_runtime::wire::QueryAnswer;

use crate::client::usage;
use crate::output::OutputFormat;

/// Exit code of a partial answer.
const PARTIAL_EXIT_CODE: u8 = 4;

/// `essaim query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The query: words side by side must all occur; `OR` separates alternatives.
    query: String,
    /// The query root's URL.
    #[arg(
        long,
        env = "ESSAIM_QUERY_ROOT",
        default_value = "http://127.0.0.1:7480"
    )]
    root: String,
    /// Deadline, e.g. `250ms` (bare number: milliseconds; default: the root's).
    #[arg(long, value_parser = crate::durations::millis)]
    deadline: Option<std::time::Duration>,
    /// Key for key-affinity balancing (the same key goes to the same replicas).
    #[arg(long)]
    key: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, alias = "format", value_enum, default_value_t)]
    output: OutputFormat,
    /// The CA an `https://` root is verified with (and the certificate presented to a
    /// root requiring one), as every client verb takes them.
    #[command(flatten)]
    trust: crate::tls_args::TrustArgs,
}

/// Runs `essaim query`.
pub async fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let trust = args.trust.load()?;
    let mut url = format!(
        "{}/query?q={}",
        args.root.trim_end_matches('/'),
        encode_query_value(&args.query)
    );
    if let Some(deadline) = args.deadline {
        url.push_str(&format!("&deadline_ms={}", deadline.as_millis()));
    }
    if let Some(key) = &args.key {
        url.push_str(&format!("&key={}", encode_query_value(key)));
    }
    let answer: QueryAnswer = HttpClient::new(&trust)
        .get_json(&url)
        .await
        .map_err(|error| match error {
            essaim_serve_runtime::client::CallError::Status {
                status: 400,
                message,
                ..
            } => usage(message),
            other => anyhow::Error::from(other),
        })?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        OutputFormat::Text => {
            for document in &answer.documents {
                println!("{document}");
            }
        }
    }
    if answer.partial {
        eprintln!(
            "partial answer: shards {:?} of {} did not answer in time",
            answer.missing_shards, answer.shards
        );
        return Ok(ExitCode::from(PARTIAL_EXIT_CODE));
    }
    Ok(ExitCode::SUCCESS)
}
