//! The pure parts of interactive serving: what an index's shards are, how a query is
//! read and answered on one shard, and the decisions of a scatter/gather root (how slow
//! a replica is, when to hedge, which replica gets a request), with no sockets, no
//! async runtime and no clock (durations come in as arguments).
//!
//! An index built by the `index` MapReduce job is served as N shards that partition its
//! **documents** (a document's shard is `fnv1a_64(path) mod N`): each shard holds the
//! postings of its own documents, so every shard can answer a whole query for its
//! documents, a query goes to every shard (fan-out N, the "tail at scale" setting), and
//! the answer is the union of the shards' answers. A shard that does not answer in
//! time costs only its own documents: a partial answer is a correct subset, never a
//! wrong intersection.
//!
//! | module | concept |
//! |---|---|
//! | [`shard`] | a document's shard; an index directory cut into shard files with a manifest of their SHA-256; loading one shard, refused when its checksum does not match |
//! | [`query`] | the query language (terms, `OR`), its limits, and its evaluation on one shard |
//! | [`latency`] | recent latency quantiles per shard and replica, mergeable (DDSketch) |
//! | [`hedge`] | when to send a second copy of a leaf request, and the budget that caps hedges |
//! | [`balance`] | which ready replica of a shard receives a request |
//! | [`answer_key`] | the cache key of a query's answer: the served index's identity and the normalised query |
#![warn(missing_docs)]

pub mod answer_key;
pub mod balance;
pub mod hedge;
pub mod latency;
pub mod query;
pub mod shard;
