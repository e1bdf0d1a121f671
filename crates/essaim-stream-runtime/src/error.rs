//! Why a stream unit stops, as a type: what failed and whether retrying can help.
//!
//! A unit restarts from its last commit after a retryable error and ends its task
//! after any other one; the executor turns the error into the task failure's text with
//! [`essaim_connect::error_chain`], so every cause stays in the message.
use essaim_connect::ConnectorError;
use essaim_connect_nats::NatsError;
use essaim_connect_postgres::PgSinkError;
use essaim_stream::pipeline::PipelineError;

use crate::bindings::UnknownColumnType;
use crate::stored_format::StoredFormatError;

/// Why a unit stopped.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// A source reader or a message writer failed.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// The PostgreSQL sink (results, positions, checkpoints, dead letters) failed.
    #[error("PostgreSQL sink")]
    Postgres(#[from] PgSinkError),
    /// JetStream (the shuffle, a NATS sink) failed.
    #[error("NATS")]
    Nats(#[from] NatsError),
    /// The task names no address for a server its pipeline needs.
    #[error("no {0} in the task's endpoints")]
    MissingEndpoint(&'static str),
    /// A PostgreSQL sink's columns are unusable.
    #[error("sink `{sink}`")]
    SinkColumns {
        /// The sink.
        sink: String,
        /// What is wrong with its columns.
        source: UnknownColumnType,
    },
    /// The task's spec does not parse (it was checked when planned: a corrupt payload).
    #[error("the pipeline spec")]
    Spec(#[from] essaim_stream::spec::SpecError),
    /// The operators refused the spec, a checkpoint or a shuffled record.
    #[error("pipeline")]
    Pipeline(#[from] PipelineError),
    /// The unit's checkpoint in PostgreSQL does not decode (or has a version this
    /// build does not read).
    #[error("unreadable checkpoint")]
    Checkpoint(#[source] StoredFormatError),
    /// The unit's checkpoint does not encode.
    #[error("checkpoint encoding")]
    CheckpointEncoding(#[source] StoredFormatError),
    /// A batch of shuffle messages does not encode.
    #[error("shuffle encoding")]
    ShuffleEncoding(#[source] StoredFormatError),
    /// The unit's task panicked.
    #[error("a unit panicked")]
    Panicked(#[source] tokio::task::JoinError),
    /// A runner that `predict` operators ask refused, or stayed away too long.
    #[error(transparent)]
    Runner(#[from] crate::models::runner::RunnerModelError),
}

impl UnitError {
    /// True when restarting the unit from its last commit may succeed (a broker or a
    /// database down, a timeout); false for a bad spec, a missing stream or a
    /// corrupt checkpoint.
    pub fn is_retryable(&self) -> bool {
        match self {
            UnitError::Connector(error) => error.transient,
            // Superseded: another owner took the unit; reopening goes on from its commit.
            UnitError::Postgres(error) => error.is_transient() || error.is_superseded(),
            UnitError::Nats(error) => error.is_retryable(),
            UnitError::Panicked(_) => true,
            UnitError::Runner(error) => error.is_retryable(),
            UnitError::MissingEndpoint(_)
            | UnitError::SinkColumns { .. }
            | UnitError::Spec(_)
            | UnitError::Pipeline(_)
            | UnitError::Checkpoint(_)
            | UnitError::CheckpointEncoding(_)
            | UnitError::ShuffleEncoding(_) => false,
        }
    }

    /// When an open circuit breaker refused the call (PostgreSQL's or another
    /// connector's), the time until it lets a probe through.
    pub fn retry_in(&self) -> Option<std::time::Duration> {
        match self {
            UnitError::Connector(error) => error.retry_in,
            UnitError::Postgres(PgSinkError::CircuitOpen { retry_in }) => Some(*retry_in),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retryable_follows_the_failing_part() {
        let down = ConnectorError::transient("nats", "fetch", "connection refused");
        assert!(UnitError::from(down).is_retryable());
        let open = ConnectorError::breaker_open("kafka", "fetch", Duration::from_secs(3));
        let open = UnitError::from(open);
        assert!(open.is_retryable());
        assert_eq!(open.retry_in(), Some(Duration::from_secs(3)));
        let pg_open = PgSinkError::CircuitOpen {
            retry_in: Duration::from_secs(2),
        };
        assert_eq!(
            UnitError::from(pg_open).retry_in(),
            Some(Duration::from_secs(2)),
            "both breakers are treated alike"
        );
        let missing = UnitError::MissingEndpoint("NATS URL");
        assert!(!missing.is_retryable());
        assert_eq!(missing.to_string(), "no NATS URL in the task's endpoints");
        let bad = crate::stored_format::CHECKPOINT
            .decode::<u64>(&[])
            .expect_err("empty bytes");
        let unreadable = UnitError::Checkpoint(bad);
        assert!(!unreadable.is_retryable());
        assert!(
            essaim_connect::error_chain(&unreadable).starts_with("unreadable checkpoint: "),
            "{}",
            essaim_connect::error_chain(&unreadable)
        );
    }
}
