//! Kafka over TLS, against a real broker: Tansu behind stunnel (Debian's `stunnel4`,
//! an independent TLS implementation: OpenSSL), both started by `scripts/kafka.sh` with
//! `KAFKA_TLS_CERT`/`KAFKA_TLS_KEY` (and `KAFKA_TLS_CLIENT_CA` for client
//! certificates). The broker advertises the TLS port, so every connection the client
//! opens after the bootstrap (to the partition leaders, to the group coordinator) goes
//! through TLS too.
//!
//! Lines go round trip through a TLS-only broker; group offsets are committed and read
//! back through it; a client trusting another CA, and a plain client, are refused with
//! a permanent error (no retry can help); a broker requiring client certificates
//! serves the client that presents one its CA signed and refuses one that does not.
//!
//! Skipped, like the other Kafka tests, with `ESSAIM_SKIP_KAFKA=1`.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use essaim_connect::PartitionReader;
use essaim_connect_kafka::{
    GroupOffsets, KafkaConfig, KafkaPartitionReader, ReaderOptions, partition_count, publish_lines,
};
use essaim_testkit::server::{KAFKA, ScriptServer};
use essaim_tls::testing::TestCertificates;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A broker serving only TLS with the test CA's server certificate; `client_ca` makes
/// it require client certificates signed by that CA.
fn tls_broker(certificates: &TestCertificates, client_ca: Option<&Path>) -> Option<ScriptServer> {
    let cert = certificates.cert.to_string_lossy().into_owned();
    let key = certificates.key.to_string_lossy().into_owned();
    let mut env = vec![
        ("KAFKA_TLS_CERT", cert.as_str()),
        ("KAFKA_TLS_KEY", key.as_str()),
    ];
    let client_ca = client_ca.map(|ca| ca.to_string_lossy().into_owned());
    if let Some(ca) = &client_ca {
        env.push(("KAFKA_TLS_CLIENT_CA", ca.as_str()));
    }
    ScriptServer::start_with_env(KAFKA, &env)
}

fn config(bootstrap: String) -> KafkaConfig {
    KafkaConfig::new(bootstrap).with_request_timeout(Duration::from_secs(5))
}

fn topic(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let next = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{name}-{}-{next}", std::process::id())
}

/// Publishes 20 lines over 2 partitions and reads partition 1 back whole.
async fn round_trip(config: &KafkaConfig) -> TestResult {
    let topic = topic("tls");
    let lines: Vec<String> = (0..20).map(|index| format!("secret-{index}")).collect();
    let published = publish_lines(config, &topic, 2, &lines, false).await?;
    assert_eq!(published.lines, 20);
    assert_eq!(partition_count(config, &topic).await?, Some(2));
    let mut reader =
        KafkaPartitionReader::open(config, &topic, 1, None, ReaderOptions::default()).await?;
    let mut payloads = Vec::new();
    let started = Instant::now();
    while payloads.len() < 10 {
        assert!(started.elapsed() < Duration::from_secs(20), "{payloads:?}");
        for message in reader.fetch(10, Duration::from_millis(300)).await? {
            payloads.push(String::from_utf8_lossy(&message.payload).into_owned());
        }
    }
    let expected: Vec<String> = (0..10)
        .map(|row| format!("secret-{}", row * 2 + 1))
        .collect();
    assert_eq!(payloads, expected);

    let mut group = GroupOffsets::new(config, &format!("{topic}-group"));
    group.commit(&topic, 1, 10).await?;
    assert_eq!(group.fetch(&topic, 1).await?, Some(10));
    Ok(())
}

#[tokio::test]
async fn records_and_group_offsets_travel_over_tls_and_strangers_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let certificates = TestCertificates::generate(dir.path())?;
    let Some(broker) = tls_broker(&certificates, None) else {
        return Ok(());
    };
    assert!(
        broker.url().starts_with("ssl://127.0.0.1:"),
        "{}",
        broker.url()
    );
    let ca = certificates.ca.display();
    round_trip(&config(format!("{}?tls_ca={ca}", broker.url()))).await?;

    let stranger = format!(
        "{}?tls_ca={}",
        broker.url(),
        certificates.other_ca.display()
    );
    let refused = partition_count(&config(stranger), "any").await.unwrap_err();
    assert!(!refused.transient, "{refused}");
    assert!(refused.to_string().contains("certificate"), "{refused}");

    // The same port without TLS: stunnel waits for a handshake that never comes, and
    // the call fails within the client's time limit rather than hanging.
    let plain = broker.url().trim_start_matches("ssl://").to_owned();
    let started = Instant::now();
    assert!(partition_count(&config(plain), "any").await.is_err());
    assert!(started.elapsed() < Duration::from_secs(15));
    Ok(())
}

#[tokio::test]
async fn a_broker_requiring_client_certificates_serves_only_those_its_ca_signed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let certificates = TestCertificates::generate(dir.path())?;
    let Some(broker) = tls_broker(&certificates, Some(&certificates.ca)) else {
        return Ok(());
    };
    let ca = certificates.ca.display();
    let (cert, key) = (
        certificates.client_cert.display(),
        certificates.client_key.display(),
    );
    let with_identity = format!("{}?tls_ca={ca}&tls_cert={cert}&tls_key={key}", broker.url());
    round_trip(&config(with_identity)).await?;

    let (stranger, stranger_key) = (
        certificates.stranger_cert.display(),
        certificates.stranger_key.display(),
    );
    let refused = [
        format!("{}?tls_ca={ca}", broker.url()),
        format!(
            "{}?tls_ca={ca}&tls_cert={stranger}&tls_key={stranger_key}",
            broker.url()
        ),
    ];
    for bootstrap in refused {
        let started = Instant::now();
        let error = partition_count(&config(bootstrap.clone()), "any")
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(15), "{bootstrap}");
        assert!(
            error.to_string().contains("connect"),
            "{bootstrap}: {error}"
        );
    }
    Ok(())
}
