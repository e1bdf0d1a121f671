//! S3 and S3-compatible object stores, through the `object_store` crate.
//!
//! **Configuration.** Credentials come only from the process's environment, as every
//! AWS tool reads them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, and `AWS_ENDPOINT`, `AWS_REGION`, `AWS_ALLOW_HTTP`): they never
//! travel in a task payload, which the coordinator journals and `essaim dlq show`
//! prints. What a job names explicitly ([`S3Options`]: `--s3-endpoint`, `--s3-region`,
//! `--s3-allow-http`) travels with it and overrides the environment on every worker,
//! so a client pointed at a test server sends its workers there too. Requests are
//! path-style (`endpoint/bucket/key`), which every S3-compatible server accepts.
//!
//! **One I/O runtime.** The data path of MapReduce tasks is synchronous, on blocking
//! threads; the planner is synchronous too. Object-store calls are async, and their
//! HTTP client's connections belong to the runtime they were made on. So this module
//! owns one small runtime of its own, [`run`] sends a call there and waits for its
//! answer on a channel (which works from any thread, async or not, without nesting
//! runtimes), and stores are cached per (bucket, options) so connections are reused.
//!
//! **Retries.** A failed request is retried 3 times within 15 s (the crate's default
//! is 10 times within 3 minutes): a task's own retries, on another worker, are the
//! better remedy for a store that stays down. Client errors (no such bucket, refused
//! credentials) are not retried at all, and fail the task for good.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize};

use crate::error::StorageError;

/// What a job says about its object store, on top of the environment's `AWS_*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct S3Options {
    /// The endpoint URL of an S3-compatible server (`http://127.0.0.1:9000`); `None`
    /// for `AWS_ENDPOINT`, else AWS itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region; `None` for `AWS_REGION`, else `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Allows `http://` endpoints (test servers); `AWS_ALLOW_HTTP=true` does too.
    #[serde(default)]
    pub allow_http: bool,
}

/// Runs `call` on the storage runtime and waits for its result, from any thread.
pub fn run<T: Send + 'static>(
    call: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, StorageError> {
    let (answer_tx, answer_rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        // The caller may be gone (its task cancelled): nobody to answer.
        let _ = answer_tx.send(call.await);
    });
    answer_rx.recv().map_err(|_| StorageError::Internal {
        reason: "the storage runtime dropped a call".into(),
    })
}

/// Runs `call` on the storage runtime and awaits its result, from async code of any
/// runtime (the connections stay with the storage runtime, see the module's doc).
pub async fn call<T: Send + 'static>(
    call: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, StorageError> {
    runtime()
        .spawn(call)
        .await
        .map_err(|error| StorageError::Internal {
            reason: format!("the storage runtime dropped a call: {error}"),
        })
}

/// The runtime every object-store call runs on (see the module's doc).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("essaim-storage-io")
            .enable_all()
            .build()
            .expect("a runtime of two threads can be built")
    })
}

/// Returns the (cached) store of `bucket` with `options`.
pub fn store(bucket: &str, options: &S3Options) -> Result<Arc<AmazonS3>, StorageError> {
    type Stores = Mutex<BTreeMap<(String, S3Options), Arc<AmazonS3>>>;
    static STORES: OnceLock<Stores> = OnceLock::new();
    let stores = STORES.get_or_init(Stores::default);
    let cache_key = (bucket.to_string(), options.clone());
    if let Some(store) = stores
        .lock()
        .expect("the store cache is never poisoned: no panic while held")
        .get(&cache_key)
    {
        return Ok(Arc::clone(store));
    }
    // rustls needs a process-wide crypto provider; the tree already has ring. Installing
    // it twice is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
            ..RetryConfig::default()
        });
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &options.region {
        builder = builder.with_region(region);
    }
    if options.allow_http {
        builder = builder.with_allow_http(true);
    }
    let store = Arc::new(builder.build().map_err(|cause| StorageError::Object {
        action: "configure the object store for",
        location: format!("s3://{bucket}"),
        cause,
    })?);
    stores
        .lock()
        .expect("the store cache is never poisoned: no panic while held")
        .insert(cache_key, Arc::clone(&store));
    Ok(store)
}

