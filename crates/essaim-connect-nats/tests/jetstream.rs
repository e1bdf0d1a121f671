//! Against a real nats-server started by `scripts/nats.sh` (one per test, each in its own
//! directory): at-least-once delivery through ack_wait and a restarted durable consumer,
//! back-pressure, dead letters, acknowledged publishes surviving a SIGKILL of the
//! server (the `sync_interval: always` promise), and the replay of a CSV fixture.
//!
//! The tests fail if nats-server cannot be installed, unless `ESSAIM_SKIP_NATS=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use essaim_connect_nats::broker::{self, StreamSpec};
use essaim_connect_nats::publish::Publisher;
use essaim_connect_nats::replay::{self, CsvInput, Pacing, ReplayOptions};
use essaim_connect_nats::source::{
    ConsumerSpec, Delivery, HEADER_ERROR, HEADER_SOURCE_SEQUENCE, PullSource,
};
use essaim_testkit::server;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TIMEOUT: Duration = Duration::from_secs(2);

async fn stream_with_dead_letters(
    context: &jetstream::Context,
) -> Result<jetstream::stream::Stream, Box<dyn std::error::Error>> {
    broker::ensure_stream(context, &StreamSpec::new("dead", &["dead.>"])).await?;
    Ok(broker::ensure_stream(context, &StreamSpec::new("orders", &["orders.>"])).await?)
}

async fn publish_records(context: &jetstream::Context, range: std::ops::Range<u64>) -> TestResult {
    let mut publisher = Publisher::new(context.clone(), 16)?;
    for index in range.clone() {
        publisher
            .publish("orders.in", Bytes::from(format!("record-{index}")))
            .await?;
    }
    assert_eq!(publisher.flush().await?, range.end - range.start);
    Ok(())
}

fn consumer_spec(ack_wait: Duration, max_ack_pending: u32) -> ConsumerSpec {
    ConsumerSpec {
        ack_wait,
        max_ack_pending,
        ..ConsumerSpec::new("reader", "dead.orders")
    }
}

#[tokio::test]
async fn unacked_deliveries_come_back_and_a_restarted_consumer_resumes_after_its_acks() -> TestResult
{
    let Some(server) = server::nats() else {
        return Ok(());
    };
    let started = Instant::now();
    let context = broker::connect(server.url(), TIMEOUT).await?;
    let stream = stream_with_dead_letters(&context).await?;
    publish_records(&context, 0..20).await?;

    let ack_wait = Duration::from_millis(800);
    let source = PullSource::ensure(context.clone(), &stream, consumer_spec(ack_wait, 100)).await?;
    let first = source.fetch(20, TIMEOUT).await?;
    let positions: Vec<u64> = first.iter().map(|delivery| delivery.position).collect();
    assert_eq!(
        positions,
        (1..=20).collect::<Vec<u64>>(),
        "positions are stream sequences"
    );
    assert!(first.iter().all(|delivery| !delivery.is_redelivery()));
    assert_eq!(first[3].payload, Bytes::from("record-3"));
    // Ack the even positions; the odd ones are "lost" by a crashed sink.
    let mut acked = BTreeSet::new();
    for delivery in first {
        if delivery.position % 2 == 0 {
            acked.insert(delivery.position);
            delivery.ack().await?;
        }
    }
    source.flush().await?;

    // After ack_wait, exactly the unacked half is delivered again.
    let second = fetch_at_least(&source, 10, Duration::from_secs(5)).await?;
    let redelivered: BTreeSet<u64> = second.iter().map(|delivery| delivery.position).collect();
    assert_eq!(
        redelivered,
        (1..=20).filter(|position| position % 2 == 1).collect()
    );
    assert!(second.iter().all(|delivery| delivery.delivery_count == 2));
    // Ack 5 of them and drop the source, as a task that restarts.
    for delivery in second {
        if delivery.position <= 10 {
            acked.insert(delivery.position);
            delivery.ack().await?;
        }
    }
    source.flush().await?;
    // Acks are not confirmed: the server counts them a moment later.
    let lag = poll_lag_until_ack_pending(&source, 5).await?;
    assert_eq!((lag.pending, lag.ack_pending), (0, 5), "{lag:?}");
    drop(source);
    drop(context);

    // Meanwhile 5 more records arrive. A new connection, the same durable name.
    let context = broker::connect(server.url(), TIMEOUT).await?;
    publish_records(&context, 20..25).await?;
    let stream = context.get_stream("orders").await?;
    let source = PullSource::ensure(context.clone(), &stream, consumer_spec(ack_wait, 100)).await?;
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.len() < 25 && Instant::now() < deadline {
        for delivery in source.fetch(25, Duration::from_millis(300)).await? {
            assert!(
                !acked.contains(&delivery.position),
                "position {} came back after its ack",
                delivery.position
            );
            seen.insert(delivery.position, delivery.delivery_count);
            acked.insert(delivery.position);
            delivery.ack().await?;
        }
    }
    source.flush().await?;
    assert_eq!(acked, (1..=25).collect(), "every record is delivered");
    // The five dropped ones come back a third time; the new ones are new.
    for position in [11, 13, 15, 17, 19] {
        assert_eq!(
            seen.get(&position),
            Some(&3),
            "position {position}: {seen:?}"
        );
    }
    for position in 21..=25 {
        assert_eq!(
            seen.get(&position),
            Some(&1),
            "position {position}: {seen:?}"
        );
    }
    let lag = poll_lag_until_ack_pending(&source, 0).await?;
    assert_eq!((lag.pending, lag.ack_pending), (0, 0));
    eprintln!("at-least-once test took {:?}", started.elapsed());
    Ok(())
}

