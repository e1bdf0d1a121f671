//! The front's metrics, named `essaim_model_front_<name>[_total]`.
//!
//! Labels are bounded by configuration: `replica` is a number below R; never a model
//! input.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One replica.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReplicaLabels {
    /// The replica number.
    pub replica: String,
}

/// The front's metrics.
#[derive(Debug, Clone, Default)]
pub struct FrontMetrics {
    /// Requests sent to each replica (retries included).
    pub requests: Family<ReplicaLabels, Counter>,
    /// Requests to each replica that failed at the connection level, or that the
    /// replica answered with a server error (5xx).
    pub errors: Family<ReplicaLabels, Counter>,
    /// Requests sent again to another replica after a connection-level failure.
    pub retries: Counter,
    /// Requests no replica answered (none ready, or the retry failed too).
    pub unanswered: Counter,
    /// Replicas registered and heard from recently.
    pub replicas: Gauge,
    /// Replicas receiving requests.
    pub ready_replicas: Gauge,
}

impl FrontMetrics {
    /// Returns unregistered metrics at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a request sent to `replica`.
    pub fn count_request(&self, replica: u32) {
        self.requests.get_or_create(&labels(replica)).inc();
    }

    /// Counts an error of `replica`.
    pub fn count_error(&self, replica: u32) {
        self.errors.get_or_create(&labels(replica)).inc();
    }

    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let front = registry.sub_registry_with_prefix("essaim_model_front");
        front.register(
            "requests",
            "Requests sent to each replica, retries included",
            self.requests.clone(),
        );
        front.register(
            "errors",
            "Requests to each replica that failed at the connection level or got a 5xx",
            self.errors.clone(),
        );
        front.register(
            "retries",
            "Requests sent again to another replica after a connection-level failure",
            self.retries.clone(),
        );
        front.register(
            "unanswered",
            "Requests no replica answered",
            self.unanswered.clone(),
        );
        front.register(
            "replicas",
            "Replicas registered and heard from recently",
            self.replicas.clone(),
        );
        front.register(
            "ready_replicas",
            "Replicas receiving requests",
            self.ready_replicas.clone(),
        );
    }
}

fn labels(replica: u32) -> ReplicaLabels {
    ReplicaLabels {
        replica: replica.to_string(),
    }
}
