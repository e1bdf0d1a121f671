//! A real TLS server on a loopback port, called by real clients.

use super::*;
use crate::testing::TestCertificates;
use crate::{CertificateReload, ClientTrust, HandshakeFailure, HttpsConnector, handshake_failure};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Stops the server when dropped.
type Stop = tokio::sync::oneshot::Sender<()>;

async fn start_server(certificates: &TestCertificates) -> (SocketAddr, Stop) {
    let tls = ServerTls::load(&certificates.cert, &certificates.key).expect("test certificates");
    start_server_with(tls).await
}

async fn start_server_with(tls: ServerTls) -> (SocketAddr, Stop) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/whoami", get(who_am_i));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        serve(listener, Some(&tls), router, async {
            let _ = stop_rx.await;
        })
        .await
    });
    (address, stop_tx)
}

/// Answers the common name of the request's client certificate, or `nobody`.
async fn who_am_i(request: axum::extract::Request) -> String {
    match crate::client_certificate(request.extensions()) {
        Some(certificate) => certificate.common_name().unwrap_or("no name").to_string(),
        None => "nobody".to_string(),
    }
}

async fn get_healthz(trust: &ClientTrust, url: &str) -> Result<String, String> {
    let client: Client<_, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(trust.http_connector(Duration::from_secs(5)));
    let response =
        client.get(url.parse().unwrap()).await.map_err(|error| {
            match handshake_failure(&error) {
                Some(failure) => failure.to_string(),
                None => format!("other: {error:?}"),
            }
        })?;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path()).unwrap();
    let (address, _stop) = start_server(&certificates).await;
    let trust = ClientTrust::from_ca_file(&certificates.ca).unwrap();
    for host in ["127.0.0.1".to_string(), "localhost".to_string()] {
        let url = format!("https://{host}:{}/healthz", address.port());
        assert_eq!(get_healthz(&trust, &url).await.as_deref(), Ok("ok"));
    }
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused_at_once_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path()).unwrap();
    let (address, _stop) = start_server(&certificates).await;
    let trust = ClientTrust::from_ca_file(&certificates.other_ca).unwrap();
    let url = format!("https://127.0.0.1:{}/healthz", address.port());
    let error = get_healthz(&trust, &url).await.expect_err("untrusted");
    assert!(error.contains("certificate is not trusted"), "{error}");
    assert!(error.contains("--tls-ca"), "{error}");
}

#[tokio::test]
async fn mutual_tls_serves_only_clients_whose_certificate_chains_to_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path()).unwrap();
    let tls = ServerTls::load_requiring_clients(
        &certificates.cert,
        &certificates.key,
        Some(&certificates.ca),
    )
    .unwrap();
    assert_eq!(tls.client_ca(), Some(certificates.ca.as_path()));
    let (address, _stop) = start_server_with(tls).await;
    let url = format!("https://127.0.0.1:{}/healthz", address.port());
    let trust = ClientTrust::from_ca_file(&certificates.ca).unwrap();

    let known = trust
        .clone()
        .with_identity(&certificates.client_cert, &certificates.client_key)
        .unwrap();
    assert_eq!(
        known.identity_path(),
        Some(certificates.client_cert.as_path())
    );
    assert_eq!(get_healthz(&known, &url).await.as_deref(), Ok("ok"));

    for (who, client) in [
        ("no certificate", trust.clone()),
        (
            "a stranger's",
            trust
                .clone()
                .with_identity(&certificates.stranger_cert, &certificates.stranger_key)
                .unwrap(),
        ),
    ] {
        let error = get_healthz(&client, &url).await.expect_err(who);
        assert!(error.contains("--tls-client-cert"), "{who}: {error}");
    }
    // A key that is not the client certificate's is refused before any connection.
    let error = trust
        .with_identity(&certificates.client_cert, &certificates.other_key)
        .expect_err("mismatched key");
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error}");
}

