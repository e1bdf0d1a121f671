//! `essaim_auth_refusals_total`: every request refused for its credentials, by where it
//! was refused and why.
//!
//! Counted on the coordinator (gRPC and REST) and on every worker's file server. Even
//! with no attacker about, refusals have a baseline (a client with a stale token, a
//! worker of another cluster): a rise above it is what an operator watches for.
//! Both labels are closed enums, so the series are bounded by construction.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Which API refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthSurface {
    /// The coordinator's gRPC API.
    Grpc,
    /// The coordinator's REST API (and the model registry's routes beside it).
    Rest,
    /// A worker's file server.
    Files,
}

impl AuthSurface {
    /// Returns the label value exposed for this surface.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Rest => "rest",
            Self::Files => "files",
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthRefusal {
    /// No credentials were presented.
    MissingToken,
    /// The token matches no principal.
    UnknownToken,
    /// A verified client certificate whose common name names no principal.
    UnknownCertificate,
    /// A known principal without the role the call needs.
    MissingRole,
    /// A file request without the capability of the job it names.
    BadCapability,
}

impl AuthRefusal {
    const ALL: [AuthRefusal; 5] = [
        Self::MissingToken,
        Self::UnknownToken,
        Self::UnknownCertificate,
        Self::MissingRole,
        Self::BadCapability,
    ];

    /// Returns the label value exposed for this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::UnknownToken => "unknown_token",
            Self::UnknownCertificate => "unknown_certificate",
            Self::MissingRole => "missing_role",
            Self::BadCapability => "bad_capability",
        }
    }
}

// Written by hand, as for `JobOutcome`: label values are lowercase.
impl EncodeLabelValue for AuthSurface {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for AuthRefusal {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    surface: AuthSurface,
    reason: AuthRefusal,
}

/// The refusal counter. Clones update the same series.
#[derive(Clone, Debug, Default)]
pub struct AuthMetrics {
    refusals_total: Family<RefusalLabels, Counter>,
}

impl AuthMetrics {
    /// Creates the counter and registers it in `registry` (once per registry), with
    /// every reason of `surfaces` present at 0 so that `increase()` sees the first one.
    pub fn register(registry: &mut Registry, surfaces: &[AuthSurface]) -> Self {
        let metrics = Self::default();
        registry.register(
            "essaim_auth_refusals",
            "Requests refused for their credentials, by API and reason",
            metrics.refusals_total.clone(),
        );
        for &surface in surfaces {
            for reason in AuthRefusal::ALL {
                drop(
                    metrics
                        .refusals_total
                        .get_or_create(&RefusalLabels { surface, reason }),
                );
            }
        }
        metrics
    }

    /// Counts one refusal.
    pub fn record_refusal(&self, surface: AuthSurface, reason: AuthRefusal) {
        self.refusals_total
            .get_or_create(&RefusalLabels { surface, reason })
            .inc();
    }
}

/// How a reload of the principals file ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReloadOutcome {
    /// The new file is in force.
    Loaded,
    /// The file was refused (unreadable or invalid): the previous principals stay.
    Refused,
}

impl ReloadOutcome {
    /// Returns the label value exposed for this outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loaded => "loaded",
            Self::Refused => "refused",
        }
    }
}

impl EncodeLabelValue for ReloadOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    outcome: ReloadOutcome,
}

/// The coordinator's principals: how many are in force, and how reloads of their file
/// ended (a refused reload keeps the previous principals; alert on it). Clones update
/// the same series.
#[derive(Clone, Debug, Default)]
pub struct PrincipalsMetrics {
    in_force: Gauge,
    reloads_total: Family<ReloadLabels, Counter>,
}

impl PrincipalsMetrics {
    /// Creates the series and registers them in `registry` (once per registry).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "essaim_principals",
            "Principals of the principals file in force",
            metrics.in_force.clone(),
        );
        registry.register(
            "essaim_principals_reloads",
            "Reloads of the principals file, by outcome",
            metrics.reloads_total.clone(),
        );
        for outcome in [ReloadOutcome::Loaded, ReloadOutcome::Refused] {
            drop(
                metrics
                    .reloads_total
                    .get_or_create(&ReloadLabels { outcome }),
            );
        }
        metrics
    }

    /// Records the number of principals in force.
    pub fn set_in_force(&self, count: usize) {
        self.in_force.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts one reload.
    pub fn record_reload(&self, outcome: ReloadOutcome) {
        self.reloads_total
            .get_or_create(&ReloadLabels { outcome })
            .inc();
    }
}
