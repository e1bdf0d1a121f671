//! The client against real servers on loopback ports: plain, TLS, slow and gone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use essaim_tls::testing::TestCertificates;
use essaim_tls::{ClientTrust, ServerTls};
use tokio::net::TcpListener;

use super::*;

/// Serves an echo on `/echo` and an answer that never comes on `/never` until dropped.
async fn start(tls: Option<ServerTls>) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/never",
            post(|| async {
                std::future::pending::<()>().await;
                ""
            }),
        );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        essaim_tls::serve(listener, tls.as_ref(), router, async {
            let _ = stopped.await;
        })
        .await
    });
    (address, stop)
}

fn client(trust: &ClientTrust, timeout: Duration) -> PooledClient {
    PooledClient::new(trust, Duration::from_secs(2), timeout)
}

#[tokio::test]
async fn a_plain_peer_answers_with_its_status_and_whole_body() {
    let (address, _stop) = start(None).await;
    let client = client(&ClientTrust::default(), Duration::from_secs(5));
    let url = format!("http://{address}/echo");
    let answer = client
        .call(http::Method::POST, &url, None, Bytes::from_static(b"ping"))
        .await
        .unwrap();
    assert_eq!(answer.status(), http::StatusCode::OK);
    assert_eq!(answer.body().as_ref(), b"ping");
    let missing = format!("http://{address}/missing");
    let answer = client
        .call(http::Method::GET, &missing, None, Bytes::new())
        .await
        .unwrap();
    assert_eq!(answer.status(), http::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_tls_peer_is_verified_with_the_callers_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path()).unwrap();
    let tls = ServerTls::load(&certificates.cert, &certificates.key).unwrap();
    let (address, _stop) = start(Some(tls)).await;
    let url = format!("https://localhost:{}/echo", address.port());
    let trusted = client(
        &ClientTrust::from_ca_file(&certificates.ca).unwrap(),
        Duration::from_secs(5),
    );
    let answer = trusted
        .call(http::Method::POST, &url, None, Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(answer.body().as_ref(), b"x");
    let stranger = client(
        &ClientTrust::from_ca_file(&certificates.other_ca).unwrap(),
        Duration::from_secs(5),
    );
    let refused = stranger
        .call(http::Method::POST, &url, None, Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    // The words say what to fix, not only the transport's chain.
    assert!(
        refused.reason.contains("certificate is not trusted"),
        "{refused}"
    );
    assert!(refused.reason.contains("--tls-ca"), "{refused}");
}

/// A peer requiring client certificates refuses a caller without one after the caller's
/// TLS 1.3 handshake has ended: the caller's connection may read the refusal before it
/// sends its request, and the request then fails without the alert ("connection was
/// not ready"). Every such call must still say which certificate to pass. Fresh clients,
/// many times; in one process the request mostly goes first, and the probe that covers
/// the other order has its own test in `essaim-tls`.
#[tokio::test]
async fn a_caller_without_the_client_certificate_a_peer_requires_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path()).unwrap();
    let tls = ServerTls::load_requiring_clients(
        &certificates.cert,
        &certificates.key,
        Some(&certificates.ca),
    )
    .unwrap();
    let (address, _stop) = start(Some(tls)).await;
    let url = format!("https://localhost:{}/echo", address.port());
    let trust = ClientTrust::from_ca_file(&certificates.ca).unwrap();
    for attempt in 0..20 {
        let refused = client(&trust, Duration::from_secs(5))
            .call(http::Method::POST, &url, None, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(
            refused.reason.contains("--tls-client-cert"),
            "attempt {attempt}: {refused}"
        );
    }
    let known = trust
        .with_identity(&certificates.client_cert, &certificates.client_key)
        .unwrap();
    let answer = client(&known, Duration::from_secs(5))
        .call(http::Method::POST, &url, None, Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(answer.body().as_ref(), b"x");
}

#[tokio::test]
async fn a_peer_that_does_not_answer_in_time_or_is_gone_is_unreachable() {
    let (address, stop) = start(None).await;
    let client = client(&ClientTrust::default(), Duration::from_millis(200));
    let started = Instant::now();
    let slow = client
        .call(
            http::Method::POST,
            &format!("http://{address}/never"),
            None,
            Bytes::new(),
        )
        .await
        .unwrap_err();
    assert!(slow.reason.contains("no answer within 200 ms"), "{slow}");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(stop);
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}/echo", closed.local_addr().unwrap());
    drop(closed);
    let error = client
        .call(http::Method::POST, &gone, None, Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(error.url, gone);
}

#[test]
fn error_answers_are_read_as_their_error_field_or_their_text() {
    assert_eq!(
        error_text(br#"{"error":"replica 0 is held"}"#),
        "replica 0 is held"
    );
    assert_eq!(error_text(b"Bad Gateway"), "Bad Gateway");
}
