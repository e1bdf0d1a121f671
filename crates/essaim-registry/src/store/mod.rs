//! The registry's store: models, versions, aliases and the audit log, behind one type
//! whatever the backend, so that the HTTP API never knows which one it talks to.
//!
//! | backend | when | file |
//! |---|---|---|
//! | redb, embedded | a directory (the default: nothing to install) | [`redb`] |
//! | PostgreSQL | a `postgres://` or `postgresql://` URL (production, shared by several processes) | [`postgres`] |
//!
//! Both keep the same promises: versions are immutable and numbered per model; every
//! change (register, alias, promote, rollback, archive) is one transaction that reads
//! the current state, checks it, writes the new state and appends its audit entry; and
//! changes are serialised, so two promotions of one alias racing each other both
//! succeed, one after the other, each audited with the version it moved the alias
//! *from*. redb gets that from its single writer; PostgreSQL from a row lock every
//! change takes first, which holds across every process sharing the database.
//!
//! [`StoreLocation`] is the one place a location string becomes a backend.

use crate::error::RegistryError;
use crate::names::{AliasName, ModelName, VersionRef};
use crate::record::{
    AliasAtTime, ArtifactRef, AuditAction, AuditEntry, Lineage, ModelSummary, VersionRecord,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub mod postgres;
pub mod redb;
mod rules;

pub use self::postgres::PgStore;
pub use self::redb::RedbStore;

/// What a change of an alias does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasMove {
    /// Point the alias at a version (`alias`), audited as `action` (alias or promote).
    To {
        /// The version.
        version: VersionRef,
        /// [`AuditAction::Alias`] or [`AuditAction::Promote`].
        action: AuditAction,
    },
    /// Point it back at the version it named before its last forward move.
    Rollback,
}

/// Who changes what, and when (the caller's clock).
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// The actor recorded in the audit log.
    pub actor: &'a str,
    /// Now, ms since the Unix epoch.
    pub now_unix_ms: u64,
}

/// Where a store lives, parsed from the text of a flag or a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A directory: the embedded redb store in its [`crate::STORE_FILE`].
    Directory(PathBuf),
    /// A PostgreSQL URL (libpq's form; `sslmode` and `sslrootcert` ask for TLS).
    Postgres(String),
}

impl StoreLocation {
    /// Parses a location: a `postgres://`/`postgresql://` URL, or a directory. Any other
    /// `scheme://` is refused rather than taken for a directory of that name.
    pub fn parse(text: &str) -> Result<StoreLocation, RegistryError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(RegistryError::StoreLocation {
                location: String::new(),
                reason: "empty: give a directory or a postgres:// URL".into(),
            });
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return match scheme {
                "postgres" | "postgresql" => Ok(StoreLocation::Postgres(text.to_string())),
                other => Err(RegistryError::StoreLocation {
                    location: redact_password(text),
                    reason: format!(
                        "unknown scheme `{other}`: a registry store is a directory or a postgres:// URL"
                    ),
                }),
            };
        }
        Ok(StoreLocation::Directory(PathBuf::from(text)))
    }

    /// Describes the location for messages, without a password.
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Directory(dir) => dir.display().to_string(),
            StoreLocation::Postgres(url) => redact_password(url),
        }
    }
}

/// Returns a PostgreSQL URL with its password (if any) replaced by `***`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((credentials, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let Some((user, _password)) = credentials.split_once(':') else {
        return url.to_string();
    };
    format!("{scheme}://{user}:***@{host}{path}")
}

/// The open store: one owner for the choice of backend.
#[derive(Debug, Clone)]
pub enum RegistryStore {
    /// The embedded store; its calls run on blocking threads.
    Redb(Arc<RedbStore>),
    /// The PostgreSQL store.
    Postgres(PgStore),
}

/// Runs a call of the embedded store on a blocking thread (redb blocks on disk I/O).
async fn on_blocking_thread<T: Send + 'static>(
    store: &Arc<RedbStore>,
    work: impl FnOnce(&RedbStore) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .map_err(|error| RegistryError::Storage(format!("worker thread: {error}")))?
}

/// Runs the change `work` on a blocking thread, with its own copy of `change`.
async fn change_on_blocking_thread<T: Send + 'static>(
    store: &Arc<RedbStore>,
    change: Change<'_>,
    work: impl FnOnce(&RedbStore, Change<'_>) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    let (actor, now_unix_ms) = (change.actor.to_owned(), change.now_unix_ms);
    on_blocking_thread(store, move |store| {
        let change = Change {
            actor: &actor,
            now_unix_ms,
        };
        work(store, change)
    })
    .await
}

