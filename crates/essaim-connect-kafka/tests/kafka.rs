//! Against a real Kafka-protocol broker (Tansu) started by `scripts/kafka.sh`, one per
//! test, each in its own directory; or against the broker at `$ESSAIM_KAFKA_BOOTSTRAP`
//! when set (then the test that restarts the broker is skipped). Round trips in order
//! over several partitions, resuming after a position, end-of-stream markers, commits
//! and lag, the keyed writer, a broker restart mid-stream, and clear errors for a bad
//! configuration.
//!
//! The tests fail if the broker cannot be installed or started, unless
//! `ESSAIM_SKIP_KAFKA=1`. The first run builds Tansu (about 10 minutes, then cached
//! under target/kafka-tools/).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use essaim_connect::{ConnectorError, MessageWriter, OutMessage, PartitionReader, backoff};
use essaim_connect_kafka::{
    GroupOffsets, KafkaConfig, KafkaPartitionReader, KafkaRecord, KafkaWriter, ReaderOptions,
    WriterOptions, ensure_topic, partition_count, partition_for_key, publish_lines, revision_of,
};
use essaim_testkit::server::{self, ScriptServer};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_millis(300);

/// Returns the client configuration of a test's broker: short request timeouts, so
/// that a stopped broker fails calls quickly.
fn config(broker: &ScriptServer) -> KafkaConfig {
    KafkaConfig::new(broker.url()).with_request_timeout(Duration::from_secs(3))
}

fn topic(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Reads `count` records from `reader`, failing after 20 s.
async fn read_exactly(reader: &mut KafkaPartitionReader, count: usize) -> Vec<KafkaRecord> {
    let started = Instant::now();
    let mut records = Vec::new();
    while records.len() < count {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {} of {count} records of {}/{} arrived",
            records.len(),
            reader.topic(),
            reader.partition()
        );
        let batch = reader
            .fetch_records(count - records.len(), WAIT)
            .await
            .expect("fetch");
        records.extend(batch);
    }
    records
}

fn payloads(records: &[KafkaRecord]) -> Vec<String> {
    records
        .iter()
        .map(|record| String::from_utf8_lossy(&record.payload).into_owned())
        .collect()
}

/// Calls `call` until it succeeds, retrying transient errors with backoff for up to
/// 60 s; a permanent error fails at once. Returns the value and how many transient
/// errors were retried.
async fn retried<T>(
    what: &str,
    mut call: impl AsyncFnMut() -> Result<T, ConnectorError>,
) -> (T, u32) {
    let started = Instant::now();
    let mut retries = 0;
    loop {
        match call().await {
            Ok(value) => return (value, retries),
            Err(error) => {
                assert!(error.transient, "{what}: permanent error {error}");
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{what}: still failing after 60 s: {error}"
                );
                tokio::time::sleep(backoff(
                    retries,
                    Duration::from_millis(100),
                    Duration::from_secs(2),
                ))
                .await;
                retries += 1;
            }
        }
    }
}

fn out_message(index: u64) -> OutMessage {
    OutMessage {
        key: format!("window-{}", index % 20),
        revision: i64::try_from(index).expect("small"),
        partition: 0,
        payload: Bytes::from(format!("{{\"index\":{index}}}")),
    }
}

#[tokio::test]
async fn lines_round_trip_in_order_over_several_partitions() -> TestResult {
    let Some(broker) = server::kafka() else {
        return Ok(());
    };
    let config = config(&broker);
    let topic = topic("lines");
    let lines: Vec<String> = (0..30).map(|index| format!("line-{index}")).collect();
    let published = publish_lines(&config, &topic, 3, &lines, false).await?;
    assert_eq!(published.lines, 30);
    assert_eq!(published.end_of_stream_markers, 0);
    assert_eq!(partition_count(&config, &topic).await?, Some(3));

    for partition in 0..3u32 {
        // A fetch of at most 64 bytes: the reader still delivers every record, in order.
        let options = ReaderOptions {
            max_fetch_bytes: 64,
            ..ReaderOptions::default()
        };
        let mut reader =
            KafkaPartitionReader::open(&config, &topic, partition, None, options).await?;
        let mut messages = Vec::new();
        let started = Instant::now();
        while messages.len() < 10 {
            assert!(started.elapsed() < Duration::from_secs(20), "{messages:?}");
            messages.extend(reader.fetch(4, WAIT).await?);
        }
        let expected: Vec<Bytes> = (0..10u32)
            .map(|row| Bytes::from(format!("line-{}", row * 3 + partition)))
            .collect();
        let got: Vec<Bytes> = messages.iter().map(|m| m.payload.clone()).collect();
        assert_eq!(
            got, expected,
            "partition {partition} keeps the file's order"
        );
        let positions: Vec<u64> = messages.iter().map(|m| m.position).collect();
        assert_eq!(positions, (0..10).collect::<Vec<u64>>(), "offsets, dense");
        assert!(messages.iter().all(|m| m.partition == partition));
        assert!(
            messages
                .iter()
                .all(|m| !m.end_of_stream && m.redeliveries == 0)
        );
        // Nothing more: an empty answer after the wait.
        let waited = Instant::now();
        assert!(reader.fetch(10, WAIT).await?.is_empty());
        assert!(waited.elapsed() >= WAIT, "fetch waits for new records");
        assert_eq!(reader.next_offset(), 10);
    }
    Ok(())
}

