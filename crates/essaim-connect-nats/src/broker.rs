//! Connecting to JetStream and ensuring the streams a pipeline reads and writes.
//!
//! Streams are created with file storage and one replica, whatever the server's
//! defaults: memory storage would lose everything on a restart. Ensuring is idempotent
//! (create or update), so every task of a pipeline may call it at start-up.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::NatsError;
use crate::tls::NatsTarget;

/// How long a JetStream API request or a publish ack may take by default. Long enough
/// for a server that fsyncs every write on a busy disk, short enough that a dead server
/// is noticed.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the server at `url` (over TLS when it asks for it, see [`crate::tls`])
/// and returns a JetStream context whose API requests and publish acks time out after
/// `request_timeout`.
pub async fn connect(
    url: &str,
    request_timeout: Duration,
) -> Result<jetstream::Context, NatsError> {
    let target = NatsTarget::parse(url)?;
    let options = async_nats::ConnectOptions::new().connection_timeout(request_timeout);
    let client = target
        .apply(options)?
        .connect(target.servers.as_str())
        .await
        .map_err(|source| NatsError::Connect {
            url: target.servers.clone(),
            source,
        })?;
    Ok(jetstream::ContextBuilder::new()
        .timeout(request_timeout)
        .build(client))
}

/// A stream to ensure: its name and the subjects it captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// The stream's name (no spaces, dots, `*` or `>`).
    pub name: String,
    /// The subjects it stores, wildcards allowed.
    pub subjects: Vec<String>,
}

impl StreamSpec {
    /// Returns the spec of a stream named `name` capturing `subjects`.
    pub fn new(name: &str, subjects: &[&str]) -> StreamSpec {
        StreamSpec {
            name: name.to_owned(),
            subjects: subjects
                .iter()
                .map(|subject| (*subject).to_owned())
                .collect(),
        }
    }
}

/// Creates the stream, or updates its subjects if it exists, with file storage and one
/// replica, and returns it.
pub async fn ensure_stream(
    context: &jetstream::Context,
    spec: &StreamSpec,
) -> Result<stream::Stream, NatsError> {
    let stream_error = |source: async_nats::Error| NatsError::Stream {
        stream: spec.name.clone(),
        source,
    };
    let config = stream::Config {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        storage: stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    };
    context
        .create_or_update_stream(config)
        .await
        .map_err(|error| stream_error(error.into()))?;
    context
        .get_stream(&spec.name)
        .await
        .map_err(|error| stream_error(error.into()))
}
