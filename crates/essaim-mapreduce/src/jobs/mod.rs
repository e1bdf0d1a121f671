//! The built-in jobs every worker knows.
pub(crate) mod common;
pub mod wordcount;

use std::sync::Arc;

use crate::api::JobDefinition;

/// Returns one instance of every built-in job.
pub fn builtin_jobs() -> Vec<Arc<dyn JobDefinition>> {
    vec![Arc::new(wordcount::WordCount)]
}
