//! The registry's HTTP API under [`PREFIX`], served by the coordinator beside its own
//! API, or alone by `essaim registry` (either way every `essaim models` verb reaches it
//! with `--coordinator`). It calls the store through [`crate::store::RegistryStore`]
//! and never knows which backend answers.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET models` | every model |
//! | `GET models/{m}` | one model: versions, latest, aliases |
//! | `GET models/{m}/versions` | its versions, oldest first |
//! | `POST models/{m}/versions` | registers a version ([`NewVersion`], artifact uploaded first) |
//! | `GET models/{m}/versions/{ref}` | a version by number, alias or `latest` |
//! | `GET models/{m}/versions/{ref}/artifact` | its bytes, hashed again before serving |
//! | `POST models/{m}/versions/{n}/archive` | archives a version no alias names |
//! | `PUT models/{m}/aliases/{a}` | points an alias at a version ([`AliasRequest`]) |
//! | `POST models/{m}/aliases/{a}/rollback` | points it back at its previous version |
//! | `GET models/{m}/aliases/{a}/at?unix_ms=T` | the version it named at time T |
//! | `POST models/{m}/promote` | points a stage at a version ([`PromoteRequest`]) |
//! | `GET audit?model=&alias=` | the audit log |
//! | `POST artifacts` | stores bytes (streamed); `essaim-sha256` header checked if sent |
//! | `GET artifacts/{sha256}` | stored bytes, hashed again before serving |
//! | `PUT usage/{runner}` | a runner's heartbeat: what it serves now ([`crate::usage::UsageReport`]) |
//! | `DELETE usage/{runner}` | a runner stopping in order |
//! | `GET usage` | every live runner's last report |
//! | `GET governance` | every model, its versions, and which runners use each ([`crate::governance`]) |
//!
//! Errors are `{"error": "…"}` with the status of [`RegistryError::status`]. Who makes a
//! change is the `essaim-actor` header ("anonymous" without one): the audit log records
//! what the caller says, and authentication is the host's (the coordinator, and `essaim
//! registry`, require the cluster token or a principal's on these paths as on the API).

use crate::names::{AliasName, ModelName, VersionRef, parse_version_number};
use crate::record::{AliasAtTime, ArtifactRef, AuditAction, AuditEntry, NewVersion};
use crate::store::{AliasMove, Change};
use crate::{Registry, RegistryError};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where the registry's API lives.
pub const PREFIX: &str = "/registry/v1";
/// Header naming who makes a change.
pub const ACTOR_HEADER: &str = "essaim-actor";
/// Header carrying an artifact's SHA-256 (sent with uploads, returned with downloads).
pub const SHA256_HEADER: &str = "essaim-sha256";
/// Longest actor name recorded.
const MAX_ACTOR_LENGTH: usize = 128;
/// Most metrics or metadata entries of one version, and the longest key and value.
const MAX_ENTRIES: usize = 256;
const MAX_KEY_LENGTH: usize = 128;
const MAX_VALUE_LENGTH: usize = 64 * 1024;

/// Body of `PUT models/{m}/aliases/{a}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AliasRequest {
    /// The version: a number, another alias, or `latest`.
    pub version: String,
}

/// Body of `POST models/{m}/promote`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromoteRequest {
    /// The version to promote; absent: the one `from` names.
    #[serde(default)]
    pub version: Option<String>,
    /// The stage moved (default `production`).
    #[serde(default = "default_stage")]
    pub to: String,
    /// Where the version comes from when none is given (default `staging`).
    #[serde(default = "default_source_stage")]
    pub from: String,
}

fn default_stage() -> String {
    "production".into()
}

fn default_source_stage() -> String {
    "staging".into()
}

/// Query of `GET models/{m}/aliases/{a}/at`.
#[derive(Debug, Deserialize)]
struct AtQuery {
    unix_ms: u64,
}

/// Query of `GET audit`.
#[derive(Debug, Deserialize)]
struct AuditQuery {
    model: Option<String>,
    alias: Option<String>,
}

type Shared = Arc<Registry>;

struct Failure(RegistryError);

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Self {
        Self(error)
    }
}

impl From<crate::names::NameError> for Failure {
    fn from(error: crate::names::NameError) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": essaim_core::error_chain::error_chain(&self.0) });
        (self.0.status(), Json(body)).into_response()
    }
}

type Answer<T> = Result<Json<T>, Failure>;

/// A JSON body; a malformed one is a JSON 400 naming what is wrong.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Failure;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Failure> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(Failure(RegistryError::InvalidInput(rejection.body_text()))),
        }
    }
}

