//! The model runner behind `essaim serve`: models of the registry served over HTTP
//! with the Open Inference Protocol v2 (the protocol of KServe, Triton and Seldon),
//! following their aliases, with A/B, shadow and canary rollout as configuration.
//!
//! The life of a request: the HTTP layer finds the served model and parses the body
//! (`oip`); the served model picks the version that answers (`served`, deciding
//! with the pure `rollout`); the version's batcher queues the rows, scores them with
//! others in one batch on a blocking thread, and hands the answer back (`batch`).
//! Beside it, one registry task (`reload`) polls the registry, loads versions an
//! alias newly names and swaps them in (`loaded`), and carries out canary decisions
//! as registry calls, each an entry of the audit log. A second, smaller task (`usage`)
//! tells the registry at every heartbeat which versions are loaded, for the
//! governance view.
//!
//! | module | concept |
//! |---|---|
//! | [`oip`] | the protocol's JSON bodies; checking a request; building an answer |
//! | [`oip_client`] | the protocol's client side, for pipelines that ask a runner |
//! | [`batch`] | micro-batching behind a bounded queue (429 when full) |
//! | [`loaded`] | a loaded version and the slot swapped on reload |
//! | [`rollout`] | sticky split buckets, the candidate's tally, the canary's decision |
//! | [`config`] | `--model NAME@REF` and the model file (TOML) |
//! | [`served`] | a served model: which version answers, shadow copies, canary tally |
//! | [`reload`] | the registry task: poll, load aside, swap, carry out canary decisions |
//! | [`health`] | readiness and degradation (`/v2/health/ready`) |
//! | [`http`] | the endpoints |
//! | [`metrics`] | every metric of the runner |
//! | [`usage`] | the heartbeat telling the registry which versions are loaded now |
//! | [`runner`] | start and orderly shutdown |
#![warn(missing_docs)]

pub mod batch;
pub mod config;
pub mod health;
pub mod http;
pub mod loaded;
pub mod metrics;
pub mod oip;
pub mod oip_client;
pub mod reload;
pub mod rollout;
pub mod runner;
pub mod served;
pub mod usage;

pub use runner::{Runner, RunnerConfig, RunnerError};
