//! Against a real nats-server started by `scripts/nats.sh`: a partition reader never
//! skips a delivery it did not get. When a consumer's leader dies it may hand a message
//! to a pull whose answer is lost, and the next leader goes on with the next message;
//! the reader must fail then (the runtime reads again from its last commit) rather than
//! return the next message and let the lost one be committed past. Here another client
//! of the same consumer takes a delivery, which the server numbers the same way.
//!
//! The tests fail if nats-server cannot be installed, unless `ESSAIM_SKIP_NATS=1`.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use essaim_connect::PartitionReader as _;
use essaim_connect_nats::broker::{self, StreamSpec};
use essaim_connect_nats::partition::{NatsPartitionReader, PartitionSpec};
use essaim_connect_nats::publish::Publisher;
use essaim_testkit::server;
use futures_util::StreamExt;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const TIMEOUT: Duration = Duration::from_secs(2);

/// A stream `orders` holding `count` messages on `orders.in` (positions 1 to `count`).
async fn orders(context: &jetstream::Context, count: u64) -> TestResult {
    broker::ensure_stream(context, &StreamSpec::new("orders", &["orders.>"])).await?;
    let mut publisher = Publisher::new(context.clone(), 16)?;
    for index in 0..count {
        publisher
            .publish("orders.in", Bytes::from(format!("record-{index}")))
            .await?;
    }
    publisher.flush().await?;
    Ok(())
}

/// Reads until `count` positions came (taking no more) or a fetch fails.
async fn positions(
    reader: &mut NatsPartitionReader,
    count: usize,
) -> Result<Vec<u64>, essaim_connect::ConnectorError> {
    let mut read = Vec::new();
    for _ in 0..50 {
        if read.len() >= count {
            break;
        }
        let room = (count - read.len()).min(4);
        for message in reader.fetch(room, Duration::from_millis(200)).await? {
            read.push(message.position);
        }
    }
    Ok(read)
}

#[tokio::test]
async fn a_delivery_that_never_reached_the_reader_fails_the_fetch() -> TestResult {
    let Some(server) = server::nats() else {
        return Ok(());
    };
    let context = broker::connect(server.url(), TIMEOUT).await?;
    orders(&context, 10).await?;
    let spec = PartitionSpec::new("orders", "orders.in", "unit_0", 0);
    let mut reader = NatsPartitionReader::open(&context, spec.clone(), None).await?;
    assert_eq!(positions(&mut reader, 3).await?, [1, 2, 3]);

    // Delivery 4 (position 4) goes elsewhere, as to a pull whose answer was lost.
    let stolen: consumer::PullConsumer = context
        .get_stream("orders")
        .await?
        .get_consumer("unit_0")
        .await?;
    let mut taken = stolen.fetch().max_messages(1).messages().await?;
    let message = taken.next().await.expect("one message")?;
    assert_eq!(message.info()?.stream_sequence, 4);

    let error = positions(&mut reader, 6)
        .await
        .expect_err("position 5 must not be returned after 3");
    assert!(error.transient, "{error}");
    assert!(error.to_string().contains("never reached"), "{error}");

    // Reading again from the last commit (3) gets everything after it.
    reader.commit(3).await?;
    let mut reopened = NatsPartitionReader::open(&context, spec, Some(3)).await?;
    assert_eq!(
        positions(&mut reopened, 7).await?,
        (4..=10).collect::<Vec<u64>>()
    );
    Ok(())
}

/// Redeliveries after `ack_wait` are numbered in turn: they are no gap, and they are
/// dropped by position.
#[tokio::test]
async fn redeliveries_are_no_gap() -> TestResult {
    let Some(server) = server::nats() else {
        return Ok(());
    };
    let context = broker::connect(server.url(), TIMEOUT).await?;
    orders(&context, 5).await?;
    let mut spec = PartitionSpec::new("orders", "orders.in", "unit_0", 0);
    spec.ack_wait = Duration::from_secs(1);
    let mut reader = NatsPartitionReader::open(&context, spec, None).await?;
    assert_eq!(positions(&mut reader, 5).await?, [1, 2, 3, 4, 5]);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Redelivered (not committed): dropped, and no error.
    for _ in 0..3 {
        assert!(
            reader
                .fetch(10, Duration::from_millis(300))
                .await?
                .is_empty()
        );
    }
    let mut publisher = Publisher::new(context.clone(), 16)?;
    publisher.publish("orders.in", Bytes::from("late")).await?;
    publisher.flush().await?;
    assert_eq!(positions(&mut reader, 1).await?, [6]);
    Ok(())
}
