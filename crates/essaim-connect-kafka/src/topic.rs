//! Topics: created once with a fixed number of partitions, looked up by name.
//!
//! The partition count of a topic is part of its meaning here: the writer spreads keys
//! over the partitions by hash and the runtime reads partition `i` as its source
//! partition `i`, so a topic that exists with another count is an error, not
//! something to adjust silently.

use std::time::Instant;

use essaim_connect::ConnectorError;
use rskafka::client::Client;
use rskafka::client::error::{Error, ProtocolError};

use crate::config::{KafkaConfig, connect, millis_i32, within};
use crate::error::{self, from_client};

/// Creates `topic` with `partitions` partitions of `replication` replicas each, or
/// checks that it exists with that many partitions. Returns once the broker's metadata
/// shows every partition.
pub async fn ensure_topic(
    config: &KafkaConfig,
    topic: &str,
    partitions: u32,
    replication: u16,
) -> Result<(), ConnectorError> {
    check_topic_name(topic)?;
    let wanted = i32::try_from(partitions)
        .ok()
        .filter(|count| *count > 0)
        .ok_or_else(|| error::permanent("create topic", "partitions must be in 1..=2^31-1"))?;
    let replicas = i16::try_from(replication)
        .ok()
        .filter(|count| *count > 0)
        .ok_or_else(|| error::permanent("create topic", "replication must be in 1..=32767"))?;
    let client = connect(config).await?;
    if let Some(existing) = partition_count_of(&client, config, topic).await? {
        return same_count(topic, existing, partitions);
    }
    let controller = client
        .controller_client()
        .map_err(|failure| from_client("create topic", failure))?;
    let created = within(
        config.request_timeout,
        "create topic",
        controller.create_topic(topic, wanted, replicas, millis_i32(config.request_timeout)),
    )
    .await?;
    match created {
        Ok(()) => {}
        // Another process created it first: fine if it agrees on the count.
        Err(Error::ServerError {
            protocol_error: ProtocolError::TopicAlreadyExists,
            ..
        }) => {}
        Err(failure) => return Err(from_client("create topic", failure)),
    }
    // Metadata can lag behind the creation: wait until every partition is visible.
    let started = Instant::now();
    loop {
        if let Some(existing) = partition_count_of(&client, config, topic).await? {
            if existing >= partitions || started.elapsed() > config.request_timeout {
                return same_count(topic, existing, partitions);
            }
        } else if started.elapsed() > config.request_timeout {
            return Err(error::transient(
                "create topic",
                format!("topic `{topic}` created but not in the metadata yet"),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The number of partitions of `topic`, `None` when it does not exist.
pub async fn partition_count(
    config: &KafkaConfig,
    topic: &str,
) -> Result<Option<u32>, ConnectorError> {
    let client = connect(config).await?;
    partition_count_of(&client, config, topic).await
}

/// The partition count of `topic` as the broker's metadata says now (not cached).
pub(crate) async fn partition_count_of(
    client: &Client,
    config: &KafkaConfig,
    topic: &str,
) -> Result<Option<u32>, ConnectorError> {
    let topics = within(config.request_timeout, "list topics", client.list_topics())
        .await?
        .map_err(|failure| from_client("list topics", failure))?;
    Ok(topics
        .into_iter()
        .find(|candidate| candidate.name == topic)
        .map(|found| u32::try_from(found.partitions.len()).unwrap_or(u32::MAX)))
}

/// The permanent error of a topic that does not exist.
pub(crate) fn unknown_topic(action: &'static str, topic: &str) -> ConnectorError {
    error::permanent(action, format!("unknown topic `{topic}`"))
}

fn same_count(topic: &str, existing: u32, wanted: u32) -> Result<(), ConnectorError> {
    if existing == wanted {
        Ok(())
    } else {
        Err(error::permanent(
            "create topic",
            format!("topic `{topic}` exists with {existing} partitions, not {wanted}"),
        ))
    }
}

/// Kafka's rule: 1 to 249 characters among ASCII letters, digits, `.`, `_` and `-`,
/// and not `.` or `..`.
fn check_topic_name(topic: &str) -> Result<(), ConnectorError> {
    let legal = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if legal {
        Ok(())
    } else {
        Err(error::permanent(
            "create topic",
            format!("`{topic}` is not a legal topic name (1-249 of [a-zA-Z0-9._-])"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for good in ["orders", "orders.v2", "a_b-c", &"x".repeat(249)] {
            assert!(check_topic_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "with space",
            "slash/no",
            "é",
            &"x".repeat(250),
        ] {
            let error = check_topic_name(bad).expect_err(bad);
            assert!(!error.transient);
        }
    }

    #[test]
    fn another_partition_count_is_a_permanent_error() {
        assert!(same_count("t", 3, 3).is_ok());
        let error = same_count("t", 2, 3).expect_err("2 is not 3");
        assert!(!error.transient);
        assert!(error.message.contains("2 partitions, not 3"), "{error}");
    }
}
