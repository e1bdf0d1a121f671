//! Where a job's input or output lives: a local path (on a disk every worker that reads
//! it can see) or an object-store prefix (`s3://bucket/key`), which no worker needs to
//! share with another.
//!
//! A location is carried in task payloads as the string users typed (made absolute for
//! local paths), so the wire form is the same as the plain paths of earlier payloads.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::StorageError;

/// The scheme of S3 and S3-compatible object stores.
pub const S3_SCHEME: &str = "s3://";

/// A file, directory, object or object prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Location {
    /// A local path (absolute once planned).
    Local(PathBuf),
    /// An object, or the prefix of objects, `key` in `bucket` (no leading or trailing
    /// `/`; empty for the whole bucket).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
    },
}

impl Location {
    /// Parses `s3://bucket/key` or a local path.
    pub fn parse(text: &str) -> Result<Self, StorageError> {
        let Some(rest) = text.strip_prefix(S3_SCHEME) else {
            if text.contains("://") {
                return Err(StorageError::BadLocation {
                    location: text.to_string(),
                    reason: "only local paths and s3://bucket/prefix are supported".into(),
                });
            }
            return Ok(Self::Local(PathBuf::from(text)));
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StorageError::BadLocation {
                location: text.to_string(),
                reason: "no bucket named".into(),
            });
        }
        let key = key.trim_matches('/');
        if key.split('/').any(|part| part == "." || part == "..") || key.contains("//") {
            return Err(StorageError::BadLocation {
                location: text.to_string(),
                reason: "empty, `.` and `..` parts are not allowed in a key".into(),
            });
        }
        Ok(Self::S3 {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// Returns the location a path-typed field holds: an `s3://` URL, or else a local
    /// path (any bytes, not only UTF-8).
    pub fn from_path(path: &Path) -> Self {
        let is_object = path
            .as_os_str()
            .as_encoded_bytes()
            .starts_with(S3_SCHEME.as_bytes());
        match path.to_str() {
            Some(text) if is_object => {
                Self::parse(text).unwrap_or_else(|_| Self::Local(path.to_path_buf()))
            }
            _ => Self::Local(path.to_path_buf()),
        }
    }

    /// Returns the location as a path-typed value (an `s3://` URL stays a string).
    pub fn to_path(&self) -> PathBuf {
        match self {
            Self::Local(path) => path.clone(),
            object => PathBuf::from(object.to_string()),
        }
    }

    /// Returns the location of `name` under this one.
    pub fn join(&self, name: &str) -> Self {
        match self {
            Self::Local(path) => Self::Local(path.join(name)),
            Self::S3 { bucket, key } if key.is_empty() => Self::S3 {
                bucket: bucket.clone(),
                key: name.to_string(),
            },
            Self::S3 { bucket, key } => Self::S3 {
                bucket: bucket.clone(),
                key: format!("{key}/{name}"),
            },
        }
    }

    /// Returns the local path, or `None` for an object.
    pub fn as_local(&self) -> Option<&Path> {
        match self {
            Self::Local(path) => Some(path),
            Self::S3 { .. } => None,
        }
    }

    /// Returns the last part of the path or key (what a codec's extension is read
    /// from).
    pub fn file_name(&self) -> &str {
        match self {
            Self::Local(path) => path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or(""),
            Self::S3 { key, .. } => key.rsplit('/').next().unwrap_or(""),
        }
    }

    /// Makes a local path absolute (workers do not share the client's working
    /// directory); an object location is returned as it is.
    pub fn absolute(self) -> std::io::Result<Self> {
        match self {
            Self::Local(path) => Ok(Self::Local(std::path::absolute(path)?)),
            object => Ok(object),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(formatter, "{}", path.display()),
            Self::S3 { bucket, key } if key.is_empty() => write!(formatter, "{S3_SCHEME}{bucket}"),
            Self::S3 { bucket, key } => write!(formatter, "{S3_SCHEME}{bucket}/{key}"),
        }
    }
}

impl TryFrom<String> for Location {
    type Error = StorageError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<Location> for String {
    fn from(location: Location) -> Self {
        location.to_string()
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Self::Local(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_and_paths_parse_join_and_print_back() {
        let object = Location::parse("s3://bucket/logs/2026/").unwrap();
        assert_eq!(
            object,
            Location::S3 {
                bucket: "bucket".into(),
                key: "logs/2026".into()
            }
        );
        assert_eq!(
            object.join("a.gz").to_string(),
            "s3://bucket/logs/2026/a.gz"
        );
        assert_eq!(object.join("a.gz").file_name(), "a.gz");
        let bucket = Location::parse("s3://bucket").unwrap();
        assert_eq!(bucket.join("x").to_string(), "s3://bucket/x");
        assert_eq!(
            Location::parse("/data/in").unwrap(),
            Location::Local("/data/in".into())
        );
        let json = serde_json::to_string(&object).unwrap();
        assert_eq!(json, "\"s3://bucket/logs/2026\"");
        assert_eq!(serde_json::from_str::<Location>(&json).unwrap(), object);
        for bad in [
            "s3://",
            "s3:///key",
            "s3://b/a//c",
            "s3://b/../c",
            "gs://b/c",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }
}