/// A failed call asks the server why over a connection of its own: a server requiring a
/// certificate the client lacks says so at once; one that accepts the client, or one
/// that requires nothing, refuses nothing.
#[tokio::test]
async fn a_probe_tells_a_refused_client_certificate_from_an_accepted_one() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path()).unwrap();
    let within = Duration::from_millis(300);
    let requiring = ServerTls::load_requiring_clients(
        &certificates.cert,
        &certificates.key,
        Some(&certificates.ca),
    )
    .unwrap();
    let (address, _stop) = start_server_with(requiring).await;
    let trust = ClientTrust::from_ca_file(&certificates.ca).unwrap();
    let refused = crate::probe_refusal(&trust, "127.0.0.1", address.port(), within).await;
    assert!(
        matches!(refused, Some(HandshakeFailure::ClientRefused(_))),
        "{refused:?}"
    );
    let known = trust
        .clone()
        .with_identity(&certificates.client_cert, &certificates.client_key)
        .unwrap();
    let accepted = crate::probe_refusal(&known, "127.0.0.1", address.port(), within).await;
    assert_eq!(accepted, None);
    let (open, _stop_open) = start_server(&certificates).await;
    assert_eq!(
        crate::probe_refusal(&trust, "127.0.0.1", open.port(), within).await,
        None
    );
    let stranger = ClientTrust::from_ca_file(&certificates.other_ca).unwrap();
    let untrusted = crate::probe_refusal(&stranger, "127.0.0.1", open.port(), within).await;
    assert!(
        matches!(untrusted, Some(HandshakeFailure::Untrusted(_))),
        "{untrusted:?}"
    );
}

#[tokio::test]
async fn each_request_carries_the_common_name_of_its_connections_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path()).unwrap();
    let (alice_cert, alice_key) = certificates.issue_client("alice").unwrap();
    let (address, _stop) = start_server_with(
        ServerTls::load_requiring_clients(
            &certificates.cert,
            &certificates.key,
            Some(&certificates.ca),
        )
        .unwrap(),
    )
    .await;
    let url = format!("https://127.0.0.1:{}/whoami", address.port());
    let trust = ClientTrust::from_ca_file(&certificates.ca).unwrap();
    for (cert, key, expected) in [
        (&alice_cert, &alice_key, "alice"),
        (
            &certificates.client_cert,
            &certificates.client_key,
            "essaim test client",
        ),
    ] {
        let client = trust.clone().with_identity(cert, key).unwrap();
        assert_eq!(get_healthz(&client, &url).await.as_deref(), Ok(expected));
    }
    // A server that asks for no certificate sees none.
    let (address, _stop) = start_server(&certificates).await;
    let url = format!("https://127.0.0.1:{}/whoami", address.port());
    let client = trust.with_identity(&alice_cert, &alice_key).unwrap();
    assert_eq!(get_healthz(&client, &url).await.as_deref(), Ok("nobody"));
}

/// GETs `url` with `client`, answering the body or the handshake failure in words.
async fn get_with(
    client: &Client<HttpsConnector, Empty<Bytes>>,
    url: &str,
) -> Result<String, String> {
    let response =
        client.get(url.parse().unwrap()).await.map_err(|error| {
            match handshake_failure(&error) {
                Some(failure) => failure.to_string(),
                None => format!("other: {error:?}"),
            }
        })?;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn client_of(trust: &ClientTrust) -> Client<HttpsConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(trust.http_connector(Duration::from_secs(5)))
}

