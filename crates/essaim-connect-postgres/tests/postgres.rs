//! The sink against a real PostgreSQL, run by `scripts/postgres.sh`: exactly-once under
//! redelivery, atomicity when the backend dies before commit, revisions, checkpoints,
//! dead letters and the circuit breaker across a stop and start of the server.
//!
//! Each test runs its own private cluster (about a second to create), so tests run in
//! parallel under `cargo test` and `cargo nextest` alike. If PostgreSQL cannot be
//! installed or started the tests fail and say so, unless `ESSAIM_SKIP_POSTGRES=1`.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use essaim_connect::{BreakerConfig, BreakerState, SharedBreaker};
use essaim_connect_postgres::{
    BatchOutcome, Column, ColumnType, DeadLetter, PgSink, PgSinkError, ResultRow, ResultTable,
    SinkBatch, SourcePosition, SqlValue, result_key,
};
use tokio_postgres::Client;

mod common;
use common::{Cluster, counts_table};

/// A stand-in for a pipeline task: count and sum per key of records `(position, key,
/// value)`, checkpointed as text.
#[derive(Default)]
struct Aggregator {
    per_key: BTreeMap<String, (i64, i64)>,
    last_position: i64,
}

impl Aggregator {
    fn restore(checkpoint: &[u8]) -> Aggregator {
        let text = std::str::from_utf8(checkpoint).expect("text checkpoint");
        let mut aggregator = Aggregator::default();
        let mut parts = text.split(';');
        aggregator.last_position = parts
            .next()
            .and_then(|position| position.parse().ok())
            .expect("checkpoint starts with the last position");
        for part in parts.filter(|part| !part.is_empty()) {
            let fields: Vec<&str> = part.split(',').collect();
            aggregator.per_key.insert(
                fields[0].to_owned(),
                (
                    fields[1].parse().expect("count"),
                    fields[2].parse().expect("sum"),
                ),
            );
        }
        aggregator
    }

    fn checkpoint(&self) -> Vec<u8> {
        let mut text = self.last_position.to_string();
        for (key, (count, sum)) in &self.per_key {
            text.push_str(&format!(";{key},{count},{sum}"));
        }
        text.into_bytes()
    }

    fn push(&mut self, position: i64) {
        let entry = self
            .per_key
            .entry(format!("k{}", position % 10))
            .or_default();
        entry.0 += 1;
        entry.1 += position;
        self.last_position = position;
    }

    /// One batch: every key's current result, revision = last position folded in.
    fn batch(&self) -> SinkBatch {
        let rows = self
            .per_key
            .iter()
            .map(|(key, (count, sum))| ResultRow {
                key: result_key("agg", key, 0),
                revision: self.last_position,
                values: vec![
                    SqlValue::Text(key.clone()),
                    SqlValue::BigInt(*count),
                    SqlValue::BigInt(*sum),
                ],
            })
            .collect();
        SinkBatch {
            rows,
            positions: vec![SourcePosition {
                source: "events".into(),
                partition: 0,
                position: self.last_position,
            }],
            checkpoint: Some(self.checkpoint()),
            other_tables: Vec::new(),
        }
    }
}

async fn counts(client: &Client) -> Result<BTreeMap<String, (i64, i64, i64)>> {
    let rows = client
        .query(
            "SELECT record_key, count, sum, revision FROM counts ORDER BY record_key",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
        .collect())
}

