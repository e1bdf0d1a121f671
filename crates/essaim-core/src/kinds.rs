//! The task kinds every essaim worker binary knows how to run, named once.
//!
//! The coordinator accepts these at submission before any worker has advertised them
//! (so a job submitted to an empty cluster waits for workers instead of being refused),
//! and the worker registers an executor under each of them. Both read this list, so a
//! kind added to the worker is accepted by the coordinator in the same change.

/// Succeeds at once with an empty output (measures scheduling overhead).
pub const NOOP: &str = "noop";
/// Waits the number of milliseconds in its payload.
pub const SLEEP: &str = "sleep";
/// Returns its payload as its output.
pub const ECHO: &str = "echo";
/// Fails, on purpose (poison tasks).
pub const FAIL: &str = "fail";
/// The fruit-salad demo, which may crash its worker on purpose.
pub const SALAD: &str = "salad";
/// Runs an external program; a worker registers it only when commands are allowed, so
/// its tasks wait for such a worker.
pub const COMMAND: &str = "command";

/// Every built-in kind, `command` included.
pub const BUILTIN_KINDS: &[&str] = &[NOOP, SLEEP, ECHO, FAIL, SALAD, COMMAND];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kinds_are_distinct() {
        let mut kinds = BUILTIN_KINDS.to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), BUILTIN_KINDS.len());
    }
}
