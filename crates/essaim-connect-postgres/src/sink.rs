//! The effectively-once sink: result rows, source positions and the pipeline's
//! checkpoint, written in one transaction.
//!
//! Delivery upstream is at-least-once: after a crash a source redelivers from its last
//! acknowledged position, which may be behind what reached PostgreSQL. Three rules make
//! the results exact anyway:
//!
//! 1. **One transaction.** Rows, positions (`essaim_offsets`) and checkpoint
//!    (`essaim_checkpoints`) commit together or not at all, so the positions in
//!    PostgreSQL describe exactly the rows there.
//! 2. **Positions in PostgreSQL are the truth.** On start, [`PgSink::open`] reads them
//!    back with the checkpoint; the runtime restores its state from that checkpoint and
//!    skips every record at or below a committed position
//!    ([`ResumePoint::is_committed`]), so nothing is aggregated twice. A batch whose
//!    positions are all already committed (a retry after a commit whose answer was
//!    lost) is recognised under a lock on the pipeline and changes nothing
//!    ([`BatchOutcome::AlreadyCommitted`]). Positions only move forward.
//! 3. **Revisions only move forward.** A row replaces the stored one only when its
//!    revision is strictly greater (see [`crate::table`]).
//!
//! Poison records go to `essaim_dead_letters`, idempotently (one row per pipeline,
//! source, partition and position).
use std::collections::BTreeMap;

use futures_util::future::try_join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement, Transaction};

use essaim_connect::SharedBreaker;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::PgSinkError;
use crate::owner::CREATE_OWNERS_SQL;
use crate::spec_guard::{CREATE_SPECS_SQL, Reconciled, SpecIdentity};
use crate::table::{ResultRow, ResultTable};

/// The bookkeeping tables, shared by every pipeline of a database.
///
/// A checkpoint is rewritten by every commit of its unit, and one holding open windows
/// passes the 2 kB past which PostgreSQL compresses a value with pglz, which was the
/// top of PostgreSQL's profile under a streaming load. Checkpoints are stored
/// uncompressed (`STORAGE EXTERNAL`, set once per database, tables created by older
/// builds included): moved out of line as they are, without the compression pass.
const CREATE_BOOKKEEPING_SQL: &str = "\
CREATE TABLE IF NOT EXISTS essaim_offsets (
    pipeline text NOT NULL,
    source text NOT NULL,
    \"partition\" integer NOT NULL,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, source, \"partition\")
);
CREATE TABLE IF NOT EXISTS essaim_checkpoints (
    pipeline text PRIMARY KEY,
    checkpoint bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
DO $$ BEGIN
    IF (SELECT attstorage FROM pg_attribute
        WHERE attrelid = 'essaim_checkpoints'::regclass AND attname = 'checkpoint') <> 'e' THEN
        ALTER TABLE essaim_checkpoints ALTER COLUMN checkpoint SET STORAGE EXTERNAL;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS essaim_dead_letters (
    id bigserial PRIMARY KEY,
    pipeline text NOT NULL,
    source text NOT NULL,
    \"partition\" integer NOT NULL,
    position bigint NOT NULL,
    error text NOT NULL,
    raw bytea NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (pipeline, source, \"partition\", position)
);";

/// Positions only move forward, even if batches commit out of order.
const UPSERT_OFFSET_SQL: &str = "\
INSERT INTO essaim_offsets (pipeline, source, \"partition\", position) VALUES ($1, $2, $3, $4)
ON CONFLICT (pipeline, source, \"partition\") DO UPDATE
SET position = EXCLUDED.position, updated_at = now()
WHERE essaim_offsets.position < EXCLUDED.position";

const UPSERT_CHECKPOINT_SQL: &str = "\
INSERT INTO essaim_checkpoints (pipeline, checkpoint) VALUES ($1, $2)
ON CONFLICT (pipeline) DO UPDATE SET checkpoint = EXCLUDED.checkpoint, updated_at = now()";

/// A transaction-scoped advisory lock on the pipeline serialises two writers of the
/// same pipeline (say, an old task that has not noticed it was replaced), even before
/// the pipeline has any offset row to lock: the second sees the first's positions. Two
/// pipelines whose names hash alike only wait for each other.
pub(crate) const LOCK_PIPELINE_SQL: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

const READ_OFFSETS_SQL: &str = "\
SELECT source, \"partition\", position FROM essaim_offsets WHERE pipeline = $1";

const INSERT_DEAD_LETTER_SQL: &str = "\
INSERT INTO essaim_dead_letters (pipeline, source, \"partition\", position, error, raw)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (pipeline, source, \"partition\", position) DO NOTHING";

/// Where one partition of a source is: the last position whose effects are committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// The source's name in the pipeline spec.
    pub source: String,
    /// The source partition.
    pub partition: i32,
    /// The last sequence number covered.
    pub position: i64,
}

/// One write: results, the source positions they cover and the state that goes with
/// them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkBatch {
    /// Results to upsert.
    pub rows: Vec<ResultRow>,
    /// Per source partition, the last position whose effects are in `rows` (or in an
    /// earlier batch).
    pub positions: Vec<SourcePosition>,
    /// The pipeline's checkpoint after those positions, if it changed.
    pub checkpoint: Option<Vec<u8>>,
    /// Rows for the sink's other tables: `other_tables[i]` goes to table `i + 1` of
    /// [`PgSink::open_tables`] (`rows` to table 0).
    pub other_tables: Vec<Vec<ResultRow>>,
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Committed; `rows_changed` rows were inserted or replaced by a newer revision.
    Committed {
        /// Rows inserted or updated (older or equal revisions change nothing).
        rows_changed: u64,
    },
    /// Every position of the batch was already committed: nothing was written.
    AlreadyCommitted,
}

/// Where a pipeline resumes: its committed positions and checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumePoint {
    /// Last committed position per (source, partition).
    pub positions: BTreeMap<(String, i32), i64>,
    /// The last committed checkpoint, if any.
    pub checkpoint: Option<Vec<u8>>,
}

