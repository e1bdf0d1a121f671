//! What a worker process is told at start, checked once before anything is bound.
//!
//! The CLI turns flags into a [`WorkerConfig`]; [`WorkerConfig::validate`] refuses the
//! values the runtime cannot work with, naming the offending key, so that the loops can
//! rely on them (at least one slot, a coordinator URL).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use essaim_proto::CoordinatorUrls;

use crate::WorkerError;

/// Everything a worker needs to join a cluster.
#[derive(Clone)]
pub struct WorkerConfig {
    /// The coordinator's gRPC address, e.g. `http://127.0.0.1:7070`, or several
    /// separated by commas (`http://c1:7070,http://c2:7070`): the worker follows the
    /// leader among them.
    pub coordinator_url: String,
    /// The cluster token, sent as `authorization: Bearer <token>` on every call and
    /// required from clients of the file server. `None`: no authentication.
    pub token: Option<String>,
    /// Display name shown by `essaim workers` (the CLI defaults it to the host name).
    pub name: String,
    /// Attempts run at once (the CLI defaults it to the number of cores). At least 1.
    pub slots: u32,
    /// Extra attempts pulled beyond the free slots and queued locally, so that a slot
    /// that frees up starts its next attempt without waiting for a round trip
    /// (default: adaptive, up to [`DEFAULT_MAX_PREFETCH`]).
    pub prefetch: Prefetch,
    /// Address of `/healthz`, `/readyz`, `/metrics` and `/files`; port 0 picks one.
    pub http_listen: SocketAddr,
    /// Host put in file URLs; default: the bound IP (loopback when bound to a wildcard).
    pub advertised_host: Option<String>,
    /// Root of the attempt-private directories `<scratch>/<job>/<task>/<attempt>/`.
    pub scratch_dir: PathBuf,
    /// Free space the scratch directory's file system must keep: below it the worker
    /// takes no new task until space is freed (default
    /// [`DEFAULT_SCRATCH_RESERVE_BYTES`]; 0 = no check).
    pub scratch_reserve_bytes: u64,
    /// How long running attempts may finish after the drain starts (default 30 s).
    pub drain_grace: Duration,
    /// Advertise the `command` kind (external commands) only when true.
    pub allow_commands: bool,
    /// Data directories this worker holds locally, for locality-aware placement.
    pub data_dirs: Vec<String>,
    /// Labels (`gpu=yes`, zone, machine type): jobs that require labels run only on
    /// workers carrying them.
    pub labels: BTreeMap<String, String>,
    /// The certificate and key the HTTP server (files, probes, metrics) serves TLS with;
    /// file URLs are then `https://` (default `None`: plain HTTP).
    pub tls: Option<essaim_tls::ServerTls>,
    /// The roots `https://` coordinators and other workers' file servers are verified
    /// with (default: the system's).
    pub trust: essaim_tls::ClientTrust,
}

// Written by hand so that the token never reaches a log line.
impl fmt::Debug for WorkerConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("WorkerConfig")
            .field("coordinator_url", &self.coordinator_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("name", &self.name)
            .field("slots", &self.slots)
            .field("prefetch", &self.prefetch)
            .field("http_listen", &self.http_listen)
            .field("advertised_host", &self.advertised_host)
            .field("scratch_dir", &self.scratch_dir)
            .field("scratch_reserve_bytes", &self.scratch_reserve_bytes)
            .field("drain_grace", &self.drain_grace)
            .field("allow_commands", &self.allow_commands)
            .field("data_dirs", &self.data_dirs)
            .field("labels", &self.labels)
            .field("tls", &self.tls)
            .field("trust", &self.trust)
            .finish()
    }
}

impl WorkerConfig {
    /// Refuses values the runtime cannot work with, naming the offending key.
    pub fn validate(&self) -> Result<(), WorkerError> {
        if self.coordinator_url.trim().is_empty() {
            return Err(invalid("coordinator_url", "is empty"));
        }
        self.coordinator_urls()?;
        if self.slots == 0 {
            return Err(invalid("slots", "must be at least 1"));
        }
        if self.scratch_dir.as_os_str().is_empty() {
            return Err(invalid("scratch_dir", "is empty"));
        }
        if let Some(host) = &self.advertised_host {
            let host_is_usable = !host.is_empty() && !host.contains(['/', ' ', '?', '#', '@']);
            if !host_is_usable {
                return Err(invalid(
                    "advertised_host",
                    "must be a bare host name or IP address (no scheme, port or path)",
                ));
            }
        }
        if let Some(token) = &self.token {
            let token_is_printable = token.bytes().all(|byte| byte.is_ascii_graphic());
            if token.is_empty() || !token_is_printable {
                return Err(invalid("token", "must be non-empty printable ASCII"));
            }
        }
        Ok(())
    }
}

impl WorkerConfig {
    /// Returns the coordinator URLs, refusing a list with an unusable entry.
    pub fn coordinator_urls(&self) -> Result<CoordinatorUrls, WorkerError> {
        CoordinatorUrls::parse(&self.coordinator_url)
            .map_err(|error| invalid("coordinator_url", &error.to_string()))
    }
}