#[tokio::test]
async fn a_reader_resumed_after_a_position_delivers_exactly_what_follows() -> TestResult {
    let Some(broker) = server::kafka() else {
        return Ok(());
    };
    let config = config(&broker);
    let topic = topic("resume");
    let lines: Vec<String> = (0..20).map(|index| format!("r{index}")).collect();
    publish_lines(&config, &topic, 1, &lines, false).await?;

    let mut reader =
        KafkaPartitionReader::open(&config, &topic, 0, Some(7), ReaderOptions::default()).await?;
    assert_eq!(reader.next_offset(), 8);
    let records = read_exactly(&mut reader, 12).await;
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (8..20).collect::<Vec<u64>>()
    );
    assert_eq!(payloads(&records)[0], "r8");
    assert!(
        reader.fetch(10, WAIT).await?.is_empty(),
        "no more than asked"
    );

    // Resumed after the last record: nothing until something new is published.
    let mut tail =
        KafkaPartitionReader::open(&config, &topic, 0, Some(19), ReaderOptions::default()).await?;
    assert!(tail.fetch(10, WAIT).await?.is_empty());
    publish_lines(&config, &topic, 1, ["r20", "r21"], false).await?;
    let records = read_exactly(&mut tail, 2).await;
    assert_eq!(payloads(&records), ["r20", "r21"]);
    assert_eq!(records[0].offset, 20);

    // Resumed beyond the end: the topic cannot hold what was delivered.
    let beyond =
        KafkaPartitionReader::open(&config, &topic, 0, Some(500), ReaderOptions::default()).await;
    let error = beyond
        .err()
        .expect("a resume position beyond the end is refused");
    assert!(!error.transient, "{error}");
    Ok(())
}

#[tokio::test]
async fn end_of_stream_markers_close_every_partition() -> TestResult {
    let Some(broker) = server::kafka() else {
        return Ok(());
    };
    let config = config(&broker);
    let topic = topic("eos");
    let published = publish_lines(&config, &topic, 2, ["a", "b", "c", "d", "e"], true).await?;
    assert_eq!(published.lines, 5);
    assert_eq!(published.end_of_stream_markers, 2);
    for (partition, expected) in [(0u32, vec!["a", "c", "e"]), (1, vec!["b", "d"])] {
        let mut reader =
            KafkaPartitionReader::open(&config, &topic, partition, None, ReaderOptions::default())
                .await?;
        let mut messages = Vec::new();
        let started = Instant::now();
        while messages.len() < expected.len() + 1 {
            assert!(started.elapsed() < Duration::from_secs(20), "{messages:?}");
            messages.extend(reader.fetch(100, WAIT).await?);
        }
        let (marker, data) = messages.split_last().expect("a marker");
        assert!(marker.end_of_stream, "the last record ends the partition");
        assert!(data.iter().all(|m| !m.end_of_stream));
        let got: Vec<&[u8]> = data.iter().map(|m| &m.payload[..]).collect();
        let expected: Vec<&[u8]> = expected.iter().map(|line| line.as_bytes()).collect();
        assert_eq!(got, expected);
    }
    Ok(())
}

