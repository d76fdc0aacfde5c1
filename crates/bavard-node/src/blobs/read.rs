//! Reading a blob locally (the HTTP response), complete or still arriving: bytes are handed
//! out only once verified, and a reader waiting for blocks asks the fetch for them first.

use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use bavard_blobs::BlobHash;
use bavard_blobs::ranges::{BLOCK_SIZE, block_bytes};
use bavard_blobs::store::{BlobReader, StoreError};
use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;

use super::fetch::FetchEntry;
use super::{BlobError, Blobs};
use crate::config::secs;

/// Bytes read at once for a local reader.
const READ_CHUNK: usize = 256 * 1024;
/// Blocks a waiting reader asks the fetch for first (16 MiB).
const PRIORITY_WINDOW: u64 = 1024;

/// A blob opened for reading ([`Blobs::open_read`]): complete here, or being fetched.
pub struct BlobRead {
    blobs: Blobs,
    hash: BlobHash,
    size: u64,
    /// The verified blocks as of the last look.
    reader: Arc<BlobReader>,
    /// The fetch, while the blob is not complete here.
    fetch: Option<(Arc<FetchEntry>, watch::Receiver<u64>)>,
}

impl BlobRead {
    pub(super) async fn open(blobs: Blobs, hash: BlobHash) -> Result<Self, BlobError> {
        match blobs
            .with_store(move |s| s.reader(hash, SystemTime::now()))
            .await?
        {
            Ok(reader) if reader.is_complete() => {
                return Ok(BlobRead {
                    blobs,
                    hash,
                    size: reader.size(),
                    reader: Arc::new(reader),
                    fetch: None,
                });
            }
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let entry = blobs.start_fetch(hash)?;
        let changes = entry.subscribe();
        let size = entry.wait_size().await?;
        let reader = blobs
            .with_store(move |s| s.reader(hash, SystemTime::now()))
            .await??;
        Ok(BlobRead {
            blobs,
            hash,
            size,
            reader: Arc::new(reader),
            fetch: Some((entry, changes)),
        })
    }

    /// The blob's hash.
    pub fn hash(&self) -> BlobHash {
        self.hash
    }

    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Up to `max` bytes at `offset` (fewer when the blob ends or only fewer are verified
    /// yet; empty at the end). Waits for the first of them to be verified, at most
    /// `[blobs] stall_timeout_secs` without progress.
    pub async fn read(&mut self, offset: u64, max: usize) -> Result<Bytes, BlobError> {
        if offset >= self.size || max == 0 {
            return Ok(Bytes::new());
        }
        let block = offset / BLOCK_SIZE;
        loop {
            if let Some(run) = self.reader.verified().iter().find(|r| r.contains(&block)) {
                let end = block_bytes(self.size, run.end - 1).end;
                let len = (end - offset).min(max as u64) as usize;
                let reader = self.reader.clone();
                let bytes = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len];
                    reader.read_at(offset, &mut buf).map(|()| Bytes::from(buf))
                })
                .await
                .map_err(|e| BlobError::Store(format!("a read task failed: {e}")))??;
                return Ok(bytes);
            }
            let Some((entry, changes)) = &mut self.fetch else {
                return Err(BlobError::Store(format!(
                    "block {block} of the complete blob {} is not readable",
                    self.hash
                )));
            };
            if !changes.has_changed().unwrap_or(false) {
                if let Some(e) = entry.failure() {
                    return Err(e);
                }
                let blocks = self.size.div_ceil(BLOCK_SIZE).max(1);
                entry.prioritize(block..(block + PRIORITY_WINDOW).min(blocks));
                let stall = secs(self.blobs.config().stall_timeout_secs);
                match tokio::time::timeout(stall, changes.changed()).await {
                    Err(_) => {
                        return Err(BlobError::Timeout(format!(
                            "no new block of blob {} for {stall:?}",
                            self.hash
                        )));
                    }
                    Ok(Err(_)) => return Err(BlobError::ShuttingDown),
                    Ok(Ok(())) => {}
                }
            }
            changes.borrow_and_update();
            let hash = self.hash;
            let reader = self
                .blobs
                .with_store(move |s| s.reader(hash, SystemTime::now()))
                .await??;
            self.reader = Arc::new(reader);
        }
    }

    /// The bytes of `range` as a stream of chunks, each verified; ends with an error (and
    /// no more bytes) if the fetch fails or stalls.
    pub fn into_stream(self, range: Range<u64>) -> impl Stream<Item = Result<Bytes, BlobError>> {
        let end = range.end.min(self.size);
        futures::stream::unfold(
            (self, range.start, false),
            move |(mut read, pos, failed)| async move {
                if failed || pos >= end {
                    return None;
                }
                let want = ((end - pos) as usize).min(READ_CHUNK);
                match read.read(pos, want).await {
                    Ok(bytes) if bytes.is_empty() => None,
                    Ok(bytes) => {
                        let next = pos + bytes.len() as u64;
                        Some((Ok(bytes), (read, next, false)))
                    }
                    Err(e) => Some((Err(e), (read, pos, true))),
                }
            },
        )
    }
}
