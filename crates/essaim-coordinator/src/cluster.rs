//! `/api/v1/cluster`: which coordinator leads, the standbys, the epoch and the health of
//! the etcd members — served by the leader and by every standby alike, so that any
//! coordinator URL answers "where is the leader?".

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use essaim_etcd::Etcd;
use essaim_store_etcd::{Layout, Leadership};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where the cluster view comes from.
#[derive(Clone, Debug)]
pub enum ClusterSource {
    /// One coordinator with its embedded journal.
    Single {
        /// Its URL.
        url: String,
        /// Its epoch.
        epoch: u64,
    },
    /// Coordinators elected through etcd.
    Etcd(Arc<EtcdCluster>),
}

/// What a coordinator of a highly available cluster needs to describe it.
#[derive(Debug)]
pub struct EtcdCluster {
    /// The etcd client.
    pub etcd: Etcd,
    /// The cluster's keys.
    pub layout: Layout,
    /// This coordinator's advertised URL.
    pub this: String,
}

/// The cluster, as `/api/v1/cluster` and `essaim cluster status` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    /// `single` (embedded journal) or `etcd` (elected leader, standbys).
    pub mode: String,
    /// The cluster's name (its key prefix in etcd).
    pub cluster: Option<String>,
    /// The URL of the coordinator that answered.
    pub this: String,
    /// `leader` or `standby`: the role of the coordinator that answered.
    pub role: String,
    /// The leader's advertised URL, if one is elected.
    pub leader: Option<String>,
    /// The leader's epoch (its id space; grows at every election or restart).
    pub epoch: Option<u64>,
    /// The leader's fencing token (the etcd create revision of its leader key).
    pub fence: Option<i64>,
    /// The standbys that announced themselves.
    pub standbys: Vec<StandbyView>,
    /// The etcd members, as each answered.
    pub etcd: Vec<EtcdMemberView>,
}

/// A standby coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandbyView {
    /// Its advertised URL.
    pub url: String,
    /// The next journal log entry it would read.
    pub position: Option<u64>,
    /// Log entries the leader wrote that it has not read yet.
    pub lag_entries: Option<u64>,
}

/// One etcd member's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdMemberView {
    /// Its client URL.
    pub endpoint: String,
    /// True when it answered.
    pub healthy: bool,
    /// Its version, when it answered.
    pub version: Option<String>,
    /// Why it did not answer.
    pub error: Option<String>,
    /// True for the etcd cluster's raft leader.
    pub raft_leader: bool,
}

/// The `/api/v1/cluster` route.
pub fn router<S: Clone + Send + Sync + 'static>(source: ClusterSource) -> Router<S> {
    Router::new()
        .route("/api/v1/cluster", get(cluster_view))
        .with_state(source)
}

async fn cluster_view(State(source): State<ClusterSource>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match describe(&source).await {
        Ok(view) => axum::Json(view).into_response(),
        Err(error) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "error": format!("etcd does not answer: {error}") })),
        )
            .into_response(),
    }
}

/// Describes the cluster now.
pub async fn describe(source: &ClusterSource) -> Result<ClusterView, essaim_etcd::EtcdError> {
    let cluster = match source {
        ClusterSource::Single { url, epoch } => {
            return Ok(ClusterView {
                mode: "single".into(),
                cluster: None,
                this: url.clone(),
                role: "leader".into(),
                leader: Some(url.clone()),
                epoch: Some(*epoch),
                fence: None,
                standbys: Vec::new(),
                etcd: Vec::new(),
            });
        }
        ClusterSource::Etcd(cluster) => cluster,
    };
    let (etcd, layout) = (&cluster.etcd, &cluster.layout);
    let leader = Leadership::current(etcd, layout).await?;
    let (epoch, _) = etcd.get(&layout.epoch()).await?;
    let epoch = epoch.and_then(|kv| String::from_utf8_lossy(&kv.value).trim().parse().ok());
    let written = essaim_store_etcd::leader_position(etcd, layout).await.ok();
    let standbys = etcd
        .get_prefix(&layout.standbys())
        .await?
        .into_iter()
        .filter_map(|kv| {
            let url = kv.key.strip_prefix(layout.standbys().as_slice())?;
            let position: Option<u64> = String::from_utf8_lossy(&kv.value).trim().parse().ok();
            Some(StandbyView {
                url: String::from_utf8_lossy(url).into_owned(),
                position,
                lag_entries: position
                    .zip(written)
                    .map(|(read, written)| written.saturating_sub(read)),
            })
        })
        .collect();
    let members = etcd
        .health()
        .await
        .into_iter()
        .map(|member| EtcdMemberView {
            endpoint: member.endpoint,
            healthy: member.status.is_ok(),
            version: member.status.as_ref().ok().cloned(),
            error: member.status.err(),
            raft_leader: member.is_leader,
        })
        .collect();
    let role = if leader
        .as_ref()
        .is_some_and(|leader| leader.url == cluster.this)
    {
        "leader"
    } else {
        "standby"
    };
    Ok(ClusterView {
        mode: "etcd".into(),
        cluster: Some(layout.cluster().to_string()),
        this: cluster.this.clone(),
        role: role.into(),
        fence: leader.as_ref().map(|leader| leader.fence.0),
        leader: leader.map(|leader| leader.url),
        epoch,
        standbys,
        etcd: members,
    })
}
