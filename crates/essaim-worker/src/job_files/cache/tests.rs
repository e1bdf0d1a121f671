//! The cache against the registry's real HTTP API on a port-0 socket, and against a
//! server that delivers other bytes than it names (a corrupted transfer).

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::AtomicUsize;

use essaim_registry::{DEFAULT_MAX_ARTIFACT_BYTES, Registry};

use super::*;

/// A registry served on loopback, counting the artifact downloads it answers.
struct Store {
    _dir: tempfile::TempDir,
    url: String,
    client: RegistryClient,
    downloads: Arc<AtomicUsize>,
}

async fn serve_store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let registry =
        Registry::open(&dir.path().join("registry"), DEFAULT_MAX_ARTIFACT_BYTES).unwrap();
    let downloads = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&downloads);
    let router =
        essaim_registry::http::router(Arc::new(registry)).layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let counter = Arc::clone(&counter);
                async move {
                    if request.method() == axum::http::Method::GET {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    next.run(request).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = RegistryClient::new(&url, None, "test").unwrap();
    Store {
        _dir: dir,
        url,
        client,
        downloads,
    }
}

/// Returns every entry under `dir`, recursively, relative to it.
fn entries(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(read) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in read {
        let path = entry.unwrap().path();
        found.push(path.strip_prefix(dir).unwrap().display().to_string());
        if path.is_dir() {
            for inner in entries(&path) {
                found.push(format!(
                    "{}/{inner}",
                    path.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_attempts_fetch_a_file_once_and_see_it_under_its_name() {
    let store = serve_store().await;
    let script = b"import sys\nfor line in sys.stdin: print(line.strip().upper())\n".repeat(1000);
    let uploaded = store.client.upload_bytes(script.clone()).await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let cache = Arc::new(JobFileCache::new(
        scratch.path(),
        std::slice::from_ref(&store.url),
        None,
        &Default::default(),
    ));
    let files = JobFiles::from([("map.py".to_string(), uploaded.sha256.clone())]);

    let mut attempts = Vec::new();
    for attempt in 0..8 {
        let cache = Arc::clone(&cache);
        let files = files.clone();
        let dir = scratch.path().join(format!("attempt-{attempt}/work"));
        attempts.push(tokio::spawn(async move {
            cache.stage(&files, &dir).await.map(|()| dir)
        }));
    }
    let cached = scratch
        .path()
        .join(JOB_FILES_CACHE_DIR)
        .join(CACHED_DIR)
        .join(&uploaded.sha256);
    for attempt in attempts {
        let dir = attempt.await.unwrap().unwrap();
        let staged = dir.join("map.py");
        assert_eq!(std::fs::read(&staged).unwrap(), script);
        // The same bytes on disk, not a copy; read-only for every attempt.
        let (staged_meta, cached_meta) = (
            std::fs::metadata(&staged).unwrap(),
            std::fs::metadata(&cached).unwrap(),
        );
        assert_eq!(staged_meta.ino(), cached_meta.ino());
        assert_eq!(staged_meta.mode() & 0o777, CACHED_FILE_MODE);
    }
    assert_eq!(
        store.downloads.load(Ordering::SeqCst),
        1,
        "fetched once per worker"
    );
    assert_eq!(
        entries(&scratch.path().join(JOB_FILES_CACHE_DIR).join(TEMPORARY_DIR)),
        Vec::<String>::new(),
        "no temporary file left"
    );

    // A later attempt finds it cached, even through a new cache of the same directory.
    let restarted = JobFileCache::new(
        scratch.path(),
        std::slice::from_ref(&store.url),
        None,
        &Default::default(),
    );
    restarted
        .stage(&files, &scratch.path().join("later"))
        .await
        .unwrap();
    assert_eq!(store.downloads.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_bytes_are_refused_naming_the_file_and_both_hashes() {
    let claimed = essaim_registry::artifacts::sha256_hex(b"print('the real script')\n");
    let delivered = b"print('something else')\n";
    let router = axum::Router::new().route(
        &format!("/registry/v1/artifacts/{claimed}"),
        axum::routing::get(move || async move { &delivered[..] }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let scratch = tempfile::tempdir().unwrap();
    let cache = JobFileCache::new(scratch.path(), &[url], None, &Default::default());
    let files = JobFiles::from([("map.py".to_string(), claimed.clone())]);
    let work = scratch.path().join("work");
    let error = cache.stage(&files, &work).await.unwrap_err();
    let message = error.to_string();
    let actual = essaim_registry::artifacts::sha256_hex(delivered);
    assert!(matches!(error, JobFilesError::Corrupt { .. }), "{message}");
    assert!(message.contains("map.py") && message.contains(&claimed) && message.contains(&actual));
    assert!(error.retryable());
    assert!(!work.join("map.py").exists());
    assert_eq!(
        entries(&scratch.path().join(JOB_FILES_CACHE_DIR)),
        ["sha256", "tmp"],
        "nothing cached, no temporary file left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_every_coordinator_lacks_fails_for_good_and_a_dead_coordinator_is_skipped() {
    let store = serve_store().await;
    let uploaded = store.client.upload_bytes(b"x,1\n".to_vec()).await.unwrap();
    // Nothing listens on the first URL: the second coordinator gives the file.
    let dead = format!("http://127.0.0.1:{}", unused_port());
    let scratch = tempfile::tempdir().unwrap();
    let cache = JobFileCache::new(
        scratch.path(),
        &[dead.clone(), store.url.clone()],
        None,
        &Default::default(),
    );
    let present = JobFiles::from([("lookup.csv".to_string(), uploaded.sha256)]);
    cache
        .stage(&present, &scratch.path().join("a"))
        .await
        .unwrap();

    // "Not stored" is final only when every coordinator says so: the one that did not
    // answer may be the leader (a standby answers 404 for the store it does not serve).
    let missing = JobFiles::from([("gone.py".to_string(), "0".repeat(64))]);
    let error = cache
        .stage(&missing, &scratch.path().join("b"))
        .await
        .unwrap_err();
    assert!(matches!(error, JobFilesError::Fetch { .. }), "{error}");
    assert!(error.retryable());
    let answering = JobFileCache::new(
        scratch.path(),
        std::slice::from_ref(&store.url),
        None,
        &Default::default(),
    );
    let error = answering
        .stage(&missing, &scratch.path().join("b2"))
        .await
        .unwrap_err();
    assert!(matches!(error, JobFilesError::NotFound { .. }), "{error}");
    assert!(!error.retryable());
    assert!(error.to_string().contains("gone.py"), "{error}");

    let unreachable = JobFileCache::new(scratch.path(), &[dead], None, &Default::default());
    let error = unreachable
        .stage(&missing, &scratch.path().join("c"))
        .await
        .unwrap_err();
    assert!(matches!(error, JobFilesError::Fetch { .. }), "{error}");
    assert!(error.retryable());
}

/// Returns a port nothing listens on (bound, then released).
fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
