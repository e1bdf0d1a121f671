//! HTTP ingest of essaim's streaming pipelines: clients `POST` newline-delimited records
//! and the endpoint publishes them to NATS JetStream, where a pipeline's sources read
//! them.
//!
//! Many producers (a web hook, a shell script with `curl`, a device) speak HTTP and not
//! NATS. This endpoint is their door to the same durable log the rest of the platform
//! reads, and it keeps the log's promise: **a 200 answer means every line of the
//! request is stored**, because it is sent only after JetStream acknowledged every
//! publish (and the test server fsyncs before acknowledging, see `scripts/nats.sh`).
//!
//! ```text
//! POST /ingest/{source}[?key=K]      body: one record per line (text/csv, text/plain,
//!   Authorization: Bearer <token>          application/x-ndjson)
//!   X-Essaim-Key: K                  (instead of ?key=)
//! → 200 {"accepted": n, "first_sequence": s1, "last_sequence": sn}
//! GET /healthz → 200 ok                (the process is alive)
//! GET /readyz  → 200 ready | 503 the broker is disconnected
//! GET /metrics → essaim_ingest_* (requests by outcome, refusals by reason, records
//!                and bytes accepted, publish latency, requests in flight, broker link)
//! ```
//!
//! The probe and scrape endpoints are `essaim-telemetry`'s, as on every essaim process;
//! readiness follows the broker connection (sampled every 250 ms), since without it no
//! request can be stored.
//!
//! Line `i` of a request goes to subject `<subject_prefix>.<partition>`: with a key,
//! every line to partition `fnv1a_64(key) mod partitions`
//! ([`essaim_stream::hash::partition_of`], the pipelines' own partitioning); without,
//! round-robin over the partitions, continuing across requests. Lines are published in
//! request order. Blank lines are not records.
//!
//! | status | when | stored |
//! |---|---|---|
//! | 200 | every line acknowledged by JetStream | all |
//! | 400 | empty body (or blank lines only); a line not UTF-8 (named); a bad `X-Essaim-Key` | nothing |
//! | 401 | a token is configured and the request lacks it (compared in constant time) | nothing |
//! | 404 | a source not in the configuration | nothing |
//! | 413 | a body over `max_body_bytes`; a line over `max_line_bytes` (named) | nothing |
//! | 408 | the body took longer than `body_timeout` to arrive | nothing |
//! | 415 | another content type | nothing |
//! | 429 | `max_concurrent_requests` are in progress (`Retry-After`) | nothing |
//! | 503 | the broker is unreachable or did not acknowledge in time (`Retry-After`) | possibly a prefix: retrying is at-least-once |
//!
//! Errors are JSON: `{"error": "…", "line": n}`, `line` when one is to blame.
//!
//! | module | concept |
//! |---|---|
//! | [`config`] | sources, limits, the token; validated at start |
//! | [`body`] | a body split into records, refused whole if one line is bad |
//! | [`broker`] | publishing a request's records and waiting for every ack |
//! | [`server`] | routes, the order of the checks, the answers, readiness and metrics |
#![warn(missing_docs)]

mod auth;
pub mod body;
pub mod broker;
pub mod config;
pub mod server;

pub use broker::Receipt;
pub use config::{IngestConfig, IngestSource};
pub use server::IngestServer;

use std::net::SocketAddr;

/// Why the endpoint could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A configuration value is wrong.
    #[error("invalid `{key}`: {reason}")]
    InvalidConfig {
        /// The offending key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// NATS could not be reached, or a stream not ensured.
    #[error(transparent)]
    Nats(#[from] essaim_connect_nats::NatsError),
    /// The listening address could not be bound.
    #[error("failed to listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}
