//! Readiness: whether this process should receive traffic right now, and if not, why.
//!
//! Liveness needs no state: a process that answers `/healthz` is alive. Readiness does,
//! because it changes at runtime (a worker is not ready until it has registered, and
//! stops being ready while draining). The reason is kept so that an operator reading a
//! failed probe learns what to fix without opening the logs.

use std::sync::{Arc, Mutex, PoisonError};

/// Shared readiness state; clones observe and update the same flag.
///
/// A new `Health` is not ready, with the reason `"starting"`: a process must declare
/// itself ready explicitly once its dependencies are in place.
#[derive(Clone, Debug)]
pub struct Health {
    /// `None` when ready, otherwise why not. One field rather than a flag plus a
    /// reason, so that a reader can never see "ready" paired with a stale reason.
    /// A `Mutex` rather than atomics because a `&'static str` does not fit in one
    /// atomic without unsafe code; the lock is held only to copy a pointer.
    not_ready_reason: Arc<Mutex<Option<&'static str>>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Returns a new state that is not ready, with the reason `"starting"`.
    pub fn new() -> Self {
        Self {
            not_ready_reason: Arc::new(Mutex::new(Some("starting"))),
        }
    }

    /// Marks the process ready to receive traffic.
    pub fn set_ready(&self) {
        self.store(None);
    }

    /// Marks the process not ready, for example `"not registered"`, `"draining"` or
    /// `"journal unavailable"`.
    pub fn set_not_ready(&self, reason: &'static str) {
        self.store(Some(reason));
    }

    /// Returns whether the process is ready to receive traffic.
    pub fn is_ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// Returns why the process is not ready, or `None` when it is ready.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        // A poisoned lock still holds a valid value: the critical sections only copy
        // an `Option<&str>` and cannot leave it half-written.
        *self
            .not_ready_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn store(&self, reason: Option<&'static str>) {
        *self
            .not_ready_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reason;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_health_is_not_ready_until_set_ready() {
        let health = Health::new();
        assert_eq!(health.not_ready_reason(), Some("starting"));
        health.clone().set_ready();
        assert!(health.is_ready());
        health.set_not_ready("draining");
        assert!(!health.is_ready());
        assert_eq!(health.not_ready_reason(), Some("draining"));
    }
}
