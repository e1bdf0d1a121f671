//! The ingest endpoint against a real nats-server started by `scripts/nats.sh` (one per
//! test, each in its own directory), spoken to over plain HTTP/1.1: accepted lines are
//! in the stream, in order, on their partitions' subjects; every refusal stores
//! nothing; the token; saturation; the server stopped mid-test (503) and restarted
//! (recovery).
//!
//! The tests fail if nats-server cannot be installed, unless `ESSAIM_SKIP_NATS=1`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use essaim_connect_http::{IngestConfig, IngestServer, IngestSource};
use essaim_connect_nats::broker;
use essaim_testkit::server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[path = "ingest/tls.rs"]
mod tls;

const TIMEOUT: Duration = Duration::from_secs(2);

fn config(url: &str, sources: Vec<IngestSource>) -> IngestConfig {
    IngestConfig {
        request_timeout: Duration::from_secs(1),
        retry_after: Duration::from_secs(2),
        ..IngestConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), url, sources)
    }
}

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head
}

async fn read_answer(stream: &mut TcpStream) -> Result<Answer, Box<dyn std::error::Error>> {
    let mut raw = Vec::new();
    // A refused request's unread body may make the server reset the connection after
    // its answer: keep what arrived.
    let mut chunk = [0; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(read) => raw.extend_from_slice(&chunk[..read]),
            Err(error) if !raw.is_empty() => {
                eprintln!("read ended with {error} after {} bytes", raw.len());
                break;
            }
            Err(error) => return Err(error.into()),
        }
    }
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .ok_or("no status")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    // Answers are JSON, except the probes' and the scrape's plain text.
    let body = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|_| serde_json::Value::String(body.to_owned()))
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, Box<dyn std::error::Error>> {
    let mut stream = TcpStream::connect(address).await?;
    let mut message = head(method, path, headers);
    message.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(message.as_bytes()).await?;
    let _ = stream.write_all(body).await;
    read_answer(&mut stream).await
}

