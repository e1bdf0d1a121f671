use std::path::Path;

use super::*;
use crate::query::{Query, QueryLimits, merge_answers};

/// Writes a finished index output of two parts.
fn write_index(dir: &Path) {
    std::fs::write(
        dir.join("part-00000"),
        "cat\t/d/a,/d/b,/d/c,/d/e\ndog\t/d/b,/d/c,/d/d\n",
    )
    .unwrap();
    std::fs::write(dir.join("part-00001"), "bird\t/d/e\nfish\t/d/a,/d/d\n").unwrap();
    std::fs::write(dir.join("_SUCCESS"), "").unwrap();
}

#[test]
fn every_document_lands_in_exactly_one_shard_and_answers_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    write_index(dir.path());
    let whole = ShardIndex::parse(
        b"cat\t/d/a,/d/b,/d/c,/d/e\ndog\t/d/b,/d/c,/d/d\nbird\t/d/e\nfish\t/d/a,/d/d\n",
        Path::new("whole"),
    )
    .unwrap();
    for shards in [1, 2, 3, 7] {
        let manifest = prepare_shards(dir.path(), shards).unwrap();
        assert_eq!(manifest.entries.len(), shards as usize);
        let documents: u64 = manifest.entries.iter().map(|entry| entry.documents).sum();
        assert_eq!(documents, 5, "{shards} shards");
        let loaded: Vec<ShardIndex> = (0..shards)
            .map(|shard| load_shard(dir.path(), shards, ShardId(shard)).unwrap())
            .collect();
        for text in ["cat", "cat dog", "fish OR bird", "dog fish", "cow"] {
            let query = Query::parse(text, QueryLimits::default(), true).unwrap();
            let answers: Vec<Vec<String>> =
                loaded.iter().map(|shard| query.evaluate(shard)).collect();
            let gathered = merge_answers(answers.iter().map(Vec::as_slice));
            assert_eq!(
                gathered,
                query.evaluate(&whole),
                "{text} on {shards} shards"
            );
        }
    }
}

#[test]
fn the_shard_of_a_document_is_fixed() {
    // Pinned: a change would move every served document to another shard.
    assert_eq!(shard_of_document("/d/a", 4), shard_of_document("/d/a", 4));
    assert_eq!(
        shard_of_document("/usr/share/man/man1/ls.1.gz", 1),
        ShardId(0)
    );
    let spread: std::collections::BTreeSet<ShardId> = (0..100)
        .map(|index| shard_of_document(&format!("/doc/{index}"), 4))
        .collect();
    assert_eq!(spread.len(), 4);
}

#[test]
fn a_corrupt_shard_is_refused_at_load_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_index(dir.path());
    let manifest = prepare_shards(dir.path(), 2).unwrap();
    let victim = shard_set_dir(dir.path(), 2).join(&manifest.entries[1].file);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&victim, bytes).unwrap();
    let error = load_shard(dir.path(), 2, ShardId(1)).unwrap_err();
    assert!(
        matches!(
            error,
            ShardError::Corrupt {
                shard: ShardId(1),
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("shard-00001"), "{error}");
    assert!(load_shard(dir.path(), 2, ShardId(0)).is_ok());
    let verified = verify_shards(dir.path(), &manifest).unwrap_err();
    assert!(matches!(
        verified,
        ShardError::Corrupt {
            shard: ShardId(1),
            ..
        }
    ));
}

#[test]
fn an_existing_shard_set_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    write_index(dir.path());
    let first = prepare_shards(dir.path(), 3).unwrap();
    std::fs::write(dir.path().join("part-00001"), "changed\t/x\n").unwrap();
    assert_eq!(prepare_shards(dir.path(), 3).unwrap(), first);
}

#[test]
fn what_is_not_a_finished_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing");
    assert!(matches!(
        prepare_shards(&missing, 2),
        Err(ShardError::NotAnIndex { .. })
    ));
    std::fs::write(dir.path().join("part-00000"), "cat\t/a\n").unwrap();
    let unfinished = prepare_shards(dir.path(), 2).unwrap_err();
    assert!(unfinished.to_string().contains("_SUCCESS"), "{unfinished}");
    std::fs::write(dir.path().join("_SUCCESS"), "").unwrap();
    std::fs::write(dir.path().join("part-00001"), "no tab here\n").unwrap();
    assert!(matches!(
        prepare_shards(dir.path(), 2),
        Err(ShardError::Malformed { line: 1, .. })
    ));
    assert!(matches!(
        prepare_shards(dir.path(), 0),
        Err(ShardError::ShardCount { shards: 0 })
    ));
}
