//! Who may read a job's files from this worker's file server, and what this worker
//! presents to read them from another's.
//!
//! Once registered, a worker holds the coordinator's file capability key (see
//! [`essaim_proto::capability`]): its server then serves the files of job `J` only to a
//! request carrying `J`'s capability in [`FILE_CAPABILITY_HEADER`], so that holding the
//! cluster token (as every client does) no longer opens every job's intermediate data.
//! One header, one HMAC and one constant-time comparison per request: the shuffle's
//! fetch path stays as fast as before. Until the key arrives (and with an older
//! coordinator, which sends none) the cluster token is asked for, as before.

use std::sync::{Arc, RwLock};

use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use essaim_proto::capability::{CapabilityKey, FILE_CAPABILITY_HEADER, constant_time_equal};
use essaim_telemetry::{AuthMetrics, AuthRefusal, AuthSurface};

/// The file capability key of the worker's current registration, shared by its file
/// server (which checks requests) and its attempts (which fetch from other workers).
#[derive(Clone, Debug, Default)]
pub struct CapabilityKeyCell(Arc<RwLock<Option<CapabilityKey>>>);

impl CapabilityKeyCell {
    /// Replaces the key (at each registration; `None` from an older coordinator).
    pub fn set(&self, key: Option<CapabilityKey>) {
        // A poisoned lock only means a writer panicked mid-assignment of a plain value.
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = key;
    }

    /// Returns the current key.
    pub fn get(&self) -> Option<CapabilityKey> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// What a request for a job's files must carry, as the file server checks it.
#[derive(Clone, Debug, Default)]
pub struct FileAccess {
    /// `Bearer <cluster token>`, asked for while no key is known; `None`: no token.
    expected_authorization: Option<String>,
    capability_key: CapabilityKeyCell,
    metrics: Option<AuthMetrics>,
}

/// A refused file request: the status and the message.
pub(crate) type FileRefusal = (StatusCode, String);

impl FileAccess {
    /// Asks for the cluster token only (a server that never learns a key).
    pub fn cluster_token_only(token: Option<&str>) -> Self {
        Self {
            expected_authorization: token.map(|token| format!("Bearer {token}")),
            ..Self::default()
        }
    }

    /// Asks for the capability of the job once `capability_key` holds a key, for the
    /// cluster token until then; counts refusals in `metrics`.
    pub fn new(
        token: Option<&str>,
        capability_key: CapabilityKeyCell,
        metrics: AuthMetrics,
    ) -> Self {
        Self {
            expected_authorization: token.map(|token| format!("Bearer {token}")),
            capability_key,
            metrics: Some(metrics),
        }
    }

    /// Checks a request for files of `job`.
    pub(crate) fn check(&self, headers: &HeaderMap, job: u64) -> Result<(), FileRefusal> {
        let verdict = self.judge(headers, job);
        if let (Err((_, reason)), Some(metrics)) = (&verdict, &self.metrics) {
            metrics.record_refusal(AuthSurface::Files, *reason);
        }
        verdict.map_err(|(refusal, _)| refusal)
    }

    fn judge(&self, headers: &HeaderMap, job: u64) -> Result<(), (FileRefusal, AuthRefusal)> {
        if let Some(key) = self.capability_key.get() {
            let presented = headers
                .get(FILE_CAPABILITY_HEADER)
                .map(|value| value.as_bytes())
                .unwrap_or_default();
            if key.admits(job, presented) {
                return Ok(());
            }
            let message = format!(
                "missing or wrong capability of job {job}: files are served only to the workers of the cluster"
            );
            return Err(((StatusCode::FORBIDDEN, message), AuthRefusal::BadCapability));
        }
        let Some(expected) = &self.expected_authorization else {
            return Ok(());
        };
        let presented = headers.get(header::AUTHORIZATION);
        let reason = match presented {
            None => AuthRefusal::MissingToken,
            Some(value) if constant_time_equal(value.as_bytes(), expected.as_bytes()) => {
                return Ok(());
            }
            Some(_) => AuthRefusal::UnknownToken,
        };
        let message = "missing or wrong cluster token".to_string();
        Err(((StatusCode::UNAUTHORIZED, message), reason))
    }
}

/// The header a request for another worker's files carries.
#[derive(Clone, Debug)]
pub struct FileCredential {
    /// `x-essaim-capability` or `authorization`.
    pub header: HeaderName,
    /// Its value.
    pub value: Arc<str>,
}

/// What this worker presents to other workers' file servers.
#[derive(Clone, Debug, Default)]
pub struct FileCredentials {
    /// The cluster token, presented while no key is known.
    pub token: Option<String>,
    /// The key of the current registration.
    pub capability_key: CapabilityKeyCell,
}

impl FileCredentials {
    /// Returns the header to read the files of `job`, if any is needed.
    pub fn for_job(&self, job: u64) -> Option<FileCredential> {
        if let Some(key) = self.capability_key.get() {
            return Some(FileCredential {
                header: HeaderName::from_static(FILE_CAPABILITY_HEADER),
                value: key.capability_of(job).into(),
            });
        }
        self.token.as_ref().map(|token| FileCredential {
            header: header::AUTHORIZATION,
            value: format!("Bearer {token}").into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn with_a_key_only_the_jobs_capability_opens_its_files() {
        let cell = CapabilityKeyCell::default();
        let access = FileAccess::new(Some("t"), cell.clone(), AuthMetrics::default());
        // Before registration: the cluster token.
        assert!(access.check(&with("authorization", "Bearer t"), 7).is_ok());
        assert_eq!(access.check(&HeaderMap::new(), 7).unwrap_err().0, 401);

        cell.set(Some(CapabilityKey::from_bytes([3; 32])));
        let credentials = FileCredentials {
            token: Some("t".into()),
            capability_key: cell.clone(),
        };
        let of_job_7 = credentials.for_job(7).unwrap();
        assert_eq!(of_job_7.header, FILE_CAPABILITY_HEADER);
        assert!(
            access
                .check(&with(FILE_CAPABILITY_HEADER, &of_job_7.value), 7)
                .is_ok()
        );
        let refused = access
            .check(&with(FILE_CAPABILITY_HEADER, &of_job_7.value), 8)
            .unwrap_err();
        assert_eq!(refused.0, 403);
        assert!(refused.1.contains("job 8"), "{}", refused.1);
        // The cluster token no longer opens anything.
        assert_eq!(
            access
                .check(&with("authorization", "Bearer t"), 7)
                .unwrap_err()
                .0,
            403
        );
    }

    #[test]
    fn without_a_key_the_cluster_token_is_presented() {
        let credentials = FileCredentials {
            token: Some("t".into()),
            capability_key: CapabilityKeyCell::default(),
        };
        let credential = credentials.for_job(1).unwrap();
        assert_eq!(credential.header, header::AUTHORIZATION);
        assert_eq!(&*credential.value, "Bearer t");
        assert!(FileCredentials::default().for_job(1).is_none());
    }
}
