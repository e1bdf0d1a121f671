//! The bearer-token check, in time that does not depend on how much of a guess is
//! right (a byte-by-byte early exit would let a client find the token byte by byte).

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

/// True when `headers` carry `Authorization: Bearer <expected>`.
pub(crate) fn authorized(headers: &HeaderMap, expected: &str) -> bool {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    constant_time_eq(presented, expected.as_bytes())
}

/// Compares in time that depends only on the length of `expected`.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(presented.len() != expected.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= presented.get(index).copied().unwrap_or(!byte) ^ byte;
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_the_exact_token_passes() {
        assert!(constant_time_eq(b"token", b"token"));
        for wrong in [&b""[..], b"toke", b"tokeN", b"token ", b"tokenx"] {
            assert!(!constant_time_eq(wrong, b"token"), "{wrong:?}");
        }
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers, "token"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer token"));
        assert!(authorized(&headers, "token"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic token"));
        assert!(!authorized(&headers, "token"));
    }
}
