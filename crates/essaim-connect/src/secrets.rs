//! Secrets referenced by name in connector addresses, resolved where the connection is
//! opened.
//!
//! A pipeline's endpoints travel in its tasks' payloads, which the coordinator journals
//! and shows (masked) in dead-letter views. A password written into a URL would travel
//! with them. Instead an address may name where the secret is, as Kafka Connect's
//! configuration providers do, and the worker that opens the connection reads it from
//! its own environment:
//!
//! - `${env:NAME}` — the value of the worker's environment variable `NAME`;
//! - `${file:PATH}` — the content of the worker's file `PATH`, without the trailing
//!   newline (a Kubernetes secret mounted as a file, a Docker secret).
//!
//! `postgres://etl:${env:PG_PASSWORD}@db/orders` thus reaches the worker as written and
//! becomes the real URL only in its memory. A reference that cannot be resolved is an
//! error naming the reference, never a value. `$` not followed by `{env:` or `{file:` is
//! kept as it is.

use std::path::PathBuf;

/// A reference that cannot be resolved on this machine.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not valid Unicode).
    #[error("secret `${{env:{0}}}`: the environment variable `{0}` is not set on this worker")]
    MissingVariable(String),
    /// The file cannot be read.
    #[error("secret `${{file:{}}}`: cannot read the file on this worker", .path.display())]
    UnreadableFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A reference without its closing brace, or with an empty name.
    #[error("secret reference `{0}` is malformed: write `${{env:NAME}}` or `${{file:PATH}}`")]
    Malformed(String),
}

/// The two places a secret can be read from.
const PROVIDERS: [&str; 2] = ["${env:", "${file:"];

/// Returns `text` with every `${env:NAME}` and `${file:PATH}` replaced by the secret it
/// names, read from this process's environment and file system.
pub fn resolve_secrets(text: &str) -> Result<String, SecretError> {
    resolve_with(
        text,
        |name| std::env::var(name).ok(),
        |path| std::fs::read_to_string(path),
    )
}

/// Returns whether `text` names a secret (and so must be resolved before use).
pub fn has_secret_reference(text: &str) -> bool {
    PROVIDERS.iter().any(|provider| text.contains(provider))
}

/// Returns whether the URL `text` holds a password written out (`scheme://user:pw@…`)
/// rather than a reference to one: it would travel in payloads and the journal.
pub fn has_inline_password(text: &str) -> bool {
    let Some((_, rest)) = text.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let Some((user_info, _host)) = authority.rsplit_once('@') else {
        return false;
    };
    match user_info.split_once(':') {
        Some((_, password)) => !password.is_empty() && !has_secret_reference(password),
        None => false,
    }
}

fn resolve_with(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
    read: impl Fn(&str) -> std::io::Result<String>,
) -> Result<String, SecretError> {
    let mut resolved = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((start, provider)) = next_reference(rest) {
        resolved.push_str(&rest[..start]);
        let after = &rest[start + provider.len()..];
        let end = after
            .find('}')
            .filter(|end| *end > 0)
            .ok_or_else(|| SecretError::Malformed(rest[start..].chars().take(40).collect()))?;
        let name = &after[..end];
        let value = match provider {
            "${env:" => env(name).ok_or_else(|| SecretError::MissingVariable(name.into()))?,
            _ => read(name)
                .map(|content| content.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|source| SecretError::UnreadableFile {
                    path: PathBuf::from(name),
                    source,
                })?,
        };
        resolved.push_str(&value);
        rest = &after[end + 1..];
    }
    resolved.push_str(rest);
    Ok(resolved)
}

/// Returns where the first reference of `text` starts, and its provider's prefix.
fn next_reference(text: &str) -> Option<(usize, &'static str)> {
    PROVIDERS
        .iter()
        .filter_map(|provider| text.find(provider).map(|at| (at, *provider)))
        .min_by_key(|(at, _)| *at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<String, SecretError> {
        resolve_with(
            text,
            |name| (name == "PG_PASSWORD").then(|| "s3cr$t".to_string()),
            |path| match path {
                "/run/secrets/nats" => Ok("token-42\n".into()),
                _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
            },
        )
    }

    #[test]
    fn references_are_replaced_and_the_rest_is_kept() {
        let cases = [
            (
                "postgres://etl:${env:PG_PASSWORD}@db/orders",
                "postgres://etl:s3cr$t@db/orders",
            ),
            (
                "nats://${file:/run/secrets/nats}@n:4222 and ${env:PG_PASSWORD}",
                "nats://token-42@n:4222 and s3cr$t",
            ),
            (
                "postgres://essaim@127.0.0.1/essaim",
                "postgres://essaim@127.0.0.1/essaim",
            ),
            (
                "a $ sign and ${other:x} stay",
                "a $ sign and ${other:x} stay",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(resolve(text).unwrap(), expected, "{text}");
        }
        assert!(has_secret_reference("x${env:A}"));
        assert!(has_inline_password("postgres://etl:pw@db/x"));
        for safe in [
            "postgres://etl:${env:PG_PASSWORD}@db/x",
            "postgres://etl@db/x",
            "nats://127.0.0.1:4222",
            "s3://bucket/key:with@odd",
        ] {
            assert!(!has_inline_password(safe), "{safe}");
        }
        assert!(!has_secret_reference("postgres://a:b@h"));
    }

    #[test]
    fn an_unresolvable_reference_names_itself_and_no_value() {
        let missing = resolve("postgres://u:${env:NOPE}@h").unwrap_err();
        assert_eq!(
            missing.to_string(),
            "secret `${env:NOPE}`: the environment variable `NOPE` is not set on this worker"
        );
        let unreadable = resolve("${file:/nowhere}").unwrap_err();
        assert!(
            unreadable.to_string().contains("${file:/nowhere}"),
            "{unreadable}"
        );
        for malformed in ["postgres://u:${env:PG_PASSWORD@h", "${env:}"] {
            assert!(
                matches!(resolve(malformed), Err(SecretError::Malformed(_))),
                "{malformed}"
            );
        }
    }
}
