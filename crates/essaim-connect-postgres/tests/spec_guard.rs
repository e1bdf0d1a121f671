//! The spec recorded beside a unit's state, against a real PostgreSQL
//! (`scripts/postgres.sh`): state made under another spec is refused, and each
//! migration does what it says exactly once.
use anyhow::Result;
use essaim_connect_postgres::{
    Migration, PgSink, PgSinkError, ResultRow, SinkBatch, SinkConfig, SourcePosition, SpecIdentity,
    SqlValue, result_key,
};

mod common;
use common::{Cluster, counts_table};

const UNIT: &str = "sales/source/0";

fn with_spec(cluster: &Cluster, fingerprint: &str, migration: Migration) -> SinkConfig {
    let mut config = cluster.config(UNIT);
    config.spec = Some(SpecIdentity {
        pipeline: "sales".into(),
        fingerprint: fingerprint.into(),
        text: format!("spec {fingerprint}"),
        migration,
    });
    config
}

/// One committed batch: a row of revision 3, `position` of partition 0, a checkpoint.
async fn commit_some_state(sink: &mut PgSink, position: i64) -> Result<()> {
    let batch = SinkBatch {
        rows: vec![ResultRow {
            key: result_key("sales", "north", 0),
            revision: 3,
            values: vec![
                SqlValue::Text("north".into()),
                SqlValue::BigInt(4),
                SqlValue::BigInt(40),
            ],
        }],
        positions: vec![SourcePosition {
            source: "orders".into(),
            partition: 0,
            position,
        }],
        checkpoint: Some(b"state".to_vec()),
        other_tables: Vec::new(),
    };
    sink.write_batch(&batch).await?;
    Ok(())
}

#[tokio::test]
async fn another_spec_is_refused_until_a_migration_is_asked_for() -> Result<()> {
    let Some(cluster) = Cluster::start() else {
        return Ok(());
    };
    let open = |fingerprint, migration| {
        PgSink::open(with_spec(&cluster, fingerprint, migration), counts_table())
    };
    let (mut sink, resume) = open("aaaa", Migration::Refuse).await?;
    assert_eq!(resume, Default::default());
    commit_some_state(&mut sink, 41).await?;
    sink.close().await;

    // The same spec resumes; a migration flag changes nothing while the spec is the same.
    let (sink, resume) = open("aaaa", Migration::Rebuild).await?;
    assert_eq!(resume.checkpoint.as_deref(), Some(&b"state"[..]));
    sink.close().await;

    let refused = open("bbbb", Migration::Refuse)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(refused, PgSinkError::SpecChanged { .. }),
        "{refused}"
    );
    assert!(!refused.is_transient());
    let message = refused.to_string();
    for part in [UNIT, "aaaa", "bbbb", "keep", "reset", "rebuild"] {
        assert!(message.contains(part), "{message} names {part}");
    }

    // keep: state and positions as they were, and the new spec recorded.
    let (sink, resume) = open("bbbb", Migration::Keep).await?;
    assert_eq!(resume.checkpoint.as_deref(), Some(&b"state"[..]));
    assert_eq!(resume.positions.len(), 1);
    sink.close().await;
    let (sink, _) = open("bbbb", Migration::Refuse).await?;
    sink.close().await;

    // reset: the checkpoint goes, the positions stay; once only.
    let (mut sink, resume) = open("cccc", Migration::Reset).await?;
    assert_eq!(resume.checkpoint, None);
    assert_eq!(resume.positions[&("orders".to_owned(), 0)], 41);
    commit_some_state(&mut sink, 42).await?;
    sink.close().await;
    let (sink, resume) = open("cccc", Migration::Reset).await?;
    assert_eq!(
        resume.checkpoint.as_deref(),
        Some(&b"state"[..]),
        "reset once"
    );
    sink.close().await;

    // rebuild: checkpoint and positions go, and the rows become replaceable by any
    // revision (here 0, below the stored 3).
    let (mut sink, resume) = open("dddd", Migration::Rebuild).await?;
    assert_eq!(resume, Default::default());
    let admin = cluster.admin().await?;
    let revision = |admin: tokio_postgres::Client| async move {
        let row = admin
            .query_one("SELECT revision, count FROM counts", &[])
            .await?;
        anyhow::Ok((admin, row.get::<_, i64>(0), row.get::<_, i64>(1)))
    };
    let (admin, demoted, count) = revision(admin).await?;
    assert_eq!((demoted, count), (-1, 4), "demoted, values kept");
    let batch = SinkBatch {
        rows: vec![ResultRow {
            key: result_key("sales", "north", 0),
            revision: 0,
            values: vec![
                SqlValue::Text("north".into()),
                SqlValue::BigInt(1),
                SqlValue::BigInt(10),
            ],
        }],
        positions: vec![SourcePosition {
            source: "orders".into(),
            partition: 0,
            position: 0,
        }],
        checkpoint: None,
        other_tables: Vec::new(),
    };
    sink.write_batch(&batch).await?;
    let (admin, rebuilt, count) = revision(admin).await?;
    assert_eq!(
        (rebuilt, count),
        (0, 1),
        "the rebuilt result replaced the old one"
    );
    sink.close().await;

    let recorded: String = admin
        .query_one(
            "SELECT spec FROM essaim_specs WHERE pipeline = $1",
            &[&UNIT],
        )
        .await?
        .get(0);
    assert_eq!(recorded, "spec dddd");
    Ok(())
}

