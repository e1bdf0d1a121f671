//! TLS to NATS, asked for in the server URL, so that the one string a pipeline carries
//! to every worker says it all:
//!
//! | URL | connection |
//! |---|---|
//! | `nats://host:4222` | plain, unless the server requires TLS (the client follows, verifying with the system's roots) |
//! | `tls://host:4222` | TLS required, verified with the system's roots |
//! | `…?tls_ca=/etc/essaim/nats-ca.pem` (any scheme) | TLS required, verified with the CAs of that PEM file (read on each machine that connects) |
//!
//! Several servers may be listed (`nats://a:4222,nats://b:4222?tls_ca=…`): the query,
//! written once at the end, applies to all. The server's certificate is always
//! verified and its name checked; the roots come from `essaim-tls`, as on every other
//! port of essaim.

use std::path::PathBuf;

use crate::NatsError;

/// The query parameter naming the CA file.
pub const TLS_CA_PARAM: &str = "tls_ca";

/// A NATS URL taken apart: the server addresses and how to reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsTarget {
    /// The server URLs, comma-separated, without the query.
    pub servers: String,
    /// Whether TLS is required (a `tls://` URL or a CA file).
    pub require_tls: bool,
    /// The CA file given with `tls_ca`.
    pub ca_file: Option<PathBuf>,
}

impl NatsTarget {
    /// Parses `url`; refuses a query parameter it does not know (a typo must not
    /// silently leave a connection plain).
    pub fn parse(url: &str) -> Result<NatsTarget, NatsError> {
        let (servers, query) = url.split_once('?').unwrap_or((url, ""));
        let mut ca_file = None;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=') {
                Some((TLS_CA_PARAM, path)) if !path.is_empty() => {
                    ca_file = Some(PathBuf::from(path));
                }
                _ => {
                    return Err(NatsError::InvalidUrl {
                        url: servers.to_owned(),
                        reason: format!(
                            "unknown or empty parameter `{pair}` (known: {TLS_CA_PARAM}=FILE)"
                        ),
                    });
                }
            }
        }
        let tls_scheme = servers
            .split(',')
            .any(|server| server.trim().starts_with("tls://"));
        Ok(NatsTarget {
            servers: servers.to_owned(),
            require_tls: tls_scheme || ca_file.is_some(),
            ca_file,
        })
    }

    /// The server addresses, one per comma-separated URL (the client tries them in
    /// turn and reconnects to another when one is lost).
    pub fn server_addrs(&self) -> Result<Vec<async_nats::ServerAddr>, NatsError> {
        self.servers
            .split(',')
            .map(|server| {
                server
                    .trim()
                    .parse::<async_nats::ServerAddr>()
                    .map_err(|error| NatsError::InvalidUrl {
                        url: self.servers.clone(),
                        reason: format!("`{}`: {error}", server.trim()),
                    })
            })
            .collect()
    }

    /// Adds the TLS settings to `options`: essaim's roots (the CA file's, else the
    /// system's), TLS required when asked for.
    pub fn apply(
        &self,
        options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, NatsError> {
        let trust = essaim_tls::ClientTrust::from_optional_ca_file(self.ca_file.as_deref())
            .map_err(|error| NatsError::InvalidUrl {
                url: self.servers.clone(),
                reason: format!("{TLS_CA_PARAM}: {error}"),
            })?;
        let config = (*trust.rustls_config()).clone();
        Ok(options
            .tls_client_config(config)
            .require_tls(self.require_tls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_url_stays_plain_and_a_tls_url_or_a_ca_file_requires_tls() {
        let plain = NatsTarget::parse("nats://127.0.0.1:4222").expect("valid");
        assert!(!plain.require_tls);
        assert_eq!(plain.servers, "nats://127.0.0.1:4222");
        assert!(
            NatsTarget::parse("tls://n1:4222")
                .expect("valid")
                .require_tls
        );
        let with_ca =
            NatsTarget::parse("nats://a:4222,nats://b:4222?tls_ca=/etc/ca.pem").expect("valid");
        assert_eq!(with_ca.servers, "nats://a:4222,nats://b:4222");
        assert!(with_ca.require_tls);
        assert_eq!(with_ca.ca_file, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn an_unknown_parameter_or_a_missing_ca_file_is_refused_naming_it() {
        let unknown = NatsTarget::parse("nats://a:4222?tls_cert=x").expect_err("unknown");
        assert!(unknown.to_string().contains("tls_cert=x"), "{unknown}");
        let target = NatsTarget::parse("nats://a:4222?tls_ca=/no/such/ca.pem").expect("parsed");
        let missing = target
            .apply(async_nats::ConnectOptions::new())
            .expect_err("the CA file is read");
        assert!(missing.to_string().contains("/no/such/ca.pem"), "{missing}");
    }
}
