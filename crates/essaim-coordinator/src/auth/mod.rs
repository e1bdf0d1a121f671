//! Who may call what: principals with roles instead of one shared secret.
//!
//! Every caller presents a bearer token, or, on a coordinator that verifies client
//! certificates (mutual TLS, `--tls-client-ca`), a client certificate. The coordinator
//! maps either to a [`Principal`] (a name and its [`Role`]s), from the principals file
//! (`--principals`, see `file.rs`: a principal has a token, a certificate identity, or
//! both) and from the cluster token, which stays a principal with every role so that
//! deployments with one shared token keep working unchanged. A bearer token, when there
//! is one, decides alone (as before certificates counted); without one, the subject
//! common name of the verified client certificate names the principal, as Kubernetes and
//! etcd take it ([`essaim_tls::ClientCertificate`]). Every gRPC method and REST route
//! declares the role it needs in one table (`table.rs`); the layers (`layers.rs`) check
//! it before any handler runs and put the principal in the request's extensions, where
//! a submission looks for the right to run commands.
//!
//! Refusals say what is wrong and whose fault it is: no token or an unknown one, or a
//! certificate whose common name no principal has (the message names the one seen), is
//! UNAUTHENTICATED (HTTP 401); a known principal without the role is PERMISSION_DENIED
//! (HTTP 403), naming the role. Each is counted in `essaim_auth_refusals_total`.
//!
//! Tokens are compared by their SHA-256: the file may hold hashes only, and the lookup
//! compares every entry in constant time. A certificate's common name is no secret (the
//! handshake proved the key behind it): it is looked up as it is.
//!
//! | file | concept |
//! |---|---|
//! | this file | roles, principals, the lookup and the refusal |
//! | `file.rs` | the principals file |
//! | `reload.rs` | the file read again on `SIGHUP` or when its content changes |
//! | `table.rs` | the role every gRPC method and REST route needs |
//! | `layers.rs` | the checks in front of gRPC and REST |

mod file;
mod layers;
mod reload;
mod table;

pub use file::{PrincipalSpec, PrincipalsError, load_principals, parse_principals};
pub use layers::{check_grpc, check_rest};
pub use reload::watch_principals_file;
pub use table::{grpc_method_role, rest_route_role};

use essaim_proto::capability::{CapabilityKey, constant_time_equal};
use essaim_telemetry::{AuthMetrics, AuthRefusal, AuthSurface};
use essaim_tls::ClientCertificate;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// What a principal may do. Roles nest: `admin` can do what `submit` can, `submit` and
/// `worker` what `read-only` can; `commands` adds one right to the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Reads jobs, results, workers and dead letters.
    ReadOnly,
    /// Submits and cancels jobs (and reads).
    Submit,
    /// Requeues and purges dead letters (and submits and reads).
    Admin,
    /// Registers as a worker, pulls tasks, reports results (and reads).
    Worker,
    /// May submit jobs that run shell commands (`command` tasks, streaming MapReduce).
    Commands,
}

impl Role {
    /// Every role, in the order the documentation lists them.
    pub const ALL: [Role; 5] = [
        Role::ReadOnly,
        Role::Submit,
        Role::Admin,
        Role::Worker,
        Role::Commands,
    ];

    /// Returns the role's name in the principals file and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::Submit => "submit",
            Self::Admin => "admin",
            Self::Worker => "worker",
            Self::Commands => "commands",
        }
    }

    /// Returns the role named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == name)
    }

    /// Returns whether holding `self` grants what `needed` allows.
    fn grants(self, needed: Role) -> bool {
        use Role::*;
        match (self, needed) {
            (held, needed) if held == needed => true,
            (Admin, Submit | ReadOnly) | (Submit | Worker, ReadOnly) => true,
            _ => false,
        }
    }
}

/// A named caller and its roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Its name, as logged and shown.
    pub name: String,
    /// What it may do.
    pub roles: Vec<Role>,
}

impl Principal {
    /// Returns whether one of its roles grants `needed`.
    pub fn may(&self, needed: Role) -> bool {
        self.roles.iter().any(|role| role.grants(needed))
    }