impl ResumePoint {
    /// Returns true when the record at `position` is already reflected in PostgreSQL,
    /// so a redelivery of it must be skipped.
    pub fn is_committed(&self, source: &str, partition: i32, position: i64) -> bool {
        self.positions
            .get(&(source.to_owned(), partition))
            .is_some_and(|committed| position <= *committed)
    }

    /// Notes positions that have just been committed.
    pub fn advance(&mut self, positions: &[SourcePosition]) {
        for position in positions {
            let committed = self
                .positions
                .entry((position.source.clone(), position.partition))
                .or_insert(position.position);
            *committed = (*committed).max(position.position);
        }
    }
}

/// A poison record: what could not be processed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The source it came from.
    pub source: String,
    /// Its source partition.
    pub partition: i32,
    /// Its position there.
    pub position: i64,
    /// Why it was refused.
    pub error: String,
    /// The record's bytes, as received.
    pub raw: Vec<u8>,
}

/// The sink's settings.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The connection and its retry policy.
    pub connection: ConnectionConfig,
    /// The pipeline whose results, positions and checkpoint these are.
    pub pipeline: String,
    /// The most rows one batch may hold (default 10,000): one transaction holds locks
    /// on every row it writes, so a bounded batch bounds lock time and memory.
    pub max_batch_rows: usize,
    /// The spec the pipeline runs under: when given, state recorded under another one
    /// is refused or migrated as it says (see [`crate::spec_guard`]).
    pub spec: Option<SpecIdentity>,
    /// The task attempt writing, when several may write one pipeline over time: opening
    /// claims it, and a batch is refused once another owner claimed it since (see
    /// `owner.rs`). `None`: no claim, no check.
    pub owner: Option<u64>,
}

impl SinkConfig {
    /// Returns the defaults for `pipeline` at `url`.
    pub fn new(url: impl Into<String>, pipeline: impl Into<String>) -> SinkConfig {
        SinkConfig {
            connection: ConnectionConfig::new(url),
            pipeline: pipeline.into(),
            max_batch_rows: 10_000,
            spec: None,
            owner: None,
        }
    }
}