/// Fetches until `count` deliveries arrived or `within` passed.
async fn fetch_at_least(
    source: &PullSource,
    count: usize,
    within: Duration,
) -> Result<Vec<Delivery>, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + within;
    let mut deliveries = Vec::new();
    while deliveries.len() < count && Instant::now() < deadline {
        deliveries.extend(
            source
                .fetch(count - deliveries.len(), Duration::from_millis(300))
                .await?,
        );
    }
    Ok(deliveries)
}

/// Reads the lag until `ack_pending` deliveries wait for an ack, or 5 s passed.
async fn poll_lag_until_ack_pending(
    source: &PullSource,
    ack_pending: u64,
) -> Result<essaim_connect_nats::source::ConsumerLag, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lag = source.lag().await?;
        if lag.ack_pending == ack_pending || Instant::now() > deadline {
            return Ok(lag);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn max_ack_pending_bounds_the_unacknowledged_deliveries() -> TestResult {
    let Some(server) = server::nats() else {
        return Ok(());
    };
    let context = broker::connect(server.url(), TIMEOUT).await?;
    let stream = stream_with_dead_letters(&context).await?;
    publish_records(&context, 0..20).await?;
    let source = PullSource::ensure(
        context.clone(),
        &stream,
        consumer_spec(Duration::from_secs(30), 5),
    )
    .await?;
    let first = source.fetch(20, Duration::from_millis(500)).await?;
    assert_eq!(
        first.len(),
        5,
        "no more than max_ack_pending are handed out"
    );
    let lag = source.lag().await?;
    assert_eq!((lag.pending, lag.ack_pending), (15, 5), "{lag:?}");
    for delivery in first {
        delivery.ack().await?;
    }
    source.flush().await?;
    let second = fetch_at_least(&source, 5, Duration::from_secs(3)).await?;
    let positions: Vec<u64> = second.iter().map(|delivery| delivery.position).collect();
    assert_eq!(
        positions,
        vec![6, 7, 8, 9, 10],
        "acks make room for the next ones"
    );
    Ok(())
}

#[tokio::test]
async fn a_rejected_message_lands_on_the_dead_letter_subject_with_its_error() -> TestResult {
    let Some(server) = server::nats() else {
        return Ok(());
    };
    let context = broker::connect(server.url(), TIMEOUT).await?;
    let stream = stream_with_dead_letters(&context).await?;
    publish_records(&context, 0..3).await?;
    let source = PullSource::ensure(
        context.clone(),
        &stream,
        consumer_spec(Duration::from_millis(500), 100),
    )
    .await?;
    let mut deliveries = fetch_at_least(&source, 3, TIMEOUT).await?;
    let poison = deliveries.remove(1);
    assert_eq!(poison.payload, Bytes::from("record-1"));
    let dead_sequence = source
        .dead_letter(poison, "line 2: column `delay`\nis not an integer")
        .await?;
    for delivery in deliveries {
        delivery.ack().await?;
    }
    source.flush().await?;

    let dead = context.get_stream("dead").await?;
    let letter = dead.get_raw_message(dead_sequence).await?;
    assert_eq!(letter.subject.as_str(), "dead.orders");
    assert_eq!(letter.payload, Bytes::from("record-1"));
    let header = |name: &str| {
        letter
            .headers
            .get(name)
            .map(|value| value.as_str().to_owned())
    };
    assert_eq!(
        header(HEADER_ERROR).as_deref(),
        Some("line 2: column `delay` is not an integer")
    );
    assert_eq!(header(HEADER_SOURCE_SEQUENCE).as_deref(), Some("2"));
    // A consumer of the dead letters sees the same headers.
    let dead_reader = PullSource::ensure(
        context.clone(),
        &dead,
        ConsumerSpec::new("dead-reader", "dead.of-dead"),
    )
    .await?;
    let letters = fetch_at_least(&dead_reader, 1, TIMEOUT).await?;
    let error_header = letters[0]
        .headers
        .as_ref()
        .and_then(|headers| headers.get(HEADER_ERROR))
        .map(|value| value.as_str());
    assert_eq!(
        error_header,
        Some("line 2: column `delay` is not an integer")
    );
    // The poison message was acked: past ack_wait, nothing comes back.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        source
            .fetch(10, Duration::from_millis(300))
            .await?
            .is_empty()
    );
    let lag = poll_lag_until_ack_pending(&source, 0).await?;
    assert_eq!((lag.pending, lag.ack_pending), (0, 0));
    Ok(())
}

