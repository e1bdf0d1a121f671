//! Cooperative cancellation of the CPU-bound parts of a task.
//!
//! Map, spill, merge and reduce loops run on blocking threads, where a
//! `CancellationToken` cannot interrupt anything: they poll it. Polling on every record
//! would cost an atomic load per record for nothing, so [`CancelCheck::tick`] looks
//! every [`RECORDS_BETWEEN_CHECKS`] calls, which is well under a millisecond of work.

use tokio_util::sync::CancellationToken;

use crate::error::{TaskError, TaskResult};

/// Records (or blocks) processed between two looks at the token.
pub(crate) const RECORDS_BETWEEN_CHECKS: u32 = 4096;

/// Polls a cancellation token every few thousand calls.
#[derive(Debug, Clone)]
pub(crate) struct CancelCheck {
    token: CancellationToken,
    countdown: u32,
}

impl CancelCheck {
    pub(crate) fn new(token: CancellationToken) -> Self {
        Self {
            token,
            countdown: RECORDS_BETWEEN_CHECKS,
        }
    }

    /// Counts one unit of work; fails with [`TaskError::Cancelled`] once the token fired.
    #[inline]
    pub(crate) fn tick(&mut self) -> TaskResult<()> {
        self.countdown -= 1;
        if self.countdown == 0 {
            self.countdown = RECORDS_BETWEEN_CHECKS;
            return self.now();
        }
        Ok(())
    }

    /// Looks at the token now.
    pub(crate) fn now(&self) -> TaskResult<()> {
        if self.token.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        Ok(())
    }
}