/// The PostgreSQL sink of one pipeline task (see the module doc).
pub struct PgSink {
    connection: Connection,
    pipeline: String,
    tables: Vec<ResultTable>,
    max_batch_rows: usize,
    /// The fingerprint of the spec the sink writes under, when it was given one: every
    /// batch checks it is still the one recorded, so that a writer of an older spec
    /// (a unit not yet stopped) cannot commit after a migration.
    fingerprint: Option<String>,
    /// The owner the sink claimed the pipeline for, stored form (see [`crate::owner`]).
    owner: Option<i64>,
}

impl PgSink {
    /// Connects, creates the tables if needed and returns the sink with the point
    /// where the pipeline resumes.
    pub async fn open(
        config: SinkConfig,
        table: ResultTable,
    ) -> Result<(PgSink, ResumePoint), PgSinkError> {
        PgSink::open_tables(config, vec![table]).await
    }

    /// Like [`PgSink::open`], for a task whose results go to several tables (or to
    /// none: positions and checkpoints only).
    pub async fn open_tables(
        config: SinkConfig,
        tables: Vec<ResultTable>,
    ) -> Result<(PgSink, ResumePoint), PgSinkError> {
        let mut sink = PgSink {
            connection: Connection::new(config.connection),
            pipeline: config.pipeline,
            tables,
            max_batch_rows: config.max_batch_rows.max(1),
            fingerprint: config.spec.as_ref().map(|spec| spec.fingerprint.clone()),
            owner: config.owner.map(crate::owner::stored),
        };
        let create_tables: Vec<&str> = sink.tables.iter().map(ResultTable::create_sql).collect();
        // Concurrent `CREATE TABLE IF NOT EXISTS` of one table can fail on a catalog
        // unique index, so tasks starting together take turns under an advisory lock.
        let create_sql = format!(
            "BEGIN;\n\
             SELECT pg_advisory_xact_lock(hashtextextended('essaim_connect_postgres.create', 0));\n\
             {CREATE_BOOKKEEPING_SQL}\n{CREATE_SPECS_SQL}\n{CREATE_OWNERS_SQL};\n{};\nCOMMIT;",
            create_tables.join(";\n")
        );
        let mut retry = 0;
        loop {
            let result = match sink.connection.acquire().await {
                Ok(client) => client.batch_execute(&create_sql).await.map_err(|source| {
                    PgSinkError::Postgres {
                        action: "create tables",
                        source,
                    }
                }),
                Err(error) => Err(error),
            };
            let settled = sink.connection.settle("create tables", &mut retry, result);
            if let Some(done) = settled.await {
                done?;
                break;
            }
        }
        if let Some(spec) = &config.spec {
            let outcome = sink.reconcile_spec(spec).await?;
            tracing::info!(unit = %sink.pipeline, ?outcome, fingerprint = %spec.fingerprint, "spec checked");
        }
        let resume = sink.resume_point().await?;
        Ok((sink, resume))
    }

    /// Checks the spec recorded for the pipeline against `spec`, migrating as it says.
    async fn reconcile_spec(&mut self, spec: &SpecIdentity) -> Result<Reconciled, PgSinkError> {
        let mut retry = 0;
        loop {
            let result = match self.connection.acquire().await {
                Ok(client) => {
                    crate::spec_guard::reconcile(client, &self.pipeline, &self.tables, spec).await
                }
                Err(error) => Err(error),
            };
            let settled = self.connection.settle("check spec", &mut retry, result);
            if let Some(done) = settled.await {
                return done;
            }
        }
    }

    /// Returns the tables results go to.
    pub fn tables(&self) -> &[ResultTable] {
        &self.tables
    }

    /// Returns the circuit breaker, to report its state.
    pub fn breaker(&self) -> &SharedBreaker {
        self.connection.breaker()
    }

    /// Reads the committed positions and checkpoint of the pipeline, claiming it for
    /// the sink's owner when it has one.
    pub async fn resume_point(&mut self) -> Result<ResumePoint, PgSinkError> {
        let mut retry = 0;
        loop {
            let result = match self.connection.acquire().await {
                Ok(client) => read_resume_point(client, &self.pipeline, self.owner)
                    .await
                    .map_err(|source| PgSinkError::Postgres {
                        action: "read resume point",
                        source,
                    }),
                Err(error) => Err(error),
            };
            let settled = self
                .connection
                .settle("read resume point", &mut retry, result);
            if let Some(done) = settled.await {
                return done;
            }
        }
    }

