//! A server's certificate renewed without a restart.
//!
//! Certificates expire (cert-manager and ACME clients renew them weeks ahead), and a
//! restart to pick up a renewed one would drop every connection and, for a coordinator,
//! every long poll. So rustls does not hold the certificate and key itself: it asks a
//! [`ReloadingCertificate`] at each handshake, and the pair is read again on `SIGHUP`
//! and whenever the files' content changes (checked every [`CHECK_EVERY`], as the
//! principals file is: Kubernetes replaces a mounted secret behind a symbolic link, so
//! content is compared, not modification times).
//!
//! A new pair goes through the checks of the start (both files parse, the key is the
//! certificate's) and replaces the old one at once: handshakes after it get the new
//! certificate, while connections already open keep theirs (TLS authenticates once per
//! connection; a client resuming a session of before carries its authentication over). A refused pair — half-written, or a key of another certificate — changes
//! nothing: the error is logged and the old pair keeps serving, so that a renewal gone
//! wrong cannot take the port down. Writing the certificate and then the key may be seen
//! in between: that state is refused, and the next check puts the complete pair in force.
//!
//! Every server of a process serving with one [`ServerTls`](crate::ServerTls) shares its
//! resolver, and the content last seen is kept in it, so that however many servers watch
//! one pair, a change is read and logged once.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::TlsError;
use crate::pem::CertificateAndKeyPem;

/// How often the files' content is compared with the one last read.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// What a look at the files found.
#[derive(Debug)]
pub enum CertificateReload {
    /// The files are as last read: nothing to do.
    Unchanged,
    /// A new valid pair is in force for new connections.
    Loaded,
    /// The new content is unusable; the pair in force stays.
    Refused(TlsError),
}

/// The certificate and key rustls hands every new connection, replaceable while serving.
pub(crate) struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    in_force: RwLock<Arc<CertifiedKey>>,
    /// The files' content last read, loaded or refused (`None`: unreadable then).
    last_seen: Mutex<Option<CertificateAndKeyPem>>,
}

impl std::fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCertificate")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCertificate {
    /// Reads the pair at `cert` and `key`; any fault is the start's error.
    pub(crate) fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let pem = CertificateAndKeyPem::read(cert, key)?;
        let certified = certified_key(cert, key, &pem)?;
        Ok(Self {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            in_force: RwLock::new(Arc::new(certified)),
            last_seen: Mutex::new(Some(pem)),
        })
    }

    /// Reads the files again and puts a changed, valid pair in force.
    pub(crate) fn reload_if_changed(&self) -> CertificateReload {
        let read = CertificateAndKeyPem::read(&self.cert_path, &self.key_path);
        // Held while reading and swapping, so that two servers watching the same pair
        // cannot both see the change.
        let mut last_seen = self
            .last_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let unchanged = match (&read, &*last_seen) {
            (Ok(now), Some(seen)) => now == seen,
            // Still unreadable: said once already.
            (Err(_), None) => true,
            _ => false,
        };
        if unchanged {
            return CertificateReload::Unchanged;
        }
        *last_seen = read.as_ref().ok().cloned();
        let certified = read.and_then(|pem| certified_key(&self.cert_path, &self.key_path, &pem));
        match certified {
            Ok(certified) => {
                *self
                    .in_force
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
                CertificateReload::Loaded
            }
            Err(error) => CertificateReload::Refused(error),
        }
    }

    /// Looks at the files on `SIGHUP` and every [`CHECK_EVERY`], forever; logs what
    /// changed. Runs beside a server and is dropped with it.
    pub(crate) async fn watch(&self) -> Infallible {
        let mut hangups = hangup_signals();
        loop {
            tokio::select! {
                () = tokio::time::sleep(CHECK_EVERY) => {}
                Some(()) = next_hangup(&mut hangups) => {}
            }
            let cert = self.cert_path.display();
            match self.reload_if_changed() {
                CertificateReload::Unchanged => {}
                CertificateReload::Loaded => {
                    tracing::info!(cert = %cert, "TLS certificate reloaded: new connections get it");
                }
                CertificateReload::Refused(error) => {
                    let error = error_chain(&error);
                    tracing::error!(cert = %cert, %error, "new TLS certificate refused; the previous one keeps serving");
                }
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.in_force.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// Returns the pair of `pem`, checked as rustls checks a single certificate: the key
/// parses and is the certificate's.
fn certified_key(
    cert: &Path,
    key: &Path,
    pem: &CertificateAndKeyPem,
) -> Result<CertifiedKey, TlsError> {
    let (chain, private_key) = pem.parse(cert, key)?;
    CertifiedKey::from_der(chain, private_key, &crate::client::provider()).map_err(|source| {
        TlsError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        }
    })
}

/// Returns `error` and its causes, joined (essaim-core's `error_chain` is not a
/// dependency of this crate).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

// `SIGHUP`, as the coordinator's principals file takes it (`auth/reload.rs`).
#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangup_signals() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signals() -> Hangups {}

/// Waits for the next `SIGHUP`; never returns where there is none.
#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    match hangups {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) -> Option<()> {
    std::future::pending().await
}
