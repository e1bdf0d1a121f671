//! The store's suite, run against both backends: the embedded redb store in a temporary
//! directory, and PostgreSQL on a private cluster started by `scripts/postgres.sh` (one
//! per test, through the test kit). Every case is written once, against
//! [`RegistryStore`], and instantiated for each backend (`redb::…`, `postgres::…`).
//!
//! Concurrency cases run on a multi-threaded runtime: for redb the changes race on
//! blocking threads, for PostgreSQL on separate connections (and, in
//! `two_stores_on_one_database_…`, on two stores as two processes would).
#![allow(clippy::unwrap_used)]

use essaim_registry::names::{ModelName, VersionRef};
use essaim_registry::record::{ArtifactRef, AuditAction, Lineage};
use essaim_registry::store::{AliasMove, Change, RegistryStore, StoreLocation};
use essaim_testkit::server::ScriptServer;
use std::collections::BTreeMap;

/// What keeps a backend alive for one test.
enum Backend {
    Redb(tempfile::TempDir),
    Postgres(ScriptServer),
}

impl Backend {
    fn redb() -> Backend {
        Backend::Redb(tempfile::tempdir().unwrap())
    }

    /// A private PostgreSQL cluster; `None` when `ESSAIM_SKIP_POSTGRES=1`.
    fn postgres() -> Option<Backend> {
        essaim_testkit::server::postgres().map(Backend::Postgres)
    }

    fn location(&self) -> StoreLocation {
        match self {
            Backend::Redb(dir) => StoreLocation::Directory(dir.path().join("registry")),
            Backend::Postgres(server) => StoreLocation::Postgres(server.url().to_string()),
        }
    }

    async fn open(&self) -> RegistryStore {
        RegistryStore::open(&self.location()).await.unwrap()
    }
}

fn change(now_unix_ms: u64) -> Change<'static> {
    Change {
        actor: "alice",
        now_unix_ms,
    }
}

fn artifact(byte: u8) -> ArtifactRef {
    ArtifactRef {
        sha256: format!("{byte:02x}").repeat(32),
        size: 10,
    }
}

async fn register(store: &RegistryStore, model: &ModelName, at: u64) -> u64 {
    let metrics = BTreeMap::from([("accuracy".to_string(), 0.9)]);
    store
        .register(
            model,
            artifact(at as u8),
            metrics,
            BTreeMap::new(),
            Lineage::default(),
            change(at),
        )
        .await
        .unwrap()
        .version
}

fn to(version: u64, action: AuditAction) -> AliasMove {
    AliasMove::To {
        version: VersionRef::Number(version),
        action,
    }
}

/// Instantiates each case for both backends.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::cases::$case(&super::Backend::redb()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(backend) = super::Backend::postgres() else { return };
                    super::cases::$case(&backend).await;
                }
            )*
        }
    };
}

on_both_backends!(
    versions_are_numbered_and_aliases_resolve,
    unknown_names_are_clear_errors,
    the_audit_log_answers_what_an_alias_named_at_any_time,
    archived_versions_cannot_be_aliased_and_aliased_ones_cannot_be_archived,
    concurrent_promotions_of_one_alias_are_serialised_and_all_audited,
    the_store_survives_reopening,
    concurrent_registrations_get_distinct_versions,
);

mod cases;
mod postgres_only;
