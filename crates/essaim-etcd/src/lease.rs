//! [`KeepAlive`]: keeps an etcd lease alive and says, as soon as it can be sure, that the
//! lease may be gone.
//!
//! The refresher counts from when each refresh was *sent*: etcd extends the lease when
//! it receives the request, never before, so `sent + ttl` is a bound the lease cannot
//! outlive on our side. When that bound passes without a confirmed refresh — etcd
//! unreachable, no quorum, this process paused — the lease is declared lost, even if etcd
//! may still hold it a little longer. Stepping down early is safe; acting late is not.

use crate::client::Etcd;
use crate::error::EtcdError;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A lease being refreshed in the background; dropping it stops the refresh (the lease
/// then expires after its TTL unless revoked).
#[derive(Debug)]
pub struct KeepAlive {
    id: i64,
    lost: CancellationToken,
    stop: CancellationToken,
}

impl KeepAlive {
    /// Starts refreshing lease `id`, granted with `ttl` just before `granted_at`, every
    /// third of its TTL.
    pub fn start(etcd: Etcd, id: i64, ttl: Duration, granted_at: Instant) -> Self {
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        tokio::spawn(refresh(
            etcd,
            id,
            ttl,
            granted_at,
            lost.clone(),
            stop.clone(),
        ));
        Self { id, lost, stop }
    }

    /// The lease's id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Fires once the lease can no longer be trusted to be held.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// True once the lease can no longer be trusted to be held.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn refresh(
    etcd: Etcd,
    id: i64,
    ttl: Duration,
    granted_at: Instant,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let period = ttl / 3;
    let mut expires = granted_at + ttl;
    let mut next = granted_at + period;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        let sent = Instant::now();
        if sent >= expires {
            break;
        }
        let answer = tokio::time::timeout_at(expires, etcd.keep_alive_once(id)).await;
        match answer {
            Ok(Ok(renewed)) => {
                expires = sent + renewed;
                next = sent + period;
            }
            Ok(Err(EtcdError::LeaseLost { .. })) => break,
            Ok(Err(error)) => {
                tracing::warn!(lease = format_args!("{id:x}"), error = %error, "etcd lease refresh failed; retrying");
                next = Instant::now() + Duration::from_millis(100);
            }
            Err(_) => break,
        }
    }
    tracing::warn!(
        lease = format_args!("{id:x}"),
        "etcd lease lost (expired, revoked or not refreshed in time)"
    );
    lost.cancel();
}