impl RegistryStore {
    /// Opens (or creates) the store at `location`: for a directory, its redb file
    /// (created with the directory); for PostgreSQL, connects and creates or checks the
    /// schema.
    pub async fn open(location: &StoreLocation) -> Result<RegistryStore, RegistryError> {
        match location {
            StoreLocation::Directory(dir) => {
                let dir = dir.clone();
                let store = tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir).map_err(RegistryError::io(&dir))?;
                    RedbStore::open(&dir.join(crate::STORE_FILE))
                })
                .await
                .map_err(|error| RegistryError::Storage(format!("worker thread: {error}")))??;
                Ok(RegistryStore::Redb(Arc::new(store)))
            }
            StoreLocation::Postgres(url) => Ok(RegistryStore::Postgres(PgStore::open(url).await?)),
        }
    }

    /// Names the backend, for logs: `redb` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            RegistryStore::Redb(_) => "redb",
            RegistryStore::Postgres(_) => "postgres",
        }
    }

    /// Registers a new version of `model` (created with its first version).
    pub async fn register(
        &self,
        model: &ModelName,
        artifact: ArtifactRef,
        metrics: BTreeMap<String, f64>,
        metadata: BTreeMap<String, String>,
        lineage: Lineage,
        change: Change<'_>,
    ) -> Result<VersionRecord, RegistryError> {
        match self {
            RegistryStore::Redb(store) => {
                let model = model.clone();
                change_on_blocking_thread(store, change, move |store, change| {
                    store.register(&model, artifact, metrics, metadata, lineage, change)
                })
                .await
            }
            RegistryStore::Postgres(store) => {
                store
                    .register(model, artifact, metrics, metadata, lineage, change)
                    .await
            }
        }
    }

    /// Moves an alias; returns its audit entry.
    pub async fn move_alias(
        &self,
        model: &ModelName,
        alias: &AliasName,
        requested: &AliasMove,
        change: Change<'_>,
    ) -> Result<AuditEntry, RegistryError> {
        match self {
            RegistryStore::Redb(store) => {
                let (model, alias, requested) = (model.clone(), alias.clone(), requested.clone());
                change_on_blocking_thread(store, change, move |store, change| {
                    store.move_alias(&model, &alias, &requested, change)
                })
                .await
            }
            RegistryStore::Postgres(store) => {
                store.move_alias(model, alias, requested, change).await
            }
        }
    }

    /// Archives a version that no alias names; returns its audit entry.
    pub async fn archive(
        &self,
        model: &ModelName,
        version: u64,
        change: Change<'_>,
    ) -> Result<AuditEntry, RegistryError> {
        match self {
            RegistryStore::Redb(store) => {
                let model = model.clone();
                change_on_blocking_thread(store, change, move |store, change| {
                    store.archive(&model, version, change)
                })
                .await
            }
            RegistryStore::Postgres(store) => store.archive(model, version, change).await,
        }
    }

    /// Lists every model.
    pub async fn models(&self) -> Result<Vec<ModelSummary>, RegistryError> {
        match self {
            RegistryStore::Redb(store) => on_blocking_thread(store, RedbStore::models).await,
            RegistryStore::Postgres(store) => store.models().await,
        }
    }

    /// Describes one model.
    pub async fn model(&self, model: &ModelName) -> Result<ModelSummary, RegistryError> {
        match self {
            RegistryStore::Redb(store) => {
                let model = model.clone();
                on_blocking_thread(store, move |store| store.model(&model)).await
            }
            RegistryStore::Postgres(store) => store.model(model).await,
        }
    }

    /// Lists a model's versions, oldest first, with the aliases naming each.
    pub async fn versions(&self, model: &ModelName) -> Result<Vec<VersionRecord>, RegistryError> {
        match self {
            RegistryStore::Redb(store) => {
                let model = model.clone();
                on_blocking_thread(store, move |store| store.versions(&model)).await
            }
            RegistryStore::Postgres(store) => store.versions(model).await,
        }
    }

    /// Returns the version a reference names.
    pub async fn version(
        &self,
        model: &ModelName,
        reference: &VersionRef,
    ) -> Result<VersionRecord, RegistryError> {
        match self {
            RegistryStore::Redb(store) => {
                let (model, reference) = (model.clone(), reference.clone());
                on_blocking_thread(store, move |store| store.version(&model, &reference)).await
            }
            RegistryStore::Postgres(store) => store.version(model, reference).await,
        }
    }

    /// Returns the audit log, oldest first: every entry, or one model's, or one alias's.
    pub async fn audit(
        &self,
        model: Option<&ModelName>,
        alias: Option<&AliasName>,
    ) -> Result<Vec<AuditEntry>, RegistryError> {
        match self {
            RegistryStore::Redb(store) => {
                let (model, alias) = (model.cloned(), alias.cloned());
                on_blocking_thread(store, move |store| {
                    store.audit(model.as_ref(), alias.as_ref())
                })
                .await
            }
            RegistryStore::Postgres(store) => store.audit(model, alias).await,
        }
    }

    /// Answers "which version did `model@alias` name at `at_unix_ms`".
    pub async fn alias_at(
        &self,
        model: &ModelName,
        alias: &AliasName,
        at_unix_ms: u64,
    ) -> Result<AliasAtTime, RegistryError> {
        let entries = self.audit(Some(model), Some(alias)).await?;
        Ok(alias_at_time(model, alias, at_unix_ms, &entries))
    }
}

