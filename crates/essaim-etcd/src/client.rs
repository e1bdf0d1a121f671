//! [`Etcd`]: a client of an etcd cluster given as a list of endpoints.
//!
//! Each endpoint has its own lazily connected channel; a call goes to the endpoint that
//! answered last and, when it fails with a transient error (a member down, a connection
//! broken by a pause, a member without quorum timing out), to the next one, until the
//! call's deadline. Every attempt has its own timeout, so a member that accepts
//! connections but never answers (paused, partitioned from its quorum) cannot hold a
//! call forever.
//!
//! Retrying a write whose answer was lost may apply it twice: the writes of
//! `essaim-store-etcd` are idempotent (the same keys with the same values, under guards
//! that still hold), and the election re-reads who won.

use crate::KeyValue;
use crate::error::EtcdError;
use crate::pb::etcdserverpb::{
    CompactionRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, RangeRequest,
    RangeResponse, StatusRequest, kv_client::KvClient, lease_client::LeaseClient,
    maintenance_client::MaintenanceClient, range_request,
};
use crate::txn::{Txn, TxnOutcome, prefix_end};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// Keys read per page by [`Etcd::get_range`]: values are at most 512 KiB in essaim's use,
/// so a page stays well under [`MAX_RESPONSE_BYTES`].
const PAGE: i64 = 64;

/// Largest answer accepted from etcd (tonic's default, 4 MiB, is less than a page of
/// large values).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A client of one etcd cluster; cheap to clone (clones share the channels).
#[derive(Clone)]
pub struct Etcd {
    channels: Arc<[Channel]>,
    endpoints: Arc<[String]>,
    preferred: Arc<AtomicUsize>,
    attempt_timeout: Duration,
    call_timeout: Duration,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// One member's answer to a status request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointHealth {
    /// The endpoint asked.
    pub endpoint: String,
    /// Its answer: `Ok` with its version, or why it did not answer.
    pub status: Result<String, String>,
    /// True when this member is the etcd cluster's raft leader.
    pub is_leader: bool,
}

