//! The process-wide log subscriber, installed the same way by every essaim binary, and
//! the optional export of spans over OpenTelemetry (OTLP).
//!
//! Logs go to stderr so that stdout stays free for command output (e.g. `essaim job
//! status --json`). The filter comes from `RUST_LOG`, defaulting to `info`; it filters
//! log lines, not exported spans, which are exported at INFO and above.
//!
//! Spans are exported only when an OTLP endpoint is configured (and the crate is built
//! with the `otlp` feature): the worker's `attempt` span, with its `job`, `task`,
//! `attempt` and `correlation_id` fields and the log lines inside it as span events,
//! reaches any OTLP collector (Jaeger, Tempo, …) over gRPC, under the service name of
//! the process (`essaim-coordinator`, `essaim-worker`). Without an endpoint no exporter
//! exists and no layer is installed, so tracing costs what it cost before.
//!
//! Spans are exported in batches from a background thread; the [`TracingGuard`] flushes
//! what is left when the process stops, so that the last attempts are not lost.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How the process-wide subscriber is set up.
#[derive(Debug, Clone)]
pub struct TracingOptions {
    /// JSON lines when true, human-readable text otherwise.
    pub json: bool,
    /// The level when `RUST_LOG` is not set.
    pub default_level: LevelFilter,
    /// Where to export spans; `None` exports nothing.
    pub otlp: Option<OtlpOptions>,
}

/// Where and under which name spans are exported.
#[derive(Debug, Clone)]
pub struct OtlpOptions {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317` (what
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` holds).
    pub endpoint: String,
    /// The `service.name` resource attribute, e.g. `essaim-worker`.
    pub service_name: String,
}

/// Why the subscriber could not be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    /// An endpoint was given to a build without the `otlp` feature: the operator asked
    /// for spans that would silently never arrive.
    #[error(
        "cannot export spans to `{endpoint}`: this essaim was built without the `otlp` feature"
    )]
    OtlpNotBuiltIn {
        /// The endpoint that was asked for.
        endpoint: String,
    },
    /// The exporter refused its configuration (e.g. an endpoint that is not a URL).
    #[cfg(feature = "otlp")]
    #[error("failed to set up the OTLP span exporter for `{endpoint}`")]
    OtlpExporter {
        /// The endpoint that was asked for.
        endpoint: String,
        /// What the exporter said.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// Keeps the span exporter running; dropping it exports the spans still buffered and
/// stops the exporter. Drop it while the async runtime still runs (the gRPC client
/// needs it) and before the process exits.
#[must_use = "dropping the guard stops the span export"]
#[derive(Default)]
pub struct TracingGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "failed to export the last spans");
        }
    }
}

/// Installs the global tracing subscriber: JSON lines when `json` is true, human-readable
/// text otherwise, filtered by `RUST_LOG` (default `info`).
///
/// Safe to call more than once: only the first call installs a subscriber, later calls
/// (for example from several tests in one binary) do nothing.
pub fn init_tracing(json: bool) {
    init_tracing_with_default(json, LevelFilter::INFO);
}

/// Like [`init_tracing`], with another level when `RUST_LOG` is not set (demos run quieter).
pub fn init_tracing_with_default(json: bool, default_level: LevelFilter) {
    let options = TracingOptions {
        json,
        default_level,
        otlp: None,
    };
    // Without an exporter there is nothing to refuse and nothing to flush.
    let _nothing_to_flush = install_tracing(options);
}

