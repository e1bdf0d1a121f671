//! Cutting an index's output into shard files, once, and checking them afterwards.
//!
//! The cut is written to a temporary directory and renamed into place, so a shard set
//! directory that exists is complete: a crash while cutting leaves only a temporary
//! directory, which the next cut replaces. An existing shard set is reused as it is
//! (the index output is immutable once `_SUCCESS` is written).
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{
    MANIFEST_FILE, MANIFEST_VERSION, MAX_SHARDS, Manifest, SERVE_DIR, ShardEntry, ShardError,
    ShardId, parse_line, sha256_hex, shard_of_document, shard_set_dir,
};

/// The marker a finished MapReduce output holds.
const SUCCESS_MARKER: &str = "_SUCCESS";

/// Returns the manifest of the `shards`-way shard set of `index_dir`, cutting the index
/// into shard files first when that set does not exist yet.
pub fn prepare_shards(index_dir: &Path, shards: u32) -> Result<Manifest, ShardError> {
    if shards == 0 || shards > MAX_SHARDS {
        return Err(ShardError::ShardCount { shards });
    }
    let parts = index_parts(index_dir)?;
    let directory = shard_set_dir(index_dir, shards);
    if directory.join(MANIFEST_FILE).is_file() {
        return read_manifest(index_dir, shards);
    }
    let mut by_shard: Vec<BTreeMap<String, Vec<String>>> = vec![BTreeMap::new(); shards as usize];
    for part in &parts {
        let bytes = std::fs::read(part).map_err(|source| ShardError::io("read", part, source))?;
        for (number, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let (term, documents) = parse_line(line, part, number as u64 + 1)?;
            for document in documents {
                let shard = shard_of_document(&document, shards);
                by_shard[shard.0 as usize]
                    .entry(term.to_owned())
                    .or_default()
                    .push(document);
            }
        }
    }
    write_shard_set(index_dir, shards, by_shard)
}

/// Returns the index's `part-*` files in name order, refusing a directory that is not
/// a finished MapReduce output.
fn index_parts(index_dir: &Path) -> Result<Vec<PathBuf>, ShardError> {
    let not_an_index = |reason: String| ShardError::NotAnIndex {
        path: index_dir.to_path_buf(),
        reason,
    };
    if !index_dir.is_dir() {
        return Err(not_an_index("no such directory".to_owned()));
    }
    if !index_dir.join(SUCCESS_MARKER).is_file() {
        return Err(not_an_index(format!(
            "no `{SUCCESS_MARKER}` marker (the job did not finish, or this is not a job's output)"
        )));
    }
    let entries =
        std::fs::read_dir(index_dir).map_err(|source| ShardError::io("list", index_dir, source))?;
    let mut parts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ShardError::io("list", index_dir, source))?;
        let is_part = entry.file_name().to_string_lossy().starts_with("part-");
        if is_part && entry.path().is_file() {
            parts.push(entry.path());
        }
    }
    if parts.is_empty() {
        return Err(not_an_index("no `part-*` files".to_owned()));
    }
    parts.sort();
    Ok(parts)
}

/// Writes one file per shard and the manifest into a temporary directory, then renames
/// it into place.
fn write_shard_set(
    index_dir: &Path,
    shards: u32,
    by_shard: Vec<BTreeMap<String, Vec<String>>>,
) -> Result<Manifest, ShardError> {
    let final_dir = shard_set_dir(index_dir, shards);
    let temporary = index_dir
        .join(SERVE_DIR)
        .join(format!(".shards-{shards}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temporary);
    std::fs::create_dir_all(&temporary)
        .map_err(|source| ShardError::io("create", &temporary, source))?;
    let mut entries = Vec::with_capacity(by_shard.len());
    for (index, postings) in by_shard.into_iter().enumerate() {
        let shard = ShardId(index as u32);
        let file = format!("shard-{index:05}");
        let mut bytes = Vec::new();
        let mut documents = std::collections::BTreeSet::new();
        for (term, mut list) in postings {
            list.sort_unstable();
            list.dedup();
            bytes.extend_from_slice(term.as_bytes());
            bytes.push(b'\t');
            bytes.extend_from_slice(list.join(",").as_bytes());
            bytes.push(b'\n');
            documents.extend(list);
        }
        let terms = bytes.iter().filter(|byte| **byte == b'\n').count() as u64;
        write_synced(&temporary.join(&file), &bytes)?;
        entries.push(ShardEntry {
            shard,
            file,
            sha256: sha256_hex(&bytes),
            terms,
            documents: documents.len() as u64,
        });
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        shards,
        entries,
    };
    let text = serde_json::to_vec_pretty(&manifest).expect("a manifest always serializes");
    write_synced(&temporary.join(MANIFEST_FILE), &text)?;
    match std::fs::rename(&temporary, &final_dir) {
        Ok(()) => Ok(manifest),
        // Another process cut the same set first: its set is as good as ours.
        Err(_) if final_dir.join(MANIFEST_FILE).is_file() => {
            let _ = std::fs::remove_dir_all(&temporary);
            read_manifest(index_dir, shards)
        }
        Err(source) => Err(ShardError::io("rename", &temporary, source)),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ShardError> {
    let mut file =
        std::fs::File::create(path).map_err(|source| ShardError::io("create", path, source))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| ShardError::io("write", path, source))
}

/// Reads and checks the manifest of the `shards`-way shard set of `index_dir`.
pub fn read_manifest(index_dir: &Path, shards: u32) -> Result<Manifest, ShardError> {
    let path = shard_set_dir(index_dir, shards).join(MANIFEST_FILE);
    let bad = |reason: String| ShardError::BadManifest {
        path: path.clone(),
        reason,
    };
    let bytes = std::fs::read(&path).map_err(|source| ShardError::io("read", &path, source))?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|error| bad(error.to_string()))?;
    if manifest.version != MANIFEST_VERSION {
        return Err(bad(format!(
            "version {} (this essaim reads {MANIFEST_VERSION})",
            manifest.version
        )));
    }
    let in_order = manifest
        .entries
        .iter()
        .enumerate()
        .all(|(index, entry)| entry.shard == ShardId(index as u32));
    if manifest.shards != shards || manifest.entries.len() != shards as usize || !in_order {
        return Err(bad(format!("expected shards 0 to {} in order", shards - 1)));
    }
    Ok(manifest)
}

/// Hashes every shard file of a set against its manifest; returns the first mismatch.
pub fn verify_shards(index_dir: &Path, manifest: &Manifest) -> Result<(), ShardError> {
    let directory = shard_set_dir(index_dir, manifest.shards);
    for entry in &manifest.entries {
        let path = directory.join(&entry.file);
        let bytes = std::fs::read(&path).map_err(|source| ShardError::io("read", &path, source))?;
        let found = sha256_hex(&bytes);
        if found != entry.sha256 {
            return Err(ShardError::Corrupt {
                shard: entry.shard,
                path,
                expected: entry.sha256.clone(),
                found,
            });
        }
    }
    Ok(())
}