#[tokio::test]
async fn rows_of_other_pipelines_are_not_demoted() -> Result<()> {
    let Some(cluster) = Cluster::start() else {
        return Ok(());
    };
    let (mut other, _) = PgSink::open(cluster.config("salesman/source/0"), counts_table()).await?;
    let batch = SinkBatch {
        rows: vec![ResultRow {
            key: result_key("salesman", "north", 0),
            revision: 2,
            values: vec![SqlValue::Null, SqlValue::Null, SqlValue::Null],
        }],
        positions: Vec::new(),
        checkpoint: None,
        other_tables: Vec::new(),
    };
    other.write_batch(&batch).await?;
    other.close().await;
    for fingerprint in ["aaaa", "bbbb"] {
        let config = with_spec(&cluster, fingerprint, Migration::Rebuild);
        PgSink::open(config, counts_table()).await?.0.close().await;
    }
    let admin = cluster.admin().await?;
    let revision: i64 = admin
        .query_one("SELECT revision FROM counts", &[])
        .await?
        .get(0);
    assert_eq!(revision, 2, "`salesman` is not `sales`");
    Ok(())
}

#[tokio::test]
async fn a_writer_of_the_old_spec_cannot_commit_after_a_migration() -> Result<()> {
    let Some(cluster) = Cluster::start() else {
        return Ok(());
    };
    let (mut old, _) = PgSink::open(
        with_spec(&cluster, "aaaa", Migration::Refuse),
        counts_table(),
    )
    .await?;
    commit_some_state(&mut old, 41).await?;
    let (new, resume) = PgSink::open(
        with_spec(&cluster, "bbbb", Migration::Reset),
        counts_table(),
    )
    .await?;
    assert_eq!(resume.checkpoint, None, "reset");
    // The old unit has not noticed it was replaced, and commits once more.
    let refused = commit_some_state(&mut old, 90).await.expect_err("fenced");
    let refused = refused.downcast::<PgSinkError>()?;
    assert!(
        matches!(refused, PgSinkError::SpecChanged { .. }),
        "{refused}"
    );
    new.close().await;
    let (sink, resume) = PgSink::open(
        with_spec(&cluster, "bbbb", Migration::Refuse),
        counts_table(),
    )
    .await?;
    assert_eq!(resume.checkpoint, None, "the old state did not come back");
    assert_eq!(
        resume.positions[&("orders".to_owned(), 0)],
        41,
        "nor its positions"
    );
    sink.close().await;
    old.close().await;
    Ok(())
}
