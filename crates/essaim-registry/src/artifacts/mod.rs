//! The content-addressed artifact store: a directory, or a prefix in an S3-compatible
//! bucket, where each artifact is named by the SHA-256 of its bytes
//! (`sha256/ab/abcd…` under the root).
//!
//! Why content addressing: a version names its bytes by their hash, so a version is
//! immutable by construction (different bytes are a different name), two versions with
//! the same bytes share one file, and corruption is detectable: every load hashes the
//! bytes again and refuses bytes that no longer match their name.
//!
//! Uploads are streamed to a temporary local file while they are hashed (memory stays
//! bounded by the chunk size, whatever the artifact's size), and only then, the hash
//! known and checked against the uploader's, given their name: renamed into place in a
//! directory, put in a bucket by a multipart upload read from that file (`object`).
//! So a stored artifact is whole or absent, and nothing is ever named by a hash its
//! bytes do not have. Why a local file rather than a multipart upload to a temporary
//! key copied afterwards: S3 has no rename, a copy of a large object is another
//! multipart job, and an interrupted upload would leave parts in the bucket, where the
//! local file is removed by the next start.
//!
//! Whether the artifacts are in a directory or a bucket is decided once, by
//! [`ArtifactLocation::parse`], as `store::StoreLocation::parse` decides the store.

mod object;

use crate::error::RegistryError;
use crate::record::ArtifactRef;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncWriteExt;

/// Bytes hashed per read when verifying.
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Returns the lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Returns the SHA-256 and size of everything `reader` yields, reading it in chunks.
pub fn hash_reader(mut reader: impl Read) -> std::io::Result<ArtifactRef> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; READ_CHUNK_BYTES];
    let mut size = 0u64;
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok(ArtifactRef {
        sha256: format!("{:x}", hasher.finalize()),
        size,
    })
}

/// Checks that `text` is a SHA-256 in lowercase hex (it becomes a file name).
pub fn check_sha256(text: &str) -> Result<(), RegistryError> {
    let is_hex = text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if is_hex {
        Ok(())
    } else {
        Err(RegistryError::InvalidInput(format!(
            "`{text}` is not a SHA-256 (64 lowercase hex digits)"
        )))
    }
}

/// Where the artifacts live: the one owner of the choice between a directory and a
/// bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactLocation {
    /// A local directory (shared by every process using it: a shared file system).
    Dir(PathBuf),
    /// A prefix in an S3-compatible bucket, reached with the `AWS_*` environment
    /// (credentials, `AWS_ENDPOINT`, `AWS_REGION`, `AWS_ALLOW_HTTP`) and `options`.
    Object {
        /// The bucket.
        bucket: String,
        /// The prefix of every key (no leading or trailing `/`; empty for none).
        prefix: String,
        /// The endpoint, region and plain-HTTP switch, over the environment's.
        options: essaim_storage::S3Options,
    },
}

impl ArtifactLocation {
    /// Parses a directory or `s3://bucket/prefix`; any other scheme is refused.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let location = essaim_storage::Location::parse(text).map_err(|error| {
            RegistryError::StoreLocation {
                location: text.to_string(),
                reason: error.to_string(),
            }
        })?;
        Ok(match location {
            essaim_storage::Location::Local(dir) => Self::Dir(dir),
            essaim_storage::Location::S3 { bucket, key } => Self::Object {
                bucket,
                prefix: key,
                options: essaim_storage::S3Options::default(),
            },
        })
    }
}

