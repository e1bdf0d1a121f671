//! The registry's tables in PostgreSQL, created on first use and versioned.
//!
//! Everything lives in the schema `essaim_registry`, so the registry can share a
//! database with anything else. `meta` holds `format_version` ([`SCHEMA_VERSION`]);
//! a store of another version is refused rather than read. Its row is also the lock
//! every change takes first (`SELECT … FOR UPDATE`): one change at a time across every
//! process sharing the database, as redb's single writer within one.
//!
//! Two processes starting at once on an empty database would race to create the
//! tables; the creation runs under a transaction-scoped advisory lock, so one creates
//! and the other finds them.
//!
//! Records are the same JSON as in redb (`record`, `entry`); the columns beside them
//! (`archived`, `alias`) are what queries filter on. Text is compared byte by byte
//! (`COLLATE "C"`), so lists come in the same order as from redb.

use crate::error::{RegistryError, postgres};
use tokio_postgres::Client;

/// The version of the tables' layout, written on creation and checked on open.
pub const SCHEMA_VERSION: i64 = 1;

/// The advisory lock key under which the tables are created (any constant: it only
/// has to be the same in every process).
const CREATION_LOCK: i64 = 0x6573_7361_696d_7267; // "essaimrg"

const META: &str = "
CREATE SCHEMA IF NOT EXISTS essaim_registry;
CREATE TABLE IF NOT EXISTS essaim_registry.meta (
    name text PRIMARY KEY,
    value bigint NOT NULL
);";

const TABLES: &str = r#"
CREATE TABLE essaim_registry.models (
    name text COLLATE "C" PRIMARY KEY,
    created_unix_ms bigint NOT NULL,
    next_version bigint NOT NULL
);
CREATE TABLE essaim_registry.versions (
    model text COLLATE "C" NOT NULL REFERENCES essaim_registry.models (name),
    version bigint NOT NULL,
    archived boolean NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE essaim_registry.aliases (
    model text COLLATE "C" NOT NULL,
    alias text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (model, alias),
    FOREIGN KEY (model, version) REFERENCES essaim_registry.versions (model, version)
);
CREATE TABLE essaim_registry.audit (
    sequence bigint PRIMARY KEY,
    model text COLLATE "C" NOT NULL,
    alias text COLLATE "C",
    entry text NOT NULL
);
CREATE INDEX audit_by_alias ON essaim_registry.audit (model, alias, sequence);
"#;

/// Locks out every other change until the transaction ends (see the module doc).
pub(super) const LOCK_FOR_CHANGE: &str =
    "SELECT value FROM essaim_registry.meta WHERE name = 'format_version' FOR UPDATE";

/// Creates the tables if the database has none, or checks their version.
pub(super) async fn create_or_check(
    client: &mut Client,
    location: &str,
) -> Result<(), RegistryError> {
    let transaction = client
        .transaction()
        .await
        .map_err(postgres("begin the schema check"))?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&CREATION_LOCK])
        .await
        .map_err(postgres("lock the schema's creation"))?;
    transaction
        .batch_execute(META)
        .await
        .map_err(postgres("create the schema"))?;
    let found = transaction
        .query_opt(
            "SELECT value FROM essaim_registry.meta WHERE name = 'format_version'",
            &[],
        )
        .await
        .map_err(postgres("read the schema's version"))?
        .map(|row| row.get::<_, i64>(0));
    match found {
        None => {
            transaction
                .batch_execute(TABLES)
                .await
                .map_err(postgres("create the tables"))?;
            transaction
                .execute(
                    "INSERT INTO essaim_registry.meta (name, value) VALUES ('format_version', $1)",
                    &[&SCHEMA_VERSION],
                )
                .await
                .map_err(postgres("record the schema's version"))?;
            tracing::info!(
                store = location,
                version = SCHEMA_VERSION,
                "registry tables created"
            );
        }
        Some(found) if found != SCHEMA_VERSION => {
            return Err(RegistryError::Version {
                store: location.to_string(),
                found: found as u64,
                expected: SCHEMA_VERSION as u64,
            });
        }
        Some(_) => {}
    }
    transaction
        .commit()
        .await
        .map_err(postgres("commit the schema"))
}