    /// Returns a principal with every role (the cluster token, or anyone when the
    /// coordinator has no credentials at all).
    pub fn with_every_role(name: &str) -> Self {
        Self {
            name: name.to_string(),
            roles: Role::ALL.to_vec(),
        }
    }
}

/// The name of the principal of the cluster token.
pub const CLUSTER_TOKEN_PRINCIPAL: &str = "cluster";

/// The name given to every caller of a coordinator without credentials.
pub const ANONYMOUS_PRINCIPAL: &str = "anonymous";

/// One known token: its SHA-256 and whose it is.
#[derive(Clone, Debug)]
pub(crate) struct KnownToken {
    pub(crate) sha256: [u8; 32],
    pub(crate) principal: Arc<Principal>,
}

/// The principals of the file as the lookup holds them: by token and by certificate
/// (a principal with both is in each, the same `Arc`).
#[derive(Debug, Default)]
struct KnownPrincipals {
    tokens: Vec<KnownToken>,
    /// By the subject common name of their client certificates.
    certificates: BTreeMap<String, Arc<Principal>>,
}

impl KnownPrincipals {
    fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.certificates.is_empty()
    }
}

/// What a caller presented: a bearer token wins over a client certificate, so that a
/// client of a mutual-TLS coordinator may still act as another principal by its token.
#[derive(Clone, Copy, Debug)]
pub enum Credentials<'a> {
    /// Nothing.
    None,
    /// The token of an `authorization: Bearer` header.
    Bearer(&'a str),
    /// No token, but the connection's verified client certificate.
    Certificate(&'a ClientCertificate),
}

impl<'a> Credentials<'a> {
    /// Returns what decides who the caller is: the bearer token if there is one, else
    /// the client certificate if there is one.
    pub fn presented(bearer: Option<&'a str>, certificate: Option<&'a ClientCertificate>) -> Self {
        match (bearer, certificate) {
            (Some(token), _) => Self::Bearer(token),
            (None, Some(certificate)) => Self::Certificate(certificate),
            (None, None) => Self::None,
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer token.
    #[error(
        "missing cluster token: pass --token or set ESSAIM_TOKEN (the cluster token or a principal's)"
    )]
    MissingToken,
    /// A token nobody holds.
    #[error("wrong cluster token: unknown token, neither the cluster token nor a principal's")]
    UnknownToken,
    /// A verified client certificate whose common name no principal has.
    #[error(
        "client certificate `CN={common_name}` names no principal: add `certificate = \"{common_name}\"` to a principal of the principals file, or pass a token"
    )]
    UnknownCertificate {
        /// The subject common name the certificate carries.
        common_name: String,
    },
    /// A verified client certificate without a subject common name.
    #[error(
        "client certificate has no subject common name (CN), which is what names a principal: use a certificate whose CN is a principal's `certificate`, or pass a token"
    )]
    UnnamedCertificate,
    /// A known principal without the role.
    #[error("principal `{principal}` lacks the role `{role}` needed to {action}", role = .role.as_str())]
    MissingRole {
        /// Who asked.
        principal: String,
        /// What was needed.
        role: Role,
        /// What it tried, in words.
        action: String,
    },
}

impl AuthError {
    /// Returns the reason counted in `essaim_auth_refusals_total`.
    pub fn reason(&self) -> AuthRefusal {
        match self {
            Self::MissingToken => AuthRefusal::MissingToken,
            Self::UnknownToken => AuthRefusal::UnknownToken,
            Self::UnknownCertificate { .. } | Self::UnnamedCertificate => {
                AuthRefusal::UnknownCertificate
            }
            Self::MissingRole { .. } => AuthRefusal::MissingRole,
        }
    }

    /// Returns the gRPC status: UNAUTHENTICATED for bad credentials (retrying with the
    /// right token helps), PERMISSION_DENIED for a missing role (only the operator can
    /// grant it).
    pub fn to_status(&self) -> tonic::Status {
        match self {
            Self::MissingToken
            | Self::UnknownToken
            | Self::UnknownCertificate { .. }
            | Self::UnnamedCertificate => tonic::Status::unauthenticated(self.to_string()),
            Self::MissingRole { .. } => tonic::Status::permission_denied(self.to_string()),
        }
    }

