//! The registry's PostgreSQL store: the production backend, which several registry
//! processes (or coordinators) can share.
//!
//! Every change is one transaction that first takes the change lock (the `meta` row of
//! the format version, `FOR UPDATE`; see `schema.rs`), then reads the current state,
//! checks it, writes the new state and appends its audit entry. Under READ COMMITTED
//! each statement after the lock sees every change committed before it, so a change
//! decides on the latest state: two promotions of one alias racing each other, from one
//! process or two, both succeed one after the other, each audited with the version it
//! moved the alias *from*, and audit sequence numbers have no gaps.
//!
//! Queries read in a REPEATABLE READ, read-only transaction: one snapshot per answer
//! (a model's summary and its versions agree), and they never wait for a change.
//!
//! Numbers are `bigint`: versions, sequences and times are far below 2^63.

mod pool;
mod read;
mod schema;

pub use pool::{CONNECT_TIMEOUT, MAX_CONNECTIONS};
pub use schema::SCHEMA_VERSION;

use super::rules::{self, NewVersion};
use super::{AliasMove, Change, encode, next_audit_entry, with_aliases};
use crate::error::{RegistryError, postgres};
use crate::names::{AliasName, ModelName, VersionRef};
use crate::record::{ArtifactRef, AuditAction, AuditEntry, Lineage, ModelSummary, VersionRecord};
use pool::Pool;
use read::{audit_entries, read_version, resolve, summaries, summary};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_postgres::{IsolationLevel, Transaction};

/// The open PostgreSQL store (cheap to clone: its connections are shared).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: Arc<Pool>,
}

/// A number as stored: versions and sequences never reach 2^63; a larger one asked
/// for is clamped, so it is simply not found.
fn to_sql(number: u64) -> i64 {
    i64::try_from(number).unwrap_or(i64::MAX)
}

/// A stored number: the store writes none below zero.
fn from_sql(number: i64) -> u64 {
    u64::try_from(number).unwrap_or(0)
}

fn json_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("serde_json writes UTF-8")
}

impl PgStore {
    /// Connects to the database at `url` and creates the registry's tables, or checks
    /// their version. An unreachable server or refused credentials are
    /// [`RegistryError::StoreUnreachable`]; an invalid URL [`RegistryError::StoreLocation`].
    pub async fn open(url: &str) -> Result<PgStore, RegistryError> {
        let location = super::redact_password(url);
        let pool = Pool::new(url, location.clone())?;
        {
            let mut client = pool.get().await?;
            schema::create_or_check(&mut client, &location).await?;
        }
        Ok(PgStore {
            pool: Arc::new(pool),
        })
    }

