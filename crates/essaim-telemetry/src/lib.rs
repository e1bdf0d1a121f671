//! Observability for every essaim process: this crate names every metric, sets up
//! logging, and serves the `/metrics`, `/healthz` and `/readyz` endpoints.
//!
//! It exists so that the metrics of the runtime — the coordinator's and the worker's
//! names, label sets and bucket layouts — live in one place that a reviewer can read top
//! to bottom, and so that every process serves them the same way. The rule for the rest:
//! a task kind that plugs into the worker (the streaming runtime) defines its own metrics
//! in one `metrics` module of its crate, under the same naming rules, and registers them
//! through the worker's `Executor::register_metrics` hook; the coordinator and the worker
//! only *update* the metrics defined here.
//!
//! | file | concept |
//! |---|---|
//! | `metrics/` | [`CoordinatorMetrics`] and [`WorkerMetrics`]: every metric of the runtime, with its name; [`ProcessMetrics`]: `process_*` and `essaim_build_info` |
//! | `disk.rs` | [`disk::free_bytes`]: the free space of a file system, behind the journal's and the scratch directory's reserves |
//! | `health.rs` | [`Health`]: the readiness flag and why the process is not ready |
//! | `http.rs` | [`router`] and [`serve_http`]: the scrape and probe endpoints |
//! | `classic_text.rs` | the classic Prometheus text format, for scrapers that do not ask for OpenMetrics |
//! | `slo/` | service-level objectives as configuration, turned into Prometheus recording rules and burn-rate alerts |
//! | `trace_context.rs` | W3C trace context across processes: request spans parented by `traceparent`, injection into outgoing calls |
//! | `tracing_setup.rs` | [`install_tracing`]: the process-wide log subscriber, optional OTLP span export |

#![warn(missing_docs)]

mod classic_text;
pub mod disk;
mod health;
mod http;
mod metrics;
pub mod slo;
pub mod trace_context;
mod tracing_setup;

pub use classic_text::CLASSIC_TEXT_CONTENT_TYPE;
pub use health::Health;
pub use http::{OPENMETRICS_CONTENT_TYPE, router, serve_http};
pub use metrics::{
    AdmissionMetrics, AuthMetrics, AuthRefusal, AuthSurface, BuildInfo, CoordinatorMetrics,
    IngestMetrics, IngestRefusal, JOB_DURATION_BUCKETS_SECONDS, JobOutcome, LeadershipMetrics,
    MAX_JOBS_WITH_QUEUE_SERIES, MAX_PIPELINES_WITH_SERIES, MAX_TASK_KINDS, PrincipalsMetrics,
    ProcessMetrics, QueueGaugeValues, ReloadOutcome, StreamBoardMetrics, WorkerMetrics,
};
pub use tracing_setup::{
    OtlpOptions, TracingError, TracingGuard, TracingOptions, init_tracing,
    init_tracing_with_default, install_tracing,
};

/// Re-exported so callers build the [`Registry`](prometheus_client::registry::Registry)
/// without naming the dependency themselves (and so its version stays in one place).
pub use prometheus_client;