    /// Returns the HTTP status: 401 or 403, as [`AuthError::to_status`].
    pub fn http_status(&self) -> axum::http::StatusCode {
        match self {
            Self::MissingToken
            | Self::UnknownToken
            | Self::UnknownCertificate { .. }
            | Self::UnnamedCertificate => axum::http::StatusCode::UNAUTHORIZED,
            Self::MissingRole { .. } => axum::http::StatusCode::FORBIDDEN,
        }
    }
}

/// Every token the coordinator accepts, with the refusal counter. Clones share both,
/// and see a reload of the principals at once.
#[derive(Clone, Debug)]
pub struct Authenticator {
    /// The cluster token's principal (every role), if there is a cluster token.
    cluster: Option<KnownToken>,
    /// The principals of the file, replaced whole by a reload.
    principals: Arc<RwLock<Arc<KnownPrincipals>>>,
    metrics: AuthMetrics,
}

impl Authenticator {
    /// Accepts the cluster token (with every role) and the principals of the file.
    pub fn new(
        cluster_token: Option<&str>,
        principals: Vec<PrincipalSpec>,
        metrics: AuthMetrics,
    ) -> Self {
        let cluster = cluster_token.map(|token| KnownToken {
            sha256: sha256(token),
            principal: Arc::new(Principal::with_every_role(CLUSTER_TOKEN_PRINCIPAL)),
        });
        Self {
            cluster,
            principals: Arc::new(RwLock::new(known_principals(principals))),
            metrics,
        }
    }

    /// Puts `principals` in force in place of the current ones (a reload of the file),
    /// unless one of them holds the cluster token (it would get the cluster token's every
    /// role, whatever the file says), or there are none and no cluster token either (a
    /// file emptied by mistake would admit anyone).
    pub fn replace_principals(&self, principals: Vec<PrincipalSpec>) -> Result<(), String> {
        match &self.cluster {
            Some(cluster) => refuse_cluster_token(&principals, &cluster.sha256)?,
            None if principals.is_empty() && self.requires_credentials() => {
                return Err(
                    "the file now has no principal and there is no cluster token: it would admit anyone; restart the coordinator to do that on purpose"
                        .into(),
                );
            }
            None => {}
        }
        let known = known_principals(principals);
        *self
            .principals
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = known;
        Ok(())
    }

