//! What can go wrong reading or writing a job's data, and whether a retry can help.

use crate::codec::Codec;

/// A failure of the storage layer, naming the file or object it happened to.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Reading or writing a local file failed.
    #[error("failed to {action} `{location}`")]
    Io {
        /// What was being done: `open`, `read`, …
        action: &'static str,
        /// The file.
        location: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A compressed input does not decode: its bytes are wrong, and reading them again
    /// gives the same error.
    #[error("`{location}` is not valid {codec} data (corrupt or truncated)")]
    Corrupt {
        /// The file or object.
        location: String,
        /// The codec it was read with.
        codec: Codec,
        /// What the decoder said.
        #[source]
        source: std::io::Error,
    },
    /// A location cannot be parsed.
    #[error("`{location}` is not a usable location: {reason}")]
    BadLocation {
        /// As given.
        location: String,
        /// Why.
        reason: String,
    },
    /// An object-store request failed.
    #[error("failed to {action} `{location}`: {}", describe(cause).reason)]
    Object {
        /// What was being done.
        action: &'static str,
        /// The object or prefix.
        location: String,
        /// The store's error (summarised in the message: its own chain repeats the
        /// request several times).
        cause: object_store::Error,
    },
    /// An output exists already.
    #[error("output `{location}` already exists (pass --overwrite to replace it)")]
    OutputExists {
        /// The output.
        location: String,
    },
    /// The job's commit found a part missing.
    #[error("output part `{location}` is missing")]
    MissingPart {
        /// The part expected.
        location: String,
    },
    /// The storage layer itself failed.
    #[error("internal storage error: {reason}")]
    Internal {
        /// What happened.
        reason: String,
    },
}

impl StorageError {
    /// Returns false when running the task again cannot help: the data is wrong, not
    /// the machine or the network.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Io { .. } | Self::MissingPart { .. } | Self::Internal { .. } => true,
            Self::Corrupt { .. } | Self::BadLocation { .. } | Self::OutputExists { .. } => false,
            // A missing bucket or object, refused credentials, a bad configuration: the
            // same request gets the same answer. Anything else (a connection reset, a
            // 503 after the client's own retries) may pass.
            Self::Object { cause, .. } => !describe(cause).permanent,
        }
    }
}

/// What the store said, in one line, and whether asking again can help.
struct Described {
    reason: String,
    permanent: bool,
}

/// Summarises an object-store error. The crate reports most S3 client errors (a
/// missing bucket on a listing, a refused signature) as `Generic`, with the HTTP status
/// and S3's error code only in the message of a private type deep in its chain, each
/// level repeating the request: so the deepest message is read for `status code: NNN`
/// and `<Code>…</Code>`. A 4xx other than 408 (timeout) and 429 (slow down) is the
/// request's own fault and repeats.
fn describe(error: &object_store::Error) -> Described {
    let typed_permanent = matches!(
        error,
        object_store::Error::NotFound { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::UnknownConfigurationKey { .. }
    );
    let mut deepest: &dyn std::error::Error = error;
    while let Some(source) = deepest.source() {
        deepest = source;
    }
    let message = deepest.to_string();
    let status = message
        .split_once("status code: ")
        .and_then(|(_, rest)| rest.get(..3))
        .and_then(|digits| digits.parse::<u16>().ok());
    let code = message
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_string());
    let client_fault =
        status.is_some_and(|status| (400..500).contains(&status) && status != 408 && status != 429);
    let reason = match (code, status) {
        (Some(code), Some(status)) => format!("{code} (HTTP {status})"),
        (None, Some(status)) => format!("HTTP {status}: {message}"),
        _ => message,
    };
    Described {
        reason,
        permanent: typed_permanent || client_fault,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message the S3 client leaves at the bottom of its chain.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Deepest(String);

    fn generic(message: &str) -> StorageError {
        StorageError::Object {
            action: "list",
            location: "s3://b/k".into(),
            cause: object_store::Error::Generic {
                store: "S3",
                source: Box::new(Deepest(message.into())),
            },
        }
    }

    #[test]
    fn client_faults_are_permanent_and_summarised_server_faults_retryable() {
        let missing = generic(
            "Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code></Error>",
        );
        assert_eq!(
            missing.to_string(),
            "failed to list `s3://b/k`: NoSuchBucket (HTTP 404)"
        );
        assert!(!missing.is_retryable());
        let refused = generic(
            "status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code></Error>",
        );
        assert!(!refused.is_retryable());
        for retryable in [
            "Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>",
            "status code: 429 Too Many Requests",
            "Connection refused (os error 111)",
        ] {
            assert!(generic(retryable).is_retryable(), "{retryable}");
        }
        assert_eq!(
            generic("Connection refused (os error 111)").to_string(),
            "failed to list `s3://b/k`: Connection refused (os error 111)"
        );
    }
}
