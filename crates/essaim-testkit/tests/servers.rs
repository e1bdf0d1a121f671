//! The server fixtures against the real scripts: a server answers at the URL its script
//! printed, a restart (after a stop or a SIGKILL) keeps that URL, and dropping the
//! fixture stops the server. Skipped per server with `ESSAIM_SKIP_NATS=1`,
//! `ESSAIM_SKIP_POSTGRES=1` and `ESSAIM_SKIP_ETCD=1`. (The Kafka fixture is the same type; its first start
//! builds the broker, so the Kafka connector's tests exercise it.)

use std::net::TcpStream;
use std::time::Duration;

use essaim_testkit::server::{self, ScriptServer};

/// Returns the `127.0.0.1:PORT` of a server URL such as `nats://127.0.0.1:4222` or
/// `postgresql://postgres@127.0.0.1:5432/postgres`.
fn address(url: &str) -> String {
    let after_host = url
        .split("127.0.0.1:")
        .nth(1)
        .unwrap_or_else(|| panic!("{url} is not on loopback"));
    let port: String = after_host
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    format!("127.0.0.1:{port}")
}

fn answers(server: &ScriptServer) -> bool {
    let address = address(server.url()).parse().expect("a socket address");
    TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
}

#[test]
fn a_nats_server_restarts_on_its_url_after_a_stop_and_a_sigkill_and_stops_on_drop() {
    let Some(nats) = server::nats() else {
        return;
    };
    assert!(
        nats.url().starts_with("nats://127.0.0.1:"),
        "{}",
        nats.url()
    );
    assert!(answers(&nats), "nats-server answers at {}", nats.url());

    nats.stop();
    assert!(!answers(&nats), "a stopped server does not answer");
    nats.start_again();
    assert!(answers(&nats), "a restarted server answers at the same URL");

    nats.kill_9();
    nats.restart(Duration::ZERO);
    assert!(
        answers(&nats),
        "a server killed with SIGKILL restarts on its URL"
    );

    let url = nats.url().to_owned();
    let dir = nats.dir().to_owned();
    drop(nats);
    let probe = ScriptServer::external(server::NATS, url);
    assert!(!answers(&probe), "dropping the fixture stops the server");
    assert!(!dir.exists(), "dropping the fixture removes its directory");
}

#[test]
fn a_postgres_cluster_restarts_on_its_url_and_stops_on_drop() {
    let Some(postgres) = server::postgres() else {
        return;
    };
    assert!(
        postgres
            .url()
            .starts_with("postgresql://postgres@127.0.0.1:"),
        "{}",
        postgres.url()
    );
    assert!(
        answers(&postgres),
        "PostgreSQL answers at {}",
        postgres.url()
    );
    postgres.restart(Duration::ZERO);
    assert!(
        answers(&postgres),
        "a restarted cluster answers at the same URL"
    );
    let url = postgres.url().to_owned();
    drop(postgres);
    let probe = ScriptServer::external(server::POSTGRES, url);
    assert!(!answers(&probe), "dropping the fixture stops the cluster");
}

#[test]
fn an_etcd_starts_healthy_restarts_on_its_url_and_stops_on_drop() {
    let Some(etcd) = server::etcd() else {
        return;
    };
    assert!(
        etcd.url().starts_with("http://127.0.0.1:"),
        "{}",
        etcd.url()
    );
    assert!(answers(&etcd), "etcd answers at {}", etcd.url());
    etcd.restart(Duration::ZERO);
    assert!(answers(&etcd), "a restarted etcd answers at the same URL");
    let url = etcd.url().to_owned();
    drop(etcd);
    let probe = ScriptServer::external(server::ETCD, url);
    assert!(!answers(&probe), "dropping the fixture stops etcd");
}

#[test]
fn an_external_server_is_never_this_tests() {
    let external = ScriptServer::external(server::KAFKA, "127.0.0.1:9".to_owned());
    assert!(external.is_external());
    assert_eq!(external.url(), "127.0.0.1:9");
    // Dropping it runs no script: nothing to stop.
}

#[test]
fn a_three_member_etcd_answers_on_every_member_and_a_killed_member_rejoins() {
    let Some(etcd) = essaim_testkit::etcd_cluster::EtcdCluster::start(3) else {
        return;
    };
    let urls = etcd.urls();
    assert_eq!(urls.len(), 3);
    let reachable = |url: &str| {
        let probe = ScriptServer::external(server::ETCD, url.to_string());
        answers(&probe)
    };
    assert!(urls.iter().all(|url| reachable(url)), "{urls:?}");
    etcd.kill_member(2);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!reachable(&urls[2]), "a killed member does not answer");
    etcd.start_members(&[2]);
    assert!(reachable(&urls[2]), "a restarted member answers on its URL");
}
