//! High availability: a coordinator started with etcd endpoints campaigns for
//! leadership of its cluster, leads on the journal in etcd while it holds the lease,
//! and otherwise stands by, answering every call with where the leader is.
//!
//! The scheduler never knows there is an election. Leading is today's coordinator
//! ([`crate::start_with_journal`]) on an [`EtcdJournal`] opened under this leadership's
//! fence; stepping down is stopping it — its in-memory state is dropped, the next
//! leader rebuilds its own from the journal as a restart does. A leader steps down when
//! its lease can no longer be trusted (not refreshed in time: etcd unreachable, or this
//! process was paused), or when the store refuses a write (another leader was elected:
//! the write is fenced) or fails it (no quorum): nothing is acknowledged that is not in
//! etcd, and the process stands by again rather than exiting.
//!
//! Leases in flight at a failover are not carried over (they are not journaled): the new
//! leader re-runs those tasks, and results reported for the old epoch's attempts are
//! refused, as after a restart.

use crate::cluster::{ClusterSource, EtcdCluster};
use crate::standing_by::StandingBy;
use crate::{CoordinatorConfig, CoordinatorError, ListenSocket, OpenedJournal, standby};
use essaim_etcd::Etcd;
use essaim_store::StoreError;
use essaim_store_etcd::{EtcdJournal, EtcdResults, JournalFollower, Layout, Leadership};
use essaim_telemetry::LeadershipMetrics;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How a coordinator takes part in a highly available cluster; every field has a
/// documented default in the CLI.
#[derive(Debug, Clone)]
pub struct HighAvailability {
    /// etcd client URLs (any member of the etcd cluster; more is safer).
    pub etcd_endpoints: Vec<String>,
    /// The cluster's name: its keys in etcd live under `/essaim/<cluster>/`.
    pub cluster: String,
    /// The URL at which workers, clients and the other coordinators reach this one.
    pub advertise_url: String,
    /// The leader's etcd lease: a dead leader is replaced about this long after it
    /// stopped refreshing it (default 2 s).
    pub lease_ttl: Duration,
    /// Longest an etcd call may take before it counts as failed (default 5 s).
    pub etcd_timeout: Duration,
}

/// How often a standby looks at the leader key.
const CAMPAIGN_POLL: Duration = Duration::from_millis(200);

/// What is left of a leader stopped while it still served requests: its server ends
/// them in the background while the process stands by on the same socket.
type Draining = tokio::task::JoinHandle<Result<(), CoordinatorError>>;

/// Why a leadership ended.
enum Ended {
    Shutdown,
    SteppedDown(Option<Draining>),
}

/// Runs the coordinator as leader or standby of its cluster until `shutdown` fires.
pub async fn run_highly_available(
    config: CoordinatorConfig,
    ha: HighAvailability,
    shutdown: CancellationToken,
) -> Result<(), CoordinatorError> {
    let layout = Layout::new(&ha.cluster)
        .map_err(|error| CoordinatorError::HighAvailability(error.to_string()))?;
    let etcd = Etcd::new(&ha.etcd_endpoints, ha.etcd_timeout)?;
    let metrics = config.leadership.clone().unwrap_or_default();
    let cluster = ClusterSource::Etcd(Arc::new(EtcdCluster {
        etcd: etcd.clone(),
        layout: layout.clone(),
        this: ha.advertise_url.clone(),
    }));
    let config = CoordinatorConfig {
        leadership: Some(metrics.clone()),
        cluster: Some(cluster.clone()),
        // The journal is in etcd, not on this machine's disk.
        journal_reserve_bytes: 0,
        ..config
    };
    info!(cluster = %layout.cluster(), etcd = %ha.etcd_endpoints.join(","), url = %ha.advertise_url, "campaigning for leadership");
    let socket = ListenSocket::bind(config.listen).await?;
    let mut follower = JournalFollower::new(etcd.clone(), layout.clone());
    let mut just_stepped_down = false;
    let mut draining: Option<Draining> = None;
    loop {
        let known_leader = Arc::new(RwLock::new(None));
        let server = standby::serve(
            &socket,
            known_leader.clone(),
            metrics.clone(),
            cluster.clone(),
            config.tls.clone(),
        )?;
        let standing_by = StandingBy::start(
            etcd.clone(),
            layout.clone(),
            &ha,
            known_leader,
            metrics.clone(),
            follower,
        );
        if let Some(draining) = draining.take()
            && let Ok(Err(error)) = draining.await
        {
            warn!(error = %error, "the former leader's server ended with an error");
        }
        let elected = if just_stepped_down && pause(ha.lease_ttl, &shutdown).await {
            Ok(None)
        } else {
            Leadership::campaign(
                &etcd,
                &layout,
                &ha.advertise_url,
                ha.lease_ttl,
                CAMPAIGN_POLL,
                &shutdown,
            )
            .await
        };
        follower = standing_by.finish().await;
        server.stop().await;
        let Some(leadership) = elected? else {
            return Ok(());
        };
        let _ = etcd
            .txn(essaim_etcd::Txn::new().delete(&layout.standby(&ha.advertise_url)))
            .await;
        let taken = std::mem::replace(
            &mut follower,
            JournalFollower::new(etcd.clone(), layout.clone()),
        );
        match lead(
            &config, &etcd, &layout, &socket, leadership, taken, &metrics, &shutdown,
        )
        .await?
        {
            Ended::Shutdown => return Ok(()),
            Ended::SteppedDown(still_serving) => {
                info!("standing by again");
                just_stepped_down = true;
                draining = still_serving;
            }
        }
    }
}

