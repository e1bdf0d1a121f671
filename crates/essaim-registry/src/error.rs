//! The registry's errors, each mapped to one HTTP status so that the API, the client and
//! the command line's exit codes agree on whose fault a failure is.

use crate::names::NameError;
use http::StatusCode;
use std::path::PathBuf;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A malformed name or reference.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A malformed request (a metric that is not a finite number, a missing field).
    #[error("{0}")]
    InvalidInput(String),
    /// No model of that name.
    #[error("unknown model `{model}` (see `essaim models list`)")]
    ModelNotFound {
        /// The name asked for.
        model: String,
    },
    /// The model has no such version.
    #[error("model `{model}` has no version {version} (see `essaim models versions {model}`)")]
    VersionNotFound {
        /// The model.
        model: String,
        /// The version asked for.
        version: u64,
    },
    /// The model has no such alias.
    #[error("model `{model}` has no alias `{alias}` (see `essaim models show {model}`)")]
    AliasNotFound {
        /// The model.
        model: String,
        /// The alias asked for.
        alias: String,
    },
    /// The model has no version that is not archived.
    #[error("model `{model}` has no version that is not archived")]
    NoLatestVersion {
        /// The model.
        model: String,
    },
    /// No artifact with that hash was uploaded.
    #[error("no artifact with SHA-256 {sha256} (upload its bytes first)")]
    ArtifactNotFound {
        /// The hash asked for.
        sha256: String,
    },
    /// The stored bytes no longer hash to their name: refused rather than served.
    #[error("artifact {sha256} is corrupt: its bytes hash to {actual}; refusing to load it")]
    ArtifactCorrupt {
        /// The hash it should have.
        sha256: String,
        /// The hash its bytes have.
        actual: String,
    },
    /// Uploaded bytes do not hash to what the uploader declared.
    #[error("the uploaded bytes hash to {actual}, not to the declared {declared}")]
    DigestMismatch {
        /// What the uploader declared.
        declared: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// An upload larger than the registry accepts.
    #[error("artifact larger than the registry's limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// An archived version cannot be named by an alias.
    #[error("version {version} of `{model}` is archived; an alias cannot name it")]
    Archived {
        /// The model.
        model: String,
        /// The version.
        version: u64,
    },
    /// A version still named by aliases cannot be archived.
    #[error(
        "version {version} of `{model}` is named by {aliases}; point them elsewhere before archiving it"
    )]
    StillAliased {
        /// The model.
        model: String,
        /// The version.
        version: u64,
        /// The aliases naming it, comma-separated.
        aliases: String,
    },
    /// The alias has no earlier version to go back to.
    #[error("alias `{alias}` of `{model}` has no earlier version to roll back to")]
    NothingToRollBack {
        /// The model.
        model: String,
        /// The alias.
        alias: String,
    },
    /// The embedded database failed.
    #[error("the registry's store failed: {0}")]
    Storage(String),
    /// The store's format is not this version's.
    #[error(
        "the registry store `{store}` has format version {found}; this essaim reads {expected}"
    )]
    Version {
        /// The database file or PostgreSQL URL (without its password).
        store: String,
        /// The version found.
        found: u64,
        /// The version this build reads.
        expected: u64,
    },
    /// A store location that cannot be used: an unknown scheme, an invalid URL.
    #[error("invalid registry store `{location}`: {reason}")]
    StoreLocation {
        /// The location as given (without a password).
        location: String,
        /// Why it is refused.
        reason: String,
    },
    /// The PostgreSQL store could not be reached or refused the credentials.
    #[error("failed to connect to the registry's PostgreSQL store `{location}`")]
    StoreUnreachable {
        /// The URL (without its password).
        location: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The PostgreSQL store failed during an operation (a lost connection, a stopped
    /// server): a retry may succeed.
    #[error("the registry's PostgreSQL store failed to {action}")]
    Postgres {
        /// What the store was doing.
        action: &'static str,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A file of the artifact store could not be read or written.
    #[error("failed to access `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// Returns the HTTP status that says whose fault the failure is.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Name(_) | Self::InvalidInput(_) | Self::DigestMismatch { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::ModelNotFound { .. }
            | Self::VersionNotFound { .. }
            | Self::AliasNotFound { .. }
            | Self::NoLatestVersion { .. }
            | Self::ArtifactNotFound { .. } => StatusCode::NOT_FOUND,
            Self::Archived { .. } | Self::StillAliased { .. } | Self::NothingToRollBack { .. } => {
                StatusCode::CONFLICT
            }
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::StoreUnreachable { .. } | Self::Postgres { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::ArtifactCorrupt { .. }
            | Self::Storage(_)
            | Self::Version { .. }
            | Self::StoreLocation { .. }
            | Self::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

/// Returns a closure turning a PostgreSQL error into [`RegistryError::Postgres`].
pub(crate) fn postgres(
    action: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> RegistryError {
    move |source| RegistryError::Postgres { action, source }
}

/// Turns any redb error into [`RegistryError::Storage`].
pub(crate) fn storage(error: impl Into<redb::Error>) -> RegistryError {
    RegistryError::Storage(error.into().to_string())
}
