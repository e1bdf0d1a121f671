//! Connecting to JetStream and ensuring the streams a pipeline reads and writes.
//!
//! Streams are created with file storage, whatever the server's defaults: memory storage
//! would lose everything on a restart. They are replicated as widely as the server
//! allows, up to [`MAX_REPLICAS`]: a stream of a clustered JetStream survives the loss
//! of one server, and a single server (which refuses replicas) gets one. An existing
//! stream keeps its replica count (an operator may have changed it). Ensuring is
//! idempotent (create, or update an existing stream's subjects), so every task of a
//! pipeline may call it at start-up, all at once.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::NatsError;
use crate::tls::NatsTarget;

/// The most replicas a stream is created with: 3, so that a cluster keeps a quorum of
/// the stream's copies through the loss of any one server.
pub const MAX_REPLICAS: usize = 3;

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
        .connect(target.server_addrs()?)
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

/// Creates the stream (file storage, replicated as the server allows: see the module
/// doc), or updates its subjects if it exists, and returns it.
pub async fn ensure_stream(
    context: &jetstream::Context,
    spec: &StreamSpec,
) -> Result<stream::Stream, NatsError> {
    let stream_error = |source: async_nats::Error| NatsError::Stream {
        stream: spec.name.clone(),
        source,
    };
    let config = |num_replicas| stream::Config {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        storage: stream::StorageType::File,
        num_replicas,
        ..Default::default()
    };
    if let Ok(mut existing) = context.get_stream(&spec.name).await {
        // Its replica count is kept, never guessed: an update with fewer replicas would
        // scale a replicated stream down.
        let replicas = existing
            .info()
            .await
            .map_err(|error| stream_error(error.into()))?
            .config
            .num_replicas
            .max(1);
        context
            .update_stream(config(replicas))
            .await
            .map_err(|error| stream_error(error.into()))?;
    } else {
        // Created, never updated here: units start together and ensure the same stream
        // at once, and an update by one whose replicated creation was refused (it raced
        // another's) would scale down the stream the other had just made.
        let mut replicas = MAX_REPLICAS;
        loop {
            match context.create_stream(config(replicas)).await {
                Ok(_) => break,
                Err(error) if made_meanwhile(&error) => break,
                Err(error) if replicas > 1 && refuses_replicas(&error) => replicas = 1,
                Err(error) => return Err(stream_error(error.into())),
            }
        }
    }
    context
        .get_stream(&spec.name)
        .await
        .map_err(|error| stream_error(error.into()))
}

/// Tells whether the stream exists already, with other settings (another caller made
/// it between our look-up and our creation).
fn made_meanwhile(error: &async_nats::jetstream::context::CreateStreamError) -> bool {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::CreateStreamErrorKind;
    matches!(error.kind(), CreateStreamErrorKind::JetStream(error)
        if error.error_code() == ErrorCode::STREAM_NAME_EXIST)
}

/// Tells whether the server refused a stream for its replica count: a single server
/// (not clustered), or a cluster with fewer servers than replicas.
fn refuses_replicas(error: &async_nats::jetstream::context::CreateStreamError) -> bool {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::CreateStreamErrorKind;
    match error.kind() {
        CreateStreamErrorKind::JetStream(error) => [
            ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED,
            ErrorCode::INSUFFICIENT_RESOURCES,
            ErrorCode::CLUSTER_NO_PEERS,
        ]
        .contains(&error.error_code()),
        _ => false,
    }
}
