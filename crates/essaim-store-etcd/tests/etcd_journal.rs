//! The election and the journal against a real etcd (`scripts/etcd.sh`; skipped with
//! `ESSAIM_SKIP_ETCD=1`): what is appended comes back after a takeover, a deposed
//! leader's writes are refused by the store, large batches and snapshots are cut to
//! etcd's limits, an interrupted write leaves nothing behind, and clusters sharing one
//! etcd stay apart.

use essaim_core::{AttemptId, CommittedResult, JobId, JournalEvent, TaskId, TaskOutput, WorkerId};
use essaim_etcd::{Etcd, Txn};
use essaim_store::{Journal, ResultStore, StoreError};
use essaim_store_etcd::{EtcdJournal, EtcdResults, Layout, Leadership};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(2);

fn success(job: u64, task: u32, output: &[u8]) -> JournalEvent {
    JournalEvent::TaskSucceeded {
        result: CommittedResult {
            task: TaskId::new(JobId(job), task),
            attempt: AttemptId(7),
            worker: WorkerId(3),
            duration_ms: 12,
            output: TaskOutput {
                inline: output.to_vec(),
                file: None,
                counters: Default::default(),
            },
        },
        at: 99,
    }
}

async fn client(url: &str) -> Etcd {
    Etcd::connect(&[url.to_string()], Duration::from_secs(5))
        .await
        .expect("etcd answers")
}

async fn lead(etcd: &Etcd, layout: &Layout, url: &str) -> Leadership {
    Leadership::try_acquire(etcd, layout, url, TTL)
        .await
        .expect("etcd answers")
        .expect("nobody else leads")
}

