//! The blob service: the store, adds, listing, pinning, provider records, and the registry
//! of fetches.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bavard_blobs::BlobHash;
use bavard_blobs::protocol::Limits;
use bavard_blobs::store::{Store, StoreConfig};
use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use tokio::sync::{Semaphore, mpsc};

use super::fetch::FetchEntry;
use super::{
    AddReply, BlobEntry, BlobError, BlobMetrics, BlobRead, BlobStatus, BlobsConfig, ProviderStatus,
};
use crate::config::secs;
use crate::context::Context;
use crate::kad::client::Kad;
use crate::request::PeerLimiter;

/// Finished fetches remembered for their status.
const MAX_FINISHED_FETCHES: usize = 256;

/// Chunks of an upload buffered between the request body and the spooling thread.
const UPLOAD_QUEUE: usize = 8;

/// The blob service (cheap to clone). See the [module docs](super).
#[derive(Clone)]
pub struct Blobs(pub(super) Arc<Inner>);

pub(super) struct Inner {
    pub(super) ctx: Context,
    pub(super) kad: Kad,
    /// Taken only inside blocking tasks ([`Blobs::with_store`]). `None` once closed: a
    /// restart in the same process opens the directory again, and a late task of this
    /// node must not write to it then.
    store: Arc<Mutex<Option<Store>>>,
    pub(super) metrics: BlobMetrics,
    pub(super) config: BlobsConfig,
    /// The limits of `/bavard/blobs/1` messages (both directions).
    pub(super) limits: Limits,
    /// Fetches running or finished recently, by blob.
    fetches: Mutex<Fetches>,
    /// Gets served at once, over every peer.
    pub(super) serving: Arc<Semaphore>,
    /// Our streams per provider stay within its inbound limit (same configuration assumed).
    pub(super) outbound: PeerLimiter,
    /// Bytes served per peer.
    pub(super) pacer: super::server::Pacer,
}

#[derive(Default)]
struct Fetches {
    by_hash: HashMap<BlobHash, Arc<FetchEntry>>,
    /// Finished fetches, oldest first, to forget the oldest past [`MAX_FINISHED_FETCHES`].
    finished: VecDeque<BlobHash>,
}

impl Blobs {
    /// Opens the store at `DATA_DIR/blobs` (on a blocking task) and builds the service.
    pub(crate) async fn open(
        ctx: Context,
        kad: Kad,
        metrics: BlobMetrics,
    ) -> anyhow::Result<Blobs> {
        let config = ctx.config.blobs.clone();
        let dir = ctx.config.data_dir.join("blobs");
        let store_config = StoreConfig {
            quota: (config.quota_bytes > 0).then_some(config.quota_bytes),
            ..StoreConfig::default()
        };
        let store = tokio::task::spawn_blocking(move || Store::open(&dir, store_config))
            .await
            .map_err(|e| anyhow::anyhow!("opening the blob store failed: {e}"))?
            .map_err(|e| anyhow::anyhow!("cannot open the blob store: {e}"))?;
        for problem in store.open_problems() {
            tracing::warn!(path = %problem.path.display(), action = ?problem.action, "blob store: damaged entry dealt with at open");
        }
        metrics.stored_bytes.set(store.used_bytes() as i64);
        let limits = Limits::default();
        Ok(Blobs(Arc::new(Inner {
            serving: Arc::new(Semaphore::new(config.max_concurrent_serves)),
            outbound: PeerLimiter::new(config.max_streams_per_peer),
            pacer: super::server::Pacer::new(config.serve_bytes_per_sec_per_peer),
            ctx,
            kad,
            store: Arc::new(Mutex::new(Some(store))),
            metrics,
            config,
            limits,
            fetches: Mutex::new(Fetches::default()),
        })))
    }

    pub(super) fn ctx(&self) -> &Context {
        &self.0.ctx
    }

    pub(super) fn config(&self) -> &BlobsConfig {
        &self.0.config
    }

