//! Artifacts in an S3-compatible bucket, through `essaim-storage`'s object-store client
//! (its configuration from the `AWS_*` environment, its cached clients and its runtime,
//! which every call here runs on).
//!
//! An upload is read from its local file in parts of [`PART_BYTES`] into a multipart
//! upload, at most [`PARTS_IN_FLIGHT`] at once: memory stays bounded whatever the
//! artifact's size. A download is streamed into an unlinked local file while hashed:
//! the caller serves that file, so the bytes it sends are the bytes it checked.

use crate::error::RegistryError;
use crate::record::ArtifactRef;
use essaim_storage::S3Options;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// Size of a part of a multipart upload (S3 wants at least 5 MiB but for the last).
const PART_BYTES: usize = 8 << 20;

/// Parts uploaded at once.
const PARTS_IN_FLIGHT: usize = 2;

/// A prefix in a bucket.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
}

impl Bucket {
    /// Opens the bucket's client (configuration only: nothing is sent yet).
    pub(super) fn open(
        bucket: &str,
        prefix: &str,
        options: &S3Options,
    ) -> Result<Self, RegistryError> {
        let store = essaim_storage::object::store(bucket, options).map_err(storage_error)?;
        Ok(Self {
            store,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// Returns the URL of the object `name`.
    pub(super) fn url(&self, name: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(name))
    }

    /// Returns the size of the object `name`, or `None` when there is none.
    pub(super) async fn size_of(&self, name: &str) -> Result<Option<u64>, RegistryError> {
        let store = Arc::clone(&self.store);
        let path = ObjectPath::from(self.key(name));
        let head = essaim_storage::object::call(async move { store.head(&path).await })
            .await
            .map_err(storage_error)?;
        match head {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.object_error("read", name, error)),
        }
    }

    /// Puts the local file `from` under `name` by a multipart upload.
    pub(super) async fn put_file(&self, name: &str, from: &Path) -> Result<(), RegistryError> {
        let store = Arc::clone(&self.store);
        let path = ObjectPath::from(self.key(name));
        let from = from.to_path_buf();
        let put = essaim_storage::object::call(async move { put_parts(store, path, from).await })
            .await
            .map_err(storage_error)?;
        put.map_err(|error| match error {
            PutError::Io(path, source) => RegistryError::Io { path, source },
            PutError::Object(error) => self.object_error("write", name, error),
        })
    }

    /// Downloads the object `name` into `into` (unlinked at once) while hashing it;
    /// `None` when there is no such object. Blocks: call from a blocking thread.
    pub(super) fn download(
        &self,
        name: &str,
        into: &Path,
    ) -> Result<Option<(std::fs::File, ArtifactRef)>, RegistryError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(into)
            .map_err(RegistryError::io(into))?;
        // The open handle keeps the bytes; nothing is left behind, whatever happens.
        std::fs::remove_file(into).map_err(RegistryError::io(into))?;
        let writer = file.try_clone().map_err(RegistryError::io(into))?;
        let store = Arc::clone(&self.store);
        let path = ObjectPath::from(self.key(name));
        let into_path = into.to_path_buf();
        let fetched = essaim_storage::object::run(async move {
            fetch(store, path, tokio::fs::File::from_std(writer), into_path).await
        })
        .map_err(storage_error)?;
        match fetched {
            Ok(found) => Ok(Some((file, found))),
            Err(PutError::Object(object_store::Error::NotFound { .. })) => Ok(None),
            Err(PutError::Object(error)) => Err(self.object_error("read", name, error)),
            Err(PutError::Io(path, source)) => Err(RegistryError::Io { path, source }),
        }
    }

    fn object_error(&self, action: &str, name: &str, error: object_store::Error) -> RegistryError {
        RegistryError::Storage(format!("could not {action} {}: {error}", self.url(name)))
    }
}

/// An object-store call's failure, or the local file's.
enum PutError {
    Io(std::path::PathBuf, std::io::Error),
    Object(object_store::Error),
}

async fn put_parts(
    store: Arc<AmazonS3>,
    path: ObjectPath,
    from: std::path::PathBuf,
) -> Result<(), PutError> {
    use tokio::io::AsyncReadExt;
    let io = |source| PutError::Io(from.clone(), source);
    let mut file = tokio::fs::File::open(&from).await.map_err(io)?;
    let upload = store.put_multipart(&path).await.map_err(PutError::Object)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    let mut buffer = vec![0u8; PART_BYTES];
    loop {
        let read = match file.read(&mut buffer).await {
            Ok(read) => read,
            Err(source) => {
                let _ = writer.abort().await;
                return Err(io(source));
            }
        };
        if read == 0 {
            break;
        }
        if let Err(error) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
            let _ = writer.abort().await;
            return Err(PutError::Object(error));
        }
        writer.write(&buffer[..read]);
    }
    writer.finish().await.map_err(PutError::Object)?;
    Ok(())
}

async fn fetch(
    store: Arc<AmazonS3>,
    path: ObjectPath,
    mut into: tokio::fs::File,
    into_path: std::path::PathBuf,
) -> Result<ArtifactRef, PutError> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let io = |source| PutError::Io(into_path.clone(), source);
    let mut stream = store
        .get(&path)
        .await
        .map_err(PutError::Object)?
        .into_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(PutError::Object)?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        into.write_all(&chunk).await.map_err(io)?;
    }
    into.flush().await.map_err(io)?;
    Ok(ArtifactRef {
        sha256: format!("{:x}", hasher.finalize()),
        size,
    })
}

fn storage_error(error: essaim_storage::StorageError) -> RegistryError {
    RegistryError::Storage(error.to_string())
}