    /// Writes a batch in one transaction, retrying transient failures. A retry after
    /// a commit whose answer was lost finds the positions committed and does nothing.
    pub async fn write_batch(&mut self, batch: &SinkBatch) -> Result<BatchOutcome, PgSinkError> {
        self.check_batch(batch)?;
        let mut retry = 0;
        loop {
            let sql = statement_texts(&self.tables);
            let result = match self.connection.acquire_prepared(&sql).await {
                Ok((client, prepared)) => match stage(
                    client,
                    &Statements::of(prepared),
                    unit(&self.pipeline, &self.fingerprint, self.owner),
                    &self.tables,
                    batch,
                )
                .await
                {
                    Ok(staged) => staged.commit().await,
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            let settled = self.connection.settle("write batch", &mut retry, result);
            if let Some(done) = settled.await {
                return done;
            }
        }
    }

    /// Runs a batch's statements in a transaction and returns it uncommitted, in one
    /// attempt, without retries; a failure does not count against the breaker (the next call finds a broken connection and reopens it).
    /// Dropping the result rolls everything back. For a runtime that must do something
    /// between the writes and the commit, and for tests of atomicity.
    pub async fn stage_batch<'sink>(
        &'sink mut self,
        batch: &SinkBatch,
    ) -> Result<StagedBatch<'sink>, PgSinkError> {
        self.check_batch(batch)?;
        let sql = statement_texts(&self.tables);
        let (client, prepared) = self.connection.acquire_prepared(&sql).await?;
        stage(
            client,
            &Statements::of(prepared),
            unit(&self.pipeline, &self.fingerprint, self.owner),
            &self.tables,
            batch,
        )
        .await
    }

    /// Stores a poison record; storing the same one again changes nothing.
    pub async fn dead_letter(&mut self, letter: &DeadLetter) -> Result<(), PgSinkError> {
        let mut retry = 0;
        loop {
            let result = match self.connection.acquire().await {
                Ok(client) => client
                    .execute(
                        INSERT_DEAD_LETTER_SQL,
                        &[
                            &self.pipeline,
                            &letter.source,
                            &letter.partition,
                            &letter.position,
                            &letter.error,
                            &letter.raw,
                        ],
                    )
                    .await
                    .map(drop)
                    .map_err(|source| PgSinkError::Postgres {
                        action: "store dead letter",
                        source,
                    }),
                Err(error) => Err(error),
            };
            let settled = self
                .connection
                .settle("store dead letter", &mut retry, result);
            if let Some(done) = settled.await {
                return done;
            }
        }
    }

    /// Closes the connection and waits for its task.
    pub async fn close(mut self) {
        self.connection.disconnect().await;
    }

    fn check_batch(&self, batch: &SinkBatch) -> Result<(), PgSinkError> {
        let rows: usize = batch.rows.len() + batch.other_tables.iter().map(Vec::len).sum::<usize>();
        if rows > self.max_batch_rows {
            return Err(PgSinkError::BatchTooLarge {
                rows,
                max_rows: self.max_batch_rows,
            });
        }
        for (index, rows) in batch_tables(batch).enumerate() {
            if rows.is_empty() {
                continue;
            }
            let Some(table) = self.tables.get(index) else {
                return Err(PgSinkError::InvalidTable {
                    table: format!("#{index}"),
                    reason: "the batch has rows for a table the sink was not opened with"
                        .to_owned(),
                });
            };
            for row in rows {
                table.check_row(row)?;
            }
        }
        Ok(())
    }
}

/// The rows of a batch per table, in table order.
fn batch_tables(batch: &SinkBatch) -> impl Iterator<Item = &Vec<ResultRow>> {
    std::iter::once(&batch.rows).chain(batch.other_tables.iter())
}

/// A batch whose statements ran in an open transaction: [`Self::commit`] makes it
/// durable, dropping it rolls it back.
pub struct StagedBatch<'client> {
    transaction: Option<Transaction<'client>>,
    rows_changed: u64,
}

