//! TLS to a real nats-server (`scripts/nats.sh` with `NATS_TLS_CERT`/`NATS_TLS_KEY`,
//! a certificate of a test CA): a URL naming that CA (`?tls_ca=`) publishes and reads
//! back over TLS; the same URL with another CA is refused, and so is `tls://` with the
//! system's roots only; a plain client of the TLS server cannot use it either.
use std::time::Duration;

use bytes::Bytes;
use essaim_connect_nats::broker::{self, StreamSpec, ensure_stream};
use essaim_connect_nats::publish::Publisher;
use essaim_testkit::server::{NATS, ScriptServer};
use essaim_tls::testing::TestCertificates;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_url_naming_the_ca_speaks_tls_and_another_ca_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let certificates = TestCertificates::generate(dir.path())?;
    let cert = certificates.cert.display().to_string();
    let key = certificates.key.display().to_string();
    let Some(server) =
        ScriptServer::start_with_env(NATS, &[("NATS_TLS_CERT", &cert), ("NATS_TLS_KEY", &key)])
    else {
        return Ok(());
    };
    // The certificate names localhost and 127.0.0.1, the script's URL the latter.
    let url = format!("{}?tls_ca={}", server.url(), certificates.ca.display());

    let context = broker::connect(&url, TIMEOUT).await?;
    let stream = ensure_stream(&context, &StreamSpec::new("SECURE", &["secure.in"])).await?;
    let mut publisher = Publisher::new(context.clone(), 8)?;
    for index in 0..5 {
        publisher
            .publish("secure.in", Bytes::from(format!("record-{index}")))
            .await?;
    }
    assert_eq!(publisher.flush().await?, 5);
    let mut stream = stream;
    assert_eq!(stream.info().await?.state.messages, 5);

    let refused = [
        format!(
            "{}?tls_ca={}",
            server.url(),
            certificates.other_ca.display()
        ),
        server.url().replacen("nats://", "tls://", 1),
    ];
    for refused_url in refused {
        let error = broker::connect(&refused_url, TIMEOUT)
            .await
            .err()
            .unwrap_or_else(|| panic!("{refused_url}: connected"));
        let chain = format!("{error}: {:?}", std::error::Error::source(&error));
        assert!(
            chain.contains("certificate") || chain.contains("UnknownIssuer"),
            "{refused_url}: {chain}"
        );
    }
    Ok(())
}
