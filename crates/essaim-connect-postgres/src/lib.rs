//! PostgreSQL I/O of essaim's streaming pipelines: an effectively-once sink.
//!
//! A pipeline task hands the sink batches of results (rows with a deterministic key and
//! a revision), the source positions they cover and its checkpoint. The sink writes all
//! three in one transaction, so after any crash PostgreSQL holds exactly the results
//! of the positions it records, and the task resumes from there: redelivered records
//! are skipped, redelivered revisions change nothing.
//!
//! | module | concept |
//! |---|---|
//! | [`table`] | result tables: columns, rows, quoted identifiers, the upsert |
//! | [`sink`] | the transaction of a batch, the resume point, dead letters |
//! | [`spec_guard`] | the spec each unit's state was made under; migrations |
//! | [`connection`] | connecting on demand, retries with backoff behind the circuit breaker |
//! | [`tls`] | TLS asked for in the URL, libpq's way (`sslmode`, `sslrootcert`); every connection to PostgreSQL goes through it |
//! | [`error`] | typed errors that say whether a retry can help |
//!
//! The circuit breaker and the backoff are `essaim_connect`'s, shared with the other
//! connectors.
//!
//! Connections are plain TCP unless the URL asks for TLS (`?sslmode=verify-full&
//! sslrootcert=ca.pem`, see [`tls`]). `scripts/postgres.sh` runs a private cluster for
//! the tests.
#![warn(missing_docs)]

pub mod connection;
pub mod error;
mod owner;
pub mod sink;
pub mod spec_guard;
pub mod table;
pub mod tls;

pub use connection::ConnectionConfig;
pub use error::PgSinkError;
pub use sink::{
    BatchOutcome, DeadLetter, PgSink, ResumePoint, SinkBatch, SinkConfig, SourcePosition,
};
pub use spec_guard::{Migration, Reconciled, SpecIdentity};
pub use table::{
    Column, ColumnType, ResultRow, ResultTable, SqlValue, result_key, result_key_prefix,
};
pub use tls::PgTarget;
