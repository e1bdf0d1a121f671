//! The cases of the suite, each against whichever backend it is given.

use super::{Backend, change, register, to};
use essaim_registry::RegistryError;
use essaim_registry::names::{AliasName, ModelName, VersionRef};
use essaim_registry::record::AuditAction;
use essaim_registry::store::{AliasMove, RegistryStore};
use std::collections::BTreeMap;

pub async fn versions_are_numbered_and_aliases_resolve(backend: &Backend) {
    let store = backend.open().await;
    let model = ModelName::parse("spam-filter").unwrap();
    assert_eq!(register(&store, &model, 10).await, 1);
    assert_eq!(register(&store, &model, 20).await, 2);
    let production = AliasName::parse("production").unwrap();
    store
        .move_alias(
            &model,
            &production,
            &to(1, AuditAction::Promote),
            change(30),
        )
        .await
        .unwrap();
    let named = store
        .version(&model, &VersionRef::Alias(production.clone()))
        .await
        .unwrap();
    assert_eq!(named.version, 1);
    assert_eq!(named.aliases, ["production"]);
    assert_eq!(named.metrics["accuracy"], 0.9);
    let latest = store.version(&model, &VersionRef::Latest).await.unwrap();
    assert_eq!(latest.version, 2);
    let summary = store.model(&model).await.unwrap();
    assert_eq!(summary.versions, 2);
    assert_eq!(summary.aliases, BTreeMap::from([("production".into(), 1)]));
    assert_eq!(summary.created_unix_ms, 10);
    assert_eq!(store.models().await.unwrap().len(), 1);
    let listed = store.versions(&model).await.unwrap();
    let numbers: Vec<u64> = listed.iter().map(|record| record.version).collect();
    assert_eq!(numbers, [1, 2]);
    assert_eq!(listed[0].aliases, ["production"]);
}

pub async fn unknown_names_are_clear_errors(backend: &Backend) {
    let store = backend.open().await;
    let model = ModelName::parse("m").unwrap();
    assert!(matches!(
        store.model(&model).await,
        Err(RegistryError::ModelNotFound { .. })
    ));
    register(&store, &model, 1).await;
    assert!(matches!(
        store.version(&model, &VersionRef::Number(9)).await,
        Err(RegistryError::VersionNotFound { version: 9, .. })
    ));
    assert!(matches!(
        store.version(&model, &VersionRef::Number(u64::MAX)).await,
        Err(RegistryError::VersionNotFound { .. })
    ));
    let champion = AliasName::parse("champion").unwrap();
    assert!(matches!(
        store
            .version(&model, &VersionRef::Alias(champion.clone()))
            .await,
        Err(RegistryError::AliasNotFound { .. })
    ));
    assert!(matches!(
        store
            .move_alias(&model, &champion, &to(5, AuditAction::Alias), change(2))
            .await,
        Err(RegistryError::VersionNotFound { version: 5, .. })
    ));
    assert!(matches!(
        store
            .move_alias(&model, &champion, &AliasMove::Rollback, change(2))
            .await,
        Err(RegistryError::NothingToRollBack { .. })
    ));
    let unknown = ModelName::parse("unknown").unwrap();
    assert!(matches!(
        store.audit(Some(&unknown), None).await,
        Err(RegistryError::ModelNotFound { .. })
    ));
    // A refused change leaves nothing behind: the log holds the one registration.
    assert_eq!(store.audit(None, None).await.unwrap().len(), 1);
}

pub async fn the_audit_log_answers_what_an_alias_named_at_any_time(backend: &Backend) {
    let store = backend.open().await;
    let model = ModelName::parse("m").unwrap();
    for at in [1, 2, 3] {
        register(&store, &model, at).await;
    }
    let production = AliasName::parse("production").unwrap();
    let moves = [
        (100, to(1, AuditAction::Promote)),
        (200, to(3, AuditAction::Promote)),
        (300, AliasMove::Rollback),
    ];
    for (at, requested) in &moves {
        store
            .move_alias(&model, &production, requested, change(*at))
            .await
            .unwrap();
    }
    for (time, expected) in [(50, None), (150, Some(1)), (250, Some(3)), (300, Some(1))] {
        let named = store.alias_at(&model, &production, time).await.unwrap();
        assert_eq!(named.version, expected, "at {time}");
    }
    let log = store.audit(Some(&model), None).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "register", "register", "register", "promote", "promote", "rollback"
        ]
    );
    let rollback = log.last().unwrap();
    assert_eq!(
        (rollback.from_version, rollback.version),
        (Some(3), Some(1))
    );
    assert_eq!(rollback.actor, "alice");
    let sequences: Vec<u64> = log.iter().map(|entry| entry.sequence).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);
}

