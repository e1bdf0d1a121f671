//! The pure parts of the sharded, replicated cache (issue 16): where a key lives, how a
//! node keeps values within its memory, and when a shard is hot enough to deserve more
//! replicas, with no sockets, no async runtime and no clock (times come in as
//! milliseconds).
//!
//! A key belongs to one of S **shards** (`hash(key) mod S`); a shard lives on the R
//! distinct nodes that follow its point on a **consistent-hash ring** of virtual nodes,
//! so adding a node moves about 1/N of the shards (and keys). A cache proxy keeps a
//! [`placement::Placement`]: the ring, the nodes it believes down (skipped, so the next
//! node on the ring stands in), and the extra replicas the [`hot`] policy granted. Every
//! value is written with a **tag** (the placement's epoch at the write) and a replica
//! only answers for a shard with values tagged since it last became a holder of that
//! shard: a node that missed writes while it was down, or an extra replica dropped and
//! granted again, can never serve an old value.
//!
//! | module | concept |
//! |---|---|
//! | [`hash`] | the stable 64-bit hash of keys, shards and virtual nodes |
//! | [`ring`] | the consistent-hash ring: virtual nodes, R distinct successors of a point |
//! | [`placement`] | keys → shards → holders (base replicas, stand-ins, extra replicas) and the tags a holder may answer with |
//! | [`store`] | one node's memory: LRU by bytes, TTL per entry, value-size limit, eviction counts |
//! | [`hot`] | per-shard request rates over a sliding window; extra replicas for a shard far above the median, dropped with hysteresis |
#![warn(missing_docs)]

pub mod hash;
pub mod hot;
pub mod placement;
pub mod ring;
pub mod store;
