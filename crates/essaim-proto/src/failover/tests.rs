//! The retry policy and the URL list, unit by unit and against real sockets.

use super::*;
use crate::v1;
use std::sync::Mutex as StdMutex;

fn urls(list: &str) -> CoordinatorUrls {
    CoordinatorUrls::parse(list).expect("valid list")
}

#[test]
fn a_comma_separated_list_is_parsed_in_order() {
    let parsed = urls(" http://c1:7070/, https://c2:7070 ");
    assert_eq!(parsed.as_slice(), ["http://c1:7070", "https://c2:7070"]);
    assert_eq!(parsed.to_string(), "http://c1:7070,https://c2:7070");
}

#[test]
fn a_bad_entry_is_refused_by_name() {
    for (list, bad, why) in [
        ("http://c1:7070,,http://c2:7070", "", "empty entry"),
        ("", "", "empty entry"),
        ("http://c1:7070,c2:7070", "c2:7070", "scheme"),
        ("ftp://c1:21", "ftp://c1:21", "scheme"),
        ("http://c1:7070,not a url", "not a url", ""),
    ] {
        let error = CoordinatorUrls::parse(list).expect_err(list);
        let ClientError::InvalidUrl { url, reason } = &error else {
            panic!("{list}: {error:?}");
        };
        assert_eq!(url, bad, "{list}");
        assert!(reason.contains(why), "{list}: {reason}");
    }
}

fn target(url: &str, list_index: usize) -> Target {
    Target {
        url: url.to_string(),
        list_index,
    }
}

#[test]
fn a_leader_hint_is_followed_and_the_list_resumes_after_it() {
    let list = urls("http://c1:1,http://c2:2,http://c3:3");
    let urls = list.as_slice();
    let at_first = target("http://c1:1", 0);
    let leader = next_target(urls, &at_first, Some("http://c3:3/"));
    assert_eq!(leader, target("http://c3:3", 0));
    // The named leader failed too and names nobody: back to the list, after c1.
    assert_eq!(next_target(urls, &leader, None), target("http://c2:2", 1));
}

#[test]
fn without_a_hint_the_next_url_is_tried_round_robin() {
    let list = urls("http://c1:1,http://c2:2");
    let urls = list.as_slice();
    let second = next_target(urls, &target("http://c1:1", 0), None);
    assert_eq!(second, target("http://c2:2", 1));
    assert_eq!(next_target(urls, &second, None), target("http://c1:1", 0));
    // A hint naming the failing coordinator itself is no hint.
    assert_eq!(
        next_target(urls, &second, Some("http://c2:2")),
        target("http://c1:1", 0)
    );
}

#[test]
fn a_standby_naming_a_silent_leader_is_not_followed_back_to_it_for_a_while() {
    let coordinators = Coordinators::new(urls("http://c1:1,http://c2:2"), None, 7);
    // c1 froze: its call timed out, and calls move to c2.
    assert_eq!(coordinators.went_silent("http://c1:1"), "http://c2:2");
    // c2 still names c1 (its lease has not expired yet): stay on c2, which will lead.
    let stayed = coordinators.failed("http://c2:2", Some("http://c1:1/"));
    assert_eq!(stayed, "http://c2:2");
    // Past the window the hint is followed again (c1 may have been only slow).
    let long_ago = Instant::now().checked_sub(SILENT_LEADER_WINDOW);
    coordinators.lock().silent = Some(("http://c1:1".into(), long_ago.expect("an instant")));
    let followed = coordinators.failed("http://c2:2", Some("http://c1:1"));
    assert_eq!(followed, "http://c1:1");
}

/// Returns a URL of loopback where nothing listens.
fn dead_url() -> String {
    dead_urls(1).remove(0)
}

/// Returns `count` distinct URLs nothing listens on: the ports are all held until every
/// one is drawn, so the kernel cannot hand out one twice.
fn dead_urls(count: usize) -> Vec<String> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|listener| {
            let port = listener.local_addr().expect("address").port();
            format!("http://127.0.0.1:{port}")
        })
        .collect()
}

/// Serves gRPC with no service at all: every call is answered UNIMPLEMENTED, which
/// proves it reached this server.
async fn serve_nothing() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::default())
            .serve_with_incoming(incoming),
    );
    url
}