#[tokio::test]
async fn commits_move_the_lag_and_never_go_back() -> TestResult {
    let Some(broker) = server::kafka() else {
        return Ok(());
    };
    let config = config(&broker);
    let topic = topic("lag");
    let lines: Vec<String> = (0..10).map(|index| format!("l{index}")).collect();
    publish_lines(&config, &topic, 1, &lines, false).await?;
    let group = topic.replace("lag", "group");
    let options = ReaderOptions {
        group: Some(group.clone()),
        ..ReaderOptions::default()
    };
    let mut reader = KafkaPartitionReader::open(&config, &topic, 0, None, options.clone()).await?;
    assert_eq!(reader.lag().await?, Some(10), "nothing committed yet");
    assert_eq!(
        reader.group_offset().await?,
        None,
        "a new group has no offset"
    );

    let first = read_exactly(&mut reader, 4).await;
    assert_eq!(first.last().map(|r| r.offset), Some(3));
    reader.commit(3).await?;
    assert_eq!(reader.committed(), Some(3));
    assert_eq!(
        reader.lag().await?,
        Some(6),
        "high watermark 10 - next offset 4"
    );
    assert_eq!(
        reader.group_offset().await?,
        Some(4),
        "the group's offset at the broker is the next one to consume"
    );
    reader.commit(1).await?;
    assert_eq!(
        reader.group_offset().await?,
        Some(4),
        "commits never go back"
    );
    assert_eq!(
        reader.lag().await?,
        Some(6),
        "an older commit changes nothing"
    );
    let undelivered = reader.commit(9).await.expect_err("9 is not delivered yet");
    assert!(!undelivered.transient);

    read_exactly(&mut reader, 6).await;
    reader.commit(9).await?;
    assert_eq!(reader.lag().await?, Some(0));
    publish_lines(&config, &topic, 1, ["l10", "l11", "l12"], false).await?;
    assert_eq!(reader.lag().await?, Some(3), "new records are lag");

    // A reader resumed after a committed position starts its lag there, and another
    // reader of the group sees the group's offset the broker kept.
    let mut resumed = KafkaPartitionReader::open(&config, &topic, 0, Some(9), options).await?;
    assert_eq!(resumed.lag().await?, Some(3));
    assert_eq!(resumed.group_offset().await?, Some(10));
    let mut offsets = GroupOffsets::new(&config, &group);
    assert_eq!(offsets.fetch(&topic, 0).await?, Some(10));
    let mut other = GroupOffsets::new(&config, &format!("{group}-other"));
    assert_eq!(other.fetch(&topic, 0).await?, None, "groups are separate");
    Ok(())
}

