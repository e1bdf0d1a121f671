//! The proxy's request handlers: a read with failover and repair, a write to every
//! holder, a delete, and the status of shards and nodes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use essaim_cache::hot::node_loads;
use essaim_cache::placement::{Holder, ShardId};
use essaim_cache::store::{PutError, check_key};

use super::Shared;
use crate::client::{NodeError, NodeValue};
use crate::metrics::NodeOpLabels;
use crate::node::{Refusal, refusal, requested_ttl};
use crate::wire::{NodeStatus, ShardStatus, ShardsStatus, insert_ttl};

/// A request's route: its shard, the holders to ask and the epoch to tag writes with.
struct Route {
    shard: ShardId,
    holders: Vec<Holder>,
    epoch: u64,
}

impl Shared {
    /// Checks `key` and returns its route, counting the request in its shard's rate.
    fn route(&self, key: &str) -> Result<Route, Refusal> {
        check_key(key).map_err(|error| {
            self.metrics.refused.inc();
            refusal(&error)
        })?;
        let route = {
            let placement = self.placement();
            let shard = placement.shard_of(key);
            Route {
                shard,
                holders: placement.holders(shard).to_vec(),
                epoch: placement.epoch(),
            }
        };
        self.record_request(route.shard);
        if route.holders.is_empty() {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no cache node is up",
            ));
        }
        Ok(route)
    }

    fn count_call(&self, node: &str, op: &str) {
        self.metrics
            .node_requests
            .get_or_create(&op_labels(node, op))
            .inc();
    }

    /// Counts a failed call; an unreachable node is marked down.
    fn call_failed(self: &Arc<Self>, node: &str, op: &str, error: &NodeError) {
        self.metrics
            .node_errors
            .get_or_create(&op_labels(node, op))
            .inc();
        if let NodeError::Unreachable { reason, .. } = error {
            self.mark_down(node, reason);
        }
    }

    /// Copies a value found after misses to the holders that missed it, in the
    /// background, without replacing anything written there meanwhile.
    fn repair(self: &Arc<Self>, shard: ShardId, key: &str, missed: Vec<String>, found: &NodeValue) {
        if missed.is_empty() {
            return;
        }
        let shared = Arc::clone(self);
        let key = key.to_owned();
        let found = found.clone();
        self.tracker.spawn(async move {
            for node in missed {
                let (epoch, since) = {
                    let placement = shared.placement();
                    let holder = placement.holders(shard).iter().find(|h| h.node == node);
                    match holder {
                        Some(holder) => (placement.epoch(), holder.since),
                        None => continue, // no longer a holder
                    }
                };
                shared.count_call(&node, "put");
                let put = shared.client.put(
                    &node,
                    &key,
                    found.value.clone(),
                    epoch,
                    found.ttl_left_ms,
                    Some(since),
                );
                match put.await {
                    Ok(()) => {
                        shared.metrics.repairs.inc();
                    }
                    Err(error) => shared.call_failed(&node, "put", &error),
                }
            }
        });
    }
}

fn op_labels(node: &str, op: &str) -> NodeOpLabels {
    NodeOpLabels {
        node: node.to_owned(),
        op: op.to_owned(),
    }
}

/// `GET /v1/cache/{key}`: the first trusted value among the holders, from a holder
/// chosen in turn; 404 when none has it.
pub(super) async fn get_value(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
) -> Response {
    let timer = Instant::now();
    let route = match shared.route(&key) {
        Ok(route) => route,
        Err(refused) => return refused.into_response(),
    };
    let start = shared.next_read.fetch_add(1, Ordering::Relaxed);
    let count = route.holders.len();
    let mut missed = Vec::new();
    let mut answer = None;
    for step in 0..count {
        let node = &route.holders[(start + step) % count].node;
        shared.count_call(node, "get");
        match shared.client.get(node, &key).await {
            Ok(Some(found)) if shared.placement().trusts(route.shard, node, found.tag) => {
                answer = Some(found);
                break;
            }
            Ok(_) => missed.push(node.clone()),
            Err(error) => shared.call_failed(node, "get", &error),
        }
    }
    let response = match answer {
        Some(found) => {
            shared.metrics.hits.inc();
            shared.repair(route.shard, &key, missed, &found);
            let mut headers = HeaderMap::new();
            insert_ttl(&mut headers, found.ttl_left_ms);
            (StatusCode::OK, headers, found.value).into_response()
        }
        None => {
            shared.metrics.misses.inc();
            StatusCode::NOT_FOUND.into_response()
        }
    };
    shared
        .metrics
        .duration
        .observe(timer.elapsed().as_secs_f64());
    response
}