/// Returns the object path of `key` (empty for a whole bucket).
pub(crate) fn object_path(key: &str) -> ObjectPath {
    ObjectPath::from(key)
}

/// Wraps an object-store error on `bucket`/`key`.
pub(crate) fn object_error(
    action: &'static str,
    bucket: &str,
    key: &str,
) -> impl FnOnce(object_store::Error) -> StorageError {
    let location = if key.is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{key}")
    };
    move |cause| StorageError::Object {
        action,
        location,
        cause,
    }
}

/// An object and its size, from a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Lists every object under `prefix` (the prefix itself as an object included), in key
/// order.
pub fn list(
    bucket: &str,
    prefix: &str,
    options: &S3Options,
) -> Result<Vec<ListedObject>, StorageError> {
    use futures_util::TryStreamExt;
    let store = store(bucket, options)?;
    let prefix_path = object_path(prefix);
    let listed = run(async move {
        let prefix = (!prefix_path.as_ref().is_empty()).then_some(&prefix_path);
        store.list(prefix).try_collect::<Vec<_>>().await
    })?
    .map_err(object_error("list", bucket, prefix))?;
    let mut objects: Vec<ListedObject> = listed
        .into_iter()
        .map(|meta| ListedObject {
            key: meta.location.to_string(),
            size: meta.size,
        })
        .collect();
    objects.sort_by(|left, right| left.key.cmp(&right.key));
    Ok(objects)
}

/// Reads `range` of an object.
pub fn get_range(
    bucket: &str,
    key: &str,
    range: std::ops::Range<u64>,
    options: &S3Options,
) -> Result<bytes::Bytes, StorageError> {
    use object_store::ObjectStoreExt;
    let store = store(bucket, options)?;
    let path = object_path(key);
    run(async move { store.get_range(&path, range).await })?
        .map_err(object_error("read", bucket, key))
}

/// Returns the size of the object `key` (one HEAD request).
pub fn object_size(bucket: &str, key: &str, options: &S3Options) -> Result<u64, StorageError> {
    use object_store::ObjectStoreExt;
    let store = store(bucket, options)?;
    let path = object_path(key);
    let meta =
        run(async move { store.head(&path).await })?.map_err(object_error("read", bucket, key))?;
    Ok(meta.size)
}

/// Expands an input prefix as Hadoop expands a directory: every object under it whose
/// path below the prefix has no part starting with `_` or `.` (markers such as
/// `_SUCCESS`, a job's `_temporary/`); or, with nothing under it, the object named
/// `key` itself. Returns `(key, size)` in key order; empty when nothing is there.
pub fn list_inputs(
    bucket: &str,
    key: &str,
    options: &S3Options,
) -> Result<Vec<ListedObject>, StorageError> {
    use object_store::ObjectStoreExt;
    let listed = list(bucket, key, options)?;
    let under = |object: &ListedObject| {
        let relative = object.key.strip_prefix(key).unwrap_or(&object.key);
        !relative
            .split('/')
            .any(|part| part.starts_with('_') || part.starts_with('.'))
    };
    let inputs: Vec<ListedObject> = listed.into_iter().filter(under).collect();
    if !inputs.is_empty() || key.is_empty() {
        return Ok(inputs);
    }
    let store = store(bucket, options)?;
    let path = object_path(key);
    match run(async move { store.head(&path).await })? {
        Ok(meta) => Ok(vec![ListedObject {
            key: key.to_string(),
            size: meta.size,
        }]),
        Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
        Err(source) => Err(object_error("read", bucket, key)(source)),
    }
}

/// Returns the codec of an object by its name, or, when `sniff` is set and the name
/// says nothing, by its first bytes (one small ranged GET).
pub fn object_codec(
    bucket: &str,
    key: &str,
    sniff: bool,
    options: &S3Options,
) -> Result<Option<crate::Codec>, StorageError> {
    let name = key.rsplit('/').next().unwrap_or(key);
    if let Some(codec) = crate::Codec::from_file_name(name) {
        return Ok(Some(codec));
    }
    if !sniff {
        return Ok(None);
    }
    let head = get_range(bucket, key, 0..crate::codec::SNIFF_BYTES as u64, options)?;
    Ok(crate::Codec::sniff(&head))
}
