//! Following a reference: what a runner and a pipeline's `predict` operator both do
//! to keep the version an alias names loaded. Each poll asks which version the
//! reference names now and, only when it is not the one loaded, downloads its artifact
//! (hashed as it arrives: corrupt bytes never come back) and returns its bytes. Parsing
//! the bytes into a model is the caller's business.

use super::{ClientError, RegistryClient};
use crate::names::ModelRef;
use crate::record::VersionRecord;
use std::path::Path;

/// A version newly named by a followed reference, with its artifact's bytes.
#[derive(Debug)]
pub struct FetchedVersion {
    /// The version's record.
    pub record: VersionRecord,
    /// Its artifact, checked against `record.artifact.sha256`.
    pub bytes: Vec<u8>,
}

impl RegistryClient {
    /// Returns the version `reference` names now with its artifact's bytes, or `None`
    /// when that version is `loaded` already. The artifact passes through a file of
    /// `download_dir` (removed before returning) so that it is hashed as it streams.
    pub async fn fetch_if_moved(
        &self,
        reference: &ModelRef,
        loaded: Option<u64>,
        download_dir: &Path,
    ) -> Result<Option<FetchedVersion>, ClientError> {
        let record = self.version(reference).await?;
        if loaded == Some(record.version) {
            return Ok(None);
        }
        let path = download_dir.join(&record.artifact.sha256);
        self.download_artifact(&record.artifact.sha256, &path)
            .await?;
        let bytes = tokio::fs::read(&path).await;
        let _removed = tokio::fs::remove_file(&path).await;
        let bytes = bytes.map_err(ClientError::io(&path))?;
        Ok(Some(FetchedVersion { record, bytes }))
    }
}