fn invalid(key: &'static str, reason: &str) -> WorkerError {
    WorkerError::InvalidConfig {
        key,
        reason: reason.to_string(),
    }
}

/// Returns the host to put in file URLs when no host is advertised: the bound IP, or the
/// loopback of the same family when bound to a wildcard (a wildcard is not an address a
/// client can connect to). The second value is true when that fallback was used.
pub(crate) fn default_advertised_ip(bound: SocketAddr) -> (IpAddr, bool) {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (IpAddr::V4(Ipv4Addr::LOCALHOST), true),
        IpAddr::V6(ip) if ip.is_unspecified() => (IpAddr::V6(Ipv6Addr::LOCALHOST), true),
        ip => (ip, false),
    }
}

/// Returns the local address this host uses to reach the coordinator at `coordinator_url`
/// (a UDP socket is "connected" to it, which picks a route and sends nothing), or `None`
/// when the URL does not resolve or the route is the loopback.
pub(crate) fn outbound_ip_towards(coordinator_url: &str) -> Option<IpAddr> {
    let authority = coordinator_url
        .split_once("://")
        .map_or(coordinator_url, |(_, rest)| rest)
        .split('/')
        .next()?;
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let target = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
        .ok()?
        .next()?;
    let local = if target.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = std::net::UdpSocket::bind(local).ok()?;
    socket.connect(target).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Returns the base URL of the file server, e.g. `http://10.0.0.5:7001`.
pub(crate) fn file_server_url(
    scheme: &str,
    advertised_host: Option<&str>,
    bound: SocketAddr,
) -> String {
    let port = bound.port();
    match advertised_host {
        // An IPv6 literal needs brackets in a URL; a name or IPv4 address does not.
        Some(host) if host.contains(':') && !host.starts_with('[') => {
            format!("{scheme}://[{host}]:{port}")
        }
        Some(host) => format!("{scheme}://{host}:{port}"),
        None => {
            let (ip, _) = default_advertised_ip(bound);
            format!("{scheme}://{}", SocketAddr::new(ip, port))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WorkerConfig {
        WorkerConfig {
            coordinator_url: "http://127.0.0.1:7070".into(),
            token: Some("secret".into()),
            name: "w".into(),
            slots: 2,
            prefetch: Prefetch::Adaptive {
                max: DEFAULT_MAX_PREFETCH,
            },
            http_listen: "127.0.0.1:0".parse().unwrap(),
            advertised_host: None,
            scratch_dir: "/tmp/essaim".into(),
            scratch_reserve_bytes: DEFAULT_SCRATCH_RESERVE_BYTES,
            drain_grace: Duration::from_secs(30),
            allow_commands: false,
            data_dirs: Vec::new(),
            labels: BTreeMap::new(),
            tls: None,
            trust: Default::default(),
        }
    }

    #[test]
    fn zero_slots_is_refused_naming_the_key() {
        let refused = WorkerConfig {
            slots: 0,
            ..config()
        }
        .validate();
        assert!(matches!(
            refused,
            Err(WorkerError::InvalidConfig { key: "slots", .. })
        ));
        assert!(config().validate().is_ok());
    }

    #[test]
    fn a_coordinator_list_is_accepted_and_a_bad_entry_refused_by_key() {
        let listed = WorkerConfig {
            coordinator_url: "http://c1:7070,http://c2:7070".into(),
            ..config()
        };
        assert_eq!(listed.coordinator_urls().unwrap().as_slice().len(), 2);
        for bad in ["not a url", "http://c1:7070,", "c1:7070"] {
            let refused = WorkerConfig {
                coordinator_url: bad.into(),
                ..config()
            }
            .validate();
            let Err(WorkerError::InvalidConfig { key, reason }) = refused else {
                panic!("{bad}: {refused:?}");
            };
            assert_eq!(key, "coordinator_url", "{bad}");
            assert!(
                reason.contains("invalid coordinator URL"),
                "{bad}: {reason}"
            );
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        let text = format!("{:?}", config());
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn the_outbound_address_is_a_route_not_the_loopback() {
        // The coordinator on this host: the route is the loopback, which says nothing.
        assert_eq!(outbound_ip_towards("http://127.0.0.1:7070"), None);
        assert_eq!(outbound_ip_towards("not a url at all"), None);
        // A documentation address (never answered; connecting a UDP socket sends
        // nothing): on a host with a default route, a real local address.
        if let Some(ip) = outbound_ip_towards("http://192.0.2.1:7070/") {
            assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
        }
    }

    #[test]
    fn file_urls_use_the_advertised_host_or_a_connectable_ip() {
        let bound: SocketAddr = "0.0.0.0:7001".parse().unwrap();
        assert_eq!(
            file_server_url("http", None, bound),
            "http://127.0.0.1:7001"
        );
        assert_eq!(
            file_server_url("http", Some("node-3"), bound),
            "http://node-3:7001"
        );
        assert_eq!(
            file_server_url("http", Some("fe80::1"), bound),
            "http://[fe80::1]:7001"
        );
        let bound_v6: SocketAddr = "[::]:9".parse().unwrap();
        assert_eq!(file_server_url("http", None, bound_v6), "http://[::1]:9");
        let bound_lan: SocketAddr = "10.0.0.5:80".parse().unwrap();
        assert_eq!(
            file_server_url("http", None, bound_lan),
            "http://10.0.0.5:80"
        );
        assert_eq!(
            file_server_url("https", Some("node-3"), bound),
            "https://node-3:7001"
        );
    }
}

/// Free space a worker's scratch disk keeps by default: 256 MiB, the coordinator's
/// journal reserve too (a full disk turns every task into a failure; see
/// `scratch_guard`).
pub const DEFAULT_SCRATCH_RESERVE_BYTES: u64 = 256 << 20;

/// Most attempts an adaptive worker queues beyond its slots, by default.
pub const DEFAULT_MAX_PREFETCH: u32 = 256;

/// Time a worker assumes it takes to hand a result in and get the next task (a pull and a
/// report with the coordinator's group commit, on a LAN). Adaptive prefetch queues enough
/// attempts to keep every slot busy for that long.
pub const COORDINATION_ROUND_TRIP: Duration = Duration::from_millis(2);

/// How many attempts a worker pulls beyond its free slots.
///
/// Prefetching is a trade: it hides the round trip to the coordinator, which decides the
/// throughput of short tasks, but attempts queued on one worker cannot run on another
/// that frees up (the long-task imbalance Celery users know). Adaptive prefetch takes
/// the best of both: it queues `slots × round trip / recent task duration` attempts, so
/// sub-millisecond tasks are pipelined deeply and tasks longer than a round trip per
/// slot are not prefetched at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// Always this many.
    Fixed(u32),
    /// As many as cover one coordination round trip at the recent task duration, at most
    /// `max`; none before the first task finished.
    Adaptive {
        /// Upper bound.
        max: u32,
    },
}

impl Prefetch {
    /// Returns how many attempts to queue beyond `slots`, given the recent mean task
    /// duration in seconds (`None` before any task finished).
    pub fn attempts(self, slots: usize, mean_task_seconds: Option<f64>) -> usize {
        match self {
            Self::Fixed(count) => count as usize,
            Self::Adaptive { max } => {
                let Some(mean) = mean_task_seconds else {
                    return 0;
                };
                let round_trip = COORDINATION_ROUND_TRIP.as_secs_f64();
                let covering = (slots as f64 * round_trip / mean.max(1e-7)).floor();
                (covering.min(f64::from(max))) as usize
            }
        }
    }
}

impl std::str::FromStr for Prefetch {
    type Err = String;

    /// Parses `auto`, `auto:MAX` or a fixed count.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "auto" {
            return Ok(Self::Adaptive {
                max: DEFAULT_MAX_PREFETCH,
            });
        }
        if let Some(max) = text.strip_prefix("auto:") {
            let max = max.parse().map_err(|_| {
                format!("`{text}`: the maximum after `auto:` must be a whole number")
            })?;
            return Ok(Self::Adaptive { max });
        }
        text.parse()
            .map(Self::Fixed)
            .map_err(|_| format!("`{text}` is neither `auto`, `auto:MAX` nor a whole number"))
    }
}

impl std::fmt::Display for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(count) => write!(f, "{count}"),
            Self::Adaptive { max } => write!(f, "auto:{max}"),
        }
    }
}

