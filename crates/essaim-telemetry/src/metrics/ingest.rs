//! Every metric the HTTP ingest endpoint (`essaim ingest`) exposes, `essaim_ingest_*`.
//!
//! The endpoint's promise is "200 only once every line is stored", so what an operator
//! watches is the split of requests between stored and refused, why they were refused
//! (a client's mistake or the broker's outage), and how long the broker takes to
//! acknowledge.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Labels of the per-outcome request counter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Labels of the refusal counter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Why the endpoint refused a request: the `reason` label of
/// `essaim_ingest_requests_refused_total` (bounded: one value per variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IngestRefusal {
    /// 401: the bearer token is missing or wrong.
    Unauthorized,
    /// 404: the source is not configured.
    UnknownSource,
    /// 429: every request slot is taken.
    Saturated,
    /// 415: a content type the endpoint does not take.
    ContentType,
    /// 413: the body or a line is too large.
    TooLarge,
    /// 408: the body did not arrive in time.
    BodyTimeout,
    /// 400: an empty body, a line not UTF-8, a bad key.
    BadRequest,
    /// 503: the broker did not store the records.
    BrokerUnavailable,
}

impl IngestRefusal {
    /// Returns the label value of this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::UnknownSource => "unknown_source",
            Self::Saturated => "saturated",
            Self::ContentType => "content_type",
            Self::TooLarge => "too_large",
            Self::BodyTimeout => "body_timeout",
            Self::BadRequest => "bad_request",
            Self::BrokerUnavailable => "broker_unavailable",
        }
    }
}

/// Every metric of the ingest endpoint, named `essaim_ingest_*`. Clones update the same
/// series.
#[derive(Clone, Debug)]
pub struct IngestMetrics {
    requests_total: Family<OutcomeLabels, Counter>,
    refused_total: Family<ReasonLabels, Counter>,
    /// Records stored in the broker (lines of 200 answers).
    pub records_accepted_total: Counter,
    /// Body bytes of requests answered 200.
    pub accepted_bytes_total: Counter,
    /// Time from the first publish of a request to the broker's last acknowledgement.
    pub publish_duration_seconds: Histogram,
    /// Requests being handled right now.
    pub requests_in_flight: Gauge,
    /// 1 while the broker connection is up, 0 otherwise.
    pub broker_connected: Gauge,
}

impl IngestMetrics {
    /// Creates every ingest metric and registers it in `registry` (once per registry).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests_total: Family::default(),
            refused_total: Family::default(),
            records_accepted_total: Counter::default(),
            accepted_bytes_total: Counter::default(),
            // 0.5 ms doubling 16 times: up to ~33 s, past any request timeout.
            publish_duration_seconds: Histogram::new(exponential_buckets(5e-4, 2.0, 16)),
            requests_in_flight: Gauge::default(),
            broker_connected: Gauge::default(),
        };
        registry.register(
            "essaim_ingest_requests",
            "Ingest requests answered, by outcome (accepted or refused)",
            metrics.requests_total.clone(),
        );
        registry.register(
            "essaim_ingest_requests_refused",
            "Ingest requests refused, by reason",
            metrics.refused_total.clone(),
        );
        registry.register(
            "essaim_ingest_records_accepted",
            "Records stored in the broker",
            metrics.records_accepted_total.clone(),
        );
        registry.register_with_unit(
            "essaim_ingest_accepted",
            "Body bytes of accepted requests",
            Unit::Bytes,
            metrics.accepted_bytes_total.clone(),
        );
        registry.register_with_unit(
            "essaim_ingest_publish_duration",
            "Time from a request's first publish to the broker's last acknowledgement",
            Unit::Seconds,
            metrics.publish_duration_seconds.clone(),
        );
        registry.register(
            "essaim_ingest_requests_in_flight",
            "Ingest requests being handled",
            metrics.requests_in_flight.clone(),
        );
        registry.register(
            "essaim_ingest_broker_connected",
            "1 while the broker connection is up, else 0",
            metrics.broker_connected.clone(),
        );
        metrics
    }

    /// Counts a request whose records were all stored.
    pub fn record_accepted(&self, records: u64, bytes: u64) {
        self.requests_total
            .get_or_create(&OutcomeLabels {
                outcome: "accepted",
            })
            .inc();
        self.records_accepted_total.inc_by(records);
        self.accepted_bytes_total.inc_by(bytes);
    }

    /// Counts a refused request and its reason.
    pub fn record_refused(&self, reason: IngestRefusal) {
        self.requests_total
            .get_or_create(&OutcomeLabels { outcome: "refused" })
            .inc();
        self.refused_total
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }
}
