//! The jobs a worker binary knows, by name. The coordinator only carries a job's name
//! and parameters, so every worker must register the same jobs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::api::JobDefinition;

/// Registered [`JobDefinition`]s, by [`JobDefinition::name`].
#[derive(Clone, Default)]
pub struct JobRegistry {
    jobs: BTreeMap<String, Arc<dyn JobDefinition>>,
}

impl fmt::Debug for JobRegistry {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_set().entries(self.jobs.keys()).finish()
    }
}

impl JobRegistry {
    /// Returns an empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `job` under its name; returns the job it replaces, if any.
    pub fn register(&mut self, job: Arc<dyn JobDefinition>) -> Option<Arc<dyn JobDefinition>> {
        self.jobs.insert(job.name().to_string(), job)
    }

    /// Returns the job named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn JobDefinition>> {
        self.jobs.get(name).cloned()
    }

    /// Returns the registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::ToyWordCount;

    #[test]
    fn jobs_are_found_by_name() {
        let mut registry = JobRegistry::new();
        assert!(registry.register(Arc::new(ToyWordCount)).is_none());
        assert!(registry.register(Arc::new(ToyWordCount)).is_some());
        assert_eq!(registry.names(), vec!["toy-wordcount".to_string()]);
        assert!(registry.get("toy-wordcount").is_some());
        assert!(registry.get("nope").is_none());
    }
}