#[cfg(test)]
mod prefetch_tests {
    use super::*;

    #[test]
    fn adaptive_prefetch_pipelines_tiny_tasks_and_not_long_ones() {
        let adaptive = Prefetch::Adaptive { max: 256 };
        assert_eq!(
            adaptive.attempts(2, None),
            0,
            "nothing known yet: pure pull"
        );
        assert_eq!(adaptive.attempts(2, Some(0.000_001)), 256, "capped");
        assert_eq!(adaptive.attempts(2, Some(0.000_1)), 40);
        assert_eq!(
            adaptive.attempts(2, Some(0.01)),
            0,
            "10 ms tasks are not prefetched"
        );
        assert_eq!(adaptive.attempts(2, Some(1.0)), 0);
        assert_eq!(Prefetch::Fixed(7).attempts(2, Some(1.0)), 7);
    }

    #[test]
    fn prefetch_parses_auto_max_and_numbers() {
        assert_eq!(
            "auto".parse(),
            Ok(Prefetch::Adaptive {
                max: DEFAULT_MAX_PREFETCH
            })
        );
        assert_eq!("auto:32".parse(), Ok(Prefetch::Adaptive { max: 32 }));
        assert_eq!("0".parse(), Ok(Prefetch::Fixed(0)));
        assert!("lots".parse::<Prefetch>().is_err());
    }
}
