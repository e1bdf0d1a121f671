//! The model registry: models with immutable, content-addressed versions, aliases and
//! stages, and an append-only audit log, with its store (embedded redb by default,
//! PostgreSQL in production), its HTTP API and the Rust client that the command line
//! (and any program) registers and reads models with.
//!
//! A version is immutable: its artifact is named by the SHA-256 of its bytes, and bytes
//! that no longer match are refused when loaded. What moves is aliases (`staging`,
//! `production`, or a user's `champion`); every move, registration and archival is an
//! audit entry saying who, when, what and from what, so "which version did
//! `spam-filter@production` name at time T" has an answer.
//!
//! | module | concept |
//! |---|---|
//! | [`names`] | model and alias names, `NAME@VERSION` references, checked once |
//! | [`record`] | versions, lineage, audit entries: the JSON of the store and the API |
//! | [`history`] | pure decisions over an alias's past: its version at a time, rollback |
//! | [`artifacts`] | the content-addressed artifacts, in a directory or a bucket, hashed at every load |
//! | [`store`] | the store (embedded redb, or PostgreSQL); one serialised transaction per change |
//! | [`usage`] | where each version is used now: runners' heartbeats, held in memory |
//! | [`governance`] | models, versions, stages, metrics, lineage and usage in one view |
//! | [`http`] | the HTTP API a coordinator (or a registry process) serves |
//! | [`client`] | the Rust client of that API |
#![warn(missing_docs)]

pub mod artifacts;
pub mod client;
mod error;
pub mod governance;
pub mod history;
pub mod http;
pub mod names;
pub mod record;
pub mod store;
pub mod usage;

pub use error::RegistryError;

use std::path::Path;

/// Default largest artifact accepted: 4 GiB.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 4 << 30;

/// File name of the store inside the registry's directory.
pub const STORE_FILE: &str = "registry.redb";

/// A registry: its store and its artifacts.
#[derive(Debug)]
pub struct Registry {
    /// Models, versions, aliases and the audit log.
    pub store: store::RegistryStore,
    /// The artifacts' bytes.
    pub artifacts: artifacts::ArtifactStore,
    /// Which runners serve which versions now: soft state, never stored.
    pub usage: usage::UsageBoard,
}

impl Registry {
    /// Opens (or creates) the embedded registry in `dir`: its redb store and its
    /// artifacts. Blocks on disk I/O.
    pub fn open(dir: &Path, max_artifact_bytes: u64) -> Result<Self, RegistryError> {
        std::fs::create_dir_all(dir).map_err(error::RegistryError::io(dir))?;
        let store = store::RedbStore::open(&dir.join(STORE_FILE))?;
        Ok(Self {
            store: store::RegistryStore::Redb(std::sync::Arc::new(store)),
            artifacts: artifacts::ArtifactStore::open(&dir.join("artifacts"), max_artifact_bytes)?,
            usage: usage::UsageBoard::default(),
        })
    }

    /// Opens (or creates) a registry whose store is at `store` and whose artifacts are
    /// at `artifacts` (a directory or a bucket).
    pub async fn open_at(
        store: &store::StoreLocation,
        artifacts: &artifacts::ArtifactLocation,
        max_artifact_bytes: u64,
    ) -> Result<Self, RegistryError> {
        let store = store::RegistryStore::open(store).await?;
        let location = artifacts.clone();
        let artifacts = tokio::task::spawn_blocking(move || {
            artifacts::ArtifactStore::open_at(&location, max_artifact_bytes)
        })
        .await
        .map_err(|error| RegistryError::Storage(format!("worker thread: {error}")))??;
        Ok(Self {
            store,
            artifacts,
            usage: usage::UsageBoard::default(),
        })
    }
}

/// Where a registry keeps its store and its artifacts, as a flag gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryPlace {
    /// The store: a directory (embedded redb) or a PostgreSQL URL.
    pub store: store::StoreLocation,
    /// The artifacts: a directory or `s3://bucket/prefix`.
    pub artifacts: artifacts::ArtifactLocation,
}

impl RegistryPlace {
    /// Decides where a registry lives from `--store`-like text and an optional
    /// artifacts location: a directory store keeps its artifacts in `<dir>/artifacts`
    /// unless told otherwise; a PostgreSQL store needs them named (a directory or a
    /// bucket that every process using this database reaches).
    pub fn decide(store: &str, artifacts: Option<&str>) -> Result<Self, RegistryError> {
        let store = store::StoreLocation::parse(store)?;
        let artifacts = match (&store, artifacts) {
            (_, Some(text)) => artifacts::ArtifactLocation::parse(text)?,
            (store::StoreLocation::Directory(dir), None) => {
                artifacts::ArtifactLocation::Dir(dir.join("artifacts"))
            }
            (store::StoreLocation::Postgres(_), None) => {
                return Err(RegistryError::StoreLocation {
                    location: store.describe(),
                    reason: "a PostgreSQL store keeps no artifacts: name their directory or \
                             s3://bucket/prefix too (reached by every process using this \
                             database)"
                        .into(),
                });
            }
        };
        Ok(Self { store, artifacts })
    }

    /// Opens the registry here.
    pub async fn open(&self, max_artifact_bytes: u64) -> Result<Registry, RegistryError> {
        Registry::open_at(&self.store, &self.artifacts, max_artifact_bytes).await
    }
}
