//! The registration loop against a real front on a loopback port.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::post;

use super::*;

/// A front that counts registrations and answers them with a status it is told.
#[derive(Default)]
struct Front {
    registrations: AtomicUsize,
    status: AtomicU16,
}

async fn register(State(front): State<Arc<Front>>) -> (http::StatusCode, &'static str) {
    front.registrations.fetch_add(1, Ordering::SeqCst);
    let status = http::StatusCode::from_u16(front.status.load(Ordering::SeqCst)).unwrap();
    (status, r#"{"error":"replica 0 is held by attempt 9"}"#)
}

async fn start_front(status: u16) -> (Arc<Front>, String) {
    let front = Arc::new(Front::default());
    front.status.store(status, Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/replicas", listener.local_addr().unwrap());
    let router = Router::new()
        .route("/replicas", post(register))
        .with_state(Arc::clone(&front));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (front, endpoint)
}

fn registration(endpoint: String) -> FrontRegistration {
    FrontRegistration {
        front: "the front",
        role: "replica",
        endpoint,
        body: Bytes::from_static(b"{}"),
        every: Duration::from_millis(20),
        lost_after: Duration::from_millis(300),
        trust: Default::default(),
    }
}

#[tokio::test]
async fn registers_again_and_again_until_cancelled() {
    let (front, endpoint) = start_front(200).await;
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
    });
    let outcome = register_until_cancelled(&registration(endpoint), &cancel).await;
    assert_eq!(outcome, Ok(()));
    // Past `lost_after` without a failure: every registration was accepted.
    assert!(front.registrations.load(Ordering::SeqCst) >= 10);
}

#[tokio::test]
async fn a_refused_registration_fails_the_attempt_as_retryable_with_the_fronts_words() {
    let (_front, endpoint) = start_front(409).await;
    let failure = register_until_cancelled(&registration(endpoint), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(failure.retryable);
    assert_eq!(
        failure.message,
        "the front refused this replica: replica 0 is held by attempt 9"
    );
}

#[tokio::test]
async fn a_front_failing_or_gone_past_the_limit_ends_the_task_for_good() {
    let (front, endpoint) = start_front(503).await;
    let failure = register_until_cancelled(&registration(endpoint), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(!failure.retryable);
    assert!(
        failure
            .message
            .starts_with("the front has been unreachable for 300ms"),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("503"), "{}", failure.message);
    assert!(front.registrations.load(Ordering::SeqCst) >= 10);

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}/replicas", closed.local_addr().unwrap());
    drop(closed);
    let failure = register_until_cancelled(&registration(gone), &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(!failure.retryable);
    assert!(
        failure.message.contains("cannot reach"),
        "{}",
        failure.message
    );
}
