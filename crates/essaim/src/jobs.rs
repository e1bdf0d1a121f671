//! The MapReduce jobs this binary knows: the built-in ones, the streaming adapter, the
//! model platform's training jobs, and
//! those a program linking essaim passed to [`crate::main_with_jobs`].
//!
//! Workers and clients must agree on job names, so the list is fixed once at start-up
//! and the same everywhere in the process (the local cluster starts its workers from the
//! same executable, so they know the same jobs).

use std::sync::{Arc, OnceLock};

use essaim_mapreduce::api::JobDefinition;
use essaim_mapreduce::registry::JobRegistry;

static REGISTRY: OnceLock<Arc<JobRegistry>> = OnceLock::new();

/// Fixes the job list: built-in jobs, `streaming`, then `extra` (an extra job with the
/// name of a built-in one replaces it).
pub(crate) fn install(extra: Vec<Arc<dyn JobDefinition>>) {
    let mut registry = builtin_registry();
    for job in extra {
        registry.register(job);
    }
    let _already_installed = REGISTRY.set(Arc::new(registry));
}

/// Returns the job list (built-in jobs only if [`install`] was not called).
pub(crate) fn registry() -> Arc<JobRegistry> {
    REGISTRY
        .get_or_init(|| Arc::new(builtin_registry()))
        .clone()
}

/// The coordinator's planner of MapReduce jobs (those of [`registry`]) and pipelines.
pub(crate) fn planner() -> Arc<dyn essaim_coordinator::planning::JobPlanner> {
    Arc::new(essaim_planning::Planner::new(registry()))
}

/// The jobs every essaim binary has: the built-in ones, `streaming` and the training jobs.
fn builtin_registry() -> JobRegistry {
    let mut registry = JobRegistry::new();
    for job in essaim_mapreduce::jobs::builtin_jobs() {
        registry.register(job);
    }
    registry.register(Arc::new(essaim_mapreduce::streaming::StreamingJob));
    // The model platform's training jobs (`essaim train`).
    for job in essaim_models::training_jobs() {
        registry.register(job);
    }
    registry
}
