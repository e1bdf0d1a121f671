//! W3C trace context across processes, so that one trace spans the client, the
//! coordinator, the workers and the shuffle fetches between workers.
//!
//! The context travels as the `traceparent` (and `tracestate`) of the W3C Trace Context
//! recommendation, read and written by OpenTelemetry's `TraceContextPropagator`, never
//! parsed here:
//!
//! - in gRPC metadata and HTTP headers: a client injects the context of its current span
//!   ([`inject_current_into_headers`], [`current_trace_headers`]); every server wraps a
//!   request in a span whose parent is the caller's ([`trace_requests`]);
//! - through the coordinator's queue: a job's tasks run long after its submission
//!   returned, on other processes, so the coordinator keeps the context of the
//!   submission ([`current_traceparent`]) and hands it to each grant, whose attempt span
//!   takes it as parent ([`set_remote_parent`]);
//! - into a command line: `essaim submit` reads the `TRACEPARENT` environment variable
//!   (the OpenTelemetry convention for environment carriers), so a script's trace
//!   continues into the cluster.
//!
//! Spans carry an OpenTelemetry context only when they are exported (the `otlp` feature
//! and an endpoint, see `tracing_setup.rs`). Without an exporter every function here does
//! nothing: a process that exports nothing propagates nothing, so every process on a
//! trace's path must export for the trace to be whole.
//!
//! A request without an incoming context gets its span at DEBUG level only: workers'
//! heartbeats and pulls, many per second, would otherwise each export a root trace.

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The W3C header (and gRPC metadata key) that carries the parent span.
pub const TRACEPARENT: &str = "traceparent";

/// The environment variable a command line reads its parent context from.
pub const TRACEPARENT_ENV: &str = "TRACEPARENT";

/// Returns `router` with every request wrapped in a server span whose parent is the
/// context of the request's `traceparent` header: gRPC calls (`/essaim.v1.…/Method`,
/// named after the method) and plain HTTP requests alike. Call it last, once every
/// route is merged, since a layer only wraps the routes added before it.
pub fn trace_requests(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(trace_request))
}

async fn trace_request(request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let is_grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    // A gRPC path names the method, a bounded set; an HTTP path may hold ids, so it is
    // an attribute and the span is named after the HTTP method alone.
    let span_name = if is_grpc {
        path.trim_start_matches('/').to_string()
    } else {
        format!("HTTP {method}")
    };
    let has_parent = request.headers().contains_key(TRACEPARENT);
    let span = if has_parent {
        tracing::info_span!(
            "request",
            otel.name = %span_name,
            otel.kind = "server",
            http.request.method = %method,
            url.path = %path,
        )
    } else {
        tracing::debug_span!(
            "request",
            otel.name = %span_name,
            otel.kind = "server",
            http.request.method = %method,
            url.path = %path,
        )
    };
    if has_parent {
        set_parent_from_headers(&span, request.headers());
    }
    next.run(request).instrument(span).await
}

#[cfg(feature = "otlp")]
mod propagation {
    //! The OpenTelemetry side: carriers for headers and for one `traceparent` value.

    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// HTTP headers as a carrier.
    struct Headers<'a>(&'a mut HeaderMap);

    impl Injector for Headers<'_> {
        fn set(&mut self, key: &str, value: String) {
            // The propagator writes only valid header names and values; anything else is
            // dropped rather than failing the request it rides on, and so is an empty
            // `tracestate`, which says nothing.
            if value.is_empty() {
                return;
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(key.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                self.0.insert(name, value);
            }
        }
    }

    struct ReadHeaders<'a>(&'a HeaderMap);

    impl Extractor for ReadHeaders<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|value| value.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(HeaderName::as_str).collect()
        }
    }

    /// A carrier holding nothing but a `traceparent` value.
    #[derive(Default)]
    struct OneTraceParent(Option<String>);

    impl Injector for OneTraceParent {
        fn set(&mut self, key: &str, value: String) {
            if key == super::TRACEPARENT {
                self.0 = Some(value);
            }
        }
    }

    impl Extractor for OneTraceParent {
        fn get(&self, key: &str) -> Option<&str> {
            (key == super::TRACEPARENT)
                .then_some(self.0.as_deref())
                .flatten()
        }

        fn keys(&self) -> Vec<&str> {
            vec![super::TRACEPARENT]
        }
    }

    /// Returns the OpenTelemetry context of `span` when it belongs to a trace.
    fn valid_context(span: &tracing::Span) -> Option<opentelemetry::Context> {
        let context = span.context();
        context.span().span_context().is_valid().then_some(context)
    }

    pub(super) fn inject_current_into_headers(headers: &mut HeaderMap) {
        if let Some(context) = valid_context(&tracing::Span::current()) {
            TraceContextPropagator::new().inject_context(&context, &mut Headers(headers));
        }
    }

    pub(super) fn current_trace_headers() -> Vec<(String, String)> {
        let Some(context) = valid_context(&tracing::Span::current()) else {
            return Vec::new();
        };
        let mut pairs = std::collections::HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut pairs);
        // An empty `tracestate` says nothing: it is left out.
        let mut pairs: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .collect();
        pairs.sort();
        pairs
    }

    pub(super) fn current_traceparent() -> Option<String> {
        let context = valid_context(&tracing::Span::current())?;
        let mut carrier = OneTraceParent::default();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.0
    }

    pub(super) fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
        set_parent(
            span,
            TraceContextPropagator::new().extract(&ReadHeaders(headers)),
        );
    }

    pub(super) fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
        let carrier = OneTraceParent(Some(traceparent.to_string()));
        set_parent(span, TraceContextPropagator::new().extract(&carrier));
    }

    /// Makes `parent` the parent of `span` if it names a trace (a malformed header
    /// extracts to an empty context, which is ignored: the span stays a root).
    fn set_parent(span: &tracing::Span, parent: opentelemetry::Context) {
        if !parent.span().span_context().is_valid() {
            return;
        }
        // Fails only without the OpenTelemetry layer, i.e. when nothing is exported.
        let _no_exporter = span.set_parent(parent);
    }
}