    /// Returns the principals in force now (the cluster token's aside).
    fn principals_now(&self) -> Arc<KnownPrincipals> {
        Arc::clone(
            &self
                .principals
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Returns whether any credential is required at all.
    pub fn requires_credentials(&self) -> bool {
        self.cluster.is_some() || !self.principals_now().is_empty()
    }

    /// Returns the principal of `credentials` if it may do what `needed` allows;
    /// counts the refusal on `surface` otherwise.
    pub fn authorize(
        &self,
        surface: AuthSurface,
        credentials: Credentials<'_>,
        needed: Role,
        action: &str,
    ) -> Result<Arc<Principal>, AuthError> {
        let verdict = self.judge(credentials, needed, action);
        if let Err(refusal) = &verdict {
            self.metrics.record_refusal(surface, refusal.reason());
            tracing::debug!(surface = surface.as_str(), reason = refusal.reason().as_str(), %refusal, "request refused");
        }
        verdict
    }

    fn judge(
        &self,
        credentials: Credentials<'_>,
        needed: Role,
        action: &str,
    ) -> Result<Arc<Principal>, AuthError> {
        let principals = self.principals_now();
        if self.cluster.is_none() && principals.is_empty() {
            return Ok(Arc::new(Principal::with_every_role(ANONYMOUS_PRINCIPAL)));
        }
        let principal = match credentials {
            Credentials::None => return Err(AuthError::MissingToken),
            Credentials::Bearer(token) => self.token_principal(&principals, token)?,
            Credentials::Certificate(certificate) => {
                certificate_principal(&principals, certificate)?
            }
        };
        if !principal.may(needed) {
            return Err(AuthError::MissingRole {
                principal: principal.name.clone(),
                role: needed,
                action: action.to_string(),
            });
        }
        Ok(principal)
    }

    /// Returns the principal holding `token`: the cluster's or one of `principals`.
    fn token_principal(
        &self,
        principals: &KnownPrincipals,
        token: &str,
    ) -> Result<Arc<Principal>, AuthError> {
        let presented = sha256(token);
        // Every entry is compared, so the time taken says nothing about which matched.
        let mut found = None;
        for known in self.cluster.iter().chain(principals.tokens.iter()) {
            if constant_time_equal(&known.sha256, &presented) && found.is_none() {
                found = Some(Arc::clone(&known.principal));
            }
        }
        found.ok_or(AuthError::UnknownToken)
    }

    /// Counts a refusal decided elsewhere (a submission that runs commands).
    pub fn record_refusal(&self, surface: AuthSurface, refusal: &AuthError) {
        self.metrics.record_refusal(surface, refusal.reason());
    }
}

/// Returns the principal named by the common name of `certificate`.
fn certificate_principal(
    principals: &KnownPrincipals,
    certificate: &ClientCertificate,
) -> Result<Arc<Principal>, AuthError> {
    let common_name = certificate
        .common_name()
        .ok_or(AuthError::UnnamedCertificate)?;
    principals
        .certificates
        .get(common_name)
        .cloned()
        .ok_or_else(|| AuthError::UnknownCertificate {
            common_name: common_name.to_string(),
        })
}

/// The principals of a file as the lookup holds them.
fn known_principals(principals: Vec<PrincipalSpec>) -> Arc<KnownPrincipals> {
    let mut known = KnownPrincipals::default();
    for spec in principals {
        let principal = Arc::new(Principal {
            name: spec.name,
            roles: spec.roles,
        });
        if let Some(sha256) = spec.token_sha256 {
            known.tokens.push(KnownToken {
                sha256,
                principal: Arc::clone(&principal),
            });
        }
        if let Some(common_name) = spec.certificate {
            known.certificates.insert(common_name, principal);
        }
    }
    Arc::new(known)
}

/// Refuses principals of which one holds the cluster token (its SHA-256 `cluster`).
fn refuse_cluster_token(principals: &[PrincipalSpec], cluster: &[u8; 32]) -> Result<(), String> {
    let holder = principals.iter().find(|spec| {
        spec.token_sha256
            .is_some_and(|sha256| constant_time_equal(&sha256, cluster))
    });
    match holder {
        Some(spec) => Err(format!(
            "principal `{}` has the cluster token, which already has every role: give it a token of its own",
            spec.name
        )),
        None => Ok(()),
    }
}

/// Refuses principals that reuse the cluster token `cluster_token` (at start; a reload
/// checks the same through [`Authenticator::replace_principals`]).
pub fn check_principals_against_cluster_token(
    principals: &[PrincipalSpec],
    cluster_token: Option<&str>,
) -> Result<(), String> {
    match cluster_token {
        Some(token) => refuse_cluster_token(principals, &sha256(token)),
        None => Ok(()),
    }
}

/// Draws a fresh secret for the per-job file capabilities (see
/// [`essaim_proto::capability`]) from the operating system's generator.
///
/// Each coordinator incarnation draws its own: workers are not journaled, so every
/// worker registers again with a new incarnation and receives its key.
pub fn draw_capability_key() -> std::io::Result<CapabilityKey> {
    use std::io::Read;
    let mut bytes = [0u8; essaim_proto::capability::CAPABILITY_KEY_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(CapabilityKey::from_bytes(bytes))
}

/// Returns the SHA-256 of `token`.
pub fn sha256(token: &str) -> [u8; 32] {
    sha256_bytes(token.as_bytes())
}

fn sha256_bytes(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Refuses a submission that runs commands when `principal` may not run them.
pub fn check_may_run_commands(principal: &Principal, job_name: &str) -> Result<(), AuthError> {
    if principal.may(Role::Commands) {
        return Ok(());
    }
    Err(AuthError::MissingRole {
        principal: principal.name.clone(),
        role: Role::Commands,
        action: format!("submit job `{job_name}`, whose tasks run shell commands"),
    })
}

#[cfg(test)]
mod tests;
