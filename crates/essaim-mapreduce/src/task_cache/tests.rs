//! The task cache on a real directory: stores are whole, corrupt entries are refused,
//! the bound holds, and an installed output outlives its entry.

use std::path::Path;

use super::*;
use crate::counters::Counters;
use crate::payload::MapTaskPayload;
use crate::sort::MapOutputFile;

fn output_in(dir: &Path, bytes: &[u8]) -> MapOutputFile {
    let path = dir.join("computed.out");
    std::fs::write(&path, bytes).unwrap();
    let mut counters = Counters::default();
    counters.add(counters::MAP_INPUT_RECORDS, 7);
    MapOutputFile {
        path,
        size_bytes: bytes.len() as u64,
        counters,
    }
}

fn key(name: &str) -> TaskKey {
    TaskKey::from_hex(&key::hex(name.as_bytes()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_stored_output_is_installed_whole_with_its_counters() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(&dir.path().join("cache"), 1 << 20, "v1").unwrap();
    let computed = output_in(dir.path(), b"map output bytes");
    cache.store(&key("a"), &computed);
    let entries = names(&dir.path().join("cache"));
    assert_eq!(
        entries.len(),
        2,
        "an .out and a .meta, no temporary: {entries:?}"
    );
    assert!(entries.iter().all(|name| !name.starts_with(".tmp-")));
    let scratch = dir.path().join("attempt");
    std::fs::create_dir(&scratch).unwrap();
    let installed = cache.install(&key("a"), &scratch).unwrap();
    assert_eq!(std::fs::read(&installed.path).unwrap(), b"map output bytes");
    assert_eq!(installed.path, scratch.join(MAP_OUTPUT_FILE));
    assert_eq!(installed.counters.get(counters::MAP_INPUT_RECORDS), 7);
    assert_eq!(installed.counters.get(counters::MAP_REUSED_TASKS), 1);
    assert!(
        cache.install(&key("b"), &scratch).is_none(),
        "another key misses"
    );
}

#[test]
fn a_corrupt_entry_is_refused_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let cache = TaskCache::open(&cache_dir, 1 << 20, "v1").unwrap();
    cache.store(&key("a"), &output_in(dir.path(), b"map output bytes"));
    let stored = cache_dir.join(format!("{}.out", key("a")));
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[3] ^= 0x40;
    std::fs::write(&stored, bytes).unwrap();
    let scratch = dir.path().join("attempt");
    std::fs::create_dir(&scratch).unwrap();
    assert!(cache.install(&key("a"), &scratch).is_none());
    assert!(
        !scratch.join(MAP_OUTPUT_FILE).exists(),
        "no half-checked output left"
    );
    assert!(names(&cache_dir).is_empty(), "the entry is gone");
    // The next store of the key works again.
    cache.store(&key("a"), &output_in(dir.path(), b"map output bytes"));
    assert!(cache.install(&key("a"), &scratch).is_some());
}

#[test]
fn the_least_recently_used_entries_go_past_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    // Room for two entries of 1000 bytes and their metadata, not three.
    let cache = TaskCache::open(&cache_dir, 2600, "v1").unwrap();
    let scratch = dir.path().join("attempt");
    std::fs::create_dir(&scratch).unwrap();
    let payload = vec![b'x'; 1000];
    cache.store(&key("a"), &output_in(dir.path(), &payload));
    std::thread::sleep(std::time::Duration::from_millis(20));
    cache.store(&key("b"), &output_in(dir.path(), &payload));
    std::thread::sleep(std::time::Duration::from_millis(20));
    // `a` used since: `b` is now the least recently used.
    assert!(cache.install(&key("a"), &scratch).is_some());
    std::thread::sleep(std::time::Duration::from_millis(20));
    cache.store(&key("c"), &output_in(dir.path(), &payload));
    assert!(cache.install(&key("b"), &scratch).is_none(), "evicted");
    assert!(cache.install(&key("a"), &scratch).is_some());
    assert!(cache.install(&key("c"), &scratch).is_some());
    let total: u64 = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total <= 2600, "{total} bytes");
    // An output larger than the bound is not stored at all.
    cache.store(&key("d"), &output_in(dir.path(), &vec![b'y'; 3000]));
    assert!(cache.install(&key("d"), &scratch).is_none());
}

#[test]
fn an_installed_output_outlives_the_eviction_of_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let cache = TaskCache::open(&cache_dir, 1500, "v1").unwrap();
    let scratch = dir.path().join("attempt");
    std::fs::create_dir(&scratch).unwrap();
    cache.store(&key("a"), &output_in(dir.path(), &[b'a'; 1000]));
    let installed = cache.install(&key("a"), &scratch).unwrap();
    // Another store pushes `a` out while its job still reads the installed copy.
    cache.store(&key("b"), &output_in(dir.path(), &[b'b'; 1000]));
    assert!(!cache_dir.join(format!("{}.out", key("a"))).exists());
    assert_eq!(std::fs::read(&installed.path).unwrap(), vec![b'a'; 1000]);
}

#[test]
fn a_changed_input_file_changes_the_key_and_object_inputs_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TaskCache::open(&dir.path().join("cache"), 1 << 20, "v1").unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "one two\n").unwrap();
    let mut payload = MapTaskPayload {
        config: crate::test_support::job_config("wordcount"),
        splits: vec![crate::payload::InputSplit {
            path: input.clone(),
            start: 0,
            length: 8,
        }],
    };
    let job = crate::jobs::wordcount::WordCount;
    let first = cache.key_for(&job, &payload).unwrap();
    assert_eq!(cache.key_for(&job, &payload), Some(first.clone()));
    std::fs::write(&input, "one six\n").unwrap();
    assert_ne!(cache.key_for(&job, &payload).unwrap(), first);
    // Skipping mode publishes what it skips: never reused.
    payload.config.skip.max_records = 1;
    assert_eq!(cache.key_for(&job, &payload), None);
    payload.config.skip.max_records = 0;
    payload.splits[0].path = "s3://bucket/in.txt".into();
    assert_eq!(cache.key_for(&job, &payload), None);
    // A job that does not say its map output is reusable has no key.
    payload.splits[0].path = input;
    assert_eq!(
        cache.key_for(&crate::test_support::ToyWordCount, &payload),
        None
    );
}