/// Serves a standby: every call is answered UNAVAILABLE naming `leader`.
async fn serve_standby(leader: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let router = axum::Router::new().fallback(move || {
        let leader = leader.clone();
        async move {
            (
                [
                    ("content-type", "application/grpc".to_string()),
                    ("grpc-status", "14".to_string()),
                    ("grpc-message", "not the leader".to_string()),
                    (crate::LEADER_METADATA, leader),
                ],
                "",
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

fn recording(coordinators: Coordinators) -> (Coordinators, Arc<StdMutex<Vec<RetryNotice>>>) {
    let notices = Arc::new(StdMutex::new(Vec::new()));
    let seen = notices.clone();
    let observer: RetryObserver =
        Arc::new(move |notice: &RetryNotice| seen.lock().unwrap().push(notice.clone()));
    (coordinators.with_observer(observer), notices)
}

async fn get_job(
    coordinators: &Coordinators,
    deadline: Duration,
    idempotence: Idempotence,
) -> Result<v1::JobStatus, CallError> {
    coordinators
        .call(
            Some(Instant::now() + deadline),
            idempotence,
            |mut client| async move { client.get_job(v1::GetJobRequest { job_id: 1 }).await },
        )
        .await
}

#[tokio::test]
async fn a_dead_first_url_is_skipped_for_the_next() {
    let live = serve_nothing().await;
    let list = urls(&format!("{},{live}", dead_url()));
    let (coordinators, notices) = recording(Coordinators::new(list, None, 1));
    let answer = get_job(
        &coordinators,
        Duration::from_secs(10),
        Idempotence::Idempotent,
    )
    .await;
    let Err(CallError::Status(status)) = answer else {
        panic!("{answer:?}");
    };
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert_eq!(coordinators.current_url(), live);
    assert_eq!(notices.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_standby_hint_leads_to_the_leader_even_for_a_submission() {
    let leader = serve_nothing().await;
    let standby = serve_standby(leader.clone()).await;
    let (coordinators, notices) = recording(Coordinators::new(urls(&standby), None, 2));
    let answer = get_job(
        &coordinators,
        Duration::from_secs(10),
        Idempotence::NotIdempotent,
    )
    .await;
    let Err(CallError::Status(status)) = answer else {
        panic!("{answer:?}");
    };
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    let notices = notices.lock().unwrap();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].url, standby);
    assert_eq!(notices[0].next_url, leader);
}

#[tokio::test]
async fn the_call_gives_up_at_its_deadline_naming_the_coordinators() {
    let list = urls(&dead_urls(2).join(","));
    let (coordinators, notices) = recording(Coordinators::new(list.clone(), None, 3));
    let started = Instant::now();
    let answer = get_job(
        &coordinators,
        Duration::from_millis(1500),
        Idempotence::Idempotent,
    )
    .await;
    let elapsed = started.elapsed();
    let Err(CallError::Client(ClientError::Unreachable { url, .. })) = answer else {
        panic!("{answer:?}");
    };
    assert!(url.contains(&list.to_string()), "{url}");
    assert!(
        elapsed <= Duration::from_millis(1500) + CONNECT_ATTEMPT_TIMEOUT,
        "{elapsed:?}"
    );
    let notices = notices.lock().unwrap();
    assert!(notices.len() >= 2, "{notices:?}");
    let tried: std::collections::BTreeSet<&str> =
        notices.iter().map(|notice| notice.url.as_str()).collect();
    assert_eq!(tried.len(), 2, "both URLs are tried: {notices:?}");
    assert!(notices.iter().all(|notice| notice.remaining.is_some()));
}

#[test]
fn a_connection_broken_mid_call_counts_as_unavailable_but_a_refusal_does_not() {
    let refused = tonic::Status::not_found("no job 7");
    assert!(!is_unavailable(&refused));
    let unknown_from_the_coordinator = tonic::Status::unknown("boom");
    assert!(!is_unavailable(&unknown_from_the_coordinator));
    assert!(is_unavailable(&tonic::Status::unavailable("standby")));
}

#[tokio::test]
async fn a_final_refusal_is_returned_at_once() {
    let (coordinators, notices) =
        recording(Coordinators::new(urls(&serve_nothing().await), None, 4));
    let answer = get_job(
        &coordinators,
        Duration::from_secs(10),
        Idempotence::Idempotent,
    )
    .await;
    assert!(matches!(answer, Err(CallError::Status(_))), "{answer:?}");
    assert!(notices.lock().unwrap().is_empty());
}
