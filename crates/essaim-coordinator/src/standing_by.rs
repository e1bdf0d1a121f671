//! What a standby coordinator does in the background while another leads: it announces
//! itself under `standbys/<url>` (on a lease of its own, with how far it has read the
//! journal), keeps track of who leads (for the "the leader is there" answers), and
//! follows the journal as the leader writes it ([`JournalFollower`]), so that if it is
//! elected it reads only the last few entries.

use crate::role::HighAvailability;
use crate::standby::KnownLeader;
use essaim_etcd::{Etcd, KeepAlive, Txn};
use essaim_store_etcd::{JournalFollower, Layout, Leadership, leader_position};
use essaim_telemetry::LeadershipMetrics;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often a standby reads what the leader wrote and looks at who leads.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// The background work of one standby phase.
pub(crate) struct StandingBy {
    stop: CancellationToken,
    follow: JoinHandle<JournalFollower>,
}

impl StandingBy {
    /// Starts announcing, watching the leader and following the journal from where
    /// `follower` is.
    pub(crate) fn start(
        etcd: Etcd,
        layout: Layout,
        ha: &HighAvailability,
        known_leader: KnownLeader,
        metrics: LeadershipMetrics,
        follower: JournalFollower,
    ) -> Self {
        let stop = CancellationToken::new();
        let key = layout.standby(&ha.advertise_url);
        let ttl = ha.lease_ttl;
        let follow = tokio::spawn(follow(
            etcd,
            layout,
            key,
            ttl,
            known_leader,
            metrics,
            follower,
            stop.clone(),
        ));
        Self { stop, follow }
    }

    /// Stops, and returns the follower with what it read.
    pub(crate) async fn finish(self) -> JournalFollower {
        self.stop.cancel();
        self.follow.await.expect("the follower does not panic")
    }
}

#[allow(clippy::too_many_arguments)]
async fn follow(
    etcd: Etcd,
    layout: Layout,
    key: Vec<u8>,
    ttl: Duration,
    known_leader: KnownLeader,
    metrics: LeadershipMetrics,
    mut follower: JournalFollower,
    stop: CancellationToken,
) -> JournalFollower {
    let mut announced: Option<KeepAlive> = None;
    let mut announced_position = None;
    while !stop.is_cancelled() {
        if let Ok(leader) = Leadership::current(&etcd, &layout).await
            && let Ok(mut known) = known_leader.write()
        {
            *known = leader.map(|leader| leader.url);
        }
        match follower.catch_up().await {
            Ok(_) => {
                let behind = leader_position(&etcd, &layout)
                    .await
                    .map_or(0, |leader| leader.saturating_sub(follower.position()));
                metrics.standby_lag_entries.set(behind as i64);
            }
            Err(error) => tracing::debug!(error = %error, "could not follow the journal"),
        }
        if announced.as_ref().is_none_or(KeepAlive::is_lost) {
            announced = announce(&etcd, ttl).await;
            announced_position = None;
        }
        if let Some(lease) = &announced
            && announced_position != Some(follower.position())
        {
            let position = follower.position().to_string().into_bytes();
            let put = Txn::new().put(&key, position, lease.id());
            if etcd.txn(put).await.is_ok() {
                announced_position = Some(follower.position());
            }
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
    follower
}

/// A lease for the standby's key; `None` while etcd does not answer.
async fn announce(etcd: &Etcd, ttl: Duration) -> Option<KeepAlive> {
    let granted_at = tokio::time::Instant::now();
    let lease = tokio::time::timeout(ttl, etcd.grant(ttl))
        .await
        .ok()?
        .ok()?;
    Some(KeepAlive::start(etcd.clone(), lease, ttl, granted_at))
}
