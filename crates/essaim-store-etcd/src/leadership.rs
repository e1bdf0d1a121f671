//! The election: one coordinator of a cluster leads, the one whose key
//! `/essaim/<cluster>/leader` exists on its etcd lease.
//!
//! Campaigning is a transaction "if the leader key is absent, create it on my lease".
//! The key's *create revision* is the leader's fencing token ([`Fence`]): etcd's revision
//! grows with every write, so each election gets a larger one, and every journal write
//! of the leader is a transaction guarded by "the leader key still has my create
//! revision". A deposed leader — paused past its lease, or cut off from etcd — may still
//! believe it leads, but its writes fail at the store.
//!
//! When the leader dies, its lease expires after its TTL and etcd deletes the key; the
//! standbys, which poll the key, see it gone and campaign.

use crate::layout::Layout;
use essaim_etcd::{Etcd, EtcdError, KeepAlive, Txn};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The fencing token of one leadership: the create revision of the leader key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fence(pub i64);

/// Who leads, as etcd says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// The leader's advertised URL.
    pub url: String,
    /// Its fencing token.
    pub fence: Fence,
}

/// This process's leadership while it lasts.
#[derive(Debug)]
pub struct Leadership {
    etcd: Etcd,
    layout: Layout,
    keep_alive: KeepAlive,
    fence: Fence,
}

impl Leadership {
    /// Tries once to become leader as `url`, on a lease of `ttl`. Returns the leadership,
    /// or who leads instead.
    pub async fn try_acquire(
        etcd: &Etcd,
        layout: &Layout,
        url: &str,
        ttl: Duration,
    ) -> Result<Result<Self, Option<Leader>>, EtcdError> {
        let key = layout.leader();
        let granted_at = Instant::now();
        let lease = etcd.grant(ttl).await?;
        let outcome = etcd
            .txn(
                Txn::new()
                    .when_absent(&key)
                    .put(&key, url.as_bytes().to_vec(), lease)
                    .or_get(&key),
            )
            .await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                let _ = etcd.revoke(lease).await;
                return Err(error);
            }
        };
        let fence = if outcome.succeeded {
            Fence(outcome.revision)
        } else {
            match outcome.read(0).first() {
                // Our own write, applied by an attempt whose answer was lost.
                Some(holder) if holder.lease == lease => Fence(holder.create_revision),
                holder => {
                    let _ = etcd.revoke(lease).await;
                    return Ok(Err(holder.map(|kv| Leader {
                        url: String::from_utf8_lossy(&kv.value).into_owned(),
                        fence: Fence(kv.create_revision),
                    })));
                }
            }
        };
        let keep_alive = KeepAlive::start(etcd.clone(), lease, ttl, granted_at);
        Ok(Ok(Self {
            etcd: etcd.clone(),
            layout: layout.clone(),
            keep_alive,
            fence,
        }))
    }

    /// Campaigns until this process leads (`Some`) or `stop` fires (`None`), polling the
    /// leader key every `poll`. Transient etcd errors are logged and retried: an etcd
    /// that is down at start, or loses its quorum, delays the election without ending it.
    pub async fn campaign(
        etcd: &Etcd,
        layout: &Layout,
        url: &str,
        ttl: Duration,
        poll: Duration,
        stop: &CancellationToken,
    ) -> Result<Option<Self>, EtcdError> {
        let mut announced = None;
        loop {
            match Self::try_acquire(etcd, layout, url, ttl).await {
                Ok(Ok(leadership)) => return Ok(Some(leadership)),
                Ok(Err(leader)) => {
                    if announced != leader {
                        if let Some(leader) = &leader {
                            tracing::info!(leader = %leader.url, fence = leader.fence.0, "standing by");
                        }
                        announced = leader;
                    }
                }
                Err(error) if error.is_transient() => {
                    tracing::warn!(error = %error, "etcd unavailable while campaigning; retrying");
                }
                Err(error) => return Err(error),
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(None),
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Who leads now, if anyone.
    pub async fn current(etcd: &Etcd, layout: &Layout) -> Result<Option<Leader>, EtcdError> {
        let (found, _) = etcd.get(&layout.leader()).await?;
        Ok(found.map(|kv| Leader {
            url: String::from_utf8_lossy(&kv.value).into_owned(),
            fence: Fence(kv.create_revision),
        }))
    }

    /// This leadership's fencing token.
    pub fn fence(&self) -> Fence {
        self.fence
    }

    /// Fires once the lease can no longer be trusted to be held: stop leading.
    pub fn lost(&self) -> CancellationToken {
        self.keep_alive.lost()
    }

    /// Gives leadership up at once (a standby need not wait for the lease to expire).
    pub async fn resign(self) -> Result<(), EtcdError> {
        let key = self.layout.leader();
        self.etcd
            .txn(Txn::new().when_created_at(&key, self.fence.0).delete(&key))
            .await?;
        self.etcd.revoke(self.keep_alive.id()).await
    }
}