#[tokio::test]
async fn a_renewed_certificate_serves_new_connections_and_open_ones_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path()).unwrap();
    let renewed_dir = tempfile::tempdir().unwrap();
    // A pair of another CA, so that which one a connection got shows.
    let renewed = TestCertificates::generate(renewed_dir.path()).unwrap();
    let tls = ServerTls::load(&certificates.cert, &certificates.key).unwrap();
    let (address, _stop) = start_server_with(tls.clone()).await;
    let url = format!("https://127.0.0.1:{}/healthz", address.port());
    let old_trust = ClientTrust::from_ca_file(&certificates.ca).unwrap();
    let new_trust = ClientTrust::from_ca_file(&renewed.ca).unwrap();
    let open = client_of(&old_trust);
    assert_eq!(get_with(&open, &url).await.as_deref(), Ok("ok"));
    assert!(matches!(
        tls.reload_if_changed(),
        CertificateReload::Unchanged
    ));

    // Half renewed (the new certificate, the old key): refused, the old pair serves.
    std::fs::copy(&renewed.cert, &certificates.cert).unwrap();
    let refused = tls.reload_if_changed();
    let CertificateReload::Refused(error) = refused else {
        panic!("a certificate without its key was taken: {refused:?}");
    };
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error}");
    assert_eq!(get_healthz(&old_trust, &url).await.as_deref(), Ok("ok"));
    // Refused once, not again while the files stay so.
    assert!(matches!(
        tls.reload_if_changed(),
        CertificateReload::Unchanged
    ));

    std::fs::copy(&renewed.key, &certificates.key).unwrap();
    assert!(matches!(tls.reload_if_changed(), CertificateReload::Loaded));
    assert_eq!(get_healthz(&new_trust, &url).await.as_deref(), Ok("ok"));
    // A client of its own: one sharing the old session cache would resume its session,
    // which carries the old certificate's authentication over, as TLS means it to.
    let fresh_old_trust = ClientTrust::from_ca_file(&certificates.ca).unwrap();
    let error = get_healthz(&fresh_old_trust, &url)
        .await
        .expect_err("the old CA's");
    assert!(error.contains("certificate is not trusted"), "{error}");
    // The connection opened before the renewal is still served.
    assert_eq!(get_with(&open, &url).await.as_deref(), Ok("ok"));

    // A file that is no certificate at all: refused, the renewed pair serves on.
    std::fs::write(&certificates.cert, "not a certificate\n").unwrap();
    assert!(matches!(
        tls.reload_if_changed(),
        CertificateReload::Refused(TlsError::Parse { .. })
    ));
    assert_eq!(get_healthz(&new_trust, &url).await.as_deref(), Ok("ok"));
}

#[tokio::test]
async fn a_plain_http_request_to_the_tls_port_is_told_to_use_https() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path()).unwrap();
    let (address, _stop) = start_server(&certificates).await;
    let mut tcp = TcpStream::connect(address).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("use an https:// URL"), "{answer}");
    // The same through a real HTTP client: a 400 it can show, not a reset.
    let url = format!("http://127.0.0.1:{}/healthz", address.port());
    let body = get_healthz(&ClientTrust::system(), &url).await.unwrap();
    assert!(body.contains("this port speaks TLS"), "{body}");
}

#[tokio::test]
async fn an_https_client_of_a_plain_server_fails_the_handshake_clearly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    tokio::spawn(serve(listener, None, router, std::future::pending()));
    let url = format!("https://127.0.0.1:{}/healthz", address.port());
    let error = get_healthz(&ClientTrust::system(), &url)
        .await
        .expect_err("no TLS there");
    assert!(error.contains("TLS handshake failed"), "{error}");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path()).unwrap();
    let error =
        ServerTls::load(&certificates.cert, &certificates.other_key).expect_err("mismatched key");
    let message = error.to_string();
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{message}");
    assert!(message.contains("other.key"), "{message}");
    assert!(message.contains("server.pem"), "{message}");
}

#[test]
fn a_missing_key_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::generate(dir.path()).unwrap();
    let missing = dir.path().join("missing.key");
    let error = ServerTls::load(&certificates.cert, &missing).expect_err("no key");
    assert!(error.to_string().contains("missing.key"), "{error}");
}

#[test]
fn a_handshake_failure_says_what_to_fix() {
    let failure = HandshakeFailure::Failed("corrupt message".into());
    assert!(failure.to_string().contains("https://"), "{failure}");
}
