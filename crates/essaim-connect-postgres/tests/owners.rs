//! Two owners of one unit for a moment (a unit moving to another worker while its old
//! owner has not stopped yet), against a real PostgreSQL run by `scripts/postgres.sh`:
//! the owner that opened the unit last is the only one whose batches commit, so the
//! positions and the checkpoint stored always come from one owner's state.
//!
//! If PostgreSQL cannot be installed or started the tests fail and say so, unless
//! `ESSAIM_SKIP_POSTGRES=1`.
use anyhow::{Result, bail};
use essaim_connect_postgres::{PgSink, PgSinkError, SinkBatch, SourcePosition};

mod common;
use common::{Cluster, counts_table};

/// A batch of a unit reading two sources, `a` and `b`, with its checkpoint.
fn batch(a: i64, b: i64, checkpoint: &str) -> SinkBatch {
    let position = |source: &str, position| SourcePosition {
        source: source.into(),
        partition: 0,
        position,
    };
    SinkBatch {
        positions: vec![position("a", a), position("b", b)],
        checkpoint: Some(checkpoint.as_bytes().to_vec()),
        ..SinkBatch::default()
    }
}

async fn open(cluster: &Cluster, owner: u64) -> Result<(PgSink, (i64, i64, String))> {
    let mut config = cluster.config("flights/keyed/3");
    config.owner = Some(owner);
    let (sink, resume) = PgSink::open(config, counts_table()).await?;
    let position = |source: &str| resume.positions.get(&(source.to_owned(), 0)).copied();
    let checkpoint = String::from_utf8(resume.checkpoint.clone().unwrap_or_default())?;
    Ok((
        sink,
        (
            position("a").unwrap_or(0),
            position("b").unwrap_or(0),
            checkpoint,
        ),
    ))
}

#[tokio::test]
async fn only_the_last_owner_to_open_a_unit_commits_it() -> Result<()> {
    let Some(cluster) = Cluster::start() else {
        return Ok(());
    };
    let (mut old, _) = open(&cluster, 7).await?;
    old.write_batch(&batch(10, 10, "old@10,10")).await?;

    let (mut new, resumed) = open(&cluster, 8).await?;
    assert_eq!(resumed, (10, 10, "old@10,10".to_owned()));

    // The old owner, not stopped yet, reads on and commits: refused, or its positions
    // would outrun the new owner's checkpoint.
    match old.write_batch(&batch(20, 20, "old@20,20")).await {
        Err(error @ PgSinkError::Superseded { .. }) => {
            assert!(!error.is_transient() && error.is_superseded(), "{error}");
            assert!(error.to_string().contains("taken over"), "{error}");
        }
        other => bail!("the old owner's batch was not refused: {other:?}"),
    }
    // The new owner went further in `a` than the old one, less far in `b`.
    new.write_batch(&batch(25, 12, "new@25,12")).await?;

    // What is stored is one owner's state: positions and checkpoint agree.
    let (mut again, resumed) = open(&cluster, 7).await?;
    assert_eq!(resumed, (25, 12, "new@25,12".to_owned()));

    // The last to open wins, whatever its attempt id: the new owner is refused now.
    let refused = new.write_batch(&batch(30, 13, "new@30,13")).await;
    assert!(
        matches!(refused, Err(PgSinkError::Superseded { .. })),
        "{refused:?}"
    );
    again.write_batch(&batch(26, 13, "again@26,13")).await?;
    let (_, resumed) = open(&cluster, 9).await?;
    assert_eq!(resumed, (26, 13, "again@26,13".to_owned()));
    Ok(())
}
