//! The registry's rules for a change, decided once for both stores: which version a
//! rollback names, that an archived version is never named by an alias, that a version
//! still named by one is not archived, and what a new version's record holds. The
//! stores only read and write; a change means the same whichever of them holds it.

use super::Change;
use crate::error::RegistryError;
use crate::history;
use crate::names::{AliasName, ModelName};
use crate::record::{ArtifactRef, AuditEntry, Lineage, VersionRecord};
use std::collections::BTreeMap;

/// Returns the version a rollback of `alias` moves it to, from its audit entries.
pub(super) fn rollback_target(
    model: &ModelName,
    alias: &AliasName,
    past: &[AuditEntry],
) -> Result<u64, RegistryError> {
    history::rollback_target(past).ok_or_else(|| RegistryError::NothingToRollBack {
        model: model.to_string(),
        alias: alias.to_string(),
    })
}

/// Refuses to point an alias at an archived version.
pub(super) fn may_be_aliased(record: &VersionRecord) -> Result<(), RegistryError> {
    if record.archived {
        return Err(RegistryError::Archived {
            model: record.model.clone(),
            version: record.version,
        });
    }
    Ok(())
}

/// Refuses to archive `version` while any of `aliases` (alias, version) names it.
pub(super) fn may_be_archived<'a>(
    model: &ModelName,
    version: u64,
    aliases: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result<(), RegistryError> {
    let naming: Vec<&str> = aliases
        .into_iter()
        .filter(|(_, named)| *named == version)
        .map(|(alias, _)| alias)
        .collect();
    if !naming.is_empty() {
        return Err(RegistryError::StillAliased {
            model: model.to_string(),
            version,
            aliases: naming.join(", "),
        });
    }
    Ok(())
}

/// What a version registered with `registered` (its audit entry) holds.
pub(super) struct NewVersion {
    /// The artifact's hash and size.
    pub artifact: ArtifactRef,
    /// Its metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Its free metadata.
    pub metadata: BTreeMap<String, String>,
    /// Where it came from.
    pub lineage: Lineage,
}

impl NewVersion {
    /// Returns the record of version `version` of `model`, created by `change` as
    /// `registered` says.
    pub(super) fn record(
        self,
        model: &ModelName,
        version: u64,
        registered: &AuditEntry,
        change: Change<'_>,
    ) -> VersionRecord {
        VersionRecord {
            model: model.to_string(),
            version,
            artifact: self.artifact,
            created_unix_ms: registered.at_unix_ms,
            created_by: change.actor.to_string(),
            metrics: self.metrics,
            metadata: self.metadata,
            lineage: self.lineage,
            archived: false,
            aliases: Vec::new(),
        }
    }
}
