//! A job's output: prepared by the client, written part by part by the last step's
//! reducers, published by the job's commit task. The rule is the same on a file system
//! and in an object store, Hadoop's `FileOutputCommitter`'s:
//!
//! - a reducer writes its part where no reader looks, named after its attempt;
//! - the part becomes `part-NNNNN` whole or not at all;
//! - `_SUCCESS` is written only once every part is there, and readers wait for it.
//!
//! | step | file system | object store |
//! |---|---|---|
//! | write | `OUT/_temporary/part-NNNNN.ATTEMPT` | the attempt's scratch directory, then one upload to `OUT/_temporary/part-NNNNN.ATTEMPT` (a PUT or multipart upload is visible whole or not at all) |
//! | part done | fsync, rename over `OUT/part-NNNNN`, fsync the directory | nothing more: staged |
//! | job commit | every part present? remove `_temporary`, write `_SUCCESS` | every part staged? copy each to `OUT/part-NNNNN` (server side), write `_SUCCESS`, delete `_temporary/` |
//!
//! Files published beside the parts, in a folder of the output (the records a task
//! skipped, `_skipped/map-00003.jsonl`), follow the same steps: see [`crate::side_files`].
//!
//! So in a bucket, a job killed before its commit leaves nothing but `_temporary/`:
//! no `part-NNNNN` is published before every part exists. Twins of one part (a
//! speculative copy, a re-run after a lost report) write identical bytes, since the
//! order of a reducer's values is deterministic, so whichever staged copy the commit
//! picks is the part.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::StorageError;
use crate::location::Location;
use crate::object::{self, S3Options, object_error, object_path, run, store};

/// Name of the marker written when every part is committed.
pub const SUCCESS_MARKER: &str = "_SUCCESS";
/// Where parts are written before they are committed.
pub const TEMPORARY_DIR: &str = "_temporary";

/// A job's output directory or prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputDir {
    location: Location,
    options: S3Options,
}

/// A part being written: the caller writes into [`PendingPart::file`], then commits.
#[derive(Debug)]
pub struct PendingPart {
    /// The local file to write.
    pub file: File,
    pub(crate) local_path: PathBuf,
    /// Where the committed part goes: the final part (file system) or its staged copy
    /// (object store).
    pub(crate) target: Location,
    pub(crate) options: S3Options,
}

impl OutputDir {
    /// Returns the output at `location`, reached with `options` when it is an object
    /// prefix.
    pub fn new(location: Location, options: S3Options) -> Self {
        Self { location, options }
    }

    /// Returns where the output is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Returns how the object store of the output is reached.
    pub(crate) fn options(&self) -> &S3Options {
        &self.options
    }

    /// Makes the output ready before a job is submitted: refuses one that exists
    /// (anything under an object prefix) unless `overwrite`, in which case it is
    /// removed; then creates a local directory with its `_temporary`.
    pub fn prepare(&self, overwrite: bool) -> Result<(), StorageError> {
        match &self.location {
            Location::Local(dir) => prepare_local(dir, overwrite),
            Location::S3 { bucket, key } => {
                let existing = object::list(bucket, key, &self.options)?;
                if existing.is_empty() {
                    return Ok(());
                }
                if !overwrite {
                    return Err(StorageError::OutputExists {
                        location: self.location.to_string(),
                    });
                }
                let keys = existing.into_iter().map(|object| object.key).collect();
                delete_keys(bucket, keys, &self.options)
            }
        }
    }

    /// Opens a part for writing by `attempt`; `scratch_dir` (which exists) holds it
    /// until an object store receives it.
    pub fn create_part(
        &self,
        part: &str,
        attempt: &str,
        scratch_dir: &Path,
    ) -> Result<PendingPart, StorageError> {
        let staged_name = format!("{part}.{attempt}");
        let (local_path, target) = match &self.location {
            Location::Local(dir) => {
                let temporary_dir = dir.join(TEMPORARY_DIR);
                std::fs::create_dir_all(&temporary_dir)
                    .map_err(io_error("create directory", &temporary_dir))?;
                (
                    temporary_dir.join(&staged_name),
                    Location::Local(dir.join(part)),
                )
            }
            Location::S3 { .. } => (
                scratch_dir.join(&staged_name),
                self.location.join(TEMPORARY_DIR).join(&staged_name),
            ),
        };
        let file = File::create(&local_path).map_err(io_error("create", &local_path))?;
        Ok(PendingPart {
            file,
            local_path,
            target,
            options: self.options.clone(),
        })
    }

