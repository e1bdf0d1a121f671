//! A small etcd v3 client: what the coordinator's high availability needs and nothing
//! more — reads (one key, a prefix in pages), transactions with compare guards, leases
//! and their keep-alive, and the members' status.
//!
//! Why not the `etcd-client` crate: its build script runs the system `protoc`, which a
//! fresh machine does not have, and the workspace builds every `.proto` with `protox`
//! instead. The API is etcd's own (`proto/etcd-v3`), generated here the same way, and
//! the few calls we make are thin wrappers over it. Election, fencing and the journal's
//! layout are not here: they belong to `essaim-store-etcd`.
//!
//! | module | concept |
//! |---|---|
//! | [`client`] | [`Etcd`]: connecting to a list of endpoints, reads, transactions, leases, status |
//! | [`txn`] | [`Txn`]: a transaction builder with the guards fencing needs |
//! | [`lease`] | [`KeepAlive`]: refreshes a lease and says when it is lost |
//! | [`error`] | [`EtcdError`] and which errors are worth retrying |
#![warn(missing_docs)]

pub mod client;
pub mod error;
pub mod lease;
pub mod txn;

pub use client::{EndpointHealth, Etcd};
pub use error::EtcdError;
pub use lease::KeepAlive;
pub use txn::{Txn, TxnOutcome, prefix_end};

/// The generated etcd v3 API.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    /// Keys and values as etcd stores them.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// Users and roles (referenced by the RPC messages).
    pub mod authpb {
        tonic::include_proto!("authpb");
    }
    /// The RPC services and their messages.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

pub use pb::mvccpb::KeyValue;
