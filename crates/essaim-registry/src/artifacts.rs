//! The content-addressed artifact store: a directory where each artifact is a file named
//! by the SHA-256 of its bytes (`sha256/ab/abcd…`).
//!
//! Why content addressing: a version names its bytes by their hash, so a version is
//! immutable by construction (different bytes are a different name), two versions with
//! the same bytes share one file, and corruption is detectable: every load hashes the
//! file again and refuses bytes that no longer match their name.
//!
//! Uploads are streamed to a temporary file while they are hashed (memory stays bounded
//! by the chunk size, whatever the artifact's size), synced, and renamed into place, so
//! a stored artifact is whole or absent.

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

/// The artifact directory.
#[derive(Debug)]
pub struct ArtifactStore {
    root: PathBuf,
    max_bytes: u64,
    next_upload: AtomicU64,
}

impl ArtifactStore {
    /// Opens (or creates) the store in `root`, refusing uploads over `max_bytes`, and
    /// removes the temporary files of uploads a crash interrupted.
    pub fn open(root: &Path, max_bytes: u64) -> Result<Self, RegistryError> {
        let temporary = root.join("tmp");
        if temporary.exists() {
            std::fs::remove_dir_all(&temporary).map_err(RegistryError::io(&temporary))?;
        }
        for dir in [root.join("sha256"), temporary] {
            std::fs::create_dir_all(&dir).map_err(RegistryError::io(&dir))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            max_bytes,
            next_upload: AtomicU64::new(0),
        })
    }

    /// Returns where the artifact `sha256` lives (checked hex: no path tricks).
    pub fn path_of(&self, sha256: &str) -> Result<PathBuf, RegistryError> {
        check_sha256(sha256)?;
        Ok(self.root.join("sha256").join(&sha256[..2]).join(sha256))
    }

    /// Returns the size of a stored artifact, or `None` if it was never uploaded.
    pub fn size_of(&self, sha256: &str) -> Result<Option<u64>, RegistryError> {
        let path = self.path_of(sha256)?;
        match std::fs::metadata(&path) {
            Ok(metadata) => Ok(Some(metadata.len())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(RegistryError::io(path)(error)),
        }
    }

    /// Hashes the stored artifact again; refuses it when its bytes no longer match its
    /// name. Blocks on disk I/O: call from a blocking thread.
    pub fn verify(&self, sha256: &str) -> Result<(PathBuf, ArtifactRef), RegistryError> {
        let path = self.path_of(sha256)?;
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::ArtifactNotFound {
                    sha256: sha256.to_string(),
                });
            }
            Err(error) => return Err(RegistryError::io(path)(error)),
        };
        let found = hash_reader(file).map_err(RegistryError::io(&path))?;
        if found.sha256 != sha256 {
            return Err(RegistryError::ArtifactCorrupt {
                sha256: sha256.to_string(),
                actual: found.sha256,
            });
        }
        Ok((path, found))
    }

    /// Starts an upload into a temporary file.
    pub async fn begin_upload(&self) -> Result<Upload, RegistryError> {
        let number = self.next_upload.fetch_add(1, Ordering::Relaxed);
        let temporary = self
            .root
            .join("tmp")
            .join(format!("upload-{}-{number}", std::process::id()));
        let file = tokio::fs::File::create(&temporary)
            .await
            .map_err(RegistryError::io(&temporary))?;
        Ok(Upload {
            file: Some(file),
            temporary,
            store_root: self.root.clone(),
            hasher: Sha256::new(),
            size: 0,
            max_bytes: self.max_bytes,
        })
    }
}

/// An upload in progress; dropped unfinished, its temporary file is removed.
#[derive(Debug)]
pub struct Upload {
    file: Option<tokio::fs::File>,
    temporary: PathBuf,
    store_root: PathBuf,
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

    /// Syncs the bytes and moves them to their content address; refuses them when the
    /// uploader declared another hash.
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
        let file = self.file.take().expect("the file is open until finish");
        // On disk before it has a name: a stored artifact is whole or absent.
        file.sync_all()
            .await
            .map_err(RegistryError::io(&self.temporary))?;
        drop(file);
        let dir = self.store_root.join("sha256").join(&sha256[..2]);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(RegistryError::io(&dir))?;
        let path = dir.join(&sha256);
        // Same name, same bytes: an artifact uploaded twice replaces itself.
        tokio::fs::rename(&self.temporary, &path)
            .await
            .map_err(RegistryError::io(&path))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_are_named_by_their_hash_and_verified_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path(), 1 << 20).unwrap();
        let mut upload = store.begin_upload().await.unwrap();
        upload.write(b"hello ").await.unwrap();
        upload.write(b"world").await.unwrap();
        let stored = upload.finish(None).await.unwrap();
        // The SHA-256 of "hello world", computed elsewhere (sha256sum).
        let expected = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        assert_eq!(stored.sha256, expected);
        assert_eq!(stored.size, 11);
        assert_eq!(store.verify(expected).unwrap().1, stored);
        assert_eq!(store.size_of(expected).unwrap(), Some(11));

        // One flipped byte on disk: refused, naming both hashes.
        std::fs::write(store.path_of(expected).unwrap(), b"hello World").unwrap();
        match store.verify(expected) {
            Err(RegistryError::ArtifactCorrupt { sha256, actual }) => {
                assert_eq!(sha256, expected);
                assert_eq!(actual, sha256_hex(b"hello World"));
            }
            other => panic!("expected a corrupt artifact, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn bad_uploads_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path(), 4).unwrap();
        let mut upload = store.begin_upload().await.unwrap();
        assert!(matches!(
            upload.write(b"12345").await,
            Err(RegistryError::TooLarge { limit: 4 })
        ));
        drop(upload);
        let mut upload = store.begin_upload().await.unwrap();
        upload.write(b"abc").await.unwrap();
        let declared = sha256_hex(b"abd");
        assert!(matches!(
            upload.finish(Some(&declared)).await,
            Err(RegistryError::DigestMismatch { .. })
        ));
        let leftovers = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        assert_eq!(leftovers, 0);
        assert!(matches!(
            store.verify(&sha256_hex(b"abc")),
            Err(RegistryError::ArtifactNotFound { .. })
        ));
        assert!(store.path_of("../../etc/passwd").is_err());
    }
}
