//! Runs the sharded, replicated cache of issue 16 on real sockets: cache **nodes** that
//! hold values in bounded memory, and the cache **proxy** in front of them (seed 000's
//! client ↔ front end ↔ cache proxy ↔ cache shards). The decisions (ring, placement,
//! eviction, hot shards) are `essaim-cache`'s; this crate adds HTTP, clocks and
//! failure handling.
//!
//! Both speak the same API, so a client cannot tell a node from the proxy:
//! `GET`/`PUT`/`DELETE /v1/cache/{key}`, the time to live of a `PUT` in the
//! `essaim-ttl` header or the `ttl` query parameter (seconds), a value over the size
//! limit refused with 413, an empty key with 400. Between proxy and nodes, a value
//! carries its tag (the `essaim-tag` header, see `essaim_cache::placement`).
//!
//! | file | concept |
//! |---|---|
//! | `node.rs` | a cache node: one `Store` behind HTTP, `/metrics`, `/healthz`, `/readyz` |
//! | `proxy/` | the proxy: routing by the ring, writes to every holder, reads with failover and repair, nodes marked down and probed back with backoff, the hot-shard loop, `/v1/cache-admin/shards` |
//! | `client.rs` | the proxy's HTTP client of the nodes, with a timeout per call |
//! | `wire.rs` | headers, TTL parsing, key encoding, the status document |
//! | `metrics.rs` | every metric of the cache, `essaim_cache_*` |
#![warn(missing_docs)]

pub mod client;
pub mod metrics;
pub mod node;
pub mod proxy;
pub mod wire;
