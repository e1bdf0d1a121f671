//! The Rust client of the registry's HTTP API: what `essaim models` and `essaim train`
//! use, and what a program that trains its own models calls to register them.
//!
//! Artifacts are streamed both ways (memory stays bounded by the chunk size) and every
//! download is hashed as it arrives: bytes that do not match the version's SHA-256 are
//! refused with [`ClientError::Corrupt`] and never left at the destination.

use crate::http::{ACTOR_HEADER, AliasRequest, PromoteRequest, SHA256_HEADER};
use crate::names::{AliasName, ModelName, ModelRef};
use crate::record::{
    AliasAtTime, ArtifactRef, AuditEntry, ModelSummary, NewVersion, VersionRecord,
};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

mod follow;
mod usage;

pub use follow::FetchedVersion;

/// Longest a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a call without an artifact may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a registry call failed; [`ClientError::status`] says whose fault it was.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL does not parse or is not `http://` or `https://`.
    #[error("invalid registry URL `{url}`: expected http://HOST:PORT or https://HOST:PORT")]
    InvalidUrl {
        /// The URL given.
        url: String,
    },
    /// The token or actor cannot be sent as a header.
    #[error("the {what} must be printable ASCII")]
    InvalidHeader {
        /// Which header.
        what: &'static str,
    },
    /// Nothing answers, or the connection broke.
    #[error("cannot reach the registry at {url}: {reason}")]
    Unreachable {
        /// The server's URL.
        url: String,
        /// The transport's words.
        reason: String,
    },
    /// The server took too long.
    #[error("the registry at {url} did not answer {path} within {} s", CALL_TIMEOUT.as_secs())]
    TimedOut {
        /// The server's URL.
        url: String,
        /// The path.
        path: String,
    },
    /// The server refused or failed the request.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's words.
        message: String,
    },
    /// The answer is not what this version expects.
    #[error("the registry's answer to {path} is not what this essaim expects: {reason}")]
    Decode {
        /// The path.
        path: String,
        /// The decoder's words.
        reason: String,
    },
    /// Downloaded bytes do not hash to the version's SHA-256.
    #[error("artifact {expected} is corrupt: the bytes received hash to {actual}; refusing them")]
    Corrupt {
        /// The SHA-256 the version names.
        expected: String,
        /// The SHA-256 of the bytes received.
        actual: String,
    },
    /// A local file could not be read or written.
    #[error("failed to access `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// Returns the HTTP status of a refusal (`None` for failures on this side).
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

type RequestBody = BoxBody<Bytes, std::io::Error>;

/// The body of a JSON request: `body` serialised, or nothing.
fn json_body(body: Option<&impl Serialize>) -> RequestBody {
    let bytes = match body {
        Some(body) => serde_json::to_vec(body).expect("requests always serialise"),
        None => Vec::new(),
    };
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

/// A connection to one registry (a coordinator, or a registry process).
#[derive(Clone, Debug)]
pub struct RegistryClient {
    base_url: String,
    authorization: Option<String>,
    actor: String,
    client: Client<essaim_tls::HttpsConnector, RequestBody>,
}

fn printable(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| (0x20..0x7f).contains(&byte))
}

impl RegistryClient {
    /// Prepares calls to the registry at `url` with the cluster `token`, recording
    /// changes as made by `actor`.
    pub fn new(url: &str, token: Option<&str>, actor: &str) -> Result<Self, ClientError> {
        Self::new_trusting(url, token, actor, &essaim_tls::ClientTrust::system())
    }

