//! An authenticated client of the coordinator, shared by workers and the CLI.
//!
//! Every request carries `authorization: Bearer <token>` when a token is configured, and
//! the caller's W3C `traceparent` when its span is traced. Connect
//! errors are turned into one message that says which address could not be reached, since
//! "transport error" alone tells a user nothing.
//!
//! An `https://` URL is reached over TLS, verifying the coordinator's certificate with
//! the caller's [`ClientTrust`]; a failed handshake is its own error
//! ([`ClientError::Tls`]), which no retry fixes.

use crate::v1::coordinator_client;
use crate::{AUTHORIZATION_METADATA, MAX_MESSAGE_BYTES};
use essaim_tls::ClientTrust;
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Adds the cluster token to every request, and the caller's trace context
/// (`traceparent`) when the calling span belongs to an exported trace: the interceptor
/// runs in the caller's task, so the current span is the caller's.
#[derive(Clone)]
pub struct TokenInterceptor {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert(AUTHORIZATION_METADATA, header.clone());
        }
        for (key, value) in essaim_telemetry::trace_context::current_trace_headers() {
            // The propagator writes lowercase ASCII names and values; anything else is
            // left out rather than failing the call.
            if let (Ok(key), Ok(value)) = (
                tonic::metadata::AsciiMetadataKey::from_bytes(key.as_bytes()),
                value.parse(),
            ) {
                request.metadata_mut().insert(key, value);
            }
        }
        Ok(request)
    }
}

/// A channel that authenticates every call.
pub type AuthenticatedChannel = InterceptedService<Channel, TokenInterceptor>;

/// The coordinator client as everyone uses it.
pub type CoordinatorClient = coordinator_client::CoordinatorClient<AuthenticatedChannel>;

/// Why a client could not be built or connected.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL does not parse.
    #[error("invalid coordinator URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The token cannot be sent as a header.
    #[error("the cluster token must be printable ASCII")]
    InvalidToken,
    /// Nothing answers at the address.
    #[error(
        "cannot reach the coordinator at {url}: {reason} (is it running? see `essaim coordinator --help`)"
    )]
    Unreachable {
        /// The URL given.
        url: String,
        /// The transport's words.
        reason: String,
    },
    /// The TLS handshake failed: an untrusted certificate, or one side without TLS.
    #[error("cannot connect to the coordinator at {url}: {failure}")]
    Tls {
        /// The URL given.
        url: String,
        /// What failed, and what to fix.
        failure: essaim_tls::HandshakeFailure,
    },
}

/// Connects to the coordinator at `url` (e.g. `http://127.0.0.1:7070`), failing after
/// `connect_timeout` if nothing answers; an `https://` URL trusts the system's roots.
pub async fn connect(
    url: &str,
    token: Option<&str>,
    connect_timeout: Duration,
) -> Result<CoordinatorClient, ClientError> {
    connect_trusting(url, token, connect_timeout, &ClientTrust::system()).await
}

/// Connects to the coordinator at `url` as [`connect`] does, verifying an `https://`
/// coordinator's certificate with `trust`.
pub async fn connect_trusting(
    url: &str,
    token: Option<&str>,
    connect_timeout: Duration,
    trust: &ClientTrust,
) -> Result<CoordinatorClient, ClientError> {
    let invalid = |error: tonic::transport::Error| ClientError::InvalidUrl {
        url: url.to_string(),
        reason: error.to_string(),
    };
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|error| ClientError::InvalidUrl {
            url: url.to_string(),
            reason: error.to_string(),
        })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    if endpoint.uri().scheme_str() == Some("https") {
        endpoint = endpoint.tls_config(tls_config(trust)).map_err(invalid)?;
    }
    let header = match token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse()
                .map_err(|_| ClientError::InvalidToken)?,
        ),
        None => None,
    };
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| match essaim_tls::handshake_failure(&error) {
            Some(failure) => ClientError::Tls {
                url: url.to_string(),
                failure,
            },
            None => ClientError::Unreachable {
                url: url.to_string(),
                reason: essaim_core::error_chain::error_chain(&error),
            },
        })?;
    Ok(coordinator_client::CoordinatorClient::with_interceptor(
        channel,
        TokenInterceptor { header },
    )
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// tonic's TLS settings for `trust`: its CA file's certificates, else the system's roots;
/// and the client's own certificate for mutual TLS, when it has one.
fn tls_config(trust: &ClientTrust) -> ClientTlsConfig {
    let config = ClientTlsConfig::new();
    let config = match trust.ca_pem() {
        Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
        None => config.with_native_roots(),
    };
    match trust.identity_pem() {
        Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
        None => config,
    }
}
