//! TLS to PostgreSQL, asked for the libpq way: `sslmode` and `sslrootcert` in the URL
//! (`postgresql://u@db.example:5432/app?sslmode=verify-full&sslrootcert=/etc/ca.pem`,
//! or `host=db.example sslmode=verify-full sslrootcert=/etc/ca.pem`), so that the URL
//! a user already has for `psql` works here unchanged.
//!
//! Every connection of essaim to PostgreSQL goes through [`connect`]: the sink's, the
//! CLI's (`stream status`, the streaming demo), so the rules are the same everywhere:
//!
//! | `sslmode` | essaim |
//! |---|---|
//! | absent, `disable` | plain TCP (TLS is asked for, never guessed) |
//! | `prefer` | TLS when the server offers it, verified as below; plain otherwise |
//! | `require`, `verify-ca`, `verify-full` | TLS or no connection, the server's certificate verified against `sslrootcert` (a PEM file of CAs), else the system's roots, and its name checked |
//!
//! One departure from libpq, on purpose: libpq's `require` and `verify-ca` encrypt
//! without checking the server's name (and `require` without checking its
//! certificate at all when no root file exists), which lets anyone on the path
//! impersonate the database. essaim always verifies; a private CA goes in
//! `sslrootcert`. TLS is rustls (`essaim-tls`), as on every other port of essaim.

use std::path::PathBuf;
use std::str::FromStr;

use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config};

use crate::error::PgSinkError;

/// What [`split_tls_settings`] takes out of a URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// The `sslmode` asked for, as written (`None`: not given).
    pub mode: Option<String>,
    /// The `sslrootcert` file.
    pub root_cert: Option<PathBuf>,
}

/// Splits `url` into a string `tokio_postgres` parses (the libpq modes it does not
/// know, `verify-ca` and `verify-full`, written as `require`; `sslrootcert` taken out)
/// and the TLS settings.
pub fn split_tls_settings(url: &str) -> (String, TlsSettings) {
    let mut settings = TlsSettings::default();
    let mut take = |key: &str, value: &str| -> Option<String> {
        match key {
            "sslrootcert" => {
                settings.root_cert = Some(PathBuf::from(value));
                None
            }
            "sslmode" => {
                settings.mode = Some(value.to_owned());
                let known = matches!(value, "verify-ca" | "verify-full");
                Some(if known { "require" } else { value }.to_owned())
            }
            _ => Some(value.to_owned()),
        }
    };
    let rewritten = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let kept: Vec<String> = query
                    .split('&')
                    .filter_map(|pair| {
                        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                        take(key, value).map(|value| format!("{key}={value}"))
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        url.split_whitespace()
            .filter_map(|pair| match pair.split_once('=') {
                Some((key, value)) => take(key, value).map(|value| format!("{key}={value}")),
                None => Some(pair.to_owned()),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rewritten, settings)
}

/// Where and how to connect: the parsed URL and, when its `sslmode` asks for TLS, the
/// connector (its root file read once, here, so that a bad file is an error before any
/// connection is tried).
pub struct PgTarget {
    config: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for PgTarget {
    // Not the configuration: it holds the password.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PgTarget")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl PgTarget {
    /// Parses `url` (see the module doc); refuses an invalid URL or root file.
    pub fn parse(url: &str) -> Result<PgTarget, PgSinkError> {
        let (url, settings) = split_tls_settings(url);
        let mut config = Config::from_str(&url).map_err(|error| PgSinkError::InvalidUrl {
            reason: error.to_string(),
        })?;
        if settings.mode.is_none() {
            // tokio-postgres defaults to `prefer`; essaim's default is plain TCP, as it
            // always was: TLS is asked for, never guessed.
            config.ssl_mode(SslMode::Disable);
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(tls_connector(&settings)?),
        };
        Ok(PgTarget { config, tls })
    }

    /// Sets the timeout of one connect.
    pub fn connect_timeout(&mut self, timeout: std::time::Duration) {
        self.config.connect_timeout(timeout);
    }

    /// Whether connections use TLS (`prefer` may still fall back to plain TCP).
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connects; returns the client and the task that drives its socket (it ends once
    /// the client is dropped).
    pub async fn connect(&self) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
        match &self.tls {
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                Ok((client, spawn_connection(connection)))
            }
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                Ok((client, spawn_connection(connection)))
            }
        }
    }
}

/// Parses `url` and connects (see [`PgTarget`]): for one-off clients.
pub async fn connect(url: &str) -> Result<(Client, JoinHandle<()>), PgSinkError> {
    PgTarget::parse(url)?
        .connect()
        .await
        .map_err(|source| PgSinkError::Postgres {
            action: "connect",
            source,
        })
}

fn tls_connector(
    settings: &TlsSettings,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgSinkError> {
    let trust = essaim_tls::ClientTrust::from_optional_ca_file(settings.root_cert.as_deref())
        .map_err(|error| PgSinkError::InvalidUrl {
            reason: format!("sslrootcert: {error}"),
        })?;
    let config = (*trust.rustls_config()).clone();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn spawn_connection<S, T>(connection: tokio_postgres::Connection<S, T>) -> JoinHandle<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "PostgreSQL connection ended");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_modes_and_the_root_file_are_taken_out_of_a_url() {
        let (url, settings) = split_tls_settings(
            "postgresql://u@db:5432/app?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        );
        assert_eq!(
            url,
            "postgresql://u@db:5432/app?sslmode=require&application_name=x"
        );
        assert_eq!(settings.mode.as_deref(), Some("verify-full"));
        assert_eq!(settings.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let (url, settings) = split_tls_settings("postgresql://u@db/app?sslrootcert=ca.pem");
        assert_eq!(url, "postgresql://u@db/app");
        assert_eq!(settings.mode, None);
    }

    #[test]
    fn key_value_strings_are_rewritten_the_same_way() {
        let (url, settings) =
            split_tls_settings("host=db user=u sslmode=verify-ca sslrootcert=/ca.pem");
        assert_eq!(url, "host=db user=u sslmode=require");
        assert_eq!(settings.mode.as_deref(), Some("verify-ca"));
        assert_eq!(settings.root_cert, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn a_url_without_tls_settings_is_unchanged_and_plain() {
        let url = "postgresql://postgres@127.0.0.1:5432/postgres";
        assert_eq!(
            split_tls_settings(url),
            (url.to_owned(), TlsSettings::default())
        );
        assert!(!PgTarget::parse(url).expect("a valid URL").uses_tls());
        assert!(PgTarget::parse("postgresql://u@db/app?sslmode=sometimes").is_err());
        let missing =
            PgTarget::parse("postgresql://u@db/app?sslmode=require&sslrootcert=/no/ca.pem")
                .expect_err("the root file is read at once");
        assert!(missing.to_string().contains("/no/ca.pem"), "{missing}");
        assert!(
            PgTarget::parse("postgresql://u@db/app?sslmode=require")
                .expect("the system's roots")
                .uses_tls()
        );
    }
}