impl StagedBatch<'_> {
    /// Returns true when every position of the batch was already committed, so no
    /// transaction is open and [`Self::commit`] does nothing.
    pub fn is_already_committed(&self) -> bool {
        self.transaction.is_none()
    }

    /// Returns the process id of the PostgreSQL backend that runs the transaction, or
    /// `None` when there is no transaction (see [`Self::is_already_committed`]).
    pub async fn backend_pid(&self) -> Result<Option<i32>, PgSinkError> {
        let Some(transaction) = &self.transaction else {
            return Ok(None);
        };
        let row = transaction
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|source| PgSinkError::Postgres {
                action: "read backend pid",
                source,
            })?;
        Ok(Some(row.get(0)))
    }

    /// Commits the transaction.
    pub async fn commit(self) -> Result<BatchOutcome, PgSinkError> {
        let Some(transaction) = self.transaction else {
            return Ok(BatchOutcome::AlreadyCommitted);
        };
        transaction
            .commit()
            .await
            .map_err(|source| PgSinkError::Postgres {
                action: "commit batch",
                source,
            })?;
        Ok(BatchOutcome::Committed {
            rows_changed: self.rows_changed,
        })
    }
}

/// Whose batch it is: the unit's key and, when it has them, the spec it writes under
/// and the owner it claimed the unit for.
#[derive(Clone, Copy)]
struct Unit<'a> {
    key: &'a str,
    fingerprint: Option<&'a str>,
    owner: Option<i64>,
}

fn unit<'a>(key: &'a str, fingerprint: &'a Option<String>, owner: Option<i64>) -> Unit<'a> {
    Unit {
        key,
        fingerprint: fingerprint.as_deref(),
        owner,
    }
}

/// The statements of a batch, in the order of [`statement_texts`].
struct Statements {
    lock: Statement,
    read_offsets: Statement,
    read_spec: Statement,
    read_owner: Statement,
    upsert_offset: Statement,
    upsert_checkpoint: Statement,
    /// One per table, in the sink's order.
    upserts: Vec<Statement>,
}

/// The texts of the statements a batch runs: prepared once per connection.
fn statement_texts(tables: &[ResultTable]) -> Vec<&str> {
    let mut sql = vec![
        LOCK_PIPELINE_SQL,
        READ_OFFSETS_SQL,
        crate::spec_guard::READ_SPEC_SQL,
        crate::owner::READ_OWNER_SQL,
        UPSERT_OFFSET_SQL,
        UPSERT_CHECKPOINT_SQL,
    ];
    sql.extend(tables.iter().map(ResultTable::upsert_sql));
    sql
}

impl Statements {
    fn of(prepared: Vec<Statement>) -> Statements {
        let mut prepared = prepared.into_iter();
        let mut next = || prepared.next().expect("one statement per text");
        let (lock, read_offsets, read_spec, read_owner) = (next(), next(), next(), next());
        let (upsert_offset, upsert_checkpoint) = (next(), next());
        Statements {
            lock,
            read_offsets,
            read_spec,
            read_owner,
            upsert_offset,
            upsert_checkpoint,
            upserts: prepared.collect(),
        }
    }
}

