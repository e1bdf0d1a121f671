//! Decisions read from an alias's past, with no I/O: which version it named at a given
//! time, and where a rollback takes it. The store feeds these functions the audit
//! entries of one alias, in log order.
//!
//! Rollback follows a stack: a forward move (alias, promote) pushes the new version, a
//! rollback pops. Consecutive rollbacks therefore walk further back (v3 → v2 → v1)
//! instead of flipping between the last two versions.

use crate::record::{AuditAction, AuditEntry};

/// Returns the entry that set the alias as it was at `at_unix_ms` (the last of its
/// moves made at or before then), or `None` when it named nothing yet.
pub fn alias_at(entries: &[AuditEntry], at_unix_ms: u64) -> Option<&AuditEntry> {
    entries
        .iter()
        .filter(|entry| entry.action.moves_alias())
        .take_while(|entry| entry.at_unix_ms <= at_unix_ms)
        .last()
}

/// Returns the version a rollback of the alias moves it to: the one it named before
/// its current forward move, or `None` when there is nothing to go back to.
pub fn rollback_target(entries: &[AuditEntry]) -> Option<u64> {
    let mut stack: Vec<u64> = Vec::new();
    for entry in entries.iter().filter(|entry| entry.action.moves_alias()) {
        let Some(version) = entry.version else {
            continue;
        };
        if entry.action == AuditAction::Rollback {
            stack.pop();
            debug_assert_eq!(stack.last(), Some(&version), "a rollback lands on the top");
        } else if stack.last() != Some(&version) {
            stack.push(version);
        }
    }
    let below_current = stack.len().checked_sub(2)?;
    Some(stack[below_current])
}

/// Returns the time of a new entry: now, or one millisecond after the previous entry's
/// time if the clock went back or has not ticked since. The log's times strictly
/// increase, so "at time T" has one answer even for two changes made in the same
/// millisecond: an entry's own time names the state it made, never a later one.
pub fn entry_time(now_unix_ms: u64, previous_unix_ms: Option<u64>) -> u64 {
    previous_unix_ms.map_or(now_unix_ms, |previous| now_unix_ms.max(previous + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(sequence: u64, at: u64, action: AuditAction, to: u64) -> AuditEntry {
        AuditEntry {
            sequence,
            at_unix_ms: at,
            actor: "test".into(),
            action,
            model: "m".into(),
            alias: Some("production".into()),
            version: Some(to),
            from_version: None,
        }
    }

    #[test]
    fn the_alias_at_a_time_is_the_last_move_before_it() {
        let entries = [
            moved(1, 100, AuditAction::Alias, 1),
            moved(2, 200, AuditAction::Promote, 2),
            moved(3, 300, AuditAction::Rollback, 1),
        ];
        let version_at = |at| alias_at(&entries, at).and_then(|entry| entry.version);
        assert_eq!(version_at(99), None);
        assert_eq!(version_at(100), Some(1));
        assert_eq!(version_at(250), Some(2));
        assert_eq!(version_at(300), Some(1));
        assert_eq!(version_at(u64::MAX), Some(1));
    }

    #[test]
    fn rollbacks_walk_back_through_forward_moves() {
        use AuditAction::{Alias, Promote, Rollback};
        let mut entries = vec![moved(1, 1, Alias, 1)];
        assert_eq!(rollback_target(&entries), None, "nothing before the first");
        entries.push(moved(2, 2, Promote, 2));
        entries.push(moved(3, 3, Promote, 3));
        // Moving to the version it already names is not a step back.
        entries.push(moved(4, 4, Promote, 3));
        assert_eq!(rollback_target(&entries), Some(2));
        entries.push(moved(5, 5, Rollback, 2));
        assert_eq!(rollback_target(&entries), Some(1));
        entries.push(moved(6, 6, Rollback, 1));
        assert_eq!(rollback_target(&entries), None);
        entries.push(moved(7, 7, Promote, 4));
        assert_eq!(rollback_target(&entries), Some(1));
    }

    #[test]
    fn entry_times_strictly_increase() {
        assert_eq!(entry_time(500, Some(400)), 500);
        assert_eq!(entry_time(300, Some(400)), 401);
        // Two changes in the same millisecond: the second is one millisecond later, so
        // the state at the first one's time is the first one's (a test saw it read the
        // second's).
        assert_eq!(entry_time(400, Some(400)), 401);
        assert_eq!(entry_time(300, None), 300);
    }
}
