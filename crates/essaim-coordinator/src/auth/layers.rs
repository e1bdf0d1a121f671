//! The checks in front of the APIs: one middleware for gRPC, one for REST, both asking
//! [`Authenticator::authorize`] with the role the table gives the call and the caller's
//! credentials: its bearer token, else the verified client certificate of its connection
//! (which `essaim_tls::serve` leaves in every request's extensions).
//!
//! They run before any handler (and before the request body is read), and leave the
//! caller's [`Principal`] in the request's extensions: tonic hands them on to the
//! gRPC handlers, and a submission reads from them whether its principal may run
//! commands.

use super::{Authenticator, Credentials, grpc_method_role, rest_route_role};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use essaim_telemetry::AuthSurface;

/// Returns the token of an `authorization: Bearer <token>` header, if any.
fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
}

/// Returns what the caller of `request` presented: its bearer token, else its
/// connection's verified client certificate.
fn credentials(request: &Request) -> Credentials<'_> {
    Credentials::presented(
        bearer(request),
        essaim_tls::client_certificate(request.extensions()),
    )
}

/// Checks a gRPC call against the role of its method; a refusal is a gRPC status.
pub async fn check_grpc(
    State(authenticator): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    let (role, method) = grpc_method_role(request.uri().path());
    let action = format!("call {method}");
    match authenticator.authorize(AuthSurface::Grpc, credentials(&request), role, &action) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(refusal) => refusal.to_status().into_http::<axum::body::Body>(),
    }
}

/// Checks a REST call against the role of its route; a refusal is `{"error": "…"}`
/// with 401 or 403.
pub async fn check_rest(
    State(authenticator): State<Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let role = rest_route_role(request.method(), path);
    let action = format!("{} {path}", request.method());
    match authenticator.authorize(AuthSurface::Rest, credentials(&request), role, &action) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(refusal) => (
            refusal.http_status(),
            axum::Json(serde_json::json!({ "error": refusal.to_string() })),
        )
            .into_response(),
    }
}
