//! The artifact routes: uploads streamed into the content-addressed store, and
//! downloads hashed again before a byte is sent.

use super::{Failure, SHA256_HEADER, Shared, blocking};
use crate::RegistryError;
use crate::names::{ModelName, VersionRef};
use crate::record::ArtifactRef;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

pub(super) async fn upload(
    State(registry): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ArtifactRef>), Failure> {
    let declared = match headers.get(SHA256_HEADER) {
        Some(value) => {
            let text = value.to_str().unwrap_or_default().to_string();
            crate::artifacts::check_sha256(&text)?;
            Some(text)
        }
        None => None,
    };
    let mut upload = registry.artifacts.begin_upload().await?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            Failure(RegistryError::InvalidInput(format!(
                "the upload broke off: {error}"
            )))
        })?;
        if let Ok(chunk) = frame.into_data() {
            upload.write(&chunk).await?;
        }
    }
    let stored = upload.finish(declared.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// Serves stored bytes after hashing them again: corrupt bytes are never served.
pub(super) async fn serve_verified(registry: &Shared, sha256: String) -> Result<Response, Failure> {
    let (file, artifact) =
        blocking(registry, move |registry| registry.artifacts.verify(&sha256)).await?;
    let file = tokio::fs::File::from_std(file);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_LENGTH, artifact.size.to_string()),
        (
            header::HeaderName::from_static(SHA256_HEADER),
            artifact.sha256,
        ),
    ];
    Ok((headers, body).into_response())
}

pub(super) async fn download(
    State(registry): State<Shared>,
    Path(sha256): Path<String>,
) -> Result<Response, Failure> {
    serve_verified(&registry, sha256).await
}

pub(super) async fn version_artifact(
    State(registry): State<Shared>,
    Path((model, reference)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let model = ModelName::parse(&model)?;
    let reference = VersionRef::parse(&reference)?;
    let record = registry.store.version(&model, &reference).await?;
    serve_verified(&registry, record.artifact.sha256).await
}
