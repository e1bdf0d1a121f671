//! Files a task publishes beside the parts, in a folder of the job's output: the records
//! a map task skipped (`OUT/_skipped/map-00003.jsonl`). They are the job's outputs too,
//! so they go through the steps of parts (see [`crate::output`]):
//!
//! | step | file system | object store |
//! |---|---|---|
//! | write | `OUT/_temporary/FOLDER/NAME.ATTEMPT` | the attempt's scratch directory, then one upload to `OUT/_temporary/FOLDER/NAME.ATTEMPT` |
//! | task done | fsync, rename over `OUT/FOLDER/NAME` | nothing more: staged |
//! | job commit | nothing more | copy the first staged copy of each name to `OUT/FOLDER/NAME`, before `_SUCCESS` |
//!
//! A name belongs to one task, not to an attempt: a twin or a re-run of the task
//! writes the same name, and replaces the file rather than adding one beside it.

use std::path::Path;

use crate::error::StorageError;
use crate::location::Location;
use crate::object::{self, ListedObject};
use crate::output::{OutputDir, PendingPart, TEMPORARY_DIR, delete_keys, io_error};

impl OutputDir {
    /// Opens the side file `FOLDER/NAME` for writing by `attempt`; `scratch_dir` (which
    /// exists) holds it until an object store receives it. [`PendingPart::commit`]
    /// publishes it (file system) or stages it (object store).
    pub fn create_side_file(
        &self,
        folder: &str,
        name: &str,
        attempt: &str,
        scratch_dir: &Path,
    ) -> Result<PendingPart, StorageError> {
        let staged_name = format!("{name}.{attempt}");
        let (local_path, target) = match self.location() {
            Location::Local(dir) => {
                let staging_dir = dir.join(TEMPORARY_DIR).join(folder);
                let final_dir = dir.join(folder);
                for needed in [&staging_dir, &final_dir] {
                    std::fs::create_dir_all(needed)
                        .map_err(io_error("create directory", needed))?;
                }
                (
                    staging_dir.join(&staged_name),
                    Location::Local(final_dir.join(name)),
                )
            }
            Location::S3 { .. } => (
                scratch_dir.join(&staged_name),
                self.location()
                    .join(TEMPORARY_DIR)
                    .join(folder)
                    .join(&staged_name),
            ),
        };
        let file = std::fs::File::create(&local_path).map_err(io_error("create", &local_path))?;
        Ok(PendingPart {
            file,
            local_path,
            target,
            options: self.options().clone(),
        })
    }

    /// Removes the side file `FOLDER/NAME`: published (file system) or staged by any
    /// attempt (object store). Nothing to remove is fine.
    pub fn remove_side_file(&self, folder: &str, name: &str) -> Result<(), StorageError> {
        match self.location() {
            Location::Local(dir) => {
                let path = dir.join(folder).join(name);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(io_error("remove", &path)(source)),
                }
            }
            Location::S3 { bucket, .. } => {
                let staging = self.location().join(TEMPORARY_DIR).join(folder);
                let Location::S3 {
                    key: staging_key, ..
                } = &staging
                else {
                    unreachable!("an object location joins into an object location");
                };
                let staged_prefix = format!("{staging_key}/{name}.");
                let keys = object::list(bucket, staging_key, self.options())?
                    .into_iter()
                    .filter(|object| object.key.starts_with(&staged_prefix))
                    .map(|object| object.key)
                    .collect();
                delete_keys(bucket, keys, self.options())
            }
        }
    }

    /// Returns the side files of `folder` with their bytes, by name: those published,
    /// and in an object store those staged and not yet published (the first staged
    /// copy of a name in key order, the one the commit publishes).
    pub fn read_side_files(&self, folder: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        match self.location() {
            Location::Local(dir) => read_local_folder(&dir.join(folder)),
            Location::S3 { bucket, key } => {
                let prefix = Location::S3 {
                    bucket: bucket.clone(),
                    key: key.clone(),
                };
                let mut chosen = published_objects(&prefix, folder, self)?;
                for (name, object) in staged_objects(&prefix, folder, self)? {
                    chosen.entry(name).or_insert(object);
                }
                let mut files = Vec::with_capacity(chosen.len());
                for (name, object) in chosen {
                    let bytes = if object.size == 0 {
                        Vec::new()
                    } else {
                        object::get_range(bucket, &object.key, 0..object.size, self.options())?
                            .to_vec()
                    };
                    files.push((name, bytes));
                }
                Ok(files)
            }
        }
    }
}