#[tokio::test]
async fn acknowledged_publishes_survive_a_sigkill_of_the_server() -> TestResult {
    let Some(server) = server::nats() else {
        return Ok(());
    };
    let started = Instant::now();
    let context = broker::connect(server.url(), TIMEOUT).await?;
    broker::ensure_stream(&context, &StreamSpec::new("orders", &["orders.>"])).await?;
    let confirmed_so_far = Arc::new(AtomicU64::new(0));
    let producer = tokio::spawn({
        let confirmed_so_far = Arc::clone(&confirmed_so_far);
        let mut publisher = Publisher::new(context.clone(), 64)?;
        async move {
            for index in 0..1_000_000_u64 {
                let sent = publisher
                    .publish("orders.in", Bytes::from(format!("record-{index}")))
                    .await;
                confirmed_so_far.store(publisher.confirmed(), Ordering::SeqCst);
                if sent.is_err() {
                    break;
                }
            }
            publisher.confirmed()
        }
    });
    // Mid-stream: once some publishes are confirmed and more are in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while confirmed_so_far.load(Ordering::SeqCst) < 300 {
        assert!(
            Instant::now() < deadline,
            "publishes are not being confirmed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill_9();
    let confirmed = tokio::time::timeout(Duration::from_secs(15), producer).await??;
    eprintln!("{confirmed} publishes confirmed before the SIGKILL");
    assert!(confirmed >= 300);
    drop(context);

    server.start_again();
    let context = broker::connect(server.url(), TIMEOUT).await?;
    let stream = context.get_stream("orders").await?;
    let source = PullSource::ensure(
        context.clone(),
        &stream,
        consumer_spec(Duration::from_secs(30), 10_000),
    )
    .await?;
    let mut stored = BTreeSet::new();
    loop {
        let batch = source.fetch(1_000, Duration::from_millis(300)).await?;
        if batch.is_empty() {
            break;
        }
        for delivery in batch {
            stored.insert(String::from_utf8(delivery.payload.to_vec())?);
            delivery.ack().await?;
        }
    }
    let missing: Vec<u64> = (0..confirmed)
        .filter(|index| !stored.contains(&format!("record-{index}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {confirmed} acknowledged publishes lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    eprintln!("sigkill test took {:?}", started.elapsed());
    Ok(())
}

fn flights_sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../essaim-stream/tests/data/flights-sample.csv")
}

/// Reads every message of `stream` in order, through a fresh durable consumer.
async fn read_all(
    context: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    durable: &str,
) -> Result<Vec<Bytes>, Box<dyn std::error::Error>> {
    let spec = ConsumerSpec {
        durable: durable.to_owned(),
        max_ack_pending: 10_000,
        ..ConsumerSpec::new(durable, "dead.replay")
    };
    let source = PullSource::ensure(context.clone(), stream, spec).await?;
    let mut payloads = Vec::new();
    loop {
        let batch = source.fetch(1_000, Duration::from_millis(300)).await?;
        if batch.is_empty() {
            return Ok(payloads);
        }
        for delivery in batch {
            payloads.push(delivery.payload.clone());
            delivery.ack().await?;
        }
    }
}

#[tokio::test]
async fn replay_publishes_exactly_the_data_lines_in_order_and_paces_them() -> TestResult {
    let Some(server) = server::nats() else {
        return Ok(());
    };
    let context = broker::connect(server.url(), TIMEOUT).await?;
    let stream =
        broker::ensure_stream(&context, &StreamSpec::new("flights", &["flights.>"])).await?;
    let text = std::fs::read_to_string(flights_sample())?;
    let data_lines: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|line| !line.is_empty())
        .collect();

    // As fast as possible: the whole file, in order, nothing else.
    let options = ReplayOptions {
        subject: "flights.all".to_owned(),
        time_column: Some("date".to_owned()),
        pacing: Pacing::AsFastAsPossible,
        limit: None,
        partitions: None,
        end_of_stream: false,
    };
    let mut publisher = Publisher::new(context.clone(), 64)?;
    let input = CsvInput::open(&flights_sample()).await?;
    let summary = replay::replay(input, &mut publisher, &options, &mut |_| {}).await?;
    assert_eq!(summary.lines, data_lines.len() as u64);
    // The fixture's line with a missing field has no readable time, and is published
    // all the same.
    assert_eq!(summary.untimed_lines, 1);
    let published = read_all(&context, &stream, "all").await?;
    let expected: Vec<Bytes> = data_lines
        .iter()
        .map(|line| Bytes::from(line.to_string()))
        .collect();
    assert_eq!(published, expected);

    // Paced: the first 8 lines span `span` of event time; at span/1s speed-up they
    // take about a second. Read from a .zst copy, through `zstd -dc`.
    let dir = tempfile::tempdir()?;
    let compressed = dir.path().join("flights-sample.csv.zst");
    let status = Command::new("zstd")
        .arg("-q")
        .arg(flights_sample())
        .arg("-o")
        .arg(&compressed)
        .status()?;
    assert!(status.success(), "zstd compresses the fixture");
    let first_time = essaim_stream::schema::parse_timestamp(&data_lines[0][..26]).ok_or("time")?;
    let eighth_time = essaim_stream::schema::parse_timestamp(&data_lines[7][..26]).ok_or("time")?;
    let span_seconds = (eighth_time - first_time) as f64 / 1000.0;
    let options = ReplayOptions {
        subject: "flights.paced".to_owned(),
        time_column: Some("date".to_owned()),
        pacing: Pacing::Speedup(span_seconds / 1.0),
        limit: Some(8),
        partitions: None,
        end_of_stream: false,
    };
    let input = CsvInput::open(&compressed).await?;
    let started = Instant::now();
    let summary = replay::replay(input, &mut publisher, &options, &mut |_| {}).await?;
    let elapsed = started.elapsed();
    assert_eq!(summary.lines, 8);
    assert!(
        elapsed >= Duration::from_millis(950),
        "paced replay took only {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "paced replay took {elapsed:?}"
    );
    let all = read_all(&context, &stream, "paced").await?;
    assert_eq!(
        &all[expected.len()..],
        &expected[..8],
        "the paced lines, in order"
    );
    Ok(())
}

/// Reads a partition reader until `count` messages came, returning their positions.
async fn read_positions(
    reader: &mut essaim_connect_nats::partition::NatsPartitionReader,
    count: usize,
) -> Result<Vec<u64>, Box<dyn std::error::Error>> {
    use essaim_connect::PartitionReader as _;
    let mut positions = Vec::new();
    for _ in 0..50 {
        if positions.len() >= count {
            break;
        }
        for message in reader.fetch(7, Duration::from_millis(200)).await? {
            positions.push(message.position);
        }
    }
    Ok(positions)
}

/// Regression: two owners of one partition (a task and the task replacing it) once
/// shared a durable consumer, so each got part of the partition and committed
/// positions past records it never saw. Each owner now has its own consumer, starts
/// exactly after the position it resumes from, and reads everything after it in order.
#[tokio::test]
async fn two_owners_of_a_partition_each_read_all_of_it_in_order() -> TestResult {
    use essaim_connect::PartitionReader as _;
    use essaim_connect_nats::partition::{NatsPartitionReader, PartitionSpec};
    let Some(server) = server::nats() else {
        return Ok(());
    };
    let context = broker::connect(server.url(), TIMEOUT).await?;
    stream_with_dead_letters(&context).await?;
    publish_records(&context, 0..40).await?;
    let spec = |owner: &str| PartitionSpec::new("orders", "orders.in", owner, 0);
    let mut old = NatsPartitionReader::open(&context, spec("unit_0_old"), None).await?;
    let first = read_positions(&mut old, 10).await?;
    old.commit(10).await?;
    // The new owner starts after what the old one committed, while the old one reads on.
    let mut new = NatsPartitionReader::open(&context, spec("unit_0_new"), Some(10)).await?;
    let mut old_rest = read_positions(&mut old, 40 - first.len()).await?;
    let new_all = read_positions(&mut new, 30).await?;
    let mut old_all = first;
    old_all.append(&mut old_rest);
    assert_eq!(
        old_all,
        (1..=40).collect::<Vec<u64>>(),
        "the old owner sees everything"
    );
    assert_eq!(
        new_all,
        (11..=40).collect::<Vec<u64>>(),
        "the new owner sees everything after 10"
    );
    // Reopening one's own consumer (a restart within one attempt) starts over exactly.
    let mut reopened = NatsPartitionReader::open(&context, spec("unit_0_new"), Some(35)).await?;
    assert_eq!(
        read_positions(&mut reopened, 5).await?,
        (36..=40).collect::<Vec<u64>>()
    );
    Ok(())
}
