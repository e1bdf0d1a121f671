//! The registry's embedded store: models, versions, aliases and the audit log in one
//! redb file (the database the coordinator's journal already uses); the default, with
//! nothing to install.
//!
//! Every change is one write transaction that reads what it needs, checks, writes the
//! new state and appends its audit entry. redb runs one write transaction at a time, so
//! changes are serialised: two promotions of one alias racing each other both succeed,
//! one after the other, each audited with the version it moved the alias *from*. Only
//! one process can open the file.
//!
//! Layout (format version [`STORE_FORMAT_VERSION`], checked on open; values are JSON):
//! - `meta`: `format_version`;
//! - `models`: name → the model's row (creation time, next version number);
//! - `versions`: (name, version) → [`VersionRecord`];
//! - `aliases`: (name, alias) → version;
//! - `audit`: sequence → [`AuditEntry`], append-only;
//! - `alias_log`: (name, alias, sequence) → the same entries, for one alias's past.
//!
//! Methods block on disk I/O: call them from a blocking thread.

use super::rules::{self, NewVersion};
use super::{
    AliasMove, Change, alias_at_time, decode, encode, next_audit_entry, not_found, with_aliases,
};
use crate::error::{RegistryError, storage};
use crate::names::{AliasName, ModelName, VersionRef};
use crate::record::{
    AliasAtTime, ArtifactRef, AuditAction, AuditEntry, Lineage, ModelSummary, VersionRecord,
};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The store's format version, written on creation and checked on open.
pub const STORE_FORMAT_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");
const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
const ALIASES: TableDefinition<(&str, &str), u64> = TableDefinition::new("aliases");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const ALIAS_LOG: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("alias_log");

#[derive(Debug, Serialize, Deserialize)]
struct ModelRow {
    created_unix_ms: u64,
    next_version: u64,
}

/// The open registry database.
#[derive(Debug)]
pub struct RedbStore {
    database: Database,
}

