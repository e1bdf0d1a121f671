//! What crosses the wire besides a value's bytes: the header names, how a time to live
//! is written, how a key is put in a URL path, and the proxy's status document.

use serde::{Deserialize, Serialize};

/// Header of a `PUT` (and of a `GET` answer): seconds to live, decimals allowed.
pub const TTL_HEADER: &str = "essaim-ttl";

/// Header of a `PUT` (and of a `GET` answer): the value's tag (the proxy's epoch).
pub const TAG_HEADER: &str = "essaim-tag";

/// Header of a `PUT` that fills a holder which missed a value (read repair, extra
/// replicas): store only if the key is absent or its tag is below this number, so that
/// a write that reached the holder meanwhile is never replaced by an older value.
pub const FILL_BELOW_HEADER: &str = "essaim-fill-below";

/// Largest value unless told otherwise: 1 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Parses a time to live in seconds (`30`, `0.5`) into milliseconds; `None` when
/// malformed, negative or zero.
pub fn parse_ttl_ms(text: &str) -> Option<u64> {
    let seconds: f64 = text.trim().parse().ok()?;
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 1e9 {
        return None;
    }
    Some((seconds * 1000.0).ceil() as u64)
}

/// Writes milliseconds as seconds for [`TTL_HEADER`].
pub fn format_ttl_ms(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Adds [`TTL_HEADER`] to `headers` when the answered value has `ttl_left_ms` to live.
pub fn insert_ttl(headers: &mut axum::http::HeaderMap, ttl_left_ms: Option<u64>) {
    if let Some(ttl) = ttl_left_ms
        && let Ok(value) = axum::http::HeaderValue::from_str(&format_ttl_ms(ttl))
    {
        headers.insert(TTL_HEADER, value);
    }
}

/// Percent-encodes `key` for a URL path: every byte but RFC 3986's unreserved ones.
pub fn encode_key(key: &str) -> String {
    let mut encoded = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `GET /v1/cache-admin/shards`: the proxy's view of nodes and shards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardsStatus {
    /// The placement's epoch.
    pub epoch: u64,
    /// Base replicas per shard.
    pub replicas: usize,
    /// Every node.
    pub nodes: Vec<NodeStatus>,
    /// Every shard.
    pub shards: Vec<ShardStatus>,
}

/// One node in [`ShardsStatus`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its address.
    pub node: String,
    /// Whether the proxy routes to it.
    pub up: bool,
    /// Requests per second it is estimated to take (its shards' rates shared among
    /// their holders).
    pub load: f64,
}

/// One shard in [`ShardsStatus`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardStatus {
    /// The shard.
    pub shard: u32,
    /// Requests per second over the window.
    pub rate: f64,
    /// Live holders, base replicas first.
    pub holders: Vec<String>,
    /// Extra replicas granted by the hot-shard policy.
    pub extra: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_seconds_and_bad_ones_are_refused() {
        assert_eq!(parse_ttl_ms("30"), Some(30_000));
        assert_eq!(parse_ttl_ms("0.25"), Some(250));
        for bad in ["", "-1", "0", "ten", "inf", "NaN"] {
            assert_eq!(parse_ttl_ms(bad), None, "{bad}");
        }
        assert_eq!(format_ttl_ms(1_250), "1.250");
    }

    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(encode_key("a b/c~é"), "a%20b%2Fc~%C3%A9");
    }
}