#[tokio::test]
async fn the_writer_flushes_keyed_revisions_that_read_back() -> TestResult {
    let Some(broker) = server::kafka() else {
        return Ok(());
    };
    let config = config(&broker);
    let topic = topic("results");
    ensure_topic(&config, &topic, 4, 1).await?;
    ensure_topic(&config, &topic, 4, 1).await?; // idempotent
    let options = WriterOptions {
        max_queued_messages: 7,
    };
    let mut writer = KafkaWriter::open(&config, &topic, options).await?;
    assert_eq!(writer.partition_count(), 4);
    let messages: Vec<OutMessage> = (0..50).map(out_message).collect();
    for chunk in messages.chunks(6) {
        writer.write(chunk).await?;
        assert!(writer.queued() < 7 + 6, "bounded: {}", writer.queued());
    }
    writer.flush().await?;
    assert_eq!(writer.acknowledged(), 50);
    assert_eq!(writer.queued(), 0);

    let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut total = 0;
    for partition in 0..4u32 {
        let mut reader =
            KafkaPartitionReader::open(&config, &topic, partition, None, ReaderOptions::default())
                .await?;
        let expected = messages
            .iter()
            .filter(|m| partition_for_key(m.key.as_bytes(), 4) == partition)
            .count();
        let records = read_exactly(&mut reader, expected).await;
        assert!(reader.fetch(10, WAIT).await?.is_empty(), "nothing extra");
        for record in records {
            let key = String::from_utf8(record.key.clone().expect("a key").to_vec())?;
            assert_eq!(partition_for_key(key.as_bytes(), 4), partition, "{key}");
            let revision = revision_of(&record.headers).expect("a revision header");
            let index = u64::try_from(revision)?;
            assert_eq!(record.payload, out_message(index).payload);
            by_key.entry(key).or_default().push(revision);
            total += 1;
        }
    }
    assert_eq!(total, 50);
    assert_eq!(by_key.len(), 20);
    for (key, revisions) in by_key {
        assert!(
            revisions.windows(2).all(|pair| pair[0] < pair[1]),
            "{key}: revisions in order {revisions:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn reader_and_writer_recover_from_a_broker_restart_without_losing_anything() -> TestResult {
    let Some(broker) = server::kafka() else {
        return Ok(());
    };
    if broker.is_external() {
        eprintln!("ESSAIM_KAFKA_BOOTSTRAP names a broker this test cannot restart: skipped");
        return Ok(());
    }
    let config = config(&broker);
    let topic = topic("restart");
    ensure_topic(&config, &topic, 2, 1).await?;
    let mut writer = KafkaWriter::open(&config, &topic, WriterOptions::default()).await?;
    let options = ReaderOptions {
        group: Some(topic.replace("restart", "restart-group")),
        ..ReaderOptions::default()
    };
    let mut readers = Vec::new();
    for partition in 0..2 {
        readers.push(
            KafkaPartitionReader::open(&config, &topic, partition, None, options.clone()).await?,
        );
    }
    let first: Vec<OutMessage> = (0..100).map(out_message).collect();
    writer.write(&first).await?;
    writer.flush().await?;
    // Read a little of each partition before the broker goes away.
    let mut seen: Vec<Vec<KafkaRecord>> = Vec::new();
    for reader in &mut readers {
        let records = read_exactly(reader, 10).await;
        reader.commit(records[9].offset).await?; // a connection to the group coordinator
        seen.push(records);
    }

    let phase = Instant::now();
    broker.stop();
    let second: Vec<OutMessage> = (100..200).map(out_message).collect();
    writer.write(&second).await?; // queued: under the writer's bound
    let down = writer.flush().await.expect_err("the broker is down");
    assert!(down.transient, "a stopped broker is transient: {down}");
    // What the reader had already fetched still comes; then the broker's absence shows.
    let down = loop {
        match readers[0].fetch_records(10, WAIT).await {
            Ok(batch) => {
                assert!(!batch.is_empty(), "a fetch from a stopped broker fails");
                seen[0].extend(batch);
            }
            Err(error) => break error,
        }
    };
    assert!(down.transient, "a stopped broker is transient: {down}");
    eprintln!("the stopped broker was noticed in {:?}", phase.elapsed());

    let phase = Instant::now();
    broker.start_again();
    let ((), retries) = retried("flush", async || writer.flush().await).await;
    eprintln!(
        "flush succeeded {:?} after the restart, after {retries} transient errors",
        phase.elapsed()
    );
    assert_eq!(writer.queued(), 0);

    // Every acknowledged message is there, once or (a produce retried) more, and each
    // partition still reads in offset order with no gap in what it delivers.
    for (partition, reader) in readers.iter_mut().enumerate() {
        let partition = u32::try_from(partition)?;
        let mut records = std::mem::take(&mut seen[usize::try_from(partition)?]);
        let expected: Vec<u64> = (0..200)
            .filter(|index| partition_for_key(out_message(*index).key.as_bytes(), 2) == partition)
            .collect();
        let started = Instant::now();
        loop {
            let revisions: std::collections::BTreeSet<u64> = records
                .iter()
                .filter_map(|r| revision_of(&r.headers))
                .map(|r| u64::try_from(r).unwrap_or(u64::MAX))
                .collect();
            if expected.iter().all(|index| revisions.contains(index)) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "partition {partition}: {} of {} revisions after the restart",
                revisions.len(),
                expected.len()
            );
            let (batch, _) = retried("fetch", async || reader.fetch_records(100, WAIT).await).await;
            records.extend(batch);
        }
        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
        assert!(
            offsets.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "partition {partition}: dense offsets in order"
        );
        // A reader opened on the restarted broker after a position delivers exactly the
        // records that followed it.
        let mut resumed = KafkaPartitionReader::open(
            &config,
            &topic,
            partition,
            Some(offsets[4]),
            ReaderOptions::default(),
        )
        .await?;
        let again = read_exactly(&mut resumed, records.len() - 5).await;
        assert_eq!(again, records[5..], "partition {partition}");
        // The group's offset is stored again once the coordinator is back.
        let last = *offsets.last().expect("records");
        retried("commit", async || reader.commit(last).await).await;
        assert_eq!(reader.group_offset().await?, Some(last + 1));
    }
    Ok(())
}

#[tokio::test]
async fn acknowledged_records_survive_a_sigkill_of_the_broker() -> TestResult {
    let Some(broker) = server::kafka() else {
        return Ok(());
    };
    if broker.is_external() {
        eprintln!("ESSAIM_KAFKA_BOOTSTRAP names a broker this test cannot kill: skipped");
        return Ok(());
    }
    let config = config(&broker);
    let topic = topic("durable");
    let lines: Vec<String> = (0..300).map(|index| format!("d{index}")).collect();
    let published = publish_lines(&config, &topic, 3, &lines, true).await?;
    assert_eq!(published.lines, 300);
    broker.kill_9();
    broker.start_again();
    for partition in 0..3u32 {
        let (mut reader, _) = retried("open", async || {
            KafkaPartitionReader::open(&config, &topic, partition, None, ReaderOptions::default())
                .await
        })
        .await;
        let records = read_exactly(&mut reader, 101).await;
        let expected: Vec<String> = (0..100u32)
            .map(|row| format!("d{}", row * 3 + partition))
            .collect();
        assert_eq!(payloads(&records[..100]), expected, "partition {partition}");
        assert!(records[100].is_end_of_stream());
        assert!(reader.fetch(10, WAIT).await?.is_empty(), "nothing extra");
    }
    Ok(())
}

#[tokio::test]
async fn a_bad_configuration_is_a_clear_error() -> TestResult {
    let Some(broker) = server::kafka() else {
        return Ok(());
    };
    let config = config(&broker);
    let missing = topic("missing");

    let reader =
        KafkaPartitionReader::open(&config, &missing, 0, None, ReaderOptions::default()).await;
    let error = reader.err().expect("an unknown topic");
    assert!(!error.transient, "{error}");
    assert!(error.message.contains("unknown topic"), "{error}");
    assert_eq!(error.connector, "kafka");

    let writer = KafkaWriter::open(&config, &missing, WriterOptions::default()).await;
    let error = writer.err().expect("an unknown topic");
    assert!(!error.transient, "{error}");

    let two = topic("two");
    ensure_topic(&config, &two, 2, 1).await?;
    let error = ensure_topic(&config, &two, 3, 1)
        .await
        .expect_err("another partition count");
    assert!(!error.transient, "{error}");
    let reader = KafkaPartitionReader::open(&config, &two, 2, None, ReaderOptions::default()).await;
    let error = reader.err().expect("no partition 2");
    assert!(!error.transient, "{error}");
    let error = ensure_topic(&config, "bad name", 1, 1)
        .await
        .expect_err("an illegal name");
    assert!(!error.transient, "{error}");

    let malformed = KafkaConfig::new("no-port-here");
    let error = ensure_topic(&malformed, &two, 2, 1)
        .await
        .expect_err("a malformed address");
    assert!(!error.transient, "{error}");

    // Nothing listens on a port that was just freed: transient, and quickly.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let unreachable =
        KafkaConfig::new(format!("127.0.0.1:{port}")).with_request_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let reader =
        KafkaPartitionReader::open(&unreachable, &two, 0, None, ReaderOptions::default()).await;
    let error = reader.err().expect("no broker there");
    assert!(
        error.transient,
        "an unreachable broker is transient: {error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it gives up within the request timeout: {:?}",
        started.elapsed()
    );
    let error = publish_lines(&unreachable, &two, 2, ["x"], true)
        .await
        .expect_err("no broker there");
    assert!(error.transient, "{error}");
    Ok(())
}

/// Topics written by other producers hold compressed batches: gzip, lz4 and zstd
/// batches read back record for record. (Snappy is decoded by the same client, but the
/// test broker, Tansu 0.6, refuses to serve a snappy batch it stored: "UnexpectedType
/// Snappy" in its fetch.)
#[tokio::test]
async fn batches_compressed_with_gzip_lz4_and_zstd_read_back() -> TestResult {
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    use rskafka::record::Record;
    let Some(broker) = server::kafka() else {
        return Ok(());
    };
    let config = config(&broker);
    let client = rskafka::client::ClientBuilder::new(vec![broker.url().to_owned()])
        .build()
        .await?;
    let codecs = [
        ("gzip", Compression::Gzip),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ];
    for (name, codec) in codecs {
        let topic = topic(&format!("codec-{name}"));
        ensure_topic(&config, &topic, 1, 1).await?;
        let partition = client
            .partition_client(&topic, 0, UnknownTopicHandling::Retry)
            .await?;
        let lines: Vec<String> = (0..500)
            .map(|index| format!("{name} line {index} {}", "x".repeat(index % 40)))
            .collect();
        let records = lines
            .iter()
            .map(|line| Record {
                key: None,
                value: Some(line.clone().into_bytes()),
                headers: BTreeMap::new(),
                timestamp: rskafka::chrono::DateTime::from_timestamp_millis(1_700_000_000_000)
                    .unwrap_or_default(),
            })
            .collect();
        partition.produce(records, codec).await?;
        let mut reader =
            KafkaPartitionReader::open(&config, &topic, 0, None, ReaderOptions::default()).await?;
        let read = read_exactly(&mut reader, lines.len()).await;
        assert_eq!(payloads(&read), lines, "{name}");
    }
    Ok(())
}
