use super::*;
use crate::names::AliasName;

fn store() -> (tempfile::TempDir, RegistryStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RegistryStore::open(&dir.path().join("registry.redb")).unwrap();
    (dir, store)
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

fn register(store: &RegistryStore, model: &ModelName, at: u64) -> u64 {
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
        .unwrap()
        .version
}

fn to(version: u64, action: AuditAction) -> AliasMove {
    AliasMove::To {
        version: VersionRef::Number(version),
        action,
    }
}

#[test]
fn versions_are_numbered_and_aliases_resolve() {
    let (_dir, store) = store();
    let model = ModelName::parse("spam-filter").unwrap();
    assert_eq!(register(&store, &model, 10), 1);
    assert_eq!(register(&store, &model, 20), 2);
    let production = AliasName::parse("production").unwrap();
    store
        .move_alias(
            &model,
            &production,
            &to(1, AuditAction::Promote),
            change(30),
        )
        .unwrap();
    let named = store
        .version(&model, &VersionRef::Alias(production.clone()))
        .unwrap();
    assert_eq!(named.version, 1);
    assert_eq!(named.aliases, ["production"]);
    assert_eq!(named.metrics["accuracy"], 0.9);
    assert_eq!(
        store.version(&model, &VersionRef::Latest).unwrap().version,
        2
    );
    let summary = store.model(&model).unwrap();
    assert_eq!(summary.versions, 2);
    assert_eq!(summary.aliases, BTreeMap::from([("production".into(), 1)]));
    assert_eq!(store.models().unwrap().len(), 1);
}

#[test]
fn unknown_names_are_clear_errors() {
    let (_dir, store) = store();
    let model = ModelName::parse("m").unwrap();
    assert!(matches!(
        store.model(&model),
        Err(RegistryError::ModelNotFound { .. })
    ));
    register(&store, &model, 1);
    assert!(matches!(
        store.version(&model, &VersionRef::Number(9)),
        Err(RegistryError::VersionNotFound { version: 9, .. })
    ));
    let champion = AliasName::parse("champion").unwrap();
    assert!(matches!(
        store.version(&model, &VersionRef::Alias(champion.clone())),
        Err(RegistryError::AliasNotFound { .. })
    ));
    assert!(matches!(
        store.move_alias(&model, &champion, &to(5, AuditAction::Alias), change(2)),
        Err(RegistryError::VersionNotFound { version: 5, .. })
    ));
    assert!(matches!(
        store.move_alias(&model, &champion, &AliasMove::Rollback, change(2)),
        Err(RegistryError::NothingToRollBack { .. })
    ));
}

#[test]
fn the_audit_log_answers_what_an_alias_named_at_any_time() {
    let (_dir, store) = store();
    let model = ModelName::parse("m").unwrap();
    for at in [1, 2, 3] {
        register(&store, &model, at);
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
            .unwrap();
    }
    let at = |time| store.alias_at(&model, &production, time).unwrap().version;
    assert_eq!(at(50), None);
    assert_eq!(at(150), Some(1));
    assert_eq!(at(250), Some(3));
    assert_eq!(at(300), Some(1));
    let log = store.audit(Some(&model), None).unwrap();
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

#[test]
fn archived_versions_cannot_be_aliased_and_aliased_ones_cannot_be_archived() {
    let (_dir, store) = store();
    let model = ModelName::parse("m").unwrap();
    register(&store, &model, 1);
    register(&store, &model, 2);
    let staging = AliasName::parse("staging").unwrap();
    store
        .move_alias(&model, &staging, &to(2, AuditAction::Promote), change(3))
        .unwrap();
    assert!(matches!(
        store.archive(&model, 2, change(4)),
        Err(RegistryError::StillAliased { .. })
    ));
    store.archive(&model, 1, change(5)).unwrap();
    assert!(matches!(
        store.move_alias(&model, &staging, &to(1, AuditAction::Promote), change(6)),
        Err(RegistryError::Archived { version: 1, .. })
    ));
    assert!(
        store
            .version(&model, &VersionRef::Number(1))
            .unwrap()
            .archived
    );
}

#[test]
fn concurrent_promotions_of_one_alias_are_serialised_and_all_audited() {
    let (_dir, store) = store();
    let model = ModelName::parse("m").unwrap();
    let versions: Vec<u64> = (1..=8).map(|at| register(&store, &model, at)).collect();
    let production = AliasName::parse("production").unwrap();
    std::thread::scope(|scope| {
        for version in &versions {
            let (store, model, production) = (&store, &model, &production);
            scope.spawn(move || {
                let requested = to(*version, AuditAction::Promote);
                store
                    .move_alias(model, production, &requested, change(100))
                    .unwrap();
            });
        }
    });
    let moves = store.audit(Some(&model), Some(&production)).unwrap();
    assert_eq!(moves.len(), versions.len(), "every promotion is audited");
    // Serialised: each promotion moved the alias from what the previous one set.
    assert_eq!(moves[0].from_version, None);
    for pair in moves.windows(2) {
        assert_eq!(pair[1].from_version, pair[0].version, "{moves:#?}");
    }
    let now = store
        .version(&model, &VersionRef::Alias(production))
        .unwrap();
    assert_eq!(Some(now.version), moves.last().unwrap().version);
}

#[test]
fn the_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    let model = ModelName::parse("m").unwrap();
    {
        let store = RegistryStore::open(&path).unwrap();
        register(&store, &model, 1);
    }
    let store = RegistryStore::open(&path).unwrap();
    assert_eq!(register(&store, &model, 2), 2);
    assert_eq!(store.audit(None, None).unwrap().len(), 2);
}

#[test]
fn concurrent_registrations_get_distinct_versions() {
    let (_dir, store) = store();
    let model = ModelName::parse("m").unwrap();
    let mut versions: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..=8)
            .map(|at| {
                let (store, model) = (&store, &model);
                scope.spawn(move || register(store, model, at))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<u64>>());
    assert_eq!(store.model(&model).unwrap().versions, 8);
}
