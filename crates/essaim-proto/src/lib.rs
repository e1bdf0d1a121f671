//! The essaim gRPC wire API (`essaim.v1`), generated from `proto/essaim/v1/essaim.proto`.
//!
//! Field documentation lives in the `.proto` file. This crate only adds the constants
//! that both ends of the wire must agree on.
#![allow(missing_docs, clippy::doc_markdown)]

/// Generated messages, client and server of `essaim.v1`.
pub mod v1 {
    tonic::include_proto!("essaim.v1");
}

/// Largest gRPC message either side accepts (a whole job submission must fit).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Metadata key carrying the cluster token, as `Bearer <token>`.
pub const AUTHORIZATION_METADATA: &str = "authorization";