/// Answers "which version did `model@alias` name at `at_unix_ms`" from that alias's
/// audit entries, oldest first: the same answer from either backend.
pub(crate) fn alias_at_time(
    model: &ModelName,
    alias: &AliasName,
    at_unix_ms: u64,
    entries: &[AuditEntry],
) -> AliasAtTime {
    let since = crate::history::alias_at(entries, at_unix_ms).cloned();
    AliasAtTime {
        model: model.to_string(),
        alias: alias.to_string(),
        at_unix_ms,
        version: since.as_ref().and_then(|entry| entry.version),
        since,
    }
}

/// Encodes a record as the stores keep it: JSON.
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("registry records always serialise")
}

/// Decodes a stored record.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes)
        .map_err(|error| RegistryError::Storage(format!("undecodable record: {error}")))
}

/// Returns `record` with the aliases (of its model) that name it.
pub(crate) fn with_aliases(
    mut record: VersionRecord,
    aliases: &BTreeMap<String, u64>,
) -> VersionRecord {
    record.aliases = aliases
        .iter()
        .filter(|(_, version)| **version == record.version)
        .map(|(alias, _)| alias.clone())
        .collect();
    record
}

/// The error of a model that does not exist.
pub(crate) fn not_found(model: &ModelName) -> RegistryError {
    RegistryError::ModelNotFound {
        model: model.to_string(),
    }
}

/// Returns the next audit entry after `previous`: the next sequence number, and a time
/// that never goes back (see [`crate::history::entry_time`]).
pub(crate) fn next_audit_entry(
    previous: Option<&AuditEntry>,
    action: AuditAction,
    model: &ModelName,
    alias: Option<&AliasName>,
    version: Option<u64>,
    from_version: Option<u64>,
    change: Change<'_>,
) -> AuditEntry {
    AuditEntry {
        sequence: previous.map_or(0, |entry| entry.sequence) + 1,
        at_unix_ms: crate::history::entry_time(
            change.now_unix_ms,
            previous.map(|entry| entry.at_unix_ms),
        ),
        actor: change.actor.to_string(),
        action,
        model: model.to_string(),
        alias: alias.map(ToString::to_string),
        version,
        from_version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_directories_or_postgres_urls_and_other_schemes_are_refused() {
        assert_eq!(
            StoreLocation::parse("data/registry").unwrap(),
            StoreLocation::Directory(PathBuf::from("data/registry"))
        );
        assert_eq!(
            StoreLocation::parse("postgresql://u@db/app").unwrap(),
            StoreLocation::Postgres("postgresql://u@db/app".into())
        );
        assert!(matches!(
            StoreLocation::parse("postgres://u@db/app").unwrap(),
            StoreLocation::Postgres(_)
        ));
        let refused = StoreLocation::parse("mysql://u:secret@db/app").unwrap_err();
        let text = refused.to_string();
        assert!(text.contains("unknown scheme `mysql`"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(StoreLocation::parse("  ").is_err());
    }

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redact_password("postgresql://u:secret@db:5432/app?sslmode=require"),
            "postgresql://u:***@db:5432/app?sslmode=require"
        );
        assert_eq!(
            redact_password("postgresql://u@db/app"),
            "postgresql://u@db/app"
        );
        assert_eq!(
            redact_password("postgresql://db/app"),
            "postgresql://db/app"
        );
    }
}
