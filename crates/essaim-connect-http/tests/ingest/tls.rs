//! The ingest endpoint serving TLS: probes answer over `https://` with a certificate of a
//! CA made by the test, and a plain-HTTP client is told to use `https://`.

use super::*;
use essaim_testkit::process::https_status;
use essaim_tls::testing::TestCertificates;
use essaim_tls::{ClientTrust, ServerTls};

#[tokio::test]
async fn ingest_serves_tls_and_tells_a_plain_http_client_to_use_https() -> TestResult {
    let Some(nats) = server::nats() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let certificates = TestCertificates::generate(dir.path())?;
    let tls = ServerTls::load(&certificates.cert, &certificates.key)?;
    let sources = vec![IngestSource::new("events", 1)];
    let server = IngestServer::start_with_tls(config(nats.url(), sources), Some(tls)).await?;
    let address = server.local_addr();
    let trust = ClientTrust::from_ca_file(&certificates.ca)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while https_status(address.port(), "/readyz", &trust).await != Some(200) {
        if Instant::now() > deadline {
            return Err("/readyz never answered 200 over TLS".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let plain = request(address, "GET", "/readyz", &[], b"").await?;
    assert_eq!(plain.status, 400, "{plain:?}");
    assert!(
        plain.body.to_string().contains("use an https:// URL"),
        "{plain:?}"
    );
    Ok(())
}