impl std::fmt::Display for ArtifactLocation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => write!(formatter, "{}", dir.display()),
            Self::Object { bucket, prefix, .. } if prefix.is_empty() => {
                write!(formatter, "s3://{bucket}")
            }
            Self::Object { bucket, prefix, .. } => write!(formatter, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Returns the name of the artifact `sha256` under the store's root (checked hex: no
/// path tricks): `sha256/ab/abcd…`.
pub fn relative_name(sha256: &str) -> Result<String, RegistryError> {
    check_sha256(sha256)?;
    Ok(format!("sha256/{}/{sha256}", &sha256[..2]))
}

/// Where the bytes are kept.
#[derive(Debug, Clone)]
enum Backend {
    Dir(PathBuf),
    Object(object::Bucket),
}

/// The artifact store, in a directory or a bucket.
#[derive(Debug)]
pub struct ArtifactStore {
    backend: Backend,
    /// Local directory of uploads in progress and of downloads being checked.
    spool: PathBuf,
    max_bytes: u64,
    next_spool: AtomicU64,
}

impl ArtifactStore {
    /// Opens (or creates) the store in the directory `root`, refusing uploads over
    /// `max_bytes`, and removes the temporary files of uploads a crash interrupted.
    pub fn open(root: &Path, max_bytes: u64) -> Result<Self, RegistryError> {
        Self::open_at(&ArtifactLocation::Dir(root.to_path_buf()), max_bytes)
    }

    /// Opens the store at `location`. A directory keeps its temporary files in its own
    /// `tmp` (the rename into place stays on one file system); a bucket's are in the
    /// system's temporary directory, one per process. Blocks on disk I/O.
    pub fn open_at(location: &ArtifactLocation, max_bytes: u64) -> Result<Self, RegistryError> {
        let (backend, spool) = match location {
            ArtifactLocation::Dir(root) => {
                let sha256 = root.join("sha256");
                std::fs::create_dir_all(&sha256).map_err(RegistryError::io(&sha256))?;
                (Backend::Dir(root.clone()), root.join("tmp"))
            }
            ArtifactLocation::Object {
                bucket,
                prefix,
                options,
            } => {
                let spool = std::env::temp_dir()
                    .join(format!("essaim-registry-artifacts-{}", std::process::id()));
                let bucket = object::Bucket::open(bucket, prefix, options)?;
                (Backend::Object(bucket), spool)
            }
        };
        if spool.exists() {
            std::fs::remove_dir_all(&spool).map_err(RegistryError::io(&spool))?;
        }
        std::fs::create_dir_all(&spool).map_err(RegistryError::io(&spool))?;
        Ok(Self {
            backend,
            spool,
            max_bytes,
            next_spool: AtomicU64::new(0),
        })
    }

    /// Returns where the artifact `sha256` is, as a path or URL (for messages and
    /// tests).
    pub fn describe(&self, sha256: &str) -> Result<String, RegistryError> {
        let name = relative_name(sha256)?;
        Ok(match &self.backend {
            Backend::Dir(root) => root.join(name).display().to_string(),
            Backend::Object(bucket) => bucket.url(&name),
        })
    }

    /// Returns the size of a stored artifact, or `None` if it was never uploaded.
    pub async fn size_of(&self, sha256: &str) -> Result<Option<u64>, RegistryError> {
        let name = relative_name(sha256)?;
        match &self.backend {
            Backend::Dir(root) => {
                let path = root.join(name);
                match tokio::fs::metadata(&path).await {
                    Ok(metadata) => Ok(Some(metadata.len())),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(error) => Err(RegistryError::io(path)(error)),
                }
            }
            Backend::Object(bucket) => bucket.size_of(&name).await,
        }
    }

    /// Hashes the stored artifact again and returns it open at its start; refuses it
    /// when its bytes no longer match its name. An object is downloaded to a local
    /// file while hashed, so the bytes served are the bytes checked. Blocks on I/O:
    /// call from a blocking thread.
    pub fn verify(&self, sha256: &str) -> Result<(std::fs::File, ArtifactRef), RegistryError> {
        use std::io::Seek;
        let name = relative_name(sha256)?;
        let not_found = || RegistryError::ArtifactNotFound {
            sha256: sha256.to_string(),
        };
        let (mut file, found, path) = match &self.backend {
            Backend::Dir(root) => {
                let path = root.join(name);
                let file = match std::fs::File::open(&path) {
                    Ok(file) => file,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                        return Err(not_found());
                    }
                    Err(error) => return Err(RegistryError::io(path)(error)),
                };
                let found = hash_reader(&file).map_err(RegistryError::io(&path))?;
                (file, found, path)
            }
            Backend::Object(bucket) => {
                let path = self.spool_path("download");
                let Some((file, found)) = bucket.download(&name, &path)? else {
                    return Err(not_found());
                };
                (file, found, path)
            }
        };
        if found.sha256 != sha256 {
            return Err(RegistryError::ArtifactCorrupt {
                sha256: sha256.to_string(),
                actual: found.sha256,
            });
        }
        file.rewind().map_err(RegistryError::io(&path))?;
        Ok((file, found))
    }

    /// Starts an upload into a temporary local file.
    pub async fn begin_upload(&self) -> Result<Upload, RegistryError> {
        let temporary = self.spool_path("upload");
        let file = tokio::fs::File::create(&temporary)
            .await
            .map_err(RegistryError::io(&temporary))?;
        Ok(Upload {
            file: Some(file),
            temporary,
            backend: self.backend.clone(),
            hasher: Sha256::new(),
            size: 0,
            max_bytes: self.max_bytes,
        })
    }

    /// Returns a new path in the spool directory.
    fn spool_path(&self, what: &str) -> PathBuf {
        let number = self.next_spool.fetch_add(1, Ordering::Relaxed);
        self.spool
            .join(format!("{what}-{}-{number}", std::process::id()))
    }
}