async fn offsets(client: &Client, pipeline: &str) -> Result<Vec<(String, i32, i64)>> {
    let rows = client
        .query(
            "SELECT source, \"partition\", position FROM essaim_offsets WHERE pipeline = $1 \
             ORDER BY source, \"partition\"",
            &[&pipeline],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}

#[tokio::test]
async fn redelivered_overlapping_batch_is_counted_once() -> Result<()> {
    let Some(cluster) = Cluster::start() else {
        return Ok(());
    };
    let (mut sink, resume) = PgSink::open(cluster.config("agg"), counts_table()).await?;
    assert_eq!(resume, Default::default());
    let mut aggregator = Aggregator::default();
    for position in 1..=100 {
        aggregator.push(position);
    }
    let batch_a = aggregator.batch();
    assert_eq!(
        sink.write_batch(&batch_a).await?,
        BatchOutcome::Committed { rows_changed: 10 }
    );
    sink.close().await;

    // A crash: the task restarts from PostgreSQL and the source redelivers 50..=150.
    let (mut sink, resume) = PgSink::open(cluster.config("agg"), counts_table()).await?;
    assert_eq!(resume.positions[&("events".to_owned(), 0)], 100);
    let mut aggregator = Aggregator::restore(resume.checkpoint.as_deref().unwrap());
    let mut skipped = 0;
    for position in 50..=150 {
        if resume.is_committed("events", 0, position) {
            skipped += 1;
            continue;
        }
        aggregator.push(position);
    }
    assert_eq!(skipped, 51);
    // The whole first batch redelivered (its commit answer lost) changes nothing.
    assert_eq!(
        sink.write_batch(&batch_a).await?,
        BatchOutcome::AlreadyCommitted
    );
    assert_eq!(
        sink.write_batch(&aggregator.batch()).await?,
        BatchOutcome::Committed { rows_changed: 10 }
    );

    let admin = cluster.admin().await?;
    let stored = counts(&admin).await?;
    assert_eq!(stored.len(), 10, "each key appears once");
    for digit in 0..10 {
        let expected_sum: i64 = (1..=150).filter(|p| p % 10 == digit).sum();
        assert_eq!(stored[&format!("k{digit}")], (15, expected_sum, 150));
    }
    assert_eq!(offsets(&admin, "agg").await?, [("events".into(), 0, 150)]);
    sink.close().await;
    Ok(())
}

#[tokio::test]
async fn backend_killed_before_commit_leaves_nothing_and_retry_succeeds() -> Result<()> {
    let Some(cluster) = Cluster::start() else {
        return Ok(());
    };
    let (mut sink, _) = PgSink::open(cluster.config("atomic"), counts_table()).await?;
    let admin = cluster.admin().await?;
    let mut aggregator = Aggregator::default();
    for position in 1..=100 {
        aggregator.push(position);
    }
    let batch = aggregator.batch();

    // Dropping a staged batch (a task dying before commit) rolls it back.
    drop(sink.stage_batch(&batch).await?);
    assert!(counts(&admin).await?.is_empty());

    // The backend is killed between the writes and the commit.
    let staged = sink.stage_batch(&batch).await?;
    let pid = staged.backend_pid().await?.expect("a transaction is open");
    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await?
        .get(0);
    assert!(killed);
    let error = staged.commit().await.expect_err("the backend is gone");
    assert!(error.is_transient(), "{error}");
    assert!(counts(&admin).await?.is_empty(), "no rows without a commit");
    assert!(
        offsets(&admin, "atomic").await?.is_empty(),
        "no offsets either"
    );
    let checkpoints: i64 = admin
        .query_one("SELECT count(*) FROM essaim_checkpoints", &[])
        .await?
        .get(0);
    assert_eq!(checkpoints, 0);

    // The same sink reconnects and the retry commits everything once.
    assert_eq!(
        sink.write_batch(&batch).await?,
        BatchOutcome::Committed { rows_changed: 10 }
    );
    assert_eq!(counts(&admin).await?.len(), 10);
    assert_eq!(
        offsets(&admin, "atomic").await?,
        [("events".into(), 0, 100)]
    );
    sink.close().await;
    Ok(())
}

#[tokio::test]
async fn older_revision_never_overwrites_newer() -> Result<()> {
    let Some(cluster) = Cluster::start() else {
        return Ok(());
    };
    // Hostile names are quoted, never interpreted.
    let table_name = "results\"; DROP TABLE essaim_offsets; --";
    let table = ResultTable::new(
        table_name,
        vec![
            Column::new("Mean Value", ColumnType::Double),
            Column::new("select", ColumnType::Text),
        ],
    )?;
    let mut config = cluster.config("rev");
    config.max_batch_rows = 2;
    let (mut sink, _) = PgSink::open(config, table).await?;
    let row = |revision: i64, mean: f64| ResultRow {
        key: result_key("rev", "sensor-1", 60_000),
        revision,
        values: vec![SqlValue::Double(mean), SqlValue::Null],
    };
    let write = |revision, mean| SinkBatch {
        rows: vec![row(revision, mean)],
        ..SinkBatch::default()
    };
    let stored = async |admin: &Client| -> Result<(i64, f64)> {
        let row = admin
            .query_one(
                "SELECT revision, \"Mean Value\" FROM \"results\"\"; DROP TABLE essaim_offsets; --\"",
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    };
    let admin = cluster.admin().await?;
    sink.write_batch(&write(2, 2.5)).await?;
    assert_eq!(
        sink.write_batch(&write(1, 1.0)).await?,
        BatchOutcome::Committed { rows_changed: 0 }
    );
    assert_eq!(
        sink.write_batch(&write(2, 9.9)).await?,
        BatchOutcome::Committed { rows_changed: 0 }
    );
    assert_eq!(stored(&admin).await?, (2, 2.5));
    sink.write_batch(&write(3, 3.5)).await?;
    assert_eq!(stored(&admin).await?, (3, 3.5));
    // The bookkeeping table is still there.
    assert!(offsets(&admin, "rev").await?.is_empty());

    // Rows that do not fit the table are refused before any SQL, and not retried.
    let bad = SinkBatch {
        rows: vec![ResultRow {
            key: "k".into(),
            revision: 0,
            values: vec![SqlValue::Text("not a float".into()), SqlValue::Null],
        }],
        ..SinkBatch::default()
    };
    let error = sink.write_batch(&bad).await.expect_err("type mismatch");
    assert!(matches!(error, PgSinkError::RowMismatch { .. }) && !error.is_transient());
    let too_large = SinkBatch {
        rows: vec![row(4, 4.0), row(5, 5.0), row(6, 6.0)],
        ..SinkBatch::default()
    };
    let error = sink
        .write_batch(&too_large)
        .await
        .expect_err("over the bound");
    assert!(matches!(
        error,
        PgSinkError::BatchTooLarge {
            rows: 3,
            max_rows: 2
        }
    ));
    assert_eq!(stored(&admin).await?, (3, 3.5));
    sink.close().await;
    Ok(())
}

#[tokio::test]
async fn checkpoint_round_trips_and_dead_letters_are_stored() -> Result<()> {
    let Some(cluster) = Cluster::start() else {
        return Ok(());
    };
    let (mut sink, _) = PgSink::open(cluster.config("ckpt"), counts_table()).await?;
    let checkpoint: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    let batch = SinkBatch {
        rows: Vec::new(),
        positions: vec![
            SourcePosition {
                source: "a".into(),
                partition: 0,
                position: 7,
            },
            SourcePosition {
                source: "a".into(),
                partition: 1,
                position: 9,
            },
        ],
        checkpoint: Some(checkpoint.clone()),
        other_tables: Vec::new(),
    };
    sink.write_batch(&batch).await?;
    let letter = DeadLetter {
        source: "a".into(),
        partition: 1,
        position: 8,
        error: "bad line: expected 3 fields".into(),
        raw: b"1,2\xff".to_vec(),
    };
    sink.dead_letter(&letter).await?;
    sink.dead_letter(&letter).await?; // a redelivered poison record is stored once
    sink.close().await;

    let (sink, resume) = PgSink::open(cluster.config("ckpt"), counts_table()).await?;
    assert_eq!(resume.checkpoint.as_deref(), Some(checkpoint.as_slice()));
    assert_eq!(
        resume.positions,
        BTreeMap::from([(("a".to_owned(), 0), 7), (("a".to_owned(), 1), 9)])
    );
    let (_, other) = PgSink::open(cluster.config("other"), counts_table()).await?;
    assert_eq!(other, Default::default(), "pipelines do not see each other");

    let admin = cluster.admin().await?;
    let rows = admin
        .query(
            "SELECT pipeline, source, \"partition\", position, error, raw FROM essaim_dead_letters",
            &[],
        )
        .await?;
    assert_eq!(rows.len(), 1);
    let stored = DeadLetter {
        source: rows[0].get(1),
        partition: rows[0].get(2),
        position: rows[0].get(3),
        error: rows[0].get(4),
        raw: rows[0].get(5),
    };
    assert_eq!(rows[0].get::<_, String>(0), "ckpt");
    assert_eq!(stored, letter);
    sink.close().await;
    Ok(())
}

#[tokio::test]
async fn breaker_opens_while_postgres_is_stopped_and_closes_after_restart() -> Result<()> {
    let Some(cluster) = Cluster::start() else {
        return Ok(());
    };
    let mut config = cluster.config("brk");
    config.connection.breaker = SharedBreaker::new(
        "postgres",
        BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_millis(300),
        },
    );
    config.connection.max_retries = 1;
    let (mut sink, _) = PgSink::open(config, counts_table()).await?;
    let mut aggregator = Aggregator::default();
    for position in 1..=40 {
        aggregator.push(position);
    }
    sink.write_batch(&aggregator.batch()).await?;
    for position in 41..=80 {
        aggregator.push(position);
    }
    let pending = aggregator.batch();

    cluster.server.stop();
    let mut saw_open = false;
    for _ in 0..10 {
        match sink.write_batch(&pending).await {
            Err(PgSinkError::CircuitOpen { .. }) => {
                saw_open = true;
                break;
            }
            Err(error) => assert!(error.is_transient(), "{error}"),
            Ok(outcome) => bail!("wrote to a stopped server: {outcome:?}"),
        }
    }
    assert!(saw_open, "the breaker never opened");
    assert!(matches!(sink.breaker().state(), BreakerState::Open { .. }));

    cluster.server.start_again();
    let deadline = Instant::now() + Duration::from_secs(20);
    let outcome = loop {
        match sink.write_batch(&pending).await {
            Ok(outcome) => break outcome,
            Err(error) if error.is_transient() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    assert_eq!(outcome, BatchOutcome::Committed { rows_changed: 10 });
    assert!(matches!(
        sink.breaker().state(),
        BreakerState::Closed { .. }
    ));
    let admin = cluster.admin().await?;
    let stored = counts(&admin).await?;
    for digit in 0..10 {
        let expected_sum: i64 = (1..=80).filter(|p| p % 10 == digit).sum();
        assert_eq!(
            stored[&format!("k{digit}")],
            (8, expected_sum, 80),
            "no loss"
        );
    }
    assert_eq!(offsets(&admin, "brk").await?, [("events".into(), 0, 80)]);
    sink.close().await;
    Ok(())
}

#[tokio::test]
async fn second_writer_of_a_pipeline_waits_and_sees_the_first_commit() -> Result<()> {
    let Some(cluster) = Cluster::start() else {
        return Ok(());
    };
    // Tasks that start together create the tables together.
    let opened = futures_util::future::try_join_all(
        (0..4).map(|_| PgSink::open(cluster.config("two"), counts_table())),
    )
    .await?;
    let mut sinks = opened.into_iter().map(|(sink, _)| sink);
    let (Some(mut old_task), Some(mut new_task)) = (sinks.next(), sinks.next()) else {
        bail!("four sinks were opened");
    };
    for sink in sinks {
        sink.close().await;
    }
    let admin = cluster.admin().await?;
    let mut aggregator = Aggregator::default();
    for position in 1..=30 {
        aggregator.push(position);
    }
    let batch = aggregator.batch();

    // The old task has written but not committed; the new one writes the same batch.
    let staged = old_task.stage_batch(&batch).await?;
    let second_batch = batch.clone();
    let second = tokio::spawn(async move {
        let outcome = new_task.write_batch(&second_batch).await;
        new_task.close().await;
        outcome
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                &[],
            )
            .await?
            .get(0);
        if waiting == 1 {
            break;
        }
        ensure!(Instant::now() < deadline, "the second writer never waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        staged.commit().await?,
        BatchOutcome::Committed { rows_changed: 10 }
    );
    assert_eq!(second.await??, BatchOutcome::AlreadyCommitted);
    assert_eq!(counts(&admin).await?.len(), 10);
    assert_eq!(offsets(&admin, "two").await?, [("events".into(), 0, 30)]);
    old_task.close().await;
    Ok(())
}

/// A checkpoint is rewritten by every commit: PostgreSQL stores it as it is, without
/// its pglz pass, even in a table an older build created with the default storage.
#[tokio::test]
async fn large_checkpoints_are_stored_uncompressed() -> Result<()> {
    let Some(cluster) = Cluster::start() else {
        return Ok(());
    };
    let admin = cluster.admin().await?;
    admin
        .batch_execute(
            "CREATE TABLE essaim_checkpoints (pipeline text PRIMARY KEY, checkpoint bytea NOT NULL, \
             updated_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let (mut sink, _) = PgSink::open(cluster.config("big"), counts_table()).await?;
    let checkpoint = vec![7u8; 64 * 1024]; // pglz would shrink it to almost nothing
    let batch = SinkBatch {
        positions: vec![SourcePosition {
            source: "a".into(),
            partition: 0,
            position: 1,
        }],
        checkpoint: Some(checkpoint.clone()),
        ..SinkBatch::default()
    };
    sink.write_batch(&batch).await?;
    sink.close().await;
    let row = admin
        .query_one(
            "SELECT pg_column_size(checkpoint), \
             (SELECT attstorage FROM pg_attribute WHERE attrelid = 'essaim_checkpoints'::regclass \
              AND attname = 'checkpoint')::text \
             FROM essaim_checkpoints WHERE pipeline = 'big'",
            &[],
        )
        .await?;
    let (stored, storage): (i32, String) = (row.get(0), row.get(1));
    ensure!(
        storage == "e",
        "checkpoint storage is {storage:?}, not external"
    );
    ensure!(
        stored as usize >= checkpoint.len(),
        "the checkpoint was compressed to {stored} bytes"
    );
    let (sink, resume) = PgSink::open(cluster.config("big"), counts_table()).await?;
    assert_eq!(resume.checkpoint.as_deref(), Some(checkpoint.as_slice()));
    sink.close().await;
    Ok(())
}
