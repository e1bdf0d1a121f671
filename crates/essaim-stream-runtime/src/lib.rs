//! The distributed runtime of essaim's streaming pipelines.
//!
//! `essaim-stream` is the pure core (records, operators, windows, one in-process
//! pipeline); this crate runs a pipeline on the cluster:
//!
//! | module | concept |
//! |---|---|
//! | [`bindings`] | the `connector` tables of a spec, checked, and the server addresses |
//! | [`task`] | stream tasks: stages, units, and how a pipeline is cut into tasks |
//! | [`unit`](mod@unit) | one unit's read → process → publish → commit → acknowledge loop |
//! | [`error`] | why a unit stops, and whether restarting it can help |
//! | [`shuffle`] | the exactly-once shuffle between the stages, over JetStream |
//! | [`stored_format`] | the magic and version header of checkpoints and shuffle batches |
//! | [`rows`] | results as PostgreSQL rows or JSON messages, with deterministic keys |
//! | [`models`] | the models of `predict` operators: loaded from the registry, following their aliases, reported as used |
//! | [`breakers`] | the connectors' circuit breakers, shared by a pipeline's units on a worker |
//! | [`metrics`] | per-unit, per-operator and per-breaker metrics |
//! | [`executor`] | the worker's executor of stream tasks |
//!
//! # Guarantees
//!
//! - **Effectively-once results.** Delivery from the broker is at-least-once; a unit
//!   commits its result rows, the positions it read and its operator state in one
//!   PostgreSQL transaction, then acknowledges. After any crash it resumes from that
//!   transaction: positions after it are read again, state is as it was.
//! - **Deterministic replay.** Operators see the same records in the same order after
//!   a restart (partitions are logs; readers start after the committed position), so
//!   what a replay produces equals what the first run produced: upserts by key and
//!   revision and the shuffle's numbering absorb the repeats. Two owners of one unit
//!   for a moment (a rescale racing a slow stop) compute the same results, and
//!   PostgreSQL's positions only move forward.
//! - **Bounded memory.** A unit holds one batch, its operators' state (bounded by the
//!   spec, see `essaim-stream`) and at most `max_ack_pending` unacknowledged messages.
#![warn(missing_docs)]

pub mod bindings;
pub mod breakers;
pub mod error;
pub mod executor;
pub mod metrics;
pub mod models;
pub mod rows;
pub mod shuffle;
pub mod stored_format;
pub mod task;
pub mod unit;

pub use bindings::{Bindings, Endpoints, SinkBinding, SourceBinding};
pub use error::UnitError;
pub use essaim_connect_postgres::Migration;
pub use executor::StreamExecutor;
pub use task::{PlanOptions, STREAM_TASK_KIND, Stage, StreamTaskSpec, plan_tasks};
