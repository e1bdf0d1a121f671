//! The artifact store, the same cases on a directory and on a bucket of a real
//! S3-compatible server (s3s-fs, `scripts/s3.sh`): uploads named by their hash (one
//! over several multipart parts), loads hashed again and refused once the stored bytes
//! are overwritten behind the store's back, refused uploads leaving nothing named.
//!
//! The object-store client reads its credentials from the environment only, which a
//! test may not change in its own process: the bucket case runs this binary again,
//! its one test alone, with the server's credentials and endpoint in the environment.

// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use essaim_registry::RegistryError;
use essaim_registry::artifacts::{ArtifactLocation, ArtifactStore, relative_name, sha256_hex};
use essaim_testkit::server::{S3_ACCESS_KEY, S3_SECRET_KEY};
use std::io::Read;
use std::path::{Path, PathBuf};

const MAX_BYTES: u64 = 64 << 20;

/// Set in the child run: the directory the server keeps the bucket's objects in.
const BUCKET_DIR_VARIABLE: &str = "ESSAIM_TEST_ARTIFACT_BUCKET_DIR";

/// Deterministic bytes that no chunk boundary lines up with.
fn bytes_of(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 % 251) as u8).collect()
}

async fn upload(store: &ArtifactStore, chunks: &[&[u8]]) -> Result<String, RegistryError> {
    let mut upload = store.begin_upload().await?;
    for chunk in chunks {
        upload.write(chunk).await?;
    }
    Ok(upload.finish(None).await?.sha256)
}

async fn load(store: &'static ArtifactStore, sha256: &str) -> Result<Vec<u8>, RegistryError> {
    let sha256 = sha256.to_string();
    tokio::task::spawn_blocking(move || {
        let (mut file, found) = store.verify(&sha256)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        assert_eq!(found.size, bytes.len() as u64);
        assert_eq!(found.sha256, sha256);
        Ok(bytes)
    })
    .await
    .unwrap()
}

/// Every case; `stored_file` returns the file behind an artifact's name, which the
/// test overwrites to corrupt it.
async fn cases(store: &'static ArtifactStore, stored_file: impl Fn(&str) -> PathBuf) {
    let hello = upload(store, &[b"hello ", b"world"]).await.unwrap();
    // The SHA-256 of "hello world", computed elsewhere (sha256sum).
    let expected = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
    assert_eq!(hello, expected);
    assert_eq!(load(store, expected).await.unwrap(), b"hello world");
    assert_eq!(store.size_of(expected).await.unwrap(), Some(11));

    // Larger than a part of a multipart upload (8 MiB), sent in odd chunks.
    let big = bytes_of(19 << 20);
    let chunks: Vec<&[u8]> = big.chunks(300_001).collect();
    let big_sha = upload(store, &chunks).await.unwrap();
    assert_eq!(big_sha, sha256_hex(&big));
    assert!(load(store, &big_sha).await.unwrap() == big);

    // One flipped byte in the stored bytes: refused, naming both hashes.
    std::fs::write(
        stored_file(&relative_name(expected).unwrap()),
        b"hello World",
    )
    .unwrap();
    match load(store, expected).await {
        Err(RegistryError::ArtifactCorrupt { sha256, actual }) => {
            assert_eq!(sha256, expected);
            assert_eq!(actual, sha256_hex(b"hello World"));
        }
        other => panic!("expected a corrupt artifact, got {other:?}"),
    }

    // A declared hash that the bytes do not have: nothing is stored under either.
    let mut refused = store.begin_upload().await.unwrap();
    refused.write(b"abc").await.unwrap();
    let declared = sha256_hex(b"abd");
    assert!(matches!(
        refused.finish(Some(&declared)).await,
        Err(RegistryError::DigestMismatch { .. })
    ));
    for absent in [sha256_hex(b"abc"), declared] {
        assert_eq!(store.size_of(&absent).await.unwrap(), None);
        assert!(matches!(
            load(store, &absent).await,
            Err(RegistryError::ArtifactNotFound { .. })
        ));
    }
    let mut too_large = store.begin_upload().await.unwrap();
    assert!(matches!(
        too_large.write(&bytes_of(MAX_BYTES as usize + 1)).await,
        Err(RegistryError::TooLarge { .. })
    ));
    assert!(store.size_of("../../etc/passwd").await.is_err());
}

#[tokio::test]
async fn a_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = Box::leak(Box::new(ArtifactStore::open(&root, MAX_BYTES).unwrap()));
    cases(store, |name| root.join(name)).await;
    // Refused and interrupted uploads leave no temporary file.
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

#[tokio::test]
async fn a_bucket_store() {
    let Ok(bucket_dir) = std::env::var(BUCKET_DIR_VARIABLE) else {
        return run_again_with_a_bucket();
    };
    let location = ArtifactLocation::parse("s3://artifacts/registry/one").unwrap();
    let store = Box::leak(Box::new(
        ArtifactStore::open_at(&location, MAX_BYTES).unwrap(),
    ));
    let objects = Path::new(&bucket_dir).join("registry/one");
    cases(store, |name| objects.join(name)).await;
    // The objects are where their names say, and nothing else was put.
    assert_eq!(
        std::fs::read_dir(objects.join("sha256")).unwrap().count(),
        2,
        "two artifacts, in two directories of their first two digits"
    );
}

/// Starts the server, makes the bucket and runs `a_bucket_store` again in a child
/// process whose environment names them.
fn run_again_with_a_bucket() {
    let Some(server) = essaim_testkit::server::s3() else {
        return;
    };
    let bucket_dir = server.dir().join("store").join("artifacts");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["a_bucket_store", "--exact", "--nocapture"])
        .env(BUCKET_DIR_VARIABLE, &bucket_dir)
        .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
        .env("AWS_ENDPOINT", server.url())
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the run against the bucket failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
