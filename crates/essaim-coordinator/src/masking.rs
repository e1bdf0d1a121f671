//! Passwords masked out of what the coordinator shows.
//!
//! A pipeline's payload holds its connectors' URLs, and a URL may hold a password
//! (`postgres://etl:s3cret@db/orders`). The payload must reach the worker intact, but
//! the dead-letter views (gRPC, REST, the dashboard) are read by anyone with
//! `read-only`: there the password of every `scheme://user:password@host` is replaced
//! by `***`. The stored payload is untouched, so a requeued task runs as before.

/// What a password is replaced with.
const MASK: &str = "***";

/// Returns `text` with the password of every URL's user information replaced by
/// `***`; text without such a URL comes back unchanged.
pub fn mask_url_passwords(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        masked.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        // The authority ends at the path, the query, or anything that cannot be in it
        // (the quote closing a JSON string, a space).
        let authority_len = rest
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '\\') || c.is_whitespace())
            .unwrap_or(rest.len());
        let authority = &rest[..authority_len];
        // The last `@` ends the user information (a password may contain `@`).
        let user_info = authority.rfind('@').map(|at| &authority[..at]);
        match user_info.and_then(|info| info.find(':').map(|colon| (info, colon))) {
            Some((info, colon)) => {
                masked.push_str(&info[..=colon]);
                masked.push_str(MASK);
                masked.push_str(&authority[info.len()..]);
            }
            None => masked.push_str(authority),
        }
        rest = &rest[authority_len..];
    }
    masked.push_str(rest);
    masked
}

/// Returns `payload` with its URL passwords masked when it is UTF-8 text, unchanged
/// otherwise (a binary payload holds no URL a reader would see).
pub fn mask_payload(payload: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(payload) {
        Ok(text) => mask_url_passwords(text).into_bytes(),
        Err(_) => payload.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_everything_else_is_kept() {
        let cases = [
            (
                "postgres://etl:s3cret@db:5432/orders",
                "postgres://etl:***@db:5432/orders",
            ),
            (
                r#"{"sink":"postgres://etl:p@ss@db/x","src":"nats://n:4222"}"#,
                r#"{"sink":"postgres://etl:***@db/x","src":"nats://n:4222"}"#,
            ),
            (
                "kafka://user@broker:9092 and http://a:b@h",
                "kafka://user@broker:9092 and http://a:***@h",
            ),
            ("no url here", "no url here"),
            ("ends with ://", "ends with ://"),
            ("s3://bucket/key:with@odd", "s3://bucket/key:with@odd"),
        ];
        for (text, expected) in cases {
            assert_eq!(mask_url_passwords(text), expected, "{text}");
        }
        assert_eq!(mask_payload(&[0xff, 0x3a]), vec![0xff, 0x3a]);
    }
}