impl RedbStore {
    /// Opens (or creates) the store in the file `path`.
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let database = Database::create(path).map_err(storage)?;
        let transaction = database.begin_write().map_err(storage)?;
        {
            let mut meta = transaction.open_table(META).map_err(storage)?;
            let found = meta
                .get("format_version")
                .map_err(storage)?
                .map(|v| v.value());
            match found {
                None => {
                    meta.insert("format_version", STORE_FORMAT_VERSION)
                        .map_err(storage)?;
                }
                Some(found) if found != STORE_FORMAT_VERSION => {
                    return Err(RegistryError::Version {
                        store: path.display().to_string(),
                        found,
                        expected: STORE_FORMAT_VERSION,
                    });
                }
                Some(_) => {}
            }
            transaction.open_table(MODELS).map_err(storage)?;
            transaction.open_table(VERSIONS).map_err(storage)?;
            transaction.open_table(ALIASES).map_err(storage)?;
            transaction.open_table(AUDIT).map_err(storage)?;
            transaction.open_table(ALIAS_LOG).map_err(storage)?;
        }
        transaction.commit().map_err(storage)?;
        Ok(Self { database })
    }

    /// Registers a new version of `model` (created with its first version).
    pub fn register(
        &self,
        model: &ModelName,
        artifact: ArtifactRef,
        metrics: BTreeMap<String, f64>,
        metadata: BTreeMap<String, String>,
        lineage: Lineage,
        change: Change<'_>,
    ) -> Result<VersionRecord, RegistryError> {
        let transaction = self.database.begin_write().map_err(storage)?;
        let record = {
            let mut models = transaction.open_table(MODELS).map_err(storage)?;
            let row = match models.get(model.as_str()).map_err(storage)? {
                Some(bytes) => decode::<ModelRow>(bytes.value())?,
                None => ModelRow {
                    created_unix_ms: change.now_unix_ms,
                    next_version: 1,
                },
            };
            let version = row.next_version;
            let next = ModelRow {
                next_version: version + 1,
                ..row
            };
            models
                .insert(model.as_str(), encode(&next).as_slice())
                .map_err(storage)?;
            let entry = append_audit(
                &transaction,
                AuditAction::Register,
                model,
                None,
                Some(version),
                None,
                change,
            )?;
            let new = NewVersion {
                artifact,
                metrics,
                metadata,
                lineage,
            };
            let record = new.record(model, version, &entry, change);
            let mut versions = transaction.open_table(VERSIONS).map_err(storage)?;
            versions
                .insert((model.as_str(), version), encode(&record).as_slice())
                .map_err(storage)?;
            record
        };
        transaction.commit().map_err(storage)?;
        Ok(record)
    }

    /// Moves an alias; returns its audit entry.
    pub fn move_alias(
        &self,
        model: &ModelName,
        alias: &AliasName,
        requested: &AliasMove,
        change: Change<'_>,
    ) -> Result<AuditEntry, RegistryError> {
        let transaction = self.database.begin_write().map_err(storage)?;
        let entry = {
            let versions = transaction.open_table(VERSIONS).map_err(storage)?;
            let mut aliases = transaction.open_table(ALIASES).map_err(storage)?;
            require_model(&transaction, model)?;
            let from = aliases
                .get((model.as_str(), alias.as_str()))
                .map_err(storage)?
                .map(|v| v.value());
            let (target, action) = match requested {
                AliasMove::To { version, action } => {
                    let target = resolve(&versions, &aliases, model, version)?;
                    (target, *action)
                }
                AliasMove::Rollback => {
                    let past = alias_entries(&transaction, model, alias)?;
                    let target = rules::rollback_target(model, alias, &past)?;
                    (target, AuditAction::Rollback)
                }
            };
            rules::may_be_aliased(&read_version(&versions, model, target)?)?;
            aliases
                .insert((model.as_str(), alias.as_str()), target)
                .map_err(storage)?;
            append_audit(
                &transaction,
                action,
                model,
                Some(alias),
                Some(target),
                from,
                change,
            )?
        };
        transaction.commit().map_err(storage)?;
        Ok(entry)
    }

    /// Archives a version that no alias names; returns its audit entry.
    pub fn archive(
        &self,
        model: &ModelName,
        version: u64,
        change: Change<'_>,
    ) -> Result<AuditEntry, RegistryError> {
        let transaction = self.database.begin_write().map_err(storage)?;
        let entry = {
            let mut versions = transaction.open_table(VERSIONS).map_err(storage)?;
            let aliases = transaction.open_table(ALIASES).map_err(storage)?;
            require_model(&transaction, model)?;
            let mut record = read_version(&versions, model, version)?;
            let named = model_aliases(&aliases, model)?;
            let named = named.iter().map(|(alias, to)| (alias.as_str(), *to));
            rules::may_be_archived(model, version, named)?;
            record.archived = true;
            versions
                .insert((model.as_str(), version), encode(&record).as_slice())
                .map_err(storage)?;
            append_audit(
                &transaction,
                AuditAction::Archive,
                model,
                None,
                Some(version),
                None,
                change,
            )?
        };
        transaction.commit().map_err(storage)?;
        Ok(entry)
    }

    /// Lists every model.
    pub fn models(&self) -> Result<Vec<ModelSummary>, RegistryError> {
        let read = self.database.begin_read().map_err(storage)?;
        let models = read.open_table(MODELS).map_err(storage)?;
        let mut names = Vec::new();
        for entry in models.iter().map_err(storage)? {
            let (name, _) = entry.map_err(storage)?;
            names.push(ModelName::parse(name.value())?);
        }
        drop(models);
        names.iter().map(|name| self.model(name)).collect()
    }

    /// Describes one model.
    pub fn model(&self, model: &ModelName) -> Result<ModelSummary, RegistryError> {
        let read = self.database.begin_read().map_err(storage)?;
        let models = read.open_table(MODELS).map_err(storage)?;
        let row: ModelRow = match models.get(model.as_str()).map_err(storage)? {
            Some(bytes) => decode(bytes.value())?,
            None => return Err(not_found(model)),
        };
        let versions = read.open_table(VERSIONS).map_err(storage)?;
        let aliases = read.open_table(ALIASES).map_err(storage)?;
        let latest = latest_version(&versions, model)?;
        Ok(ModelSummary {
            name: model.to_string(),
            created_unix_ms: row.created_unix_ms,
            versions: row.next_version - 1,
            latest,
            aliases: model_aliases(&aliases, model)?.into_iter().collect(),
        })
    }

    /// Lists a model's versions, oldest first, with the aliases naming each.
    pub fn versions(&self, model: &ModelName) -> Result<Vec<VersionRecord>, RegistryError> {
        let summary = self.model(model)?;
        let read = self.database.begin_read().map_err(storage)?;
        let versions = read.open_table(VERSIONS).map_err(storage)?;
        let mut listed = Vec::new();
        let range = (model.as_str(), 0u64)..=(model.as_str(), u64::MAX);
        for entry in versions.range(range).map_err(storage)? {
            let (_, bytes) = entry.map_err(storage)?;
            listed.push(with_aliases(decode(bytes.value())?, &summary.aliases));
        }
        Ok(listed)
    }

    /// Returns the version a reference names.
    pub fn version(
        &self,
        model: &ModelName,
        reference: &VersionRef,
    ) -> Result<VersionRecord, RegistryError> {
        let summary = self.model(model)?;
        let read = self.database.begin_read().map_err(storage)?;
        let versions = read.open_table(VERSIONS).map_err(storage)?;
        let aliases = read.open_table(ALIASES).map_err(storage)?;
        let number = resolve(&versions, &aliases, model, reference)?;
        let record = read_version(&versions, model, number)?;
        Ok(with_aliases(record, &summary.aliases))
    }

    /// Returns the audit log, oldest first: every entry, or one model's, or one alias's.
    pub fn audit(
        &self,
        model: Option<&ModelName>,
        alias: Option<&AliasName>,
    ) -> Result<Vec<AuditEntry>, RegistryError> {
        if let Some(model) = model {
            self.model(model)?;
        }
        let read = self.database.begin_read().map_err(storage)?;
        if let (Some(model), Some(alias)) = (model, alias) {
            let log = read.open_table(ALIAS_LOG).map_err(storage)?;
            return alias_entries_in(&log, model, alias);
        }
        let audit = read.open_table(AUDIT).map_err(storage)?;
        let mut entries = Vec::new();
        for entry in audit.iter().map_err(storage)? {
            let (_, bytes) = entry.map_err(storage)?;
            let entry: AuditEntry = decode(bytes.value())?;
            let wanted = model.is_none_or(|model| entry.model == model.as_str());
            if wanted {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Answers "which version did `model@alias` name at `at_unix_ms`".
    pub fn alias_at(
        &self,
        model: &ModelName,
        alias: &AliasName,
        at_unix_ms: u64,
    ) -> Result<AliasAtTime, RegistryError> {
        let entries = self.audit(Some(model), Some(alias))?;
        Ok(alias_at_time(model, alias, at_unix_ms, &entries))
    }
}

/// Appends an audit entry (and, for an alias move, its copy in the alias's log).
fn append_audit(
    transaction: &WriteTransaction,
    action: AuditAction,
    model: &ModelName,
    alias: Option<&AliasName>,
    version: Option<u64>,
    from_version: Option<u64>,
    change: Change<'_>,
) -> Result<AuditEntry, RegistryError> {
    let mut audit: Table<u64, &[u8]> = transaction.open_table(AUDIT).map_err(storage)?;
    let previous: Option<AuditEntry> = match audit.last().map_err(storage)? {
        Some((_, bytes)) => Some(decode(bytes.value())?),
        None => None,
    };
    debug_assert_eq!(
        previous.as_ref().map_or(0, |entry| entry.sequence),
        audit.len().map_err(storage)?,
        "the audit log is never cut"
    );
    let entry = next_audit_entry(
        previous.as_ref(),
        action,
        model,
        alias,
        version,
        from_version,
        change,
    );
    let bytes = encode(&entry);
    audit
        .insert(entry.sequence, bytes.as_slice())
        .map_err(storage)?;
    if let Some(alias) = alias {
        let mut log = transaction.open_table(ALIAS_LOG).map_err(storage)?;
        log.insert(
            (model.as_str(), alias.as_str(), entry.sequence),
            bytes.as_slice(),
        )
        .map_err(storage)?;
    }
    Ok(entry)
}

mod read;

use read::{
    alias_entries, alias_entries_in, latest_version, model_aliases, read_version, require_model,
    resolve,
};