/// Lets another coordinator campaign first, standing by meanwhile; true if `shutdown`
/// fired.
async fn pause(lease_ttl: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(lease_ttl) => false,
    }
}

/// Leads until shutdown or until leadership can no longer be trusted.
#[allow(clippy::too_many_arguments)]
async fn lead(
    config: &CoordinatorConfig,
    etcd: &Etcd,
    layout: &Layout,
    socket: &ListenSocket,
    leadership: Leadership,
    follower: JournalFollower,
    metrics: &LeadershipMetrics,
    shutdown: &CancellationToken,
) -> Result<Ended, CoordinatorError> {
    let fence = leadership.fence();
    let lost = leadership.lost();
    metrics.elections_won.inc();
    metrics.fence.set(fence.0);
    let opened = EtcdJournal::open_following(follower, fence).await;
    let (journal, recovered) = match opened {
        Ok(opened) => opened,
        Err(error) if steps_down(&error) => {
            warn!(error = %error, "the journal could not be opened; stepping down");
            step_down_reason(&error, metrics);
            let _ = leadership.resign().await;
            return Ok(Ended::SteppedDown(None));
        }
        Err(error) => return Err(error.into()),
    };
    metrics.epoch.set(recovered.epoch as i64);
    metrics.leader.set(1);
    metrics.standby_lag_entries.set(0);
    info!(fence = fence.0, epoch = recovered.epoch, "elected leader");
    let opened = OpenedJournal {
        journal: Box::new(journal),
        recovered,
        results: Arc::new(EtcdResults::new(etcd.clone(), layout.clone())),
    };
    let stop = shutdown.child_token();
    let running = crate::start_with_journal(config.clone(), opened, socket, stop.clone()).await?;
    let health = running.health.clone();
    let mut wait = Box::pin(running.wait());
    let ended = tokio::select! {
        result = &mut wait => match result {
            Ok(()) if shutdown.is_cancelled() => Ended::Shutdown,
            Ok(()) => {
                metrics.stepped_down("store_failed");
                Ended::SteppedDown(None)
            }
            Err(CoordinatorError::Journal(error)) if steps_down(&error) => {
                warn!(error = %error, "a journal write failed; stepping down");
                step_down_reason(&error, metrics);
                Ended::SteppedDown(None)
            }
            Err(error) => return Err(error),
        },
        () = lost.cancelled() => {
            warn!("leadership lease lost; stepping down");
            // Not the leader any more, whatever is still in flight: say so at once.
            health.set_not_ready("stepping down: the leadership lease was lost");
            metrics.leader.set(0);
            // The server stops accepting at once and ends what it serves in the
            // background, while the standby answers on the same socket.
            stop.cancel();
            metrics.stepped_down("lease_lost");
            Ended::SteppedDown(Some(tokio::spawn(wait)))
        }
    };
    metrics.leader.set(0);
    // Hand over at once rather than after the lease's TTL (refused harmlessly when
    // another leader was elected meanwhile). When stepping down, in the background:
    // standing by, and answering on the port, must not wait for an etcd that may be
    // unreachable; at shutdown, before the process exits.
    let resign = async move {
        if let Err(error) = leadership.resign().await {
            warn!(error = %error, "could not resign leadership; it ends when its lease expires");
        }
    };
    match ended {
        Ended::Shutdown => resign.await,
        Ended::SteppedDown(_) => drop(tokio::spawn(resign)),
    }
    Ok(ended)
}

/// True for journal errors after which this process must stop leading but may stand by.
fn steps_down(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Fenced { .. } | StoreError::Replicated { .. }
    )
}

fn step_down_reason(error: &StoreError, metrics: &LeadershipMetrics) {
    if matches!(error, StoreError::Fenced { .. }) {
        metrics.fenced_writes.inc();
        metrics.stepped_down("fenced");
    } else {
        metrics.stepped_down("store_failed");
    }
}
