//! The principals file: who may call the coordinator, and with which roles.
//!
//! ```toml
//! version = 1
//!
//! [[principal]]
//! name = "ci"
//! # printf %s "$TOKEN" | sha256sum
//! token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! roles = ["submit", "commands"]
//!
//! [[principal]]
//! name = "dashboard"
//! token = "a-token-in-clear"     # accepted, but a hash keeps the file harmless to read
//! roles = ["read-only"]
//!
//! [[principal]]
//! name = "workers"
//! certificate = "essaim-worker"  # the subject CN of a client certificate (mutual TLS)
//! roles = ["worker"]
//! ```
//!
//! A principal has a token, a certificate identity, or both. `certificate` names the
//! subject common name (CN) of the client certificates it is known by, as Kubernetes and
//! etcd take a certificate's CN for the user (see `essaim_tls::ClientCertificate`); it is
//! matched only on a coordinator that verifies client certificates (`--tls-client-ca`).
//!
//! Validation happens once, here: every error names the principal and the key, and a
//! file that names a role twice, reuses a name, a token or a certificate identity, takes a name the coordinator
//! gives itself (`cluster`, `anonymous`), or misspells a key is refused rather than
//! half-read. A file may be edited while the coordinator runs: `reload.rs` puts a valid
//! new version in force and keeps the old one when the new one is refused.

use super::{ANONYMOUS_PRINCIPAL, CLUSTER_TOKEN_PRINCIPAL, Role, sha256};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The only version of the file so far.
const PRINCIPALS_FILE_VERSION: u32 = 1;

/// A principals file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalsError {
    /// The file cannot be read.
    #[error("cannot read principals file `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the expected TOML.
    #[error("principals file `{path}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the principal and key.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    version: u32,
    #[serde(default)]
    principal: Vec<PrincipalEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    name: String,
    token: Option<String>,
    token_sha256: Option<String>,
    certificate: Option<String>,
    roles: Vec<String>,
}

/// One principal as the coordinator uses it: its name, how it is recognised (a token, a
/// certificate, or both), and its roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalSpec {
    /// Its name, as logged and shown.
    pub name: String,
    /// The SHA-256 of its token, if it has one.
    pub token_sha256: Option<[u8; 32]>,
    /// The subject common name of its client certificates, if it is known by one.
    pub certificate: Option<String>,
    /// What it may do.
    pub roles: Vec<Role>,
}

/// Reads and validates the principals file at `path`.
pub fn load_principals(path: &Path) -> Result<Vec<PrincipalSpec>, PrincipalsError> {
    let text = std::fs::read_to_string(path).map_err(|source| PrincipalsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_principals(&text).map_err(|message| PrincipalsError::Invalid {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses and validates the text of a principals file; the error says what to fix.
pub fn parse_principals(text: &str) -> Result<Vec<PrincipalSpec>, String> {
    let file: PrincipalsFile = toml::from_str(text).map_err(|error| error.to_string())?;
    if file.version != PRINCIPALS_FILE_VERSION {
        return Err(format!(
            "version {} is not supported; this coordinator reads version {PRINCIPALS_FILE_VERSION}",
            file.version
        ));
    }
    let mut names = BTreeSet::new();
    let mut hashes = BTreeSet::new();
    let mut certificates = BTreeSet::new();
    let mut principals = Vec::with_capacity(file.principal.len());
    for entry in file.principal {
        let name = entry.name.trim().to_string();
        if name.is_empty() {
            return Err("a principal has an empty `name`".into());
        }
        if [CLUSTER_TOKEN_PRINCIPAL, ANONYMOUS_PRINCIPAL].contains(&name.as_str()) {
            return Err(format!(
                "principal name `{name}` is reserved (the coordinator names its callers `{CLUSTER_TOKEN_PRINCIPAL}` and `{ANONYMOUS_PRINCIPAL}` itself): choose another"
            ));
        }
        if !names.insert(name.clone()) {
            return Err(format!("principal `{name}` is defined twice"));
        }
        let certificate = certificate_identity(&name, entry.certificate.as_deref())?;
        let token_sha256 = match (
            &certificate,
            entry.token.as_deref(),
            entry.token_sha256.as_deref(),
        ) {
            // Known by its certificate alone.
            (Some(_), None, None) => None,
            (_, token, token_sha256) => Some(token_hash(&name, token, token_sha256)?),
        };
        if let Some(hash) = token_sha256
            && !hashes.insert(hash)
        {
            return Err(format!(
                "principal `{name}` has the token of another principal"
            ));
        }
        if let Some(identity) = &certificate
            && !certificates.insert(identity.clone())
        {
            return Err(format!(
                "principal `{name}` has the certificate identity `{identity}` of another principal"
            ));
        }
        let roles = roles(&name, &entry.roles)?;
        principals.push(PrincipalSpec {
            name,
            token_sha256,
            certificate,
            roles,
        });
    }
    Ok(principals)
}

fn token_hash(
    name: &str,
    token: Option<&str>,
    token_sha256: Option<&str>,
) -> Result<[u8; 32], String> {
    match (token, token_sha256) {
        (Some(token), None) if !token.is_empty() => Ok(sha256(token)),
        (None, Some(hex)) => decode_sha256(hex).ok_or_else(|| {
            format!("principal `{name}`: `token_sha256` must be 64 hexadecimal digits")
        }),
        (Some(_), None) => Err(format!("principal `{name}`: `token` is empty")),
        (Some(_), Some(_)) => Err(format!(
            "principal `{name}`: give `token` or `token_sha256`, not both"
        )),
        (None, None) => Err(format!(
            "principal `{name}` has no `token_sha256` (or `token`) and no `certificate`: give it one"
        )),
    }
}

/// Returns the certificate identity of principal `name`, trimmed; an empty one is an
/// error rather than a principal nobody's certificate can name.
fn certificate_identity(name: &str, certificate: Option<&str>) -> Result<Option<String>, String> {
    let Some(identity) = certificate else {
        return Ok(None);
    };
    let identity = identity.trim();
    if identity.is_empty() {
        return Err(format!(
            "principal `{name}`: `certificate` is empty; give the subject common name (CN) of its client certificates"
        ));
    }
    Ok(Some(identity.to_string()))
}

fn roles(name: &str, names: &[String]) -> Result<Vec<Role>, String> {
    if names.is_empty() {
        return Err(format!("principal `{name}` has no `roles`"));
    }
    let mut roles = Vec::with_capacity(names.len());
    for role_name in names {
        let Some(role) = Role::from_name(role_name) else {
            let known: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
            return Err(format!(
                "principal `{name}`: unknown role `{role_name}`; the roles are {}",
                known.join(", ")
            ));
        };
        if roles.contains(&role) {
            return Err(format!("principal `{name}` names role `{role_name}` twice"));
        }
        roles.push(role);
    }
    Ok(roles)
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(bytes)
}