    /// The job's commit: checks that every part of `parts` is there, publishes them,
    /// writes `_SUCCESS`, and removes `_temporary`. Returns the bytes of all parts. A
    /// missing part is a retryable [`StorageError::MissingPart`].
    pub fn commit_job(&self, parts: &[String]) -> Result<u64, StorageError> {
        match &self.location {
            Location::Local(dir) => commit_local(dir, parts),
            Location::S3 { bucket, key } => commit_object(bucket, key, parts, &self.options),
        }
    }

    /// Returns true once `_SUCCESS` is there.
    pub fn is_committed(&self) -> Result<bool, StorageError> {
        match &self.location {
            Location::Local(dir) => Ok(dir.join(SUCCESS_MARKER).is_file()),
            Location::S3 { bucket, key } => {
                let marker = self.location.join(SUCCESS_MARKER);
                let Location::S3 {
                    key: marker_key, ..
                } = &marker
                else {
                    unreachable!("an object location joins into an object location");
                };
                let listed = object::list(bucket, key, &self.options)?;
                Ok(listed.iter().any(|object| object.key == *marker_key))
            }
        }
    }
}

impl PendingPart {
    /// Returns the local file being written.
    pub fn local_path(&self) -> &Path {
        &self.local_path
    }

    /// Commits the written file (see the module's table); returns where it went.
    pub fn commit(self) -> Result<Location, StorageError> {
        let Self {
            file,
            local_path,
            target,
            options,
        } = self;
        match &target {
            Location::Local(final_path) => {
                file.sync_all().map_err(io_error("write", &local_path))?;
                drop(file);
                std::fs::rename(&local_path, final_path)
                    .map_err(io_error("rename output part to", final_path))?;
                // The rename is durable once the directory is.
                if let Some(dir) = final_path.parent() {
                    sync_dir(dir)?;
                }
            }
            Location::S3 { bucket, key } => {
                drop(file);
                let uploaded = upload(&local_path, bucket, key, &options);
                let _ = std::fs::remove_file(&local_path);
                uploaded?;
            }
        }
        Ok(target)
    }
}

/// Uploads a local file to `bucket`/`key`, streamed (a multipart upload when large).
fn upload(
    local_path: &Path,
    bucket: &str,
    key: &str,
    options: &S3Options,
) -> Result<(), StorageError> {
    use tokio::io::AsyncWriteExt;
    let store = store(bucket, options)?;
    let path = object_path(key);
    let source = local_path.to_path_buf();
    let result = run(async move {
        let mut file = tokio::fs::File::open(&source).await?;
        let mut writer = object_store::buffered::BufWriter::new(store, path);
        tokio::io::copy(&mut file, &mut writer).await?;
        writer.shutdown().await
    })?;
    result.map_err(|source| StorageError::Io {
        action: "upload",
        location: format!("s3://{bucket}/{key}"),
        source,
    })
}

fn prepare_local(dir: &Path, overwrite: bool) -> Result<(), StorageError> {
    if dir.exists() {
        if !overwrite {
            return Err(StorageError::OutputExists {
                location: dir.display().to_string(),
            });
        }
        let removed = if dir.is_dir() {
            std::fs::remove_dir_all(dir)
        } else {
            std::fs::remove_file(dir)
        };
        removed.map_err(io_error("remove", dir))?;
    }
    let temporary_dir = dir.join(TEMPORARY_DIR);
    std::fs::create_dir_all(&temporary_dir).map_err(io_error("create directory", &temporary_dir))
}