    /// Begins a change: a transaction holding the change lock.
    async fn begin_change<'a>(
        client: &'a mut tokio_postgres::Client,
    ) -> Result<Transaction<'a>, RegistryError> {
        let transaction = client
            .transaction()
            .await
            .map_err(postgres("begin a change"))?;
        transaction
            .execute(schema::LOCK_FOR_CHANGE, &[])
            .await
            .map_err(postgres("take the change lock"))?;
        Ok(transaction)
    }

    /// Begins a query: a read-only snapshot.
    async fn begin_query<'a>(
        client: &'a mut tokio_postgres::Client,
    ) -> Result<Transaction<'a>, RegistryError> {
        client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(postgres("begin a query"))
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
        let mut client = self.pool.get().await?;
        let transaction = Self::begin_change(&mut client).await?;
        let existing = transaction
            .query_opt(
                "SELECT next_version FROM essaim_registry.models WHERE name = $1",
                &[&model.as_str()],
            )
            .await
            .map_err(postgres("read the model"))?;
        let version = existing.map_or(1, |row| from_sql(row.get(0)));
        transaction
            .execute(
                "INSERT INTO essaim_registry.models (name, created_unix_ms, next_version)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET next_version = EXCLUDED.next_version",
                &[
                    &model.as_str(),
                    &to_sql(change.now_unix_ms),
                    &to_sql(version + 1),
                ],
            )
            .await
            .map_err(postgres("write the model"))?;
        let entry = append_audit(
            &transaction,
            AuditAction::Register,
            model,
            None,
            Some(version),
            None,
            change,
        )
        .await?;
        let new = NewVersion {
            artifact,
            metrics,
            metadata,
            lineage,
        };
        let record = new.record(model, version, &entry, change);
        transaction
            .execute(
                "INSERT INTO essaim_registry.versions (model, version, archived, record)
                 VALUES ($1, $2, false, $3)",
                &[
                    &model.as_str(),
                    &to_sql(version),
                    &json_text(encode(&record)),
                ],
            )
            .await
            .map_err(postgres("write the version"))?;
        transaction
            .commit()
            .await
            .map_err(postgres("commit the registration"))?;
        Ok(record)
    }

    /// Moves an alias; returns its audit entry.
    pub async fn move_alias(
        &self,
        model: &ModelName,
        alias: &AliasName,
        requested: &AliasMove,
        change: Change<'_>,
    ) -> Result<AuditEntry, RegistryError> {
        let mut client = self.pool.get().await?;
        let transaction = Self::begin_change(&mut client).await?;
        let current = summary(&transaction, model).await?;
        let from = current.aliases.get(alias.as_str()).copied();
        let (target, action) = match requested {
            AliasMove::To { version, action } => (resolve(&current, version)?, *action),
            AliasMove::Rollback => {
                let past = audit_entries(&transaction, Some(model), Some(alias)).await?;
                let target = rules::rollback_target(model, alias, &past)?;
                (target, AuditAction::Rollback)
            }
        };
        rules::may_be_aliased(&read_version(&transaction, model, target).await?)?;
        transaction
            .execute(
                "INSERT INTO essaim_registry.aliases (model, alias, version) VALUES ($1, $2, $3)
                 ON CONFLICT (model, alias) DO UPDATE SET version = EXCLUDED.version",
                &[&model.as_str(), &alias.as_str(), &to_sql(target)],
            )
            .await
            .map_err(postgres("write the alias"))?;
        let entry = append_audit(
            &transaction,
            action,
            model,
            Some(alias),
            Some(target),
            from,
            change,
        )
        .await?;
        transaction
            .commit()
            .await
            .map_err(postgres("commit the alias move"))?;
        Ok(entry)
    }

    /// Archives a version that no alias names; returns its audit entry.
    pub async fn archive(
        &self,
        model: &ModelName,
        version: u64,
        change: Change<'_>,
    ) -> Result<AuditEntry, RegistryError> {
        let mut client = self.pool.get().await?;
        let transaction = Self::begin_change(&mut client).await?;
        let current = summary(&transaction, model).await?;
        let mut record = read_version(&transaction, model, version).await?;
        let named = current
            .aliases
            .iter()
            .map(|(alias, to)| (alias.as_str(), *to));
        rules::may_be_archived(model, version, named)?;
        record.archived = true;
        transaction
            .execute(
                "UPDATE essaim_registry.versions SET archived = true, record = $3
                 WHERE model = $1 AND version = $2",
                &[
                    &model.as_str(),
                    &to_sql(version),
                    &json_text(encode(&record)),
                ],
            )
            .await
            .map_err(postgres("archive the version"))?;
        let entry = append_audit(
            &transaction,
            AuditAction::Archive,
            model,
            None,
            Some(version),
            None,
            change,
        )
        .await?;
        transaction
            .commit()
            .await
            .map_err(postgres("commit the archival"))?;
        Ok(entry)
    }

    /// Lists every model.
    pub async fn models(&self) -> Result<Vec<ModelSummary>, RegistryError> {
        let mut client = self.pool.get().await?;
        let transaction = Self::begin_query(&mut client).await?;
        summaries(&transaction, None).await
    }

    /// Describes one model.
    pub async fn model(&self, model: &ModelName) -> Result<ModelSummary, RegistryError> {
        let mut client = self.pool.get().await?;
        let transaction = Self::begin_query(&mut client).await?;
        summary(&transaction, model).await
    }

    /// Lists a model's versions, oldest first, with the aliases naming each.
    pub async fn versions(&self, model: &ModelName) -> Result<Vec<VersionRecord>, RegistryError> {
        let mut client = self.pool.get().await?;
        let transaction = Self::begin_query(&mut client).await?;
        let current = summary(&transaction, model).await?;
        let rows = transaction
            .query(
                "SELECT record FROM essaim_registry.versions WHERE model = $1 ORDER BY version",
                &[&model.as_str()],
            )
            .await
            .map_err(postgres("read the versions"))?;
        let mut listed = Vec::with_capacity(rows.len());
        for row in rows {
            let record = super::decode(row.get::<_, &str>(0).as_bytes())?;
            listed.push(with_aliases(record, &current.aliases));
        }
        Ok(listed)
    }

    /// Returns the version a reference names.
    pub async fn version(
        &self,
        model: &ModelName,
        reference: &VersionRef,
    ) -> Result<VersionRecord, RegistryError> {
        let mut client = self.pool.get().await?;
        let transaction = Self::begin_query(&mut client).await?;
        let current = summary(&transaction, model).await?;
        let number = resolve(&current, reference)?;
        let record = read_version(&transaction, model, number).await?;
        Ok(with_aliases(record, &current.aliases))
    }

    /// Returns the audit log, oldest first: every entry, or one model's, or one alias's.
    pub async fn audit(
        &self,
        model: Option<&ModelName>,
        alias: Option<&AliasName>,
    ) -> Result<Vec<AuditEntry>, RegistryError> {
        let mut client = self.pool.get().await?;
        let transaction = Self::begin_query(&mut client).await?;
        if let Some(model) = model {
            summary(&transaction, model).await?;
        }
        audit_entries(&transaction, model, alias).await
    }
}

/// Appends an audit entry after the last one; the caller holds the change lock, so no
/// other change can take the same sequence number.
async fn append_audit(
    transaction: &Transaction<'_>,
    action: AuditAction,
    model: &ModelName,
    alias: Option<&AliasName>,
    version: Option<u64>,
    from_version: Option<u64>,
    change: Change<'_>,
) -> Result<AuditEntry, RegistryError> {
    let last = transaction
        .query_opt(
            "SELECT entry FROM essaim_registry.audit ORDER BY sequence DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(postgres("read the last audit entry"))?;
    let previous: Option<AuditEntry> = match last {
        Some(row) => Some(super::decode(row.get::<_, &str>(0).as_bytes())?),
        None => None,
    };
    let entry = next_audit_entry(
        previous.as_ref(),
        action,
        model,
        alias,
        version,
        from_version,
        change,
    );
    transaction
        .execute(
            "INSERT INTO essaim_registry.audit (sequence, model, alias, entry)
             VALUES ($1, $2, $3, $4)",
            &[
                &to_sql(entry.sequence),
                &model.as_str(),
                &alias.map(AliasName::as_str),
                &json_text(encode(&entry)),
            ],
        )
        .await
        .map_err(postgres("append the audit entry"))?;
    Ok(entry)
}