#[cfg(not(feature = "otlp"))]
mod propagation {
    //! Without the `otlp` feature no span carries a context: nothing to propagate.

    use axum::http::HeaderMap;

    pub(super) fn inject_current_into_headers(_headers: &mut HeaderMap) {}

    pub(super) fn current_trace_headers() -> Vec<(String, String)> {
        Vec::new()
    }

    pub(super) fn current_traceparent() -> Option<String> {
        None
    }

    pub(super) fn set_parent_from_headers(_span: &tracing::Span, _headers: &HeaderMap) {}

    pub(super) fn set_remote_parent(_span: &tracing::Span, _traceparent: &str) {}
}

/// Adds the current span's context to `headers` (an outgoing HTTP request's), if the
/// span belongs to an exported trace.
pub fn inject_current_into_headers(headers: &mut HeaderMap) {
    propagation::inject_current_into_headers(headers);
}

/// Returns the current span's context as header name and value pairs (`traceparent`,
/// and `tracestate` when there is one), for carriers that are not an HTTP header map
/// (gRPC metadata); empty when the span belongs to no exported trace.
pub fn current_trace_headers() -> Vec<(String, String)> {
    propagation::current_trace_headers()
}

/// Returns the `traceparent` of the current span, if it belongs to an exported trace:
/// what a job keeps so that its tasks' spans join the trace of its submission.
pub fn current_traceparent() -> Option<String> {
    propagation::current_traceparent()
}

/// Makes the context of `headers`' `traceparent` the parent of `span`. Call it before
/// the span is first entered.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) {
    propagation::set_parent_from_headers(span, headers);
}

/// Makes the context of `traceparent` the parent of `span` (nothing happens for `None`
/// or a malformed value). Call it before the span is first entered.
pub fn set_remote_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        propagation::set_remote_parent(span, traceparent);
    }
}

/// Makes the `TRACEPARENT` environment variable, when set, the parent of `span`: how a
/// command line joins the trace of the script that runs it.
pub fn set_parent_from_environment(span: &tracing::Span) {
    let traceparent = std::env::var(TRACEPARENT_ENV).ok();
    set_remote_parent(span, traceparent.as_deref());
}

#[cfg(all(test, feature = "otlp"))]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CLIENT_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Runs `body` under a subscriber with the OpenTelemetry layer (nothing exported).
    fn with_otel_layer(body: impl FnOnce()) {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, body);
    }

    #[test]
    fn a_span_with_a_remote_parent_continues_its_trace() {
        with_otel_layer(|| {
            let span = tracing::info_span!("attempt");
            set_remote_parent(&span, Some(CLIENT_PARENT));
            let _entered = span.enter();
            let traceparent = current_traceparent().expect("the span is in a trace");
            assert!(
                traceparent.starts_with(&format!("00-{CLIENT_TRACE}-")),
                "{traceparent}"
            );
            assert_ne!(traceparent, CLIENT_PARENT, "the child has its own span id");

            let mut headers = HeaderMap::new();
            inject_current_into_headers(&mut headers);
            assert_eq!(headers[TRACEPARENT], traceparent.as_str());
            let pairs = current_trace_headers();
            assert_eq!(pairs, vec![(TRACEPARENT.to_string(), traceparent)]);
        });
    }

    #[test]
    fn headers_parent_a_server_span() {
        with_otel_layer(|| {
            let mut headers = HeaderMap::new();
            headers.insert(TRACEPARENT, CLIENT_PARENT.parse().expect("a header value"));
            let span = tracing::info_span!("request");
            set_parent_from_headers(&span, &headers);
            let _entered = span.enter();
            let traceparent = current_traceparent().expect("the span is in a trace");
            assert!(traceparent.contains(CLIENT_TRACE), "{traceparent}");
        });
    }

    #[test]
    fn a_malformed_or_missing_parent_leaves_a_new_root() {
        with_otel_layer(|| {
            for parent in [None, Some("00-not-a-trace-01"), Some("")] {
                let span = tracing::info_span!("attempt");
                set_remote_parent(&span, parent);
                let _entered = span.enter();
                let traceparent = current_traceparent().expect("a root span has a trace");
                assert!(!traceparent.contains(CLIENT_TRACE), "{parent:?}");
            }
        });
    }

    #[test]
    fn without_the_layer_nothing_is_propagated() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("attempt");
            set_remote_parent(&span, Some(CLIENT_PARENT));
            let _entered = span.enter();
            assert_eq!(current_traceparent(), None);
            assert!(current_trace_headers().is_empty());
        });
    }
}