/// Returns the registry's routes, to merge into a server that adds authentication.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/registry/v1/models", get(list_models))
        .route("/registry/v1/models/{model}", get(show_model))
        .route(
            "/registry/v1/models/{model}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/registry/v1/models/{model}/versions/{reference}",
            get(show_version),
        )
        .route(
            "/registry/v1/models/{model}/versions/{reference}/artifact",
            get(version_artifact),
        )
        .route(
            "/registry/v1/models/{model}/versions/{version}/archive",
            post(archive),
        )
        .route(
            "/registry/v1/models/{model}/aliases/{alias}",
            put(set_alias),
        )
        .route(
            "/registry/v1/models/{model}/aliases/{alias}/rollback",
            post(rollback),
        )
        .route(
            "/registry/v1/models/{model}/aliases/{alias}/at",
            get(alias_at),
        )
        .route("/registry/v1/models/{model}/promote", post(promote))
        .route("/registry/v1/audit", get(audit))
        .route("/registry/v1/artifacts", post(upload))
        .route("/registry/v1/artifacts/{sha256}", get(download))
        .route(
            "/registry/v1/usage/{runner}",
            put(report_usage).delete(withdraw_usage),
        )
        .route("/registry/v1/usage", get(list_usage))
        .route("/registry/v1/governance", get(governance))
        .with_state(registry)
}