/// Installs the global tracing subscriber described by `options`; see the module doc.
///
/// With an OTLP endpoint, call it inside a Tokio runtime (the gRPC client is created
/// on it) and keep the returned guard until shutdown. Like [`init_tracing`], it leaves
/// an already installed subscriber in place.
pub fn install_tracing(options: TracingOptions) -> Result<TracingGuard, TracingError> {
    // Lossy: an invalid directive in RUST_LOG is skipped rather than preventing the
    // process from starting or silencing all logs.
    let filter = EnvFilter::builder()
        .with_default_directive(options.default_level.into())
        .from_env_lossy();
    // Colours only on a terminal: in a file, `docker logs` or a log shipper, escape
    // sequences are noise.
    let fmt_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt_layer = if options.json {
        fmt_layer.json().boxed()
    } else {
        fmt_layer.boxed()
    };
    // The level filters the log lines only: the spans a trace needs (a quiet command's,
    // say) are exported at INFO whatever the log level (see `otlp_export`).
    let subscriber = tracing_subscriber::registry().with(fmt_layer.with_filter(filter));
    let Some(otlp) = options.otlp else {
        // The error only says a global subscriber already exists, which is the case
        // this function promises to tolerate.
        let _already_installed = subscriber.try_init();
        return Ok(TracingGuard::default());
    };
    #[cfg(feature = "otlp")]
    {
        let (layer, provider) = otlp_export::layer(&otlp)?;
        let _already_installed = subscriber.with(layer).try_init();
        Ok(TracingGuard {
            provider: Some(provider),
        })
    }
    #[cfg(not(feature = "otlp"))]
    {
        drop(subscriber);
        Err(TracingError::OtlpNotBuiltIn {
            endpoint: otlp.endpoint,
        })
    }
}

#[cfg(feature = "otlp")]
mod otlp_export {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::registry::LookupSpan;

    use super::{OtlpOptions, TracingError};

    /// Returns the layer that turns spans into OpenTelemetry spans, and the provider
    /// that batches and exports them.
    pub(super) fn layer<S>(
        otlp: &OtlpOptions,
    ) -> Result<(impl Layer<S>, SdkTracerProvider), TracingError>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(otlp.endpoint.clone())
            .build()
            .map_err(|source| TracingError::OtlpExporter {
                endpoint: otlp.endpoint.clone(),
                source,
            })?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(otlp.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("essaim");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(not_the_exporter_itself());
        Ok((layer, provider))
    }

    /// Exports spans at INFO and above, whatever the log level: a command that logs only
    /// warnings still has its span in the trace, and DEBUG spans (the requests that
    /// carry no trace context) stay out. Leaves out the crates the exporter itself runs
    /// on: their spans would be exported, and exporting them would make more.
    fn not_the_exporter_itself() -> Targets {
        Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("opentelemetry", LevelFilter::OFF)
            .with_target("opentelemetry_sdk", LevelFilter::OFF)
            .with_target("opentelemetry_otlp", LevelFilter::OFF)
            .with_target("tonic", LevelFilter::OFF)
            .with_target("tower", LevelFilter::OFF)
            .with_target("h2", LevelFilter::OFF)
            .with_target("hyper", LevelFilter::OFF)
            .with_target("hyper_util", LevelFilter::OFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_call_installs_the_subscriber_and_later_calls_keep_it() {
        init_tracing(false);
        assert!(
            tracing::dispatcher::has_been_set(),
            "init_tracing installed no global subscriber"
        );
        // A second call (another test, a demo inside a command) must neither fail nor
        // replace the subscriber: errors are still let through.
        let second = install_tracing(TracingOptions {
            json: true,
            default_level: LevelFilter::OFF,
            otlp: None,
        });
        assert!(second.is_ok(), "a second installation was refused");
        assert!(tracing::dispatcher::has_been_set());
        assert!(
            tracing::enabled!(tracing::Level::ERROR),
            "the second call replaced the subscriber with its level `off`"
        );
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn an_endpoint_without_the_otlp_feature_is_refused_not_ignored() {
        let options = TracingOptions {
            json: false,
            default_level: LevelFilter::INFO,
            otlp: Some(OtlpOptions {
                endpoint: "http://127.0.0.1:4317".into(),
                service_name: "essaim-test".into(),
            }),
        };
        let refused = install_tracing(options).err();
        assert!(
            matches!(refused, Some(TracingError::OtlpNotBuiltIn { .. })),
            "{refused:?}"
        );
    }

    #[cfg(feature = "otlp")]
    #[tokio::test]
    async fn an_endpoint_that_is_not_a_url_is_refused() {
        let options = TracingOptions {
            json: false,
            default_level: LevelFilter::INFO,
            otlp: Some(OtlpOptions {
                endpoint: "not a url".into(),
                service_name: "essaim-test".into(),
            }),
        };
        let refused = install_tracing(options).err();
        assert!(
            matches!(refused, Some(TracingError::OtlpExporter { .. })),
            "{refused:?}"
        );
    }
}