impl Etcd {
    /// Prepares a client of `endpoints` (e.g. `http://127.0.0.1:2379`) without
    /// connecting; calls give up after `call_timeout`, trying the endpoints in turn.
    pub fn new(endpoints: &[String], call_timeout: Duration) -> Result<Self, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::NoEndpoint);
        }
        let attempt_timeout = call_timeout.min(Duration::from_secs(2));
        let channels = endpoints
            .iter()
            .map(|endpoint| {
                let parsed = Endpoint::from_shared(endpoint.clone())
                    .map_err(|error| invalid(endpoint, error.to_string()))?;
                if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                    return Err(invalid(endpoint, "the scheme must be http or https".into()));
                }
                Ok(parsed
                    .connect_timeout(attempt_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(3))
                    .connect_lazy())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            channels: channels.into(),
            endpoints: endpoints.to_vec().into(),
            preferred: Arc::new(AtomicUsize::new(0)),
            attempt_timeout,
            call_timeout,
        })
    }

    /// Prepares a client and checks that some member answers.
    pub async fn connect(endpoints: &[String], call_timeout: Duration) -> Result<Self, EtcdError> {
        let etcd = Self::new(endpoints, call_timeout)?;
        etcd.call("status", |channel| async move {
            MaintenanceClient::new(channel)
                .status(StatusRequest {})
                .await
        })
        .await?;
        Ok(etcd)
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Runs one RPC on the preferred endpoint, moving to the next on transient errors
    /// until the call's deadline.
    async fn call<T, F, Fut>(&self, operation: &'static str, rpc: F) -> Result<T, EtcdError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.call_timeout;
        let mut index = self.preferred.load(Ordering::Relaxed) % self.channels.len();
        let mut last_error = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(last_error.unwrap_or_else(|| self.timeout(operation)));
            }
            let attempt = rpc(self.channels[index].clone());
            let error =
                match tokio::time::timeout(self.attempt_timeout.min(remaining), attempt).await {
                    Ok(Ok(response)) => {
                        self.preferred.store(index, Ordering::Relaxed);
                        return Ok(response.into_inner());
                    }
                    Ok(Err(status)) => EtcdError::Rpc {
                        operation,
                        endpoints: self.endpoints[index].clone(),
                        status: Box::new(status),
                    },
                    Err(_) => self.timeout(operation),
                };
            if !error.is_transient() {
                return Err(error);
            }
            tracing::debug!(endpoint = %self.endpoints[index], error = %error, "etcd call failed; trying the next member");
            last_error = Some(error);
            index = (index + 1) % self.channels.len();
            if index == self.preferred.load(Ordering::Relaxed) % self.channels.len() {
                // A full round failed: pause a little before the next one.
                tokio::time::sleep(Duration::from_millis(50).min(remaining)).await;
            }
        }
    }

    fn timeout(&self, operation: &'static str) -> EtcdError {
        EtcdError::Timeout {
            operation,
            after: self.call_timeout,
            endpoints: self.endpoints.join(","),
        }
    }

    /// One range read, as etcd defines it (`revision` 0: the latest).
    pub async fn range(
        &self,
        key: &[u8],
        end: &[u8],
        limit: i64,
        revision: i64,
    ) -> Result<RangeResponse, EtcdError> {
        self.send_range(RangeRequest {
            key: key.to_vec(),
            range_end: end.to_vec(),
            limit,
            revision,
            ..RangeRequest::default()
        })
        .await
    }

    async fn send_range(&self, request: RangeRequest) -> Result<RangeResponse, EtcdError> {
        self.call("range", |channel| {
            let request = request.clone();
            async move { kv(channel).range(request).await }
        })
        .await
    }

    /// Reads every key of `request`'s range, in pages of its `limit`, all read at the
    /// revision of the first page (a consistent view however long the range).
    async fn paged(&self, mut request: RangeRequest) -> Result<Vec<KeyValue>, EtcdError> {
        let mut found = Vec::new();
        loop {
            let page = self.send_range(request.clone()).await?;
            if request.revision == 0 {
                request.revision = page.header.as_ref().map_or(0, |header| header.revision);
            }
            let Some(last) = page.kvs.last() else { break };
            request.key = last.key.clone();
            request.key.push(0);
            found.extend(page.kvs);
            if !page.more {
                break;
            }
        }
        Ok(found)
    }

    /// Reads one key; returns it with the store's revision at the time of the read.
    pub async fn get(&self, key: &[u8]) -> Result<(Option<KeyValue>, i64), EtcdError> {
        let response = self.range(key, &[], 0, 0).await?;
        let revision = response.header.map_or(0, |header| header.revision);
        Ok((response.kvs.into_iter().next(), revision))
    }

    /// Reads every key that starts with `prefix`, in key order (see [`Etcd::get_range`]).
    pub async fn get_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, EtcdError> {
        self.get_range(prefix, &prefix_end(prefix)).await
    }

    /// Reads every key in `[from, end)`, in key order, in pages all read at the revision
    /// of the first one.
    pub async fn get_range(&self, from: &[u8], end: &[u8]) -> Result<Vec<KeyValue>, EtcdError> {
        self.paged(RangeRequest {
            key: from.to_vec(),
            range_end: end.to_vec(),
            limit: PAGE,
            ..RangeRequest::default()
        })
        .await
    }

    /// Reads the keys (without values) that start with `prefix`, in key order.
    pub async fn get_prefix_keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, EtcdError> {
        let found = self
            .paged(RangeRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                limit: PAGE * 10,
                keys_only: true,
                ..RangeRequest::default()
            })
            .await?;
        Ok(found.into_iter().map(|kv| kv.key).collect())
    }

    /// The last key (in key order) that starts with `prefix`, if any.
    pub async fn last_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, EtcdError> {
        let page = self
            .send_range(RangeRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                limit: 1,
                keys_only: true,
                sort_order: range_request::SortOrder::Descend as i32,
                sort_target: range_request::SortTarget::Key as i32,
                ..RangeRequest::default()
            })
            .await?;
        Ok(page.kvs.into_iter().next().map(|kv| kv.key))
    }

    /// Discards the history before `revision` (etcd keeps every old version of every key
    /// until it is compacted, and its database has a size quota).
    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        let request = CompactionRequest {
            revision,
            physical: false,
        };
        self.call("compact", |channel| async move {
            kv(channel).compact(request).await
        })
        .await?;
        Ok(())
    }

    /// Runs a transaction.
    pub async fn txn(&self, txn: Txn) -> Result<TxnOutcome, EtcdError> {
        let request = txn.into_request();
        let response = self
            .call("txn", |channel| {
                let request = request.clone();
                async move { kv(channel).txn(request).await }
            })
            .await?;
        Ok(TxnOutcome {
            succeeded: response.succeeded,
            revision: response.header.map_or(0, |header| header.revision),
            responses: response.responses,
        })
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1); returns its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let request = LeaseGrantRequest {
            ttl: ttl.as_secs().max(1) as i64,
            id: 0,
        };
        let response = self
            .call("lease grant", |channel| async move {
                LeaseClient::new(channel).lease_grant(request).await
            })
            .await?;
        Ok(response.id)
    }

    /// Revokes a lease: every key attached to it is deleted at once.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        self.call("lease revoke", |channel| async move {
            LeaseClient::new(channel)
                .lease_revoke(LeaseRevokeRequest { id })
                .await
        })
        .await?;
        Ok(())
    }

    /// Refreshes a lease once; returns its new time to live. Each refresh is its own short
    /// stream, so a connection broken in between costs one refresh, not the lease.
    pub async fn keep_alive_once(&self, id: i64) -> Result<Duration, EtcdError> {
        let ttl = self
            .call("lease keep-alive", |channel| async move {
                let requests = tokio_stream::once(LeaseKeepAliveRequest { id });
                let response = LeaseClient::new(channel).lease_keep_alive(requests).await?;
                let (metadata, mut stream, extensions) = response.into_parts();
                let ttl = stream.message().await?.map_or(0, |answer| answer.ttl);
                Ok(tonic::Response::from_parts(metadata, ttl, extensions))
            })
            .await?;
        if ttl <= 0 {
            return Err(EtcdError::LeaseLost { id });
        }
        Ok(Duration::from_secs(ttl as u64))
    }

    /// Asks every member for its status (for `essaim cluster status`).
    pub async fn health(&self) -> Vec<EndpointHealth> {
        let mut answers = Vec::with_capacity(self.channels.len());
        for (channel, endpoint) in self.channels.iter().zip(self.endpoints.iter()) {
            let mut client = MaintenanceClient::new(channel.clone());
            let status =
                tokio::time::timeout(self.attempt_timeout, client.status(StatusRequest {})).await;
            let (status, is_leader) = match status {
                Ok(Ok(response)) => {
                    let response = response.into_inner();
                    let member = response
                        .header
                        .as_ref()
                        .map_or(0, |header| header.member_id);
                    (
                        Ok(response.version),
                        member != 0 && member == response.leader,
                    )
                }
                Ok(Err(status)) => (Err(status.message().to_string()), false),
                Err(_) => (
                    Err(format!("no answer within {:?}", self.attempt_timeout)),
                    false,
                ),
            };
            answers.push(EndpointHealth {
                endpoint: endpoint.clone(),
                status,
                is_leader,
            });
        }
        answers
    }
}

/// A KV client of `channel` that accepts pages of large values.
fn kv(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

fn invalid(endpoint: &str, reason: String) -> EtcdError {
    EtcdError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason,
    }
}