    /// Runs `f` on the store in a blocking task, then withdraws the provider records of the
    /// blobs it evicted. Every store call goes through here: none runs on an async worker.
    pub(super) async fn with_store<T, F>(&self, f: F) -> Result<T, BlobError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> T + Send + 'static,
    {
        let store = self.0.store.clone();
        let kad = self.0.kad.clone();
        let metrics = self.0.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = store.lock().unwrap_or_else(|e| e.into_inner());
            let store = guard.as_mut().ok_or(BlobError::ShuttingDown)?;
            let out = f(store);
            while let Some(hash) = store.poll_evicted() {
                tracing::debug!(%hash, "blob evicted; no longer announced");
                kad.unprovide(hash.as_bytes());
            }
            metrics.stored_bytes.set(store.used_bytes() as i64);
            Ok(out)
        })
        .await
        .map_err(|e| BlobError::Store(format!("a blob store task failed: {e}")))?
    }

    /// Adds the content of `body` as a blob, pinned, and announces it as a provider; refuses
    /// more than `[blobs] max_upload_bytes` and a body idle for the HTTP request timeout.
    ///
    /// The body is spooled and hashed on a blocking task fed through a short queue, without
    /// the store's lock, and committed at the end: an upload is never held in memory and
    /// never stops the store from serving.
    pub async fn add_stream<S, E>(&self, body: S) -> Result<AddReply, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        self.add_stream_within(body, self.0.config.max_upload_bytes)
            .await
    }

    /// [`Blobs::add_stream`] with another size limit than `[blobs] max_upload_bytes` (a
    /// large KV value is bounded by `[store] max_large_value_size`).
    pub async fn add_stream_within<S, E>(&self, body: S, max: u64) -> Result<AddReply, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let idle = secs(self.0.ctx.config.http.request_timeout_secs).max(Duration::from_secs(1));
        let spooler = self.with_store(|s| s.spooler()).await?;
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(UPLOAD_QUEUE);
        let spool = tokio::task::spawn_blocking(move || spooler.spool(ChannelReader::new(rx)));
        let fed = feed(body, &tx, max, idle).await;
        if let Err(e) = fed {
            // Make the spool fail (and remove its files) rather than commit a prefix.
            let _ = tx.send(Err(io::Error::other("upload aborted"))).await;
            drop(tx);
            let _ = spool.await;
            return Err(e);
        }
        drop(tx);
        let spooled = spool
            .await
            .map_err(|e| BlobError::Store(format!("the upload task failed: {e}")))??;
        let added = self
            .with_store(move |s| s.commit_spooled(spooled, true, SystemTime::now()))
            .await??;
        tracing::info!(hash = %added.hash, size = added.size, new = added.new, "blob added");
        let announced = self.announce(added.hash).await;
        Ok(AddReply {
            hash: added.hash.to_hex(),
            size: added.size,
            announced,
        })
    }

    /// Adds `bytes` as a blob (pinned) and announces it.
    pub async fn add_bytes(&self, bytes: Vec<u8>) -> Result<AddReply, BlobError> {
        let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(bytes))]);
        self.add_stream(body).await
    }

    /// Announces this node as a provider of `hash`; returns how many nodes accepted (this
    /// one included), 0 when the announce failed.
    pub(super) async fn announce(&self, hash: BlobHash) -> usize {
        match self.0.kad.provide(hash.as_bytes().to_vec()).await {
            Ok(acks) => acks,
            Err(e) => {
                tracing::warn!(%hash, "cannot announce the blob: {e}");
                0
            }
        }
    }

    /// Every blob held here, complete or not, in hash order.
    pub async fn list(&self) -> Result<Vec<BlobEntry>, BlobError> {
        let list = self.with_store(|s| s.list()).await?;
        Ok(list
            .into_iter()
            .map(|b| BlobEntry {
                hash: b.hash.to_hex(),
                size: b.size,
                verified_bytes: b.verified_bytes,
                complete: b.complete,
                pinned: b.pinned,
            })
            .collect())
    }

    /// Pins a blob held here: it is never evicted.
    pub async fn pin(&self, hash: BlobHash) -> Result<(), BlobError> {
        self.with_store(move |s| s.pin(hash, SystemTime::now()))
            .await?
            .map_err(BlobError::from)
    }

    /// Unpins a blob held here: once complete, it may be evicted when room is needed (and
    /// is then no longer announced). Until then it is still served.
    pub async fn unpin(&self, hash: BlobHash) -> Result<(), BlobError> {
        self.with_store(move |s| s.unpin(hash))
            .await?
            .map_err(BlobError::from)
    }

    /// The state of a blob here and of its current or last fetch.
    pub async fn status(&self, hash: BlobHash) -> Result<BlobStatus, BlobError> {
        let info = self.with_store(move |s| s.info(hash)).await?;
        let entry = self.fetch_entry(hash);
        if info.is_none() && entry.is_none() {
            return Err(BlobError::NotHere(hash));
        }
        let mut status = BlobStatus {
            hash: hash.to_hex(),
            size: info.as_ref().map(|i| i.size),
            verified_bytes: info.as_ref().map_or(0, |i| i.verified_bytes),
            complete: info.as_ref().is_some_and(|i| i.complete),
            pinned: info.as_ref().is_some_and(|i| i.pinned),
            state: String::new(),
            providers: Vec::new(),
            fetched_bytes: 0,
            resumed_bytes: 0,
            error: None,
        };
        let fetch_state = entry.as_ref().map(|e| e.snapshot());
        status.state = match (&fetch_state, status.complete) {
            (_, true) => "complete".into(),
            (Some(f), false) => f.phase.name().into(),
            (None, false) => "partial".into(),
        };
        if let Some(f) = fetch_state {
            status.size = status.size.or(f.size);
            status.providers = f
                .providers
                .iter()
                .map(|(peer, p)| ProviderStatus {
                    peer_id: peer.to_string(),
                    bytes: p.bytes,
                    active: p.active,
                    rate_bytes_per_sec: p.rate,
                    dropped: p.dropped.map(str::to_string),
                })
                .collect();
            status.fetched_bytes = f.fetched_bytes;
            status.resumed_bytes = f.resumed_bytes;
            status.error = f.phase.error();
        }
        Ok(status)
    }

    /// Opens a blob for reading: at once when it is complete here, else once a fetch
    /// (started now, or already running) has proven its size. Fails when no provider is
    /// found within `[blobs] provider_wait_secs`.
    pub async fn open_read(&self, hash: BlobHash) -> Result<BlobRead, BlobError> {
        BlobRead::open(self.clone(), hash).await
    }

    /// Fetches a blob (or joins the fetch already running) and waits until it is complete
    /// here; returns its size. For callers that do not stream it (tests, the CLI's tools).
    pub async fn fetch(&self, hash: BlobHash) -> Result<u64, BlobError> {
        if let Some(info) = self.with_store(move |s| s.info(hash)).await?
            && info.complete
        {
            return Ok(info.size);
        }
        let entry = self.start_fetch(hash)?;
        entry.wait_done().await
    }

    /// The fetch entry of `hash`, running or finished recently.
    pub(super) fn fetch_entry(&self, hash: BlobHash) -> Option<Arc<FetchEntry>> {
        self.lock_fetches().by_hash.get(&hash).cloned()
    }

    fn lock_fetches(&self) -> std::sync::MutexGuard<'_, Fetches> {
        self.0.fetches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running fetch of `hash`, or a new one (a finished one is replaced).
    pub(super) fn start_fetch(&self, hash: BlobHash) -> Result<Arc<FetchEntry>, BlobError> {
        if self.0.ctx.is_shutting_down() {
            return Err(BlobError::ShuttingDown);
        }
        let mut fetches = self.lock_fetches();
        if let Some(entry) = fetches.by_hash.get(&hash)
            && !entry.is_done()
        {
            return Ok(entry.clone());
        }
        let running = fetches.by_hash.values().filter(|e| !e.is_done()).count();
        if running >= self.0.config.max_concurrent_fetches {
            return Err(BlobError::TooManyFetches(running));
        }
        fetches.finished.retain(|h| *h != hash);
        let (entry, priorities) = FetchEntry::new();
        fetches.by_hash.insert(hash, entry.clone());
        drop(fetches);
        self.0.metrics.fetches_active.inc();
        let blobs = self.clone();
        let task_entry = entry.clone();
        tokio::spawn(async move {
            super::fetch::run(&blobs, hash, &task_entry, priorities).await;
            blobs.0.metrics.fetches_active.dec();
            blobs.finished(hash);
        });
        Ok(entry)
    }

    /// Remembers a finished fetch for its status, forgetting the oldest past the bound.
    fn finished(&self, hash: BlobHash) {
        let mut fetches = self.lock_fetches();
        fetches.finished.push_back(hash);
        while fetches.finished.len() > MAX_FINISHED_FETCHES {
            if let Some(old) = fetches.finished.pop_front()
                && fetches.by_hash.get(&old).is_some_and(|e| e.is_done())
            {
                fetches.by_hash.remove(&old);
            }
        }
    }

    /// At start: resumes the fetches a previous run left partial, and announces the complete
    /// blobs whose provider records were lost (an in-memory record store, or a record store
    /// replaced). Waits for the routing table first (bounded).
    pub(crate) async fn resume(self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut shutdown = std::pin::pin!(self.0.ctx.shutdown_signal());
        while self.0.ctx.table.lock().expect("table lock").is_empty() {
            if tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        let Ok(list) = self.with_store(|s| s.list()).await else {
            return;
        };
        let kad = self.0.kad.clone();
        let provided = tokio::task::spawn_blocking(move || kad.provided_keys())
            .await
            .unwrap_or_default();
        for blob in list {
            if self.0.ctx.is_shutting_down() {
                return;
            }
            if !blob.complete {
                tracing::info!(hash = %blob.hash, verified = blob.verified_bytes, size = blob.size, "resuming an interrupted blob fetch");
                if let Err(e) = self.start_fetch(blob.hash) {
                    tracing::warn!(hash = %blob.hash, "cannot resume the fetch: {e}");
                }
            } else if !provided.contains(blob.hash.as_bytes().as_slice()) {
                self.announce(blob.hash).await;
            }
        }
    }

    /// Makes every partial blob's verified blocks durable and closes the store (at
    /// shutdown): later calls fail with [`BlobError::ShuttingDown`].
    pub(crate) async fn close(&self) {
        let store = self.0.store.clone();
        let closed = tokio::task::spawn_blocking(move || {
            let mut guard = store.lock().unwrap_or_else(|e| e.into_inner());
            guard.take().map(|mut s| s.sync())
        })
        .await;
        if let Ok(Some(Err(e))) = closed {
            tracing::warn!("cannot sync the blob store: {e}");
        }
    }
}

/// Feeds `body` into the spool's queue, within `max` bytes and `idle` between chunks.
async fn feed<S, E>(
    mut body: S,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    max: u64,
    idle: Duration,
) -> Result<(), BlobError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut total = 0u64;
    loop {
        let chunk = match tokio::time::timeout(idle, body.next()).await {
            Err(_) => {
                return Err(BlobError::Upload(format!(
                    "no data for {idle:?} ([http] request_timeout_secs)"
                )));
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(BlobError::Upload(e.to_string())),
            Ok(Some(Ok(chunk))) => chunk,
        };
        total += chunk.len() as u64;
        if total > max {
            return Err(BlobError::TooLarge { size: total, max });
        }
        if tx.send(Ok(chunk)).await.is_err() {
            // The spool stopped (a disk error): its own error is reported.
            return Ok(());
        }
    }
}

/// A blocking [`io::Read`] over the chunks of an upload, for the spooling thread.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => self.current = chunk?,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
