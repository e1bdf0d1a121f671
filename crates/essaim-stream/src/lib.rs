//! The pure core of essaim's streaming pipelines: records, pipeline specs, operators,
//! event-time windows and mergeable sketches, with no I/O, no async runtime and no
//! clock.
//!
//! Time is event time carried by the records, and it advances only through watermarks
//! handed in as arguments, the way `essaim-core`'s scheduler takes `now`. A runtime
//! (sources, sinks, checkpoints, rescaling) wraps this crate. A deterministic test can
//! drive it record by record and get the same outputs on every run.
//!
//! | module | concept |
//! |---|---|
//! | [`record`] | records: id, event time, key, typed fields |
//! | [`schema`] | CSV line → record by a schema, with typed errors (never a panic) |
//! | [`expr`] | the safe expression language of predicates and computed fields |
//! | [`spec`] | TOML pipeline specs and their validation into a DAG |
//! | [`ops`] | operators (stateless and stateful) and the [`ops::KeyedState`] split/merge |
//! | [`window`] | windowed reduce: tumbling and sliding windows, watermarks, lateness |
//! | [`sketch`] | DDSketch, the mergeable quantile sketch |
//! | [`pipeline`] | the in-process runner of a whole spec (or of one stage of it): routing, watermarks, checkpoint |
//! | [`stage`] | the cut of a pipeline into the stages a distributed runtime runs |
//! | [`projection`] | the fields a record keeps when it crosses the shuffle |
//! | [`hash`] | the stable FNV-1a hash behind partitions and derived ids |
//!
//! # Operators
//!
//! Every operator has a main output port `out`. Records it cannot handle leave by a
//! side port, where they are counted. Only a filter's rejections are dropped. Nothing
//! else is dropped silently: a side port that nothing reads is counted in
//! [`pipeline::PipelineStats::unrouted`].
//!
//! | kind | state | does | side ports |
//! |---|---|---|---|
//! | `filter` | — | keeps records whose `predicate` is exactly `true` (null rejects) | `error` |
//! | `map` | — | `set` fields from expressions on the input, then `rename`, then `drop`; may set the `key` | `error` |
//! | `flat_map` | — | one record per piece of a string `field` split on `separator`; ids derived from the input's | `error` |
//! | `copier` | — | the same record to each of its named `outputs` | — |
//! | `splitter` | — | the first branch whose `when` is true, else the `default` branch | `error` |
//! | `sharder` | counts per partition | sets the `key`; the runtime routes by `fnv1a_64(key) mod partitions` | `error` |
//! | `merger` | the last `capacity` ids | several inputs into one, de-duplicated by id | `duplicate` |
//! | `join` | open blocks | emits a block when its `parts` parts have arrived; at `timeout_ms` of event time after its first part, emits it incomplete | `incomplete`, `duplicate`, `error` |
//! | `enrich` | — (the table is configuration) | copies columns of the dimension-table row of its `key` | `miss`, `error` |
//! | `predict` | — (the model is configuration, injected by the runtime) | writes a model's `label_field` (and `score_field`, `version_field`) for the text of `text_fields`; `model` is `NAME@ALIAS` or `NAME@VERSION` | `error` (no model loaded) |
//! | `window` | open windows | count, sum, min, max, mean, quantile per key and window | `late`, `error` |
//!
//! # Event time, watermarks and lateness
//!
//! - A source's watermark is the maximum event time it has seen minus its
//!   `out_of_orderness_ms`. An operator's watermark is the minimum over its inputs.
//!   A watermark never goes back.
//! - A window `[start, end)` fires once, when its watermark reaches `end`
//!   (`revision = 0`, `kind = "final"`). Its state is kept until the watermark reaches
//!   `end + allowed_lateness_ms`.
//! - A record for a fired window that is still kept updates it, and the window is
//!   emitted again (`revision + 1`, `kind = "update"`). Every revision has the same
//!   record id, so an upserting sink keeps the last one.
//! - A record all of whose windows are purged leaves by `late`.
//! - A record that arrives no more than `out_of_orderness_ms` behind the latest one is
//!   never late, so results are exact.
//!
//! # Quantiles
//!
//! [`sketch::DdSketch`] returns, for every `q`, a value within relative error `α` of the
//! exact quantile of rank `⌊q·(n−1)⌋`. The default `α` is 1 % (spec key
//! `sketch_alpha`). Sketches merge exactly: merging the sketches of `a` and `b` gives the
//! sketch of `a ∪ b`. So partial aggregates computed on different tasks combine.
//!
//! # Memory bounds
//!
//! | state | bound |
//! |---|---|
//! | merger | `capacity` ids (default 100,000) |
//! | join | the parts of blocks opened within the last `timeout_ms` + out-of-orderness of event time |
//! | window | per key, `(size + out-of-orderness + allowed lateness) / slide + 1` windows; per window one accumulator per aggregate |
//! | sketch | at most `sketch_max_buckets` (default 2048) buckets per sign. The lowest magnitudes are collapsed first, so high quantiles keep the guarantee |
//! | expression | source ≤ 4 KiB, nesting ≤ 128 (parser), so evaluation is bounded too |
//!
//! # For the runtime
//!
//! - Parse and validate a spec with [`spec::PipelineSpec::from_toml`]. Read the table
//!   files and call [`pipeline::Pipeline::load_tables`].
//! - For `predict` operators, load the model of each of
//!   [`spec::PipelineSpec::model_references`] and hand it to
//!   [`pipeline::Pipeline::set_model`] between batches.
//! - On one task, [`pipeline::Pipeline`] runs a whole spec: `push_line` / `push`,
//!   `finish`, `snapshot` / `restore`. Records come out on sinks as `SinkRecord`s. A bad
//!   line is an error value that the runtime dead-letters.
//! - To run a pipeline on several tasks, cut it at its sharders with
//!   [`stage::plan`] and give each task a [`pipeline::Pipeline`] with a
//!   [`pipeline::Role`]: before the shuffle, [`pipeline::Pipeline::drain_shuffled`] hands
//!   out what leaves the sharders; after it, [`pipeline::Pipeline::push_shuffled`] and
//!   [`pipeline::Pipeline::advance_shuffle_watermark`] take it in. `essaim-stream-runtime`
//!   does this, keeping one pipeline per partition so that state never needs splitting;
//!   [`ops::KeyedState::split_off`] and [`ops::KeyedState::absorb`] remain for runtimes
//!   that move keys rather than partitions.
#![warn(missing_docs)]

pub mod expr;
pub mod hash;
pub mod ops;
pub mod pipeline;
pub mod projection;
pub mod record;
pub mod schema;
pub mod sketch;
pub mod spec;
pub mod stage;
pub mod window;