/// An upload in progress; dropped unfinished, its temporary file is removed.
#[derive(Debug)]
pub struct Upload {
    file: Option<tokio::fs::File>,
    temporary: PathBuf,
    backend: Backend,
    hasher: Sha256,
    size: u64,
    max_bytes: u64,
}

impl Upload {
    /// Appends a chunk of the artifact.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), RegistryError> {
        self.size += chunk.len() as u64;
        if self.size > self.max_bytes {
            return Err(RegistryError::TooLarge {
                limit: self.max_bytes,
            });
        }
        self.hasher.update(chunk);
        let file = self.file.as_mut().expect("the file is open until finish");
        file.write_all(chunk)
            .await
            .map_err(RegistryError::io(&self.temporary))
    }

    /// Gives the bytes their content address once their hash is known; refuses them
    /// when the uploader declared another hash.
    pub async fn finish(mut self, declared: Option<&str>) -> Result<ArtifactRef, RegistryError> {
        let sha256 = format!("{:x}", std::mem::take(&mut self.hasher).finalize());
        if let Some(declared) = declared
            && declared != sha256
        {
            return Err(RegistryError::DigestMismatch {
                declared: declared.to_string(),
                actual: sha256,
            });
        }
        let mut file = self.file.take().expect("the file is open until finish");
        let name = relative_name(&sha256)?;
        let stored = match &self.backend {
            Backend::Dir(root) => {
                // On disk before it has a name: a stored artifact is whole or absent.
                file.sync_all()
                    .await
                    .map_err(RegistryError::io(&self.temporary))?;
                drop(file);
                let path = root.join(&name);
                let dir = path.parent().expect("a name has a directory");
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(RegistryError::io(dir))?;
                // Same name, same bytes: an artifact uploaded twice replaces itself.
                tokio::fs::rename(&self.temporary, &path)
                    .await
                    .map_err(RegistryError::io(&path))
            }
            Backend::Object(bucket) => {
                file.flush()
                    .await
                    .map_err(RegistryError::io(&self.temporary))?;
                drop(file);
                let put = bucket.put_file(&name, &self.temporary).await;
                let _ = tokio::fs::remove_file(&self.temporary).await;
                put
            }
        };
        if stored.is_err() {
            let _ = tokio::fs::remove_file(&self.temporary).await;
        }
        stored?;
        Ok(ArtifactRef {
            sha256,
            size: self.size,
        })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.file.is_some() {
            // An abandoned upload (error, client gone): its partial bytes have no use.
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}
