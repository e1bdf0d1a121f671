//! Which spec a unit's state was made under, and what happens when the spec changes.
//!
//! A checkpoint is only meaningful under the spec that made it: another window size,
//! another key or another operator graph reads the same bytes as something else, or
//! cannot read them at all. So beside its positions and checkpoint every unit records
//! the fingerprint of its spec (`essaim_specs`, keyed like them), and a unit opened
//! under another fingerprint is refused with both named, unless the submission asks for
//! a [`Migration`]:
//!
//! - **keep**: the state is kept as it is (the user vouches that the new spec reads it);
//! - **reset**: the state is dropped and the positions kept: the unit goes on from where
//!   it was with empty windows and joins;
//! - **rebuild**: state and positions are dropped, so the sources are read again from
//!   their start, and the pipeline's result rows are demoted to revision -1 so that the
//!   rebuilt results replace them (rows the new spec no longer produces stay, at -1).
//!
//! The check and the migration run in one transaction under the pipeline's lock, and
//! the new fingerprint is recorded with it: a migration happens once, and a unit that
//! restarts later under the same spec resumes normally whatever the flag says. Every
//! batch checks the recorded fingerprint again under the same lock, so a writer of the
//! old spec that has not stopped yet cannot commit its positions or state after the
//! migration. A unit
//! with no record (new, or state from before records were kept) records its spec.
use tokio_postgres::Client;

use crate::error::PgSinkError;
use crate::table::{ResultTable, result_key_prefix};

/// The table of recorded specs, created with the other bookkeeping tables.
pub(crate) const CREATE_SPECS_SQL: &str = "\
CREATE TABLE IF NOT EXISTS essaim_specs (
    pipeline text PRIMARY KEY,
    fingerprint text NOT NULL,
    spec text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);";

pub(crate) const READ_SPEC_SQL: &str = "SELECT fingerprint, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS TZ') FROM essaim_specs \
     WHERE pipeline = $1";

const RECORD_SPEC_SQL: &str = "\
INSERT INTO essaim_specs (pipeline, fingerprint, spec) VALUES ($1, $2, $3)
ON CONFLICT (pipeline) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, spec = EXCLUDED.spec, updated_at = now()";

/// What to do with state made under another spec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Migration {
    /// Refuse to run (the default).
    #[default]
    Refuse,
    /// Keep the state as it is.
    Keep,
    /// Drop the state, keep the positions.
    Reset,
    /// Drop state and positions; demote the pipeline's result rows.
    Rebuild,
}

/// The spec a unit runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIdentity {
    /// The pipeline's name (its result keys start with it).
    pub pipeline: String,
    /// The fingerprint of what the spec says (and of the state format).
    pub fingerprint: String,
    /// The spec's text, recorded for whoever wonders what made the state.
    pub text: String,
    /// What to do if the recorded fingerprint differs.
    pub migration: Migration,
}

/// What checking a unit's recorded spec found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// No spec was recorded: this one now is.
    Recorded,
    /// The same spec was recorded.
    Same,
    /// Another spec was recorded, and the migration ran.
    Migrated(Migration),
}

/// Checks the spec recorded for `unit` against `spec` and migrates as asked, in one
/// transaction under the pipeline's lock (see the module doc).
pub(crate) async fn reconcile(
    client: &mut Client,
    unit: &str,
    tables: &[ResultTable],
    spec: &SpecIdentity,
) -> Result<Reconciled, PgSinkError> {
    let postgres = |action| move |source| PgSinkError::Postgres { action, source };
    let transaction = client.transaction().await.map_err(postgres("begin"))?;
    transaction
        .execute(crate::sink::LOCK_PIPELINE_SQL, &[&unit])
        .await
        .map_err(postgres("lock pipeline"))?;
    let recorded = transaction
        .query_opt(READ_SPEC_SQL, &[&unit])
        .await
        .map_err(postgres("read recorded spec"))?;
    let outcome = match recorded {
        None => Reconciled::Recorded,
        Some(row) if row.get::<_, String>(0) == spec.fingerprint => return Ok(Reconciled::Same),
        Some(row) => match spec.migration {
            Migration::Refuse => {
                return Err(PgSinkError::SpecChanged {
                    unit: unit.to_owned(),
                    recorded: row.get(0),
                    recorded_at: row.get(1),
                    fingerprint: spec.fingerprint.clone(),
                });
            }
            migration => Reconciled::Migrated(migration),
        },
    };
    if matches!(
        outcome,
        Reconciled::Migrated(Migration::Reset | Migration::Rebuild)
    ) {
        transaction
            .execute(
                "DELETE FROM essaim_checkpoints WHERE pipeline = $1",
                &[&unit],
            )
            .await
            .map_err(postgres("drop checkpoint"))?;
    }
    if outcome == Reconciled::Migrated(Migration::Rebuild) {
        transaction
            .execute("DELETE FROM essaim_offsets WHERE pipeline = $1", &[&unit])
            .await
            .map_err(postgres("drop positions"))?;
        let prefix = result_key_prefix(&spec.pipeline);
        for table in tables {
            transaction
                .execute(table.demote_sql(), &[&prefix])
                .await
                .map_err(postgres("demote result rows"))?;
        }
    }
    transaction
        .execute(RECORD_SPEC_SQL, &[&unit, &spec.fingerprint, &spec.text])
        .await
        .map_err(postgres("record spec"))?;
    transaction.commit().await.map_err(postgres("commit"))?;
    Ok(outcome)
}
