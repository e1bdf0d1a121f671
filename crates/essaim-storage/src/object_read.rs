//! A synchronous reader of one object's bytes from an offset, for the blocking threads
//! of the data path.
//!
//! The GET is made on the storage runtime ([`crate::object::run`]), so that a missing
//! object or refused credentials fail `open` with the store's own error; its body is
//! then forwarded chunk by chunk over a bounded channel (4 chunks: the network runs a
//! little ahead of the mapper, never far), and dropping the reader closes the channel,
//! which ends the forwarding task and with it the request.

use std::io::Read;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStore};

use crate::error::StorageError;
use crate::object::{S3Options, object_error, object_path, run, runtime, store};

/// Chunks read ahead of the reader.
const CHUNKS_AHEAD: usize = 4;

/// The bytes of an object from an offset.
pub(crate) struct ObjectRead {
    chunks_rx: tokio::sync::mpsc::Receiver<Result<Bytes, object_store::Error>>,
    /// Received and not yet read.
    pending: Bytes,
    ended: bool,
}

/// Opens `bucket`/`key` from byte `from` to its end.
pub(crate) fn open(
    bucket: &str,
    key: &str,
    from: u64,
    options: &S3Options,
) -> Result<ObjectRead, StorageError> {
    let store = store(bucket, options)?;
    let path = object_path(key);
    let get_options = GetOptions {
        // No range from 0: an empty object has no byte 0 to start a range at.
        range: (from > 0).then_some(GetRange::Offset(from)),
        ..GetOptions::default()
    };
    let result = run(async move { store.get_opts(&path, get_options).await })?
        .map_err(object_error("read", bucket, key))?;
    let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
    runtime().spawn(async move {
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            let failed = chunk.is_err();
            // The reader is gone (its split ended): stop reading the body.
            if chunks_tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    let mut reader = ObjectRead {
        chunks_rx,
        pending: Bytes::new(),
        ended: false,
    };
    reader.receive().map_err(|source| StorageError::Io {
        action: "read",
        location: format!("s3://{bucket}/{key}"),
        source,
    })?;
    Ok(reader)
}

impl ObjectRead {
    /// Returns the first bytes received (at least one chunk, unless the object is
    /// empty), for sniffing a codec's magic number.
    pub(crate) fn peek(&self) -> &[u8] {
        &self.pending
    }

    /// Waits for the next non-empty chunk into `pending`, unless the body ended.
    fn receive(&mut self) -> std::io::Result<()> {
        while self.pending.is_empty() && !self.ended {
            // Not `blocking_recv`, which refuses to run on a runtime's thread: a job's
            // `prepare` reads inputs on the client's async thread (a header line).
            match futures_executor::block_on(self.chunks_rx.recv()) {
                None => self.ended = true,
                Some(Ok(chunk)) => self.pending = chunk,
                Some(Err(error)) => return Err(std::io::Error::other(error)),
            }
        }
        Ok(())
    }
}

impl Read for ObjectRead {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.receive()?;
        let count = buffer.len().min(self.pending.len());
        buffer[..count].copy_from_slice(&self.pending[..count]);
        let _ = self.pending.split_to(count);
        Ok(count)
    }
}
