//! Who may commit a unit's state: the last task attempt that opened it.
//!
//! A unit that moves to another worker has two owners for a moment: the old one stops
//! at its next heartbeat, while the new one may already have read the resume point.
//! For a unit reading one partition the old owner's late commits are harmless (the new
//! one's positions only move forward from a state that matches them). For a unit
//! reading several partitions they are not: the new owner's next commit could move one
//! position forward while writing a checkpoint that misses what the old owner had
//! committed from another, and after a restart those records would be skipped for
//! good. So opening a unit **claims** it (its row in `essaim_unit_owners`), in the same
//! transaction, under the same lock, as the reads of its positions and checkpoint; and
//! every batch checks, under that lock, that its writer is still the claimant. A
//! writer that is not is refused ([`crate::error::PgSinkError::Superseded`]) and
//! restarts from the state its successor committed.
//!
//! The last claimant wins; owners need no order. Attempt ids grow within one
//! coordinator's journal, but a new cluster (a demo run again, a journal started
//! afresh) may write into the same database with smaller ones, and must not be locked
//! out. Two owners that keep restarting would take the unit from each other, each time
//! from a consistent state, until the coordinator stops the older one.

use tokio_postgres::Row;

use crate::error::PgSinkError;

/// The claims, one row per unit (the sink's `pipeline` key).
pub(crate) const CREATE_OWNERS_SQL: &str = "\
CREATE TABLE IF NOT EXISTS essaim_unit_owners (
    pipeline text PRIMARY KEY,
    owner bigint NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
)";

/// Makes `$2` the owner of unit `$1`, whoever owned it before.
pub(crate) const CLAIM_SQL: &str = "\
INSERT INTO essaim_unit_owners (pipeline, owner) VALUES ($1, $2)
ON CONFLICT (pipeline) DO UPDATE SET owner = EXCLUDED.owner, claimed_at = now()";

/// The owner of unit `$1`.
pub(crate) const READ_OWNER_SQL: &str = "SELECT owner FROM essaim_unit_owners WHERE pipeline = $1";

/// The form an owner is stored in: the attempt id's 64 bits as a `bigint` (only
/// compared for equality).
pub(crate) fn stored(owner: u64) -> i64 {
    owner.cast_signed()
}

/// Fails unless `owner` (the writer's, when it claimed the unit) is the owner read
/// under the lock (`row`, from [`READ_OWNER_SQL`]).
pub(crate) fn check(unit: &str, owner: Option<i64>, row: Option<&Row>) -> Result<(), PgSinkError> {
    let Some(owner) = owner else {
        return Ok(());
    };
    let current: Option<i64> = row.map(|row| row.get(0));
    if current == Some(owner) {
        return Ok(());
    }
    Err(PgSinkError::Superseded {
        unit: unit.to_owned(),
        owner: owner.cast_unsigned(),
        current: current.map(i64::cast_unsigned),
    })
}
