//! What only the PostgreSQL store has: several stores (processes) on one database,
//! connection failures, the schema's version.

use super::{Backend, cases::check_serialised_moves, register, to};
use essaim_core::error_chain::error_chain;
use essaim_registry::RegistryError;
use essaim_registry::names::{AliasName, ModelName};
use essaim_registry::record::AuditAction;
use essaim_registry::store::{RegistryStore, StoreLocation};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_database_see_and_serialise_each_others_changes() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    // Two stores with their own connections, as two registry processes would have.
    let (first, second) = (backend.open().await, backend.open().await);
    let model = ModelName::parse("m").unwrap();
    let mut versions = Vec::new();
    for at in 1..=8 {
        let store = if at % 2 == 0 { &first } else { &second };
        versions.push(register(store, &model, at).await);
    }
    assert_eq!(versions, (1..=8).collect::<Vec<u64>>());
    let production = AliasName::parse("production").unwrap();
    let promotions: Vec<_> = versions
        .iter()
        .map(|version| {
            let store = if version % 2 == 0 { &first } else { &second };
            let (store, model, production) = (store.clone(), model.clone(), production.clone());
            let requested = to(*version, AuditAction::Promote);
            tokio::spawn(async move {
                store
                    .move_alias(&model, &production, &requested, super::change(100))
                    .await
            })
        })
        .collect();
    for promotion in promotions {
        promotion.await.unwrap().unwrap();
    }
    check_serialised_moves(&first, &model, &production, versions.len()).await;
    check_serialised_moves(&second, &model, &production, versions.len()).await;
}

#[tokio::test]
async fn an_unreachable_server_and_an_unknown_role_are_clear_errors() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let StoreLocation::Postgres(url) = backend.location() else {
        unreachable!("a PostgreSQL backend")
    };
    // A port nobody listens on: bind one, then close it.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("postgresql://postgres:secret@127.0.0.1:{closed_port}/postgres");
    let error = RegistryStore::open(&StoreLocation::Postgres(unreachable))
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::StoreUnreachable { .. }),
        "{error:?}"
    );
    let text = error_chain(&error);
    assert!(text.contains(&format!("127.0.0.1:{closed_port}")), "{text}");
    assert!(
        !text.contains("secret"),
        "the password is never shown: {text}"
    );

    let unknown_role = url.replacen("postgres@", "nobody@", 1);
    assert_ne!(unknown_role, url);
    let error = RegistryStore::open(&StoreLocation::Postgres(unknown_role))
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::StoreUnreachable { .. }),
        "{error:?}"
    );
    assert!(
        error_chain(&error).contains("nobody"),
        "{}",
        error_chain(&error)
    );

    let error = StoreLocation::parse("mysql://root@127.0.0.1/registry").unwrap_err();
    assert!(
        matches!(error, RegistryError::StoreLocation { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_store_of_another_schema_version_is_refused() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let store = backend.open().await;
    drop(store);
    let StoreLocation::Postgres(url) = backend.location() else {
        unreachable!("a PostgreSQL backend")
    };
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "UPDATE essaim_registry.meta SET value = 99 WHERE name = 'format_version'",
            &[],
        )
        .await
        .unwrap();
    let error = RegistryStore::open(&backend.location()).await.unwrap_err();
    assert!(
        matches!(
            error,
            RegistryError::Version {
                found: 99,
                expected: 1,
                ..
            }
        ),
        "{error:?}"
    );
}
