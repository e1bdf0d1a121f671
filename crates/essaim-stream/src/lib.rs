//! The pure core of essaim's streaming pipelines. (Crate map and semantics: see below.)
#![warn(missing_docs)]

pub mod expr;
pub mod hash;
pub mod ops;
pub mod pipeline;
pub mod record;
pub mod schema;
pub mod sketch;
pub mod spec;
pub mod window;

#[cfg(test)]
mod test_rng;
