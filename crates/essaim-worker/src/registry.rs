//! The registry of task kinds a worker advertises, each with its executor.
//!
//! Apart from [`crate::executor`] so that imports go one way: this module imports the
//! built-in executors (`builtin`, `command`), which import only the trait in `executor`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use essaim_core::kinds;

use crate::builtin::{EchoExecutor, FailExecutor, NoopExecutor, SaladExecutor, SleepExecutor};
use crate::command::CommandExecutor;
use crate::executor::Executor;

/// Task kinds this worker can run, each with its executor.
#[derive(Clone, Default)]
pub struct ExecutorRegistry {
    executors: BTreeMap<String, Arc<dyn Executor>>,
}

impl fmt::Debug for ExecutorRegistry {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_set()
            .entries(self.executors.keys())
            .finish()
    }
}

impl ExecutorRegistry {
    /// Returns an empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns a registry of the built-in kinds; `command` (external commands) only when
    /// `allow_commands` is true, since it lets any client run programs on this host.
    pub fn with_builtins(allow_commands: bool) -> Self {
        let mut registry = Self::new();
        registry.register(kinds::NOOP, Arc::new(NoopExecutor));
        registry.register(kinds::SLEEP, Arc::new(SleepExecutor));
        registry.register(kinds::ECHO, Arc::new(EchoExecutor));
        registry.register(kinds::FAIL, Arc::new(FailExecutor));
        registry.register(kinds::SALAD, Arc::new(SaladExecutor));
        if allow_commands {
            registry.register(kinds::COMMAND, Arc::new(CommandExecutor));
        }
        registry
    }

    /// Registers `executor` for `kind`, replacing any executor registered before for it.
    pub fn register(&mut self, kind: &str, executor: Arc<dyn Executor>) {
        self.executors.insert(kind.to_string(), executor);
    }

    /// Returns the registered kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        self.executors.keys().cloned().collect()
    }

    /// Returns the registered kinds whose attempts run until stopped, sorted (see
    /// [`Executor::long_running`]).
    pub fn long_running_kinds(&self) -> Vec<String> {
        self.executors
            .iter()
            .filter(|(_, executor)| executor.long_running())
            .map(|(kind, _)| kind.clone())
            .collect()
    }

    /// Returns whether attempts of `kind` run until stopped (and hold no slot).
    pub fn is_long_running(&self, kind: &str) -> bool {
        self.executors
            .get(kind)
            .is_some_and(|executor| executor.long_running())
    }

    /// Lets every executor register its metrics (see [`Executor::register_metrics`]).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        for executor in self.executors.values() {
            executor.register_metrics(registry);
        }
    }

    /// Returns the progress of every stream unit the executors run now (see
    /// [`Executor::stream_progress`]).
    pub fn stream_progress(&self) -> Vec<essaim_proto::v1::StreamUnitProgress> {
        self.executors
            .values()
            .flat_map(|executor| executor.stream_progress())
            .collect()
    }

    /// Removes the executor of `kind`, if registered.
    pub(crate) fn unregister(&mut self, kind: &str) -> bool {
        self.executors.remove(kind).is_some()
    }

    /// Returns the executor of `kind`, if registered.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Executor>> {
        self.executors.get(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use essaim_core::kinds::BUILTIN_KINDS;

    #[test]
    fn command_kind_is_registered_only_when_allowed() {
        let without = ExecutorRegistry::with_builtins(false).kinds();
        assert_eq!(without, ["echo", "fail", "noop", "salad", "sleep"]);
        let with = ExecutorRegistry::with_builtins(true).kinds();
        assert!(with.contains(&"command".to_string()));
        for kind in &with {
            assert!(
                BUILTIN_KINDS.contains(&kind.as_str()),
                "{kind} is not listed"
            );
        }
    }
}