/// Returns the copies that publish the staged side files among `staged` (the listing
/// of `staging_key`, the output's `_temporary`): for each `FOLDER/NAME`, the first
/// staged copy in key order goes to `FOLDER/NAME` under `prefix`.
pub(crate) fn staged_side_file_copies(
    prefix: &Location,
    staging_key: &str,
    staged: &[ListedObject],
) -> Vec<(String, String)> {
    let mut copies: Vec<(String, String)> = Vec::new();
    for object in staged {
        let Some(relative) = object.key.strip_prefix(&format!("{staging_key}/")) else {
            continue;
        };
        // Parts are staged at the top; side files one folder down.
        let Some((folder, staged_name)) = relative.split_once('/') else {
            continue;
        };
        let Some((name, _attempt)) = staged_name.rsplit_once('.') else {
            continue;
        };
        let Location::S3 { key: final_key, .. } = prefix.join(folder).join(name) else {
            unreachable!("an object location joins into an object location");
        };
        // The listing is in key order: the first copy of a name wins.
        if copies.iter().all(|(_, to)| *to != final_key) {
            copies.push((object.key.clone(), final_key));
        }
    }
    copies
}

fn read_local_folder(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_error("list", dir)(source)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.starts_with('.') && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        let bytes = std::fs::read(&path).map_err(io_error("read", &path))?;
        files.push((name, bytes));
    }
    Ok(files)
}

/// The published objects of `folder` under `prefix`, by name.
fn published_objects(
    prefix: &Location,
    folder: &str,
    output: &OutputDir,
) -> Result<std::collections::BTreeMap<String, ListedObject>, StorageError> {
    let Location::S3 { bucket, key } = prefix.join(folder) else {
        unreachable!("an object location joins into an object location");
    };
    let mut by_name = std::collections::BTreeMap::new();
    for object in object::list(&bucket, &key, output.options())? {
        if let Some(name) = object.key.strip_prefix(&format!("{key}/")) {
            by_name.insert(name.to_string(), object);
        }
    }
    Ok(by_name)
}

/// The staged objects of `folder` under `prefix`'s `_temporary`, by name: the first
/// copy of each name in key order.
fn staged_objects(
    prefix: &Location,
    folder: &str,
    output: &OutputDir,
) -> Result<Vec<(String, ListedObject)>, StorageError> {
    let Location::S3 { bucket, key } = prefix.join(TEMPORARY_DIR).join(folder) else {
        unreachable!("an object location joins into an object location");
    };
    let mut staged: Vec<(String, ListedObject)> = Vec::new();
    for object in object::list(&bucket, &key, output.options())? {
        let Some(staged_name) = object.key.strip_prefix(&format!("{key}/")) else {
            continue;
        };
        let Some((name, _attempt)) = staged_name.rsplit_once('.') else {
            continue;
        };
        if staged.iter().all(|(seen, _)| seen != name) {
            staged.push((name.to_string(), object));
        }
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::S3Options;

    #[test]
    fn a_side_file_is_published_whole_and_replaced_by_a_re_run() {
        let dir = tempfile::tempdir().unwrap();
        let output = OutputDir::new(dir.path().join("out").into(), S3Options::default());
        output.prepare(false).unwrap();
        assert!(output.read_side_files("_skipped").unwrap().is_empty());
        for (attempt, text) in [("a1", "first\n"), ("b2", "second\n")] {
            let mut pending = output
                .create_side_file("_skipped", "map-00003.jsonl", attempt, dir.path())
                .unwrap();
            std::io::Write::write_all(&mut pending.file, text.as_bytes()).unwrap();
            pending.commit().unwrap();
        }
        let files = output.read_side_files("_skipped").unwrap();
        assert_eq!(
            files,
            [("map-00003.jsonl".to_string(), b"second\n".to_vec())]
        );
        output.commit_job(&[]).unwrap();
        assert_eq!(output.read_side_files("_skipped").unwrap().len(), 1);
        output
            .remove_side_file("_skipped", "map-00003.jsonl")
            .unwrap();
        output
            .remove_side_file("_skipped", "map-00003.jsonl")
            .unwrap();
        assert!(output.read_side_files("_skipped").unwrap().is_empty());
    }

    #[test]
    fn the_commit_publishes_the_first_staged_copy_of_each_side_file() {
        let prefix = Location::S3 {
            bucket: "b".into(),
            key: "out".into(),
        };
        let staged = |key: &str| ListedObject {
            key: key.into(),
            size: 1,
        };
        let listing = [
            staged("out/_temporary/_skipped/map-00001.jsonl.0a"),
            staged("out/_temporary/_skipped/map-00001.jsonl.0b"),
            staged("out/_temporary/_skipped/map-00002.jsonl.0c"),
            staged("out/_temporary/part-00000.0d"),
        ];
        let copies = staged_side_file_copies(&prefix, "out/_temporary", &listing);
        assert_eq!(
            copies,
            [
                (
                    "out/_temporary/_skipped/map-00001.jsonl.0a".to_string(),
                    "out/_skipped/map-00001.jsonl".to_string()
                ),
                (
                    "out/_temporary/_skipped/map-00002.jsonl.0c".to_string(),
                    "out/_skipped/map-00002.jsonl".to_string()
                ),
            ]
        );
    }
}
