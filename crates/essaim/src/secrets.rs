//! Secrets read from files (`--token-file`, `ESSAIM_TOKEN_FILE`, `token_file` in
//! `essaim.toml`), so that a token need not sit in a command line, a shell's history or
//! the configuration file itself: Kubernetes and systemd hand secrets over as files.

use std::path::{Path, PathBuf};

/// A secret file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read.
    #[error("cannot read secret file `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file's first line is empty.
    #[error("secret file `{path}` is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Returns the secret in `path`: its first line, without the line break (files written
/// by `echo` end with one).
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let secret = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    if secret.is_empty() {
        return Err(SecretError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_the_first_line_without_its_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\r\nignored\n").unwrap();
        assert_eq!(read_secret(&path).unwrap(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(read_secret(&path), Err(SecretError::Empty { .. })));
        let missing = read_secret(&dir.path().join("missing")).unwrap_err();
        assert!(
            missing.to_string().starts_with("cannot read secret file"),
            "{missing}"
        );
    }
}