/// Runs a blocking journal call off the runtime's worker threads.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(call).await.expect("no panic")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_each_election_has_a_larger_fence() {
    let Some(server) = essaim_testkit::server::etcd() else {
        return;
    };
    let etcd = client(server.url()).await;
    let layout = Layout::new("election").unwrap();
    let first = lead(&etcd, &layout, "http://a:7070").await;
    let refused = Leadership::try_acquire(&etcd, &layout, "http://b:7070", TTL)
        .await
        .unwrap();
    let leader = refused
        .expect_err("a second leader is refused")
        .expect("the leader is named");
    assert_eq!(leader.url, "http://a:7070");
    assert_eq!(leader.fence, first.fence());
    let first_fence = first.fence();
    first.resign().await.unwrap();
    let second = lead(&etcd, &layout, "http://b:7070").await;
    assert!(second.fence() > first_fence);
    assert_eq!(
        Leadership::current(&etcd, &layout)
            .await
            .unwrap()
            .map(|leader| leader.url),
        Some("http://b:7070".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_recovers_every_appended_event_and_the_epoch_grows() {
    let Some(server) = essaim_testkit::server::etcd() else {
        return;
    };
    let etcd = client(server.url()).await;
    let layout = Layout::new("recover").unwrap();
    let first = lead(&etcd, &layout, "http://a:7070").await;
    let (mut journal, recovered) = EtcdJournal::open(etcd.clone(), layout.clone(), first.fence())
        .await
        .unwrap();
    assert_eq!(recovered.epoch, 1);
    assert!(recovered.events.is_empty());
    let written = vec![success(1, 0, b"hello"), success(1, 1, b"world")];
    let batch = written.clone();
    let mut journal = blocking(move || {
        journal.append(&batch).unwrap();
        journal
            .append(&[JournalEvent::JobIdsReserved { next_job: 2 }])
            .unwrap();
        journal
    })
    .await;
    assert_eq!(journal.len(), 3);
    first.resign().await.unwrap();

    let second = lead(&etcd, &layout, "http://b:7070").await;
    let (_, recovered) = EtcdJournal::open(etcd.clone(), layout.clone(), second.fence())
        .await
        .unwrap();
    assert_eq!(recovered.epoch, 2);
    assert_eq!(recovered.events.len(), 3);
    let JournalEvent::TaskSucceeded { result, .. } = &recovered.events[1] else {
        panic!("expected a commit, got {:?}", recovered.events[1]);
    };
    assert!(
        result.output.inline.is_empty(),
        "the log keeps no output bytes"
    );
    let results = EtcdResults::new(etcd.clone(), layout.clone());
    let found = blocking(move || results.results(JobId(1), 1, 10).unwrap()).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].output.inline, b"world");
    // The deposed leader's journal object still exists: its write fails at the store.
    let refused = blocking(move || journal.append(&[success(1, 2, b"late")])).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_expired_cannot_write_after_another_is_elected() {
    let Some(server) = essaim_testkit::server::etcd() else {
        return;
    };
    let etcd = client(server.url()).await;
    let layout = Layout::new("fenced").unwrap();
    let old = lead(&etcd, &layout, "http://old:7070").await;
    let (mut old_journal, _) = EtcdJournal::open(etcd.clone(), layout.clone(), old.fence())
        .await
        .unwrap();
    // The old leader "pauses": its keep-alive stops (dropping a leadership does not
    // resign) and its lease expires.
    let fence = old.fence();
    drop(old);
    let new = Leadership::campaign(
        &etcd,
        &layout,
        "http://new:7070",
        TTL,
        Duration::from_millis(100),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap()
    .expect("elected once the old lease expires");
    assert!(new.fence() > fence);
    let (mut new_journal, _) = EtcdJournal::open(etcd.clone(), layout.clone(), new.fence())
        .await
        .unwrap();
    let (refused, accepted) = blocking(move || {
        let refused = old_journal.append(&[success(5, 0, b"stale")]);
        let accepted = new_journal.append(&[success(6, 0, b"fresh")]);
        (refused, accepted)
    })
    .await;
    let Err(StoreError::Fenced { detail }) = refused else {
        panic!("the old leader's write must be refused, got {refused:?}");
    };
    assert!(detail.contains("http://new:7070"), "{detail}");
    accepted.unwrap();
    let results = EtcdResults::new(etcd.clone(), layout.clone());
    let stale = blocking(move || results.results(JobId(5), 0, 10).unwrap()).await;
    assert!(stale.is_empty(), "nothing of a refused write is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_snapshots_larger_than_etcd_requests_round_trip() {
    let Some(server) = essaim_testkit::server::etcd() else {
        return;
    };
    let etcd = client(server.url()).await;
    let layout = Layout::new("large").unwrap();
    let leader = lead(&etcd, &layout, "http://a:7070").await;
    let (mut journal, _) = EtcdJournal::open(etcd.clone(), layout.clone(), leader.fence())
        .await
        .unwrap();
    // 200 results of 60 KiB (12 MB, over 100 operations) and a 6 MB message (more than
    // one 4 MiB gRPC answer of pieces).
    let mut batch: Vec<JournalEvent> = (0..200)
        .map(|task| success(1, task, &vec![task as u8; 60 << 10]))
        .collect();
    batch.push(JournalEvent::JobCancelled {
        job: JobId(1),
        reason: "x".repeat(6 << 20),
        at: 5,
    });
    let expected = batch.len();
    let snapshot = vec![
        JournalEvent::JobIdsReserved { next_job: 9 },
        JournalEvent::JobCancelled {
            job: JobId(2),
            reason: "y".repeat(2 << 20),
            at: 6,
        },
    ];
    let kept = snapshot.clone();
    blocking(move || {
        journal.append(&batch).unwrap();
        assert_eq!(journal.read_events().unwrap().len(), expected);
        journal.compact(&kept, &[JobId(1)]).unwrap();
        journal.append(&[success(3, 0, b"after")]).unwrap();
    })
    .await;
    leader.resign().await.unwrap();
    let next = lead(&etcd, &layout, "http://b:7070").await;
    let (_, recovered) = EtcdJournal::open(etcd.clone(), layout.clone(), next.fence())
        .await
        .unwrap();
    assert_eq!(recovered.events.len(), 3);
    assert_eq!(recovered.events[..2], snapshot[..]);
    let results = EtcdResults::new(etcd.clone(), layout.clone());
    let forgotten = blocking(move || results.results(JobId(1), 0, 1000).unwrap()).await;
    assert!(
        forgotten.is_empty(),
        "the results of forgotten jobs are deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_interrupted_write_left_is_deleted_when_the_next_leader_opens() {
    let Some(server) = essaim_testkit::server::etcd() else {
        return;
    };
    let etcd = client(server.url()).await;
    let layout = Layout::new("orphans").unwrap();
    let leader = lead(&etcd, &layout, "http://a:7070").await;
    let (mut journal, _) = EtcdJournal::open(etcd.clone(), layout.clone(), leader.fence())
        .await
        .unwrap();
    blocking(move || journal.append(&[success(1, 0, b"committed")]).unwrap()).await;
    // A leader died after writing results and a piece of batch 7, before its log entry.
    etcd.txn(
        Txn::new()
            .put(
                &layout.result_group(1, 0, 7, 0),
                b"never committed".to_vec(),
                0,
            )
            .put(&layout.part(7, 0), b"piece".to_vec(), 0),
    )
    .await
    .unwrap();
    leader.resign().await.unwrap();
    let next = lead(&etcd, &layout, "http://b:7070").await;
    let (_, recovered) = EtcdJournal::open(etcd.clone(), layout.clone(), next.fence())
        .await
        .unwrap();
    assert_eq!(recovered.events.len(), 1);
    assert!(etcd.get(&layout.part(7, 0)).await.unwrap().0.is_none());
    assert!(
        etcd.get(&layout.result_group(1, 0, 7, 0))
            .await
            .unwrap()
            .0
            .is_none()
    );
    let results = EtcdResults::new(etcd.clone(), layout.clone());
    let kept = blocking(move || results.results(JobId(1), 0, 10).unwrap()).await;
    assert_eq!(kept.len(), 1, "the committed result stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_sharing_one_etcd_stay_apart_and_a_foreign_format_is_refused() {
    let Some(server) = essaim_testkit::server::etcd() else {
        return;
    };
    let etcd = client(server.url()).await;
    let blue = Layout::new("blue").unwrap();
    let green = Layout::new("green").unwrap();
    let blue_leader = lead(&etcd, &blue, "http://blue:7070").await;
    let green_leader = lead(&etcd, &green, "http://green:7070").await;
    let (mut journal, _) = EtcdJournal::open(etcd.clone(), blue.clone(), blue_leader.fence())
        .await
        .unwrap();
    blocking(move || journal.append(&[success(1, 0, b"blue")]).unwrap()).await;
    let (_, recovered) = EtcdJournal::open(etcd.clone(), green.clone(), green_leader.fence())
        .await
        .unwrap();
    assert!(recovered.events.is_empty(), "green sees nothing of blue");

    let other = Layout::new("future").unwrap();
    etcd.txn(Txn::new().put(&other.format(), b"999".to_vec(), 0))
        .await
        .unwrap();
    let leader = lead(&etcd, &other, "http://c:7070").await;
    let refused = EtcdJournal::open(etcd.clone(), other.clone(), leader.fence()).await;
    let Err(StoreError::Version { found, .. }) = refused else {
        panic!("a journal of another format must be refused");
    };
    assert_eq!(found, 999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_etcd_is_a_clear_error_and_a_bad_url_is_refused() {
    let unreachable =
        Etcd::connect(&["http://127.0.0.1:1".to_string()], Duration::from_secs(1)).await;
    let error = unreachable
        .expect_err("nothing listens on port 1")
        .to_string();
    assert!(error.contains("127.0.0.1:1"), "{error}");
    let invalid = Etcd::new(&["etcd.example:2379".to_string()], Duration::from_secs(1));
    assert!(invalid.is_err());
    assert!(Etcd::new(&[], Duration::from_secs(1)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_follows_the_journal_and_takes_over_from_where_it_read() {
    let Some(server) = essaim_testkit::server::etcd() else {
        return;
    };
    let etcd = client(server.url()).await;
    let layout = Layout::new("follow").unwrap();
    let leader = lead(&etcd, &layout, "http://a:7070").await;
    let (mut journal, _) = EtcdJournal::open(etcd.clone(), layout.clone(), leader.fence())
        .await
        .unwrap();
    let mut follower = essaim_store_etcd::JournalFollower::new(etcd.clone(), layout.clone());
    journal = blocking(move || {
        journal
            .append(&[success(1, 0, b"a"), success(1, 1, b"b")])
            .unwrap();
        journal
    })
    .await;
    assert_eq!(follower.catch_up().await.unwrap(), 1);
    assert_eq!(follower.event_count(), 2);
    assert_eq!(
        essaim_store_etcd::leader_position(&etcd, &layout)
            .await
            .unwrap(),
        follower.position()
    );
    journal = blocking(move || {
        journal.append(&[success(1, 2, b"c")]).unwrap();
        journal
            .compact(&[JournalEvent::JobIdsReserved { next_job: 2 }], &[])
            .unwrap();
        journal.append(&[success(1, 3, b"d")]).unwrap();
        journal
    })
    .await;
    // A compaction since: the follower reads the snapshot and what follows it.
    follower.catch_up().await.unwrap();
    assert_eq!(follower.event_count(), 2);
    blocking(move || journal.append(&[success(1, 4, b"e")]).unwrap()).await;
    assert_eq!(follower.catch_up().await.unwrap(), 1);
    leader.resign().await.unwrap();
    let next = lead(&etcd, &layout, "http://b:7070").await;
    let (_, from_follower) = EtcdJournal::open_following(follower, next.fence())
        .await
        .unwrap();
    let (_, from_scratch) = EtcdJournal::open(etcd.clone(), layout.clone(), next.fence())
        .await
        .unwrap();
    assert_eq!(from_follower.events, from_scratch.events);
    assert_eq!(from_follower.events.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_grouped_by_block_are_read_in_task_order_page_by_page() {
    let Some(server) = essaim_testkit::server::etcd() else {
        return;
    };
    let etcd = client(server.url()).await;
    let layout = Layout::new("grouped").unwrap();
    let leader = lead(&etcd, &layout, "http://a:7070").await;
    let (mut journal, _) = EtcdJournal::open(etcd.clone(), layout.clone(), leader.fence())
        .await
        .unwrap();
    // 300 tasks committed out of order over 7 batches; tasks 130..140 carry 60 KiB
    // outputs, so that their block is written in several values.
    let tasks = 300u32;
    let mut order: Vec<u32> = (0..tasks).collect();
    let mut rng = essaim_testkit::SeededRng::new(11);
    for index in (1..order.len()).rev() {
        order.swap(index, rng.below(index as u64 + 1) as usize);
    }
    let output = |task: u32| -> Vec<u8> {
        let size = if (130..140).contains(&task) {
            60 << 10
        } else {
            8
        };
        format!("{task:08}").into_bytes().repeat(size / 8)
    };
    let batches: Vec<Vec<JournalEvent>> = order
        .chunks(43)
        .map(|chunk| chunk.iter().map(|&t| success(4, t, &output(t))).collect())
        .collect();
    blocking(move || {
        for batch in &batches {
            journal.append(batch).unwrap();
        }
    })
    .await;
    let results = EtcdResults::new(etcd.clone(), layout.clone());
    let pages = blocking(move || {
        let mut read = Vec::new();
        let mut from = 0;
        loop {
            let page = results.results(JobId(4), from, 37).unwrap();
            assert!(page.len() <= 37);
            let Some(last) = page.last() else {
                return read;
            };
            from = last.task.index + 1;
            read.extend(page);
        }
    })
    .await;
    let indexes: Vec<u32> = pages.iter().map(|r| r.task.index).collect();
    assert_eq!(indexes, (0..tasks).collect::<Vec<_>>());
    for result in &pages {
        assert_eq!(result.output.inline, output(result.task.index));
    }
}
