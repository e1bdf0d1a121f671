//! Reads shared by the PostgreSQL store's queries and changes: model summaries, what a
//! reference names, a version, one alias's past. Each takes any client, so a change
//! reads inside its own transaction (under the change lock) and a query inside a
//! read-only snapshot.

use super::{from_sql, to_sql};
use crate::error::{RegistryError, postgres};
use crate::names::{AliasName, ModelName, VersionRef};
use crate::record::{AuditEntry, ModelSummary, VersionRecord};
use crate::store::{decode, not_found};
use std::collections::BTreeMap;
use tokio_postgres::GenericClient;

/// Summaries of every model (`only`: `None`), or of one, ordered by name.
pub(super) async fn summaries(
    client: &impl GenericClient,
    only: Option<&ModelName>,
) -> Result<Vec<ModelSummary>, RegistryError> {
    let only = only.map(ModelName::as_str);
    let rows = client
        .query(
            "SELECT m.name, m.created_unix_ms, m.next_version,
                    (SELECT max(v.version) FROM essaim_registry.versions v
                     WHERE v.model = m.name AND NOT v.archived)
             FROM essaim_registry.models m
             WHERE $1::text IS NULL OR m.name = $1
             ORDER BY m.name",
            &[&only],
        )
        .await
        .map_err(postgres("read the models"))?;
    let alias_rows = client
        .query(
            "SELECT model, alias, version FROM essaim_registry.aliases
             WHERE $1::text IS NULL OR model = $1
             ORDER BY model, alias",
            &[&only],
        )
        .await
        .map_err(postgres("read the aliases"))?;
    let mut aliases: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for row in alias_rows {
        aliases
            .entry(row.get(0))
            .or_default()
            .insert(row.get(1), from_sql(row.get(2)));
    }
    let mut summaries = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.get(0);
        let next_version = from_sql(row.get(2));
        summaries.push(ModelSummary {
            aliases: aliases.remove(&name).unwrap_or_default(),
            created_unix_ms: from_sql(row.get(1)),
            versions: next_version - 1,
            latest: row.get::<_, Option<i64>>(3).map(from_sql),
            name,
        });
    }
    Ok(summaries)
}

/// One model's summary, or [`RegistryError::ModelNotFound`].
pub(super) async fn summary(
    client: &impl GenericClient,
    model: &ModelName,
) -> Result<ModelSummary, RegistryError> {
    summaries(client, Some(model))
        .await?
        .pop()
        .ok_or_else(|| not_found(model))
}

/// Returns the version number a reference names now, from the model's summary.
pub(super) fn resolve(
    summary: &ModelSummary,
    reference: &VersionRef,
) -> Result<u64, RegistryError> {
    match reference {
        VersionRef::Number(number) => Ok(*number),
        VersionRef::Alias(alias) => summary.aliases.get(alias.as_str()).copied().ok_or_else(|| {
            RegistryError::AliasNotFound {
                model: summary.name.clone(),
                alias: alias.to_string(),
            }
        }),
        VersionRef::Latest => summary
            .latest
            .ok_or_else(|| RegistryError::NoLatestVersion {
                model: summary.name.clone(),
            }),
    }
}

/// One version's record (without its aliases).
pub(super) async fn read_version(
    client: &impl GenericClient,
    model: &ModelName,
    version: u64,
) -> Result<VersionRecord, RegistryError> {
    let row = client
        .query_opt(
            "SELECT record FROM essaim_registry.versions WHERE model = $1 AND version = $2",
            &[&model.as_str(), &to_sql(version)],
        )
        .await
        .map_err(postgres("read a version"))?;
    match row {
        Some(row) => decode(row.get::<_, &str>(0).as_bytes()),
        None => Err(RegistryError::VersionNotFound {
            model: model.to_string(),
            version,
        }),
    }
}

/// Audit entries, oldest first: every one, one model's, or one alias's.
pub(super) async fn audit_entries(
    client: &impl GenericClient,
    model: Option<&ModelName>,
    alias: Option<&AliasName>,
) -> Result<Vec<AuditEntry>, RegistryError> {
    let model = model.map(ModelName::as_str);
    let alias = alias.map(AliasName::as_str);
    let rows = client
        .query(
            "SELECT entry FROM essaim_registry.audit
             WHERE ($1::text IS NULL OR model = $1) AND ($2::text IS NULL OR alias = $2)
             ORDER BY sequence",
            &[&model, &alias],
        )
        .await
        .map_err(postgres("read the audit log"))?;
    rows.iter()
        .map(|row| decode(row.get::<_, &str>(0).as_bytes()))
        .collect()
}
