//! TLS to a real PostgreSQL (`scripts/postgres.sh`, then `ssl = on` with a certificate
//! of a test CA): a sink whose URL says `sslmode=verify-full&sslrootcert=CA` writes its
//! batch over TLS (the server's `pg_stat_ssl` says so); the same URL with another CA is
//! refused before anything is written, and so is `require` with only the system's roots
//! (essaim verifies where libpq's `require` would not); `sslmode=disable` stays plain.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, ensure};
use essaim_connect_postgres::{PgSink, ResultRow, SinkBatch, SourcePosition, SqlValue, result_key};
use essaim_tls::testing::TestCertificates;
use tokio_postgres::Client;

mod common;
use common::{Cluster, counts_table};

/// Makes the server read `certificates` and turn TLS on (a reload is enough).
async fn turn_tls_on(admin: &Client, certificates: &TestCertificates) -> Result<()> {
    let cert = certificates.cert.display().to_string();
    let key = certificates.key.display().to_string();
    // ALTER SYSTEM refuses to run inside a transaction block: one statement a call.
    admin
        .batch_execute(&format!("ALTER SYSTEM SET ssl_cert_file = '{cert}'"))
        .await?;
    admin
        .batch_execute(&format!("ALTER SYSTEM SET ssl_key_file = '{key}'"))
        .await?;
    admin.batch_execute("ALTER SYSTEM SET ssl = on").await?;
    admin.batch_execute("SELECT pg_reload_conf()").await?;
    // The postmaster reloads asynchronously; a new backend then speaks TLS.
    for _ in 0..50 {
        let on: String = admin.query_one("SHOW ssl", &[]).await?.get(0);
        if on == "on" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the server did not turn TLS on");
}

/// Writes the certificates where the server's user can read them: when the tests run as
/// root, `scripts/postgres.sh` runs the server as `postgres`, which must own the key.
fn certificates_for_the_server(dir: &Path) -> Result<TestCertificates> {
    std::fs::create_dir_all(dir)?;
    let certificates = TestCertificates::generate(dir)?;
    let readable = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
    };
    // The server's user must reach them: every directory on the way is open to it.
    readable(dir, 0o755)?;
    if let Some(parent) = dir.parent() {
        readable(parent, 0o755)?;
    }
    readable(&certificates.cert, 0o644)?;
    readable(&certificates.key, 0o600)?;
    if runs_as_root() {
        let chown = Command::new("chown")
            .arg("postgres")
            .arg(&certificates.key)
            .status()?;
        ensure!(chown.success(), "chown postgres failed");
    }
    Ok(certificates)
}

fn runs_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

fn one_row_batch() -> SinkBatch {
    SinkBatch {
        rows: vec![ResultRow {
            key: result_key("agg", "k", 0),
            revision: 1,
            values: vec![
                SqlValue::Text("k".into()),
                SqlValue::BigInt(1),
                SqlValue::BigInt(1),
            ],
        }],
        positions: vec![SourcePosition {
            source: "s".into(),
            partition: 0,
            position: 1,
        }],
        checkpoint: None,
        other_tables: Vec::new(),
    }
}

/// Client backends of the server now connected over TLS.
async fn tls_backends(admin: &Client) -> Result<i64> {
    Ok(admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.backend_type = 'client backend' AND s.ssl AND a.pid <> pg_backend_pid()",
            &[],
        )
        .await?
        .get(0))
}

#[tokio::test]
async fn a_sink_asked_for_tls_verifies_the_server_and_refuses_an_unknown_ca() -> Result<()> {
    let Some(cluster) = Cluster::start() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let certificates = certificates_for_the_server(&dir.path().join("tls"))?;
    let admin = cluster.admin().await?;
    turn_tls_on(&admin, &certificates).await?;
    let url = cluster.server.url().to_owned();
    let with = |query: String| format!("{url}?{query}");

    // Verified against the test CA: the batch goes over TLS.
    let mut config = cluster.config("tls");
    config.connection.url = with(format!(
        "sslmode=verify-full&sslrootcert={}",
        certificates.ca.display()
    ));
    let (mut sink, _) = PgSink::open(config, counts_table()).await?;
    sink.write_batch(&one_row_batch()).await?;
    ensure!(
        tls_backends(&admin).await? >= 1,
        "the sink's connection is not TLS"
    );
    sink.close().await;

    // Another CA, or the system's roots only: refused, with the reason.
    for query in [
        format!(
            "sslmode=verify-full&sslrootcert={}",
            certificates.other_ca.display()
        ),
        "sslmode=require".to_owned(),
    ] {
        let refused = essaim_connect_postgres::tls::connect(&with(query.clone()))
            .await
            .err()
            .map(|error| format!("{error:#}: {:?}", std::error::Error::source(&error)));
        let refused = refused.unwrap_or_else(|| panic!("{query}: connected"));
        ensure!(
            refused.contains("certificate") || refused.contains("UnknownIssuer"),
            "{query}: {refused}"
        );
    }

    // Plain when asked for plain.
    let (plain, _driver) =
        essaim_connect_postgres::tls::connect(&with("sslmode=disable".into())).await?;
    let ssl: bool = plain
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    ensure!(!ssl, "sslmode=disable connected over TLS");
    Ok(())
}