async fn post(
    address: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, Box<dyn std::error::Error>> {
    request(address, "POST", path, headers, body).await
}

/// Polls `/readyz` until it answers `status` (readiness is sampled every 250 ms).
async fn wait_for_readiness(
    address: SocketAddr,
    status: u16,
) -> Result<Answer, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = request(address, "GET", "/readyz", &[], b"").await?;
        if answer.status == status {
            return Ok(answer);
        }
        if Instant::now() > deadline {
            return Err(format!("/readyz still answers {answer:?}, not {status}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `/metrics` text (classic format: no `Accept` header).
async fn scrape(address: SocketAddr) -> Result<String, Box<dyn std::error::Error>> {
    let answer = request(address, "GET", "/metrics", &[], b"").await?;
    assert_eq!(answer.status, 200);
    Ok(answer.body.as_str().unwrap_or_default().to_owned())
}

/// The value of one series (`name{labels}` exactly as exposed) in a scrape.
fn metric(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Every message of `stream`, as (subject, payload).
async fn stored(
    context: &jetstream::Context,
    stream: &str,
) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let mut handle = context.get_stream(stream).await?;
    let count = handle.info().await?.state.messages;
    let mut messages = Vec::new();
    for sequence in 1..=count {
        let message = handle.get_raw_message(sequence).await?;
        messages.push((
            message.subject.to_string(),
            String::from_utf8(message.payload.to_vec())?,
        ));
    }
    Ok(messages)
}

#[tokio::test]
async fn accepted_lines_are_stored_in_order_on_their_partitions_before_the_answer() -> TestResult {
    let Some(nats) = server::nats() else {
        return Ok(());
    };
    let started = Instant::now();
    let server =
        IngestServer::start(config(nats.url(), vec![IngestSource::new("orders", 3)])).await?;
    let address = server.local_addr();
    let context = broker::connect(nats.url(), TIMEOUT).await?;

    let health = request(address, "GET", "/healthz", &[], b"").await?;
    assert_eq!(health.status, 200);
    let ready = wait_for_readiness(address, 200).await?;
    assert_eq!(ready.body, "ready");

    let body = b"o0,1\r\no1,2\n\no2,3\no3,4\no4,5\no5,6\no6,7\n";
    let answer = post(
        address,
        "/ingest/orders",
        &[("Content-Type", "text/csv")],
        body,
    )
    .await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        answer.body,
        serde_json::json!({"accepted": 7, "first_sequence": 1, "last_sequence": 7})
    );
    let messages = stored(&context, "orders").await?;
    let expected: Vec<(String, String)> = (0..7)
        .map(|index| {
            (
                format!("orders.{}", index % 3),
                format!("o{index},{}", index + 1),
            )
        })
        .collect();
    assert_eq!(
        messages, expected,
        "in order, round-robin, stored before the 200"
    );

    // A key sends every line to its partition; the header works as the query does.
    let partition = essaim_stream::hash::partition_of("customer-42", 3);
    let answer = post(
        address,
        "/ingest/orders?key=customer-42",
        &[("Content-Type", "application/x-ndjson")],
        b"{\"a\":1}\n{\"a\":2}\n",
    )
    .await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["first_sequence"], 8);
    assert_eq!(answer.body["last_sequence"], 9);
    let answer = post(
        address,
        "/ingest/orders",
        &[
            ("X-Essaim-Key", "customer-42"),
            ("Content-Type", "text/plain; charset=utf-8"),
        ],
        b"{\"a\":3}",
    )
    .await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    // Round-robin resumes where the last unkeyed request stopped (line 7 → partition 1).
    let answer = post(address, "/ingest/orders", &[], b"next\n").await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let messages = stored(&context, "orders").await?;
    assert_eq!(
        messages[7..],
        [
            (format!("orders.{partition}"), "{\"a\":1}".to_owned()),
            (format!("orders.{partition}"), "{\"a\":2}".to_owned()),
            (format!("orders.{partition}"), "{\"a\":3}".to_owned()),
            ("orders.1".to_owned(), "next".to_owned()),
        ]
    );

    // The scrape counts what was stored and what was refused.
    let unknown = post(address, "/ingest/nowhere", &[], b"x\n").await?;
    assert_eq!(unknown.status, 404);
    let bytes = body.len() + b"{\"a\":1}\n{\"a\":2}\n".len() + b"{\"a\":3}".len() + b"next\n".len();
    let metrics = scrape(address).await?;
    for (series, expected) in [
        ("essaim_ingest_requests_total{outcome=\"accepted\"}", 4.0),
        ("essaim_ingest_requests_total{outcome=\"refused\"}", 1.0),
        (
            "essaim_ingest_requests_refused_total{reason=\"unknown_source\"}",
            1.0,
        ),
        ("essaim_ingest_records_accepted_total", 11.0),
        ("essaim_ingest_accepted_bytes_total", bytes as f64),
        ("essaim_ingest_publish_duration_seconds_count", 4.0),
        ("essaim_ingest_requests_in_flight", 0.0),
        ("essaim_ingest_broker_connected", 1.0),
    ] {
        assert_eq!(
            metric(&metrics, series),
            Some(expected),
            "{series} in\n{metrics}"
        );
    }
    server.shutdown().await?;
    eprintln!("accepted lines: {:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn every_refusal_is_json_and_stores_nothing() -> TestResult {
    let Some(nats) = server::nats() else {
        return Ok(());
    };
    let server = IngestServer::start(IngestConfig {
        bearer_token: Some("s3cret".to_owned()),
        max_body_bytes: 1_000,
        max_line_bytes: 20,
        ..config(nats.url(), vec![IngestSource::new("events", 2)])
    })
    .await?;
    let address = server.local_addr();
    let context = broker::connect(nats.url(), TIMEOUT).await?;
    let auth = ("Authorization", "Bearer s3cret");

    let answer = post(address, "/ingest/events", &[], b"a\n").await?;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    let answer = post(
        address,
        "/ingest/events",
        &[("Authorization", "Bearer s3cres")],
        b"a\n",
    )
    .await?;
    assert_eq!(answer.status, 401);
    let answer = post(address, "/ingest/unknown", &[auth], b"a\n").await?;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.body["error"], "unknown source `unknown`");

    /// Headers, body, expected status, words of the error, the line blamed.
    type Case<'a> = (&'a [(&'a str, &'a str)], Vec<u8>, u16, &'a str, Option<u64>);
    let cases: [Case; 6] = [
        (&[auth], Vec::new(), 400, "holds no record", None),
        (&[auth], b"\n\r\n\n".to_vec(), 400, "holds no record", None),
        (
            &[auth],
            b"ok\nfine\nbad \xff here\n".to_vec(),
            400,
            "line 3 is not valid UTF-8",
            Some(3),
        ),
        (
            &[auth],
            format!("ok\n{}\n", "x".repeat(21)).into_bytes(),
            413,
            "line 2 has 21 bytes",
            Some(2),
        ),
        (
            &[auth],
            "short line\n".repeat(100).into_bytes(),
            413,
            "max_body_bytes = 1000",
            None,
        ),
        (
            &[auth, ("Content-Type", "application/json")],
            b"{}".to_vec(),
            415,
            "content type",
            None,
        ),
    ];
    for (headers, body, status, words, line) in cases {
        let answer = post(address, "/ingest/events", headers, &body).await?;
        assert_eq!(answer.status, status, "{words}: {:?}", answer.body);
        let error = answer.body["error"].as_str().unwrap_or_default();
        assert!(error.contains(words), "{error}");
        assert_eq!(answer.body["line"].as_u64(), line, "{words}");
    }
    assert!(
        stored(&context, "events").await?.is_empty(),
        "nothing stored"
    );

    let answer = post(address, "/ingest/events", &[auth], b"fine\n").await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(
        stored(&context, "events").await?,
        [("events.0".to_owned(), "fine".to_owned())]
    );
    Ok(())
}

#[tokio::test]
async fn a_saturated_endpoint_answers_429_instead_of_queueing() -> TestResult {
    let Some(nats) = server::nats() else {
        return Ok(());
    };
    let server = IngestServer::start(IngestConfig {
        max_concurrent_requests: 1,
        ..config(nats.url(), vec![IngestSource::new("slow", 1)])
    })
    .await?;
    let address = server.local_addr();

    // A client that sends half its body holds the only slot.
    let mut holder = TcpStream::connect(address).await?;
    let mut message = head("POST", "/ingest/slow", &[]);
    message.push_str("Content-Length: 10\r\n\r\nfirst");
    holder.write_all(message.as_bytes()).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let answer = post(address, "/ingest/slow", &[], b"second\n").await?;
        if answer.status == 429 || Instant::now() > deadline {
            break answer;
        }
        // The holder's request may not have reached the handler yet.
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.status, 429, "{:?}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("2"));

    holder.write_all(b"line\n").await?;
    let answer = read_answer(&mut holder).await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let answer = post(address, "/ingest/slow", &[], b"third\n").await?;
    assert_eq!(
        answer.status, 200,
        "the slot is free again: {:?}",
        answer.body
    );
    Ok(())
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408_and_frees_its_slot() -> TestResult {
    let Some(nats) = server::nats() else {
        return Ok(());
    };
    let server = IngestServer::start(IngestConfig {
        max_concurrent_requests: 1,
        body_timeout: Duration::from_millis(300),
        ..config(nats.url(), vec![IngestSource::new("slow", 1)])
    })
    .await?;
    let address = server.local_addr();
    let mut slow = TcpStream::connect(address).await?;
    let mut message = head("POST", "/ingest/slow", &[]);
    message.push_str("Content-Length: 100\r\n\r\nnot all of it");
    slow.write_all(message.as_bytes()).await?;
    let answer = read_answer(&mut slow).await?;
    assert_eq!(answer.status, 408, "{:?}", answer.body);
    let answer = post(address, "/ingest/slow", &[], b"next\n").await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let context = broker::connect(nats.url(), TIMEOUT).await?;
    assert_eq!(
        stored(&context, "slow").await?,
        [("slow.0".to_owned(), "next".to_owned())]
    );
    Ok(())
}

#[tokio::test]
async fn a_stopped_broker_gives_503_and_ingest_recovers_when_it_restarts() -> TestResult {
    let Some(nats) = server::nats() else {
        return Ok(());
    };
    let server =
        IngestServer::start(config(nats.url(), vec![IngestSource::new("logs", 2)])).await?;
    let address = server.local_addr();
    let answer = post(address, "/ingest/logs", &[], b"before-1\nbefore-2\n").await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);

    nats.stop();
    let started = Instant::now();
    let answer = post(address, "/ingest/logs", &[], b"during\n").await?;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_eq!(answer.header("retry-after"), Some("2"));
    assert!(answer.body.get("accepted").is_none());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the request timeout: {:?}",
        started.elapsed()
    );
    let health = request(address, "GET", "/healthz", &[], b"").await?;
    assert_eq!(health.status, 200, "alive without its broker");
    let not_ready = wait_for_readiness(address, 503).await?;
    assert_eq!(not_ready.body, "the broker is disconnected");
    let metrics = scrape(address).await?;
    assert_eq!(
        metric(&metrics, "essaim_ingest_broker_connected"),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "essaim_ingest_requests_refused_total{reason=\"broker_unavailable\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    nats.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    let recovered = loop {
        let answer = post(address, "/ingest/logs", &[], b"after\n").await?;
        if answer.status == 200 || Instant::now() > deadline {
            break answer;
        }
        assert_eq!(answer.status, 503, "{:?}", answer.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(recovered.status, 200, "{:?}", recovered.body);
    wait_for_readiness(address, 200).await?;
    eprintln!("recovered {:?} after the restart", started.elapsed());
    let context = broker::connect(nats.url(), TIMEOUT).await?;
    let messages = stored(&context, "logs").await?;
    let payloads: Vec<&str> = messages
        .iter()
        .map(|(_, payload)| payload.as_str())
        .collect();
    assert_eq!(
        payloads,
        ["before-1", "before-2", "after"],
        "nothing of the refused request"
    );
    Ok(())
}