pub async fn archived_versions_cannot_be_aliased_and_aliased_ones_cannot_be_archived(
    backend: &Backend,
) {
    let store = backend.open().await;
    let model = ModelName::parse("m").unwrap();
    register(&store, &model, 1).await;
    register(&store, &model, 2).await;
    let staging = AliasName::parse("staging").unwrap();
    store
        .move_alias(&model, &staging, &to(2, AuditAction::Promote), change(3))
        .await
        .unwrap();
    assert!(matches!(
        store.archive(&model, 2, change(4)).await,
        Err(RegistryError::StillAliased { .. })
    ));
    store.archive(&model, 1, change(5)).await.unwrap();
    assert!(matches!(
        store
            .move_alias(&model, &staging, &to(1, AuditAction::Promote), change(6))
            .await,
        Err(RegistryError::Archived { version: 1, .. })
    ));
    let archived = store.version(&model, &VersionRef::Number(1)).await.unwrap();
    assert!(archived.archived);
    // The latest version is the newest one not archived.
    store
        .move_alias(&model, &staging, &to(2, AuditAction::Promote), change(7))
        .await
        .unwrap();
    assert_eq!(store.model(&model).await.unwrap().latest, Some(2));
}

pub async fn concurrent_promotions_of_one_alias_are_serialised_and_all_audited(backend: &Backend) {
    let store = backend.open().await;
    let model = ModelName::parse("m").unwrap();
    let mut versions = Vec::new();
    for at in 1..=8 {
        versions.push(register(&store, &model, at).await);
    }
    let production = AliasName::parse("production").unwrap();
    let promotions: Vec<_> = versions
        .iter()
        .map(|version| {
            let (store, model, production) = (store.clone(), model.clone(), production.clone());
            let requested = to(*version, AuditAction::Promote);
            tokio::spawn(async move {
                store
                    .move_alias(&model, &production, &requested, change(100))
                    .await
            })
        })
        .collect();
    for promotion in promotions {
        promotion.await.unwrap().unwrap();
    }
    check_serialised_moves(&store, &model, &production, versions.len()).await;
}

/// Checks that `expected` moves of an alias are all audited, each from the version the
/// previous one set, and that the alias names what the last one set.
pub async fn check_serialised_moves(
    store: &RegistryStore,
    model: &ModelName,
    alias: &AliasName,
    expected: usize,
) {
    let moves = store.audit(Some(model), Some(alias)).await.unwrap();
    assert_eq!(moves.len(), expected, "every promotion is audited");
    assert_eq!(moves[0].from_version, None);
    for pair in moves.windows(2) {
        assert_eq!(pair[1].from_version, pair[0].version, "{moves:#?}");
        assert_eq!(pair[1].sequence, pair[0].sequence + 1, "{moves:#?}");
    }
    let now = store
        .version(model, &VersionRef::Alias(alias.clone()))
        .await
        .unwrap();
    assert_eq!(Some(now.version), moves.last().unwrap().version);
}

pub async fn the_store_survives_reopening(backend: &Backend) {
    let model = ModelName::parse("m").unwrap();
    {
        let store = backend.open().await;
        register(&store, &model, 1).await;
    }
    let store = backend.open().await;
    assert_eq!(register(&store, &model, 2).await, 2);
    assert_eq!(store.audit(None, None).await.unwrap().len(), 2);
}

pub async fn concurrent_registrations_get_distinct_versions(backend: &Backend) {
    let store = backend.open().await;
    let model = ModelName::parse("m").unwrap();
    let registrations: Vec<_> = (1..=8)
        .map(|at| {
            let (store, model) = (store.clone(), model.clone());
            tokio::spawn(async move { register(&store, &model, at).await })
        })
        .collect();
    let mut versions = Vec::new();
    for registration in registrations {
        versions.push(registration.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<u64>>());
    assert_eq!(store.model(&model).await.unwrap().versions, 8);
}