/// The batch's transaction, in four round trips whatever its size: BEGIN; the lock and
/// the reads (sent together); every write (rows, positions, checkpoint, sent together);
/// then, from [`StagedBatch::commit`], COMMIT. Statements sent together run in order.
async fn stage<'client>(
    client: &'client mut Client,
    statements: &Statements,
    unit: Unit<'_>,
    tables: &[ResultTable],
    batch: &SinkBatch,
) -> Result<StagedBatch<'client>, PgSinkError> {
    let postgres = |action| move |source| PgSinkError::Postgres { action, source };
    let pipeline = unit.key;
    let transaction = client.transaction().await.map_err(postgres("begin"))?;
    // The reads run after the lock is granted, each with its own snapshot: what a
    // migration committed before the lock was granted is seen.
    let (_, locked, recorded, owner) = futures_util::future::try_join4(
        transaction.execute(&statements.lock, &[&pipeline]),
        transaction.query(&statements.read_offsets, &[&pipeline]),
        transaction.query_opt(&statements.read_spec, &[&pipeline]),
        transaction.query_opt(&statements.read_owner, &[&pipeline]),
    )
    .await
    .map_err(postgres("lock pipeline and read offsets"))?;
    crate::owner::check(pipeline, unit.owner, owner.as_ref())?;
    if let (Some(fingerprint), Some(row)) = (unit.fingerprint, recorded) {
        let stored: String = row.get(0);
        if stored != fingerprint {
            return Err(PgSinkError::SpecChanged {
                unit: pipeline.to_owned(),
                recorded: stored,
                recorded_at: row.get(1),
                fingerprint: fingerprint.to_owned(),
            });
        }
    }
    let mut committed = ResumePoint::default();
    for row in &locked {
        committed
            .positions
            .insert((row.get(0), row.get(1)), row.get(2));
    }
    let all_committed = !batch.positions.is_empty()
        && batch.positions.iter().all(|position| {
            committed.is_committed(&position.source, position.partition, position.position)
        });
    if all_committed {
        // Dropping the transaction rolls it back and releases the locks.
        return Ok(StagedBatch {
            transaction: None,
            rows_changed: 0,
        });
    }
    let rows_changed = write(&transaction, statements, pipeline, tables, batch).await?;
    Ok(StagedBatch {
        transaction: Some(transaction),
        rows_changed,
    })
}

/// Sends every write of the batch together and returns the rows changed.
async fn write(
    transaction: &Transaction<'_>,
    statements: &Statements,
    pipeline: &str,
    tables: &[ResultTable],
    batch: &SinkBatch,
) -> Result<u64, PgSinkError> {
    let mut writes: Vec<(Statement, Vec<&(dyn ToSql + Sync)>)> = Vec::new();
    for ((table, rows), upsert) in tables
        .iter()
        .zip(batch_tables(batch))
        .zip(&statements.upserts)
    {
        writes.extend(
            rows.iter()
                .map(|row| (upsert.clone(), table.upsert_params(row))),
        );
    }
    let row_writes = writes.len();
    for position in &batch.positions {
        writes.push((
            statements.upsert_offset.clone(),
            vec![
                &pipeline as &(dyn ToSql + Sync),
                &position.source,
                &position.partition,
                &position.position,
            ],
        ));
    }
    if let Some(checkpoint) = &batch.checkpoint {
        writes.push((
            statements.upsert_checkpoint.clone(),
            vec![&pipeline as &(dyn ToSql + Sync), checkpoint],
        ));
    }
    // The client pipelines statements issued together: one round trip for the batch.
    let changed = try_join_all(
        writes
            .iter()
            .map(|(statement, params)| transaction.execute(statement, params)),
    )
    .await
    .map_err(|source| PgSinkError::Postgres {
        action: "write batch",
        source,
    })?;
    Ok(changed[..row_writes].iter().sum())
}

/// Reads positions and checkpoint in one transaction, under the lock every batch takes,
/// so they describe the same commit even while another owner still writes (read one
/// after the other, a commit between them would pair older positions with a newer
/// checkpoint, and records would count twice). The claim is made there too.
async fn read_resume_point(
    client: &mut Client,
    pipeline: &str,
    owner: Option<i64>,
) -> Result<ResumePoint, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    transaction.execute(LOCK_PIPELINE_SQL, &[&pipeline]).await?;
    if let Some(owner) = owner {
        transaction
            .execute(crate::owner::CLAIM_SQL, &[&pipeline, &owner])
            .await?;
    }
    let mut resume = ResumePoint::default();
    let rows = transaction.query(READ_OFFSETS_SQL, &[&pipeline]).await?;
    for row in &rows {
        resume
            .positions
            .insert((row.get(0), row.get(1)), row.get(2));
    }
    let checkpoint = transaction
        .query_opt(
            "SELECT checkpoint FROM essaim_checkpoints WHERE pipeline = $1",
            &[&pipeline],
        )
        .await?;
    resume.checkpoint = checkpoint.map(|row| row.get(0));
    transaction.commit().await?;
    Ok(resume)
}