    /// Prepares calls as [`Self::new`] does, verifying an `https://` registry's
    /// certificate with `trust`.
    pub fn new_trusting(
        url: &str,
        token: Option<&str>,
        actor: &str,
        trust: &essaim_tls::ClientTrust,
    ) -> Result<Self, ClientError> {
        let base_url = url.trim_end_matches('/').to_string();
        let invalid = || ClientError::InvalidUrl {
            url: url.to_string(),
        };
        let uri: http::Uri = base_url.parse().map_err(|_| invalid())?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(invalid());
        }
        let authorization = match token {
            Some(token) if printable(token) => Some(format!("Bearer {token}")),
            Some(_) => return Err(ClientError::InvalidHeader { what: "token" }),
            None => None,
        };
        if !printable(actor) {
            return Err(ClientError::InvalidHeader { what: "actor" });
        }
        let connector = trust.http_connector(CONNECT_TIMEOUT);
        Ok(Self {
            base_url,
            authorization,
            actor: actor.to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Returns the URL of the registry's server, as given (without a trailing `/`).
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// Sends one request; returns the response of a 2xx answer.
    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: RequestBody,
        extra: Option<(&'static str, String)>,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let url = format!("{}{}{path}", self.base_url, crate::http::PREFIX);
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(ACTOR_HEADER, &self.actor)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, authorization);
        }
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        let request = request
            .body(body)
            .map_err(|_| ClientError::InvalidUrl { url: url.clone() })?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| self.unreachable(&error))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| self.unreachable(&error))?
            .to_bytes();
        Err(ClientError::Refused {
            status,
            message: error_message(status, &body),
        })
    }

    fn unreachable(&self, error: &(dyn std::error::Error + 'static)) -> ClientError {
        ClientError::Unreachable {
            url: self.base_url.clone(),
            // A handshake failure says what to fix; the raw chain does not.
            reason: match essaim_tls::handshake_failure(error) {
                Some(failure) => failure.to_string(),
                None => essaim_core::error_chain::error_chain(error),
            },
        }
    }

    /// Sends a JSON request and decodes the JSON answer, within [`CALL_TIMEOUT`].
    async fn call<T: DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let exchange = async {
            let response = self.send(method, path, json_body(body), None).await?;
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|error| self.unreachable(&error))?
                .to_bytes();
            serde_json::from_slice(&bytes).map_err(|error| ClientError::Decode {
                path: path.to_string(),
                reason: error.to_string(),
            })
        };
        self.within_call_timeout(path, exchange).await
    }

    /// Runs one exchange with the registry within [`CALL_TIMEOUT`].
    async fn within_call_timeout<T>(
        &self,
        path: &str,
        exchange: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::TimedOut {
                url: self.base_url.clone(),
                path: path.to_string(),
            })?
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(http::Method::GET, path, None::<&()>).await
    }

    /// Lists every model.
    pub async fn models(&self) -> Result<Vec<ModelSummary>, ClientError> {
        self.get("/models").await
    }

    /// Describes one model.
    pub async fn model(&self, model: &ModelName) -> Result<ModelSummary, ClientError> {
        self.get(&format!("/models/{model}")).await
    }

    /// Lists a model's versions, oldest first.
    pub async fn versions(&self, model: &ModelName) -> Result<Vec<VersionRecord>, ClientError> {
        self.get(&format!("/models/{model}/versions")).await
    }

    /// Returns the version a reference names.
    pub async fn version(&self, reference: &ModelRef) -> Result<VersionRecord, ClientError> {
        let ModelRef { model, version } = reference;
        self.get(&format!("/models/{model}/versions/{version}"))
            .await
    }

    /// Returns the audit log: every entry, one model's, or one alias's.
    pub async fn audit(
        &self,
        model: Option<&ModelName>,
        alias: Option<&AliasName>,
    ) -> Result<Vec<AuditEntry>, ClientError> {
        let mut query = Vec::new();
        if let Some(model) = model {
            query.push(format!("model={model}"));
        }
        if let Some(alias) = alias {
            query.push(format!("alias={alias}"));
        }
        self.get(&format!("/audit?{}", query.join("&"))).await
    }

    /// Returns the version `model@alias` named at `unix_ms`.
    pub async fn alias_at(
        &self,
        model: &ModelName,
        alias: &AliasName,
        unix_ms: u64,
    ) -> Result<AliasAtTime, ClientError> {
        self.get(&format!(
            "/models/{model}/aliases/{alias}/at?unix_ms={unix_ms}"
        ))
        .await
    }

    /// Points `alias` at `version` (a number, another alias, or `latest`).
    pub async fn set_alias(
        &self,
        model: &ModelName,
        alias: &AliasName,
        version: &str,
    ) -> Result<AuditEntry, ClientError> {
        let request = AliasRequest {
            version: version.to_string(),
        };
        let path = format!("/models/{model}/aliases/{alias}");
        self.call(http::Method::PUT, &path, Some(&request)).await
    }

    /// Points a stage at a version.
    pub async fn promote(
        &self,
        model: &ModelName,
        request: &PromoteRequest,
    ) -> Result<AuditEntry, ClientError> {
        let path = format!("/models/{model}/promote");
        self.call(http::Method::POST, &path, Some(request)).await
    }

    /// Points an alias back at the version it named before.
    pub async fn rollback(
        &self,
        model: &ModelName,
        alias: &AliasName,
    ) -> Result<AuditEntry, ClientError> {
        let path = format!("/models/{model}/aliases/{alias}/rollback");
        self.call(http::Method::POST, &path, None::<&()>).await
    }

    /// Archives a version.
    pub async fn archive(
        &self,
        model: &ModelName,
        version: u64,
    ) -> Result<AuditEntry, ClientError> {
        let path = format!("/models/{model}/versions/{version}/archive");
        self.call(http::Method::POST, &path, None::<&()>).await
    }

    /// Registers a version whose artifact was uploaded.
    pub async fn register(
        &self,
        model: &ModelName,
        new: &NewVersion,
    ) -> Result<VersionRecord, ClientError> {
        let path = format!("/models/{model}/versions");
        self.call(http::Method::POST, &path, Some(new)).await
    }

    /// Uploads the file at `path`, streamed, and registers it as a new version of
    /// `model` with `new`'s metrics, metadata and lineage.
    pub async fn register_file(
        &self,
        model: &ModelName,
        path: &Path,
        mut new: NewVersion,
    ) -> Result<VersionRecord, ClientError> {
        new.artifact = Some(self.upload_file(path).await?);
        self.register(model, &new).await
    }

    /// Uploads bytes held in memory.
    pub async fn upload_bytes(&self, bytes: Vec<u8>) -> Result<ArtifactRef, ClientError> {
        let declared = crate::artifacts::sha256_hex(&bytes);
        let body = Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed();
        self.upload(body, declared).await
    }

    /// Uploads a file, streamed; its hash is computed first so that the registry checks
    /// it received the same bytes.
    pub async fn upload_file(&self, path: &Path) -> Result<ArtifactRef, ClientError> {
        let owned = path.to_path_buf();
        let hashed = tokio::task::spawn_blocking(move || {
            std::fs::File::open(&owned).and_then(crate::artifacts::hash_reader)
        })
        .await
        .map_err(|error| ClientError::io(path)(std::io::Error::other(error)))?
        .map_err(ClientError::io(path))?;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(ClientError::io(path))?;
        let frames = tokio_util::io::ReaderStream::new(file).map(|chunk| chunk.map(Frame::data));
        let body = BodyExt::boxed(StreamBody::new(frames));
        self.upload(body, hashed.sha256).await
    }

    async fn upload(&self, body: RequestBody, sha256: String) -> Result<ArtifactRef, ClientError> {
        let response = self
            .send(
                http::Method::POST,
                "/artifacts",
                body,
                Some((SHA256_HEADER, sha256)),
            )
            .await?;
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|error| self.unreachable(&error))?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|error| ClientError::Decode {
            path: "/artifacts".into(),
            reason: error.to_string(),
        })
    }

    /// Downloads the artifact of the version `reference` names to `destination`,
    /// hashing it as it arrives; corrupt bytes are refused and removed.
    pub async fn download(
        &self,
        reference: &ModelRef,
        destination: &Path,
    ) -> Result<VersionRecord, ClientError> {
        let record = self.version(reference).await?;
        let path = format!(
            "/models/{}/versions/{}/artifact",
            record.model, record.version
        );
        self.receive_verified(&path, &record.artifact.sha256, destination)
            .await?;
        Ok(record)
    }

    /// Downloads the artifact `sha256` (any uploaded artifact, registered as a version
    /// or not) to `destination`, streamed and hashed as it arrives: bytes that do not
    /// hash to `sha256` are refused with [`ClientError::Corrupt`] and removed.
    pub async fn download_artifact(
        &self,
        sha256: &str,
        destination: &Path,
    ) -> Result<ArtifactRef, ClientError> {
        // Checked here too: the hash becomes part of a URL.
        crate::artifacts::check_sha256(sha256).map_err(|error| ClientError::Refused {
            status: 400,
            message: error.to_string(),
        })?;
        let size = self
            .receive_verified(&format!("/artifacts/{sha256}"), sha256, destination)
            .await?;
        Ok(ArtifactRef {
            sha256: sha256.to_string(),
            size,
        })
    }

    /// GETs `path` into `<destination>.partial` while hashing it, then renames it to
    /// `destination` if it hashes to `expected`; on any failure nothing is left behind.
    /// Returns the size.
    async fn receive_verified(
        &self,
        path: &str,
        expected: &str,
        destination: &Path,
    ) -> Result<u64, ClientError> {
        let empty = Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed();
        let response = self.send(http::Method::GET, path, empty, None).await?;
        let partial = destination.with_extension("partial");
        let received = self.write_hashed(response, &partial).await;
        let (actual, size) = match received {
            Ok(received) => received,
            Err(error) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(error);
            }
        };
        if actual != expected {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(ClientError::Corrupt {
                expected: expected.to_string(),
                actual,
            });
        }
        tokio::fs::rename(&partial, destination)
            .await
            .map_err(ClientError::io(destination))?;
        Ok(size)
    }

    /// Writes a response's body to `file_path`, synced; returns its SHA-256 and size.
    async fn write_hashed(
        &self,
        response: http::Response<hyper::body::Incoming>,
        file_path: &Path,
    ) -> Result<(String, u64), ClientError> {
        let mut file = tokio::fs::File::create(file_path)
            .await
            .map_err(ClientError::io(file_path))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| self.unreachable(&error))?;
            if let Ok(chunk) = frame.into_data() {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .map_err(ClientError::io(file_path))?;
            }
        }
        file.sync_all().await.map_err(ClientError::io(file_path))?;
        Ok((format!("{:x}", hasher.finalize()), size))
    }
}

/// Returns the `error` of a `{"error": "…"}` answer, else the status and body as text.
fn error_message(status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ApiError {
        error: String,
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(answer) => answer.error,
        Err(_) => {
            let text: String = String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(200)
                .collect();
            format!("the registry answered HTTP {status}: {text}")
        }
    }
}