/// Runs an artifact store operation on a blocking thread (`std::fs` blocks).
async fn blocking<T: Send + 'static>(
    registry: &Shared,
    work: impl FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, Failure> {
    let registry = Arc::clone(registry);
    tokio::task::spawn_blocking(move || work(&registry))
        .await
        .map_err(|error| Failure(RegistryError::Storage(format!("worker thread: {error}"))))?
        .map_err(Failure)
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn actor(headers: &HeaderMap) -> Result<String, Failure> {
    let Some(value) = headers.get(ACTOR_HEADER) else {
        return Ok("anonymous".into());
    };
    match value.to_str() {
        Ok(text) if !text.is_empty() && text.len() <= MAX_ACTOR_LENGTH => Ok(text.to_string()),
        _ => Err(Failure(RegistryError::InvalidInput(format!(
            "header `{ACTOR_HEADER}`: 1 to {MAX_ACTOR_LENGTH} printable characters"
        )))),
    }
}

async fn list_models(State(registry): State<Shared>) -> Answer<Vec<crate::record::ModelSummary>> {
    Ok(Json(registry.store.models().await?))
}

async fn show_model(
    State(registry): State<Shared>,
    Path(model): Path<String>,
) -> Answer<crate::record::ModelSummary> {
    let model = ModelName::parse(&model)?;
    Ok(Json(registry.store.model(&model).await?))
}

async fn list_versions(
    State(registry): State<Shared>,
    Path(model): Path<String>,
) -> Answer<Vec<crate::record::VersionRecord>> {
    let model = ModelName::parse(&model)?;
    Ok(Json(registry.store.versions(&model).await?))
}

async fn show_version(
    State(registry): State<Shared>,
    Path((model, reference)): Path<(String, String)>,
) -> Answer<crate::record::VersionRecord> {
    let model = ModelName::parse(&model)?;
    let reference = VersionRef::parse(&reference)?;
    Ok(Json(registry.store.version(&model, &reference).await?))
}

/// Checks a registration and returns its artifact, or why it is refused.
async fn checked_artifact(
    registry: &Registry,
    new: &NewVersion,
) -> Result<ArtifactRef, RegistryError> {
    let Some(artifact) = new.artifact.clone() else {
        return Err(RegistryError::InvalidInput(
            "a version needs an `artifact` (upload its bytes first)".into(),
        ));
    };
    for (name, value) in &new.metrics {
        check_key("metric", name)?;
        if !value.is_finite() {
            return Err(RegistryError::InvalidInput(format!(
                "metric `{name}` is not a finite number"
            )));
        }
    }
    for (name, value) in &new.metadata {
        check_key("metadata", name)?;
        if value.len() > MAX_VALUE_LENGTH {
            return Err(RegistryError::InvalidInput(format!(
                "metadata `{name}` is longer than {MAX_VALUE_LENGTH} bytes"
            )));
        }
    }
    if new.metrics.len() > MAX_ENTRIES || new.metadata.len() > MAX_ENTRIES {
        return Err(RegistryError::InvalidInput(format!(
            "at most {MAX_ENTRIES} metrics and {MAX_ENTRIES} metadata entries"
        )));
    }
    match registry.artifacts.size_of(&artifact.sha256).await? {
        None => Err(RegistryError::ArtifactNotFound {
            sha256: artifact.sha256,
        }),
        Some(size) if size != artifact.size => Err(RegistryError::InvalidInput(format!(
            "artifact {} has {size} bytes, not {}",
            artifact.sha256, artifact.size
        ))),
        Some(_) => Ok(artifact),
    }
}

fn check_key(what: &str, name: &str) -> Result<(), RegistryError> {
    let printable = name.chars().all(|c| !c.is_control());
    if name.is_empty() || name.len() > MAX_KEY_LENGTH || !printable {
        return Err(RegistryError::InvalidInput(format!(
            "{what} name `{name}`: 1 to {MAX_KEY_LENGTH} printable characters"
        )));
    }
    Ok(())
}

async fn register(
    State(registry): State<Shared>,
    Path(model): Path<String>,
    headers: HeaderMap,
    Body(new): Body<NewVersion>,
) -> Result<(StatusCode, Json<crate::record::VersionRecord>), Failure> {
    let model = ModelName::parse(&model)?;
    let actor = actor(&headers)?;
    let artifact = checked_artifact(&registry, &new).await?;
    let change = Change {
        actor: &actor,
        now_unix_ms: now_unix_ms(),
    };
    let NewVersion {
        metrics,
        metadata,
        lineage,
        ..
    } = new;
    let record = registry
        .store
        .register(&model, artifact, metrics, metadata, lineage, change)
        .await?;
    tracing::info!(model = %record.model, version = record.version, "model version registered");
    Ok((StatusCode::CREATED, Json(record)))
}

async fn archive(
    State(registry): State<Shared>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer<AuditEntry> {
    let model = ModelName::parse(&model)?;
    let version = parse_version_number(&version)?;
    let actor = actor(&headers)?;
    let change = Change {
        actor: &actor,
        now_unix_ms: now_unix_ms(),
    };
    Ok(Json(registry.store.archive(&model, version, change).await?))
}

/// Moves an alias; the store serialises concurrent moves.
async fn move_alias(
    registry: &Shared,
    model: ModelName,
    alias: AliasName,
    requested: AliasMove,
    actor: String,
) -> Answer<AuditEntry> {
    let change = Change {
        actor: &actor,
        now_unix_ms: now_unix_ms(),
    };
    let entry = registry
        .store
        .move_alias(&model, &alias, &requested, change)
        .await?;
    tracing::info!(
        model = %entry.model,
        alias = entry.alias.as_deref().unwrap_or_default(),
        version = entry.version,
        from = entry.from_version,
        action = entry.action.as_str(),
        "model alias moved"
    );
    Ok(Json(entry))
}

async fn set_alias(
    State(registry): State<Shared>,
    Path((model, alias)): Path<(String, String)>,
    headers: HeaderMap,
    Body(request): Body<AliasRequest>,
) -> Answer<AuditEntry> {
    let model = ModelName::parse(&model)?;
    let alias = AliasName::parse(&alias)?;
    let version = VersionRef::parse(&request.version)?;
    let requested = AliasMove::To {
        version,
        action: AuditAction::Alias,
    };
    move_alias(&registry, model, alias, requested, actor(&headers)?).await
}

async fn promote(
    State(registry): State<Shared>,
    Path(model): Path<String>,
    headers: HeaderMap,
    Body(request): Body<PromoteRequest>,
) -> Answer<AuditEntry> {
    let model = ModelName::parse(&model)?;
    let stage = AliasName::parse(&request.to)?;
    if !stage.is_stage() {
        return Err(Failure(RegistryError::InvalidInput(format!(
            "`{stage}` is not a stage (staging, production); move other aliases with `essaim models alias`"
        ))));
    }
    let version = match &request.version {
        Some(version) => VersionRef::parse(version)?,
        None => VersionRef::Alias(AliasName::parse(&request.from)?),
    };
    let requested = AliasMove::To {
        version,
        action: AuditAction::Promote,
    };
    move_alias(&registry, model, stage, requested, actor(&headers)?).await
}

async fn rollback(
    State(registry): State<Shared>,
    Path((model, alias)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer<AuditEntry> {
    let model = ModelName::parse(&model)?;
    let alias = AliasName::parse(&alias)?;
    move_alias(
        &registry,
        model,
        alias,
        AliasMove::Rollback,
        actor(&headers)?,
    )
    .await
}

async fn alias_at(
    State(registry): State<Shared>,
    Path((model, alias)): Path<(String, String)>,
    query: Result<Query<AtQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer<AliasAtTime> {
    let model = ModelName::parse(&model)?;
    let alias = AliasName::parse(&alias)?;
    let Query(query) = query.map_err(|rejection| {
        Failure(RegistryError::InvalidInput(format!(
            "expected ?unix_ms=TIME: {}",
            rejection.body_text()
        )))
    })?;
    Ok(Json(
        registry
            .store
            .alias_at(&model, &alias, query.unix_ms)
            .await?,
    ))
}

async fn audit(
    State(registry): State<Shared>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer<Vec<AuditEntry>> {
    let Query(query) =
        query.map_err(|rejection| Failure(RegistryError::InvalidInput(rejection.body_text())))?;
    let model = query.model.as_deref().map(ModelName::parse).transpose()?;
    let alias = query.alias.as_deref().map(AliasName::parse).transpose()?;
    if alias.is_some() && model.is_none() {
        return Err(Failure(RegistryError::InvalidInput(
            "an alias belongs to a model: give `model` too".into(),
        )));
    }
    Ok(Json(
        registry.store.audit(model.as_ref(), alias.as_ref()).await?,
    ))
}

mod artifacts;
mod usage;

use artifacts::{download, upload, version_artifact};
use usage::{governance, list_usage, report_usage, withdraw_usage};
