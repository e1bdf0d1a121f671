//! Reads shared by the store's queries and changes: a version, the latest one, a
//! model's aliases, what a reference names, one alias's past.

use super::{ALIAS_LOG, MODELS, decode};
use crate::error::{RegistryError, storage};
use crate::names::{AliasName, ModelName, VersionRef};
use crate::record::{AuditEntry, VersionRecord};
use crate::store::not_found;
use redb::{ReadableTable, WriteTransaction};

pub(super) fn require_model(
    transaction: &WriteTransaction,
    model: &ModelName,
) -> Result<(), RegistryError> {
    let models = transaction.open_table(MODELS).map_err(storage)?;
    match models.get(model.as_str()).map_err(storage)? {
        Some(_) => Ok(()),
        None => Err(not_found(model)),
    }
}

pub(super) fn read_version(
    versions: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    model: &ModelName,
    version: u64,
) -> Result<VersionRecord, RegistryError> {
    match versions.get((model.as_str(), version)).map_err(storage)? {
        Some(bytes) => decode(bytes.value()),
        None => Err(RegistryError::VersionNotFound {
            model: model.to_string(),
            version,
        }),
    }
}

pub(super) fn latest_version(
    versions: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    model: &ModelName,
) -> Result<Option<u64>, RegistryError> {
    let range = (model.as_str(), 0u64)..=(model.as_str(), u64::MAX);
    for entry in versions.range(range).map_err(storage)?.rev() {
        let (_, bytes) = entry.map_err(storage)?;
        let record: VersionRecord = decode(bytes.value())?;
        if !record.archived {
            return Ok(Some(record.version));
        }
    }
    Ok(None)
}

pub(super) fn model_aliases(
    aliases: &impl ReadableTable<(&'static str, &'static str), u64>,
    model: &ModelName,
) -> Result<Vec<(String, u64)>, RegistryError> {
    let mut found = Vec::new();
    for entry in aliases.range((model.as_str(), "")..).map_err(storage)? {
        let (key, version) = entry.map_err(storage)?;
        let (owner, alias) = key.value();
        if owner != model.as_str() {
            break;
        }
        found.push((alias.to_string(), version.value()));
    }
    Ok(found)
}

/// Returns the version number a reference names now.
pub(super) fn resolve(
    versions: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    aliases: &impl ReadableTable<(&'static str, &'static str), u64>,
    model: &ModelName,
    reference: &VersionRef,
) -> Result<u64, RegistryError> {
    match reference {
        VersionRef::Number(number) => Ok(*number),
        VersionRef::Alias(alias) => aliases
            .get((model.as_str(), alias.as_str()))
            .map_err(storage)?
            .map(|v| v.value())
            .ok_or_else(|| RegistryError::AliasNotFound {
                model: model.to_string(),
                alias: alias.to_string(),
            }),
        VersionRef::Latest => {
            latest_version(versions, model)?.ok_or_else(|| RegistryError::NoLatestVersion {
                model: model.to_string(),
            })
        }
    }
}

pub(super) fn alias_entries(
    transaction: &WriteTransaction,
    model: &ModelName,
    alias: &AliasName,
) -> Result<Vec<AuditEntry>, RegistryError> {
    let log = transaction.open_table(ALIAS_LOG).map_err(storage)?;
    alias_entries_in(&log, model, alias)
}

pub(super) fn alias_entries_in(
    log: &impl ReadableTable<(&'static str, &'static str, u64), &'static [u8]>,
    model: &ModelName,
    alias: &AliasName,
) -> Result<Vec<AuditEntry>, RegistryError> {
    let (model, alias) = (model.as_str(), alias.as_str());
    let mut entries = Vec::new();
    for entry in log
        .range((model, alias, 0u64)..=(model, alias, u64::MAX))
        .map_err(storage)?
    {
        let (_, bytes) = entry.map_err(storage)?;
        entries.push(decode(bytes.value())?);
    }
    Ok(entries)
}