/// `PUT /v1/cache/{key}`: the value on every live holder of its shard.
pub(super) async fn put_value(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let timer = Instant::now();
    if body.len() > shared.max_value_bytes {
        shared.metrics.refused.inc();
        return refusal(&PutError::ValueTooLarge {
            bytes: body.len(),
            limit: shared.max_value_bytes,
        })
        .into_response();
    }
    let ttl = match requested_ttl(&query, &headers) {
        Ok(ttl) => ttl,
        Err(refused) => {
            shared.metrics.refused.inc();
            return refused.into_response();
        }
    };
    let route = match shared.route(&key) {
        Ok(route) => route,
        Err(refused) => return refused.into_response(),
    };
    let writes = route.holders.iter().map(|holder| {
        shared.count_call(&holder.node, "put");
        let put = shared
            .client
            .put(&holder.node, &key, body.clone(), route.epoch, ttl, None);
        async move { (holder.node.clone(), put.await) }
    });
    let mut stored = 0;
    let mut refused = None;
    for (node, outcome) in futures_util::future::join_all(writes).await {
        match outcome {
            Ok(()) => stored += 1,
            Err(error) => {
                shared.call_failed(&node, "put", &error);
                if let NodeError::Refused {
                    status, message, ..
                } = error
                {
                    // The node keeps no older copy that a read could trust.
                    shared.count_call(&node, "delete");
                    if let Err(error) = shared.client.delete(&node, &key).await {
                        shared.call_failed(&node, "delete", &error);
                    }
                    refused = Some((status, message));
                }
            }
        }
    }
    shared
        .metrics
        .duration
        .observe(timer.elapsed().as_secs_f64());
    if let Some((status, message)) = refused {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        return (status, message).into_response();
    }
    if stored == 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no holder of the key's shard answered\n",
        )
            .into_response();
    }
    shared.metrics.writes.inc();
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE /v1/cache/{key}`: the key removed from every live holder.
pub(super) async fn delete_value(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
) -> Response {
    let route = match shared.route(&key) {
        Ok(route) => route,
        Err(refused) => return refused.into_response(),
    };
    for holder in &route.holders {
        shared.count_call(&holder.node, "delete");
        if let Err(error) = shared.client.delete(&holder.node, &key).await {
            shared.call_failed(&holder.node, "delete", &error);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /v1/cache-admin/shards`: nodes (up, load) and shards (rate, holders, extras).
pub(super) async fn shards_status(State(shared): State<Arc<Shared>>) -> Json<ShardsStatus> {
    let rates = shared.rates();
    let placement = shared.placement();
    let loads = node_loads(&rates, &placement);
    let nodes = placement
        .nodes()
        .iter()
        .map(|node| NodeStatus {
            node: node.clone(),
            up: !placement.is_down(node),
            load: loads.get(node).copied().unwrap_or_default(),
        })
        .collect();
    let shards = (0..placement.shards())
        .map(|shard| ShardStatus {
            shard,
            rate: rates[shard as usize],
            holders: placement
                .holders(shard)
                .iter()
                .map(|holder| holder.node.clone())
                .collect(),
            extra: placement.extras(shard),
        })
        .collect();
    Json(ShardsStatus {
        epoch: placement.epoch(),
        replicas: placement.replicas(),
        nodes,
        shards,
    })
}