fn commit_local(dir: &Path, parts: &[String]) -> Result<u64, StorageError> {
    let mut total_bytes = 0;
    for part in parts {
        let path = dir.join(part);
        let missing = || StorageError::MissingPart {
            location: path.display().to_string(),
        };
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => total_bytes += metadata.len(),
            Ok(_) => return Err(missing()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(source) => return Err(io_error("stat", &path)(source)),
        }
    }
    let temporary_dir = dir.join(TEMPORARY_DIR);
    match std::fs::remove_dir_all(&temporary_dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_error("remove", &temporary_dir)(source)),
    }
    let marker = dir.join(SUCCESS_MARKER);
    File::create(&marker)
        .and_then(|file| file.sync_all())
        .map_err(io_error("write", &marker))?;
    sync_dir(dir)?;
    Ok(total_bytes)
}

fn commit_object(
    bucket: &str,
    key: &str,
    parts: &[String],
    options: &S3Options,
) -> Result<u64, StorageError> {
    let prefix = Location::S3 {
        bucket: bucket.to_string(),
        key: key.to_string(),
    };
    let Location::S3 {
        key: staging_key, ..
    } = prefix.join(TEMPORARY_DIR)
    else {
        unreachable!("an object location joins into an object location");
    };
    let staged = object::list(bucket, &staging_key, options)?;
    let mut total_bytes = 0;
    let mut copies = Vec::with_capacity(parts.len());
    for part in parts {
        let staged_prefix = format!("{staging_key}/{part}.");
        // Twins wrote identical bytes: the first in key order is as good as any.
        let Some(found) = staged
            .iter()
            .find(|object| object.key.starts_with(&staged_prefix))
        else {
            return Err(StorageError::MissingPart {
                location: prefix.join(TEMPORARY_DIR).join(part).to_string(),
            });
        };
        total_bytes += found.size;
        let Location::S3 { key: final_key, .. } = prefix.join(part) else {
            unreachable!("an object location joins into an object location");
        };
        copies.push((found.key.clone(), final_key));
    }
    let store = store(bucket, options)?;
    copies.extend(crate::side_files::staged_side_file_copies(
        &prefix,
        &staging_key,
        &staged,
    ));
    for (from, to) in copies {
        let (store, from_path, to_path) = (store.clone(), object_path(&from), object_path(&to));
        run(async move {
            object_store::ObjectStoreExt::copy(store.as_ref(), &from_path, &to_path).await
        })?
        .map_err(object_error("publish the part", bucket, &to))?;
    }
    let Location::S3 {
        key: marker_key, ..
    } = prefix.join(SUCCESS_MARKER)
    else {
        unreachable!("an object location joins into an object location");
    };
    let marker_path = object_path(&marker_key);
    let marker_store = store.clone();
    run(async move {
        object_store::ObjectStoreExt::put(
            marker_store.as_ref(),
            &marker_path,
            Vec::<u8>::new().into(),
        )
        .await
    })?
    .map_err(object_error("write", bucket, &marker_key))?;
    let keys = staged.into_iter().map(|object| object.key).collect();
    delete_keys(bucket, keys, options)?;
    Ok(total_bytes)
}

/// Deletes `keys` of `bucket`, already gone ones included.
pub(crate) fn delete_keys(
    bucket: &str,
    keys: Vec<String>,
    options: &S3Options,
) -> Result<(), StorageError> {
    let store = store(bucket, options)?;
    for key in keys {
        let (store, path) = (store.clone(), object_path(&key));
        let deleted =
            run(async move { object_store::ObjectStoreExt::delete(store.as_ref(), &path).await })?;
        match deleted {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => return Err(object_error("delete", bucket, &key)(source)),
        }
    }
    Ok(())
}

/// Flushes a directory's entries (a rename or a new file in it) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("sync directory", dir))
}

pub(crate) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> StorageError {
    let location = path.display().to_string();
    move |source| StorageError::Io {
        action,
        location,
        source,
    }
}
