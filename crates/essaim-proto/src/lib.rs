//! The essaim gRPC wire API (`essaim.v1`), generated from `proto/essaim/v1/essaim.proto`,
//! with the conversions between wire and core types, an authenticated client, and the
//! retrying call path that finds the leading coordinator among several ([`Coordinators`]).
//!
//! Field documentation lives in the `.proto` file. Conversions live here so that the
//! coordinator, the worker and the CLI translate the same way, and so that validation of
//! what comes off the wire (sizes, UTF-8, missing fields) happens in one place.
#![warn(missing_docs)]

/// Generated messages, client and server of `essaim.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("essaim.v1");
}

pub mod capability;
mod client;
mod convert;
pub mod failover;

pub use client::{
    AuthenticatedChannel, ClientError, CoordinatorClient, TokenInterceptor, connect,
    connect_trusting,
};
pub use convert::{
    WireError, assignment_from_wire, assignment_to_wire, attempt_result_to_wire, failure_from_wire,
    failure_to_wire, keep_tail, output_from_wire, output_to_wire, raw_job_spec_from_wire,
    reported_result_from_wire, upstream_output_from_wire, upstream_output_to_wire,
};
pub use failover::{CallError, CoordinatorUrls, Coordinators, Idempotence, RetryNotice};

/// Largest gRPC message either side accepts (a whole job submission must fit).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Metadata key carrying the cluster token, as `Bearer <token>`.
pub const AUTHORIZATION_METADATA: &str = "authorization";

/// Metadata key (and HTTP header) by which a standby coordinator names the leader's URL
/// in its UNAVAILABLE answers.
pub const LEADER_METADATA: &str = "essaim-leader";

/// The leader's URL named by a standby's answer, if any.
pub fn leader_hint(status: &tonic::Status) -> Option<String> {
    let value = status.metadata().get(LEADER_METADATA)?.to_str().ok()?;
    (!value.is_empty()).then(|| value.to_string())
}

/// Formats the correlation id that links coordinator, worker and command logs of an attempt.
pub fn correlation_id(job: u64, task: u32, attempt: u64) -> String {
    format!("job-{job}/task-{task}/attempt-{attempt:x}")
}
