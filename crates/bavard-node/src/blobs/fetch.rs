//! The fetch driver: one task per blob being fetched, driving `bavard-blobs`'
//! [`Fetch`] scheduler over `/bavard/blobs/1` streams.
//!
//! 1. **Where to start.** A blob partly here (an interrupted fetch: the store checkpoints
//!    verified blocks) resumes with its blocks and known size. Otherwise the driver looks
//!    for providers (GET_PROVIDERS; again with backoff until `[blobs] provider_wait_secs`)
//!    and asks them, one after another, for the size; the first proven answer
//!    ([`check_size_answer`]) allocates the blob ([`Store::begin_fetch`]). A provider whose
//!    proof does not verify is not used.
//! 2. **Providers.** Each provider is first asked which blocks it has (a have query: a node
//!    still fetching serves the blocks it verified), then added to the scheduler, at most
//!    `max_providers_per_fetch` at once. More are looked for when the scheduler runs out
//!    ([`Action::NeedProviders`]) and every `provider_refresh_secs` while below the bound. A
//!    provider dropped as failed or stalled is not taken back for a while; one that sent bad
//!    data never (the scheduler bans it).
//! 3. **Transfers.** Each [`Action::Request`] is a task: open a stream, send the get, feed
//!    every frame to a [`Download`], write the verified blocks to the store in small batches
//!    (on a blocking task), then report them to the scheduler — so the scheduler counts only
//!    blocks that are stored. The first bad block ends the transfer with the download's
//!    [`Verdict`]. [`Action::Cancel`] aborts the task (the stream is reset).
//! 4. **Announcing.** With `[blobs] announce_partial` (the default) the driver announces
//!    this node as a provider once the first blocks are stored, in the background: the node
//!    serves the blocks it verified, so leechers that arrive together trade blocks among
//!    themselves rather than all waiting on the seeders.
//! 5. **Completion.** The store completes the blob with the last block (fsync, meta). The
//!    driver makes sure the blob is announced (waits for the early announce, or announces
//!    now when there was none or it reached no peer) and only then reports the fetch
//!    complete, so that a node waiting for it can find this one.
//!
//! Readers ([`super::BlobRead`]) follow the fetch through its [`FetchEntry`]: they wait for
//! the size, then for the blocks they need, and ask for them first (a priority range).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bavard_blobs::encoding::{DecodeError, VerifiedBlock};
use bavard_blobs::protocol::{
    Download, DownloadError, ErrorCode, Request, Response, Verdict, check_size_answer,
};
use bavard_blobs::ranges::block_count;
use bavard_blobs::store::{FetchStart, Store};
use bavard_blobs::swarm::{Action, Availability, DropReason, Fetch, FetchConfig, RequestId};
use bavard_blobs::{BlobHash, BlockRanges};
use futures::AsyncWriteExt as _;
use libp2p::PeerId;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::{BLOBS_PROTOCOL, BlobError, Blobs};
use crate::config::secs;
use crate::request::open_stream;

/// Verified blocks written to the store at once by a transfer (128 KiB).
const WRITE_BATCH: usize = 8;
/// Providers found but not used yet, kept for when one drops.
const MAX_CANDIDATES: usize = 64;
/// The shortest gap between two provider lookups of a fetch that needs providers.
const URGENT_LOOKUP_GAP: Duration = Duration::from_millis(500);
/// Buffer of a transfer's stream reader.
const READ_BUFFER: usize = 64 * 1024;

/// Where a fetch is.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// Looking for providers and for a proof of the size.
    FindingProviders,
    /// Transferring blocks.
    Fetching,
    /// Every block is here (and the blob was announced).
    Complete,
    /// Stopped; the blocks verified so far stay in the store.
    Failed(BlobError),
}

impl Phase {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Phase::FindingProviders => "finding_providers",
            Phase::Fetching => "fetching",
            Phase::Complete => "complete",
            Phase::Failed(_) => "failed",
        }
    }

    pub(crate) fn error(&self) -> Option<String> {
        match self {
            Phase::Failed(e) => Some(e.to_string()),
            _ => None,
        }
    }
}

/// One provider's part, as the status shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProviderState {
    pub(crate) bytes: u64,
    pub(crate) active: bool,
    pub(crate) rate: Option<f64>,
    pub(crate) dropped: Option<&'static str>,
}

/// What readers and the status see of a fetch.
#[derive(Debug, Clone)]
pub(crate) struct FetchState {
    pub(crate) phase: Phase,
    pub(crate) size: Option<u64>,
    pub(crate) providers: BTreeMap<PeerId, ProviderState>,
    pub(crate) fetched_bytes: u64,
    pub(crate) resumed_bytes: u64,
}

/// A fetch as shared between its driver and its readers.
pub(crate) struct FetchEntry {
    state: Mutex<FetchState>,
    /// Bumped at every change (new blocks, phase), to wake readers.
    changed: watch::Sender<u64>,
    /// Ranges readers wait for.
    priority: mpsc::UnboundedSender<Range<u64>>,
}

impl FetchEntry {
    pub(crate) fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Range<u64>>) {
        let (priority, rx) = mpsc::unbounded_channel();
        let entry = Arc::new(FetchEntry {
            state: Mutex::new(FetchState {
                phase: Phase::FindingProviders,
                size: None,
                providers: BTreeMap::new(),
                fetched_bytes: 0,
                resumed_bytes: 0,
            }),
            changed: watch::channel(0).0,
            priority,
        });
        (entry, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn snapshot(&self) -> FetchState {
        self.lock().clone()
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.lock().phase, Phase::Complete | Phase::Failed(_))
    }

    fn update(&self, f: impl FnOnce(&mut FetchState)) {
        f(&mut self.lock());
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that wakes at every change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Asks the driver to fetch `blocks` before any other.
    pub(crate) fn prioritize(&self, blocks: Range<u64>) {
        let _ = self.priority.send(blocks);
    }

    /// Waits until the size is proven (or the fetch failed).
    pub(crate) async fn wait_size(&self) -> Result<u64, BlobError> {
        let mut rx = self.subscribe();
        loop {
            {
                let state = self.lock();
                if let Some(size) = state.size {
                    return Ok(size);
                }
                if let Phase::Failed(e) = &state.phase {
                    return Err(e.clone());
                }
            }
            if rx.changed().await.is_err() {
                return Err(BlobError::ShuttingDown);
            }
        }
    }

    /// Waits until the fetch ends; the blob's size when complete.
    pub(crate) async fn wait_done(&self) -> Result<u64, BlobError> {
        let mut rx = self.subscribe();
        loop {
            {
                let state = self.lock();
                match &state.phase {
                    Phase::Complete => return Ok(state.size.unwrap_or(0)),
                    Phase::Failed(e) => return Err(e.clone()),
                    _ => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err(BlobError::ShuttingDown);
            }
        }
    }

    /// The error of a failed fetch.
    pub(crate) fn failure(&self) -> Option<BlobError> {
        match &self.lock().phase {
            Phase::Failed(e) => Some(e.clone()),
            _ => None,
        }
    }
}

/// Runs the fetch of `hash` to its end and records the outcome in `entry`.
pub(crate) async fn run(
    blobs: &Blobs,
    hash: BlobHash,
    entry: &FetchEntry,
    priorities: mpsc::UnboundedReceiver<Range<u64>>,
) {
    let result = drive(blobs, hash, entry, priorities).await;
    if result.is_err() {
        // Checkpoint what arrived, so that the next fetch starts from it.
        if let Ok(Err(e)) = blobs.with_store(|s| s.sync()).await {
            tracing::warn!(%hash, "cannot checkpoint the partial blob: {e}");
        }
    }
    match result {
        Ok(()) => {
            tracing::info!(%hash, "blob fetched");
            entry.update(|s| s.phase = Phase::Complete);
        }
        Err(e) => {
            tracing::info!(%hash, "blob fetch failed: {e}");
            entry.update(|s| s.phase = Phase::Failed(e));
        }
    }
}

/// Why a transfer or a query failed, as the scheduler takes it.
#[derive(Debug)]
struct Failure {
    verdict: Verdict,
    /// A block, tree node or proof failed verification.
    verification: bool,
    why: String,
}

impl Failure {
    fn failed(why: impl ToString) -> Self {
        Failure {
            verdict: Verdict::Failed,
            verification: false,
            why: why.to_string(),
        }
    }

    fn bad_data(why: impl ToString) -> Self {
        Failure {
            verdict: Verdict::BadData,
            verification: false,
            why: why.to_string(),
        }
    }

    fn from_download(e: DownloadError) -> Self {
        let verification = matches!(
            e,
            DownloadError::Decode(DecodeError::BadBlock { .. } | DecodeError::BadParent { .. })
        );
        Failure {
            verdict: e.verdict(),
            verification,
            why: e.to_string(),
        }
    }
}

/// What the driver hears from its tasks.
enum Event {
    /// Blocks of request `id`, verified and stored.
    Blocks {
        id: RequestId,
        provider: PeerId,
        blocks: Vec<u64>,
        bytes: u64,
    },
    /// Request `id` ended.
    Done {
        id: RequestId,
        provider: PeerId,
        result: Result<(), Failure>,
    },
    /// Writing to the store failed: the fetch cannot go on.
    StoreFailed(BlobError),
    /// A provider's answer to the have query.
    Have {
        provider: PeerId,
        answer: Result<Availability, Failure>,
    },
    /// Providers found in the DHT.
    Found(Vec<PeerId>),
}

async fn drive(
    blobs: &Blobs,
    hash: BlobHash,
    entry: &FetchEntry,
    mut priorities: mpsc::UnboundedReceiver<Range<u64>>,
) -> Result<(), BlobError> {
    let ctx = blobs.ctx().clone();
    let cfg = blobs.config().clone();
    let provider_wait = secs(cfg.provider_wait_secs);
    let mut shutdown = pin!(ctx.shutdown_signal());

    let local = blobs.with_store(move |s| s.have(hash)).await?;
    let mut candidates = Vec::new();
    let mut refused = HashSet::new();
    let (size, verified) = match local {
        Some(here) => here,
        None => {
            let proven = tokio::select! {
                _ = &mut shutdown => return Err(BlobError::ShuttingDown),
                proven = prove_size(blobs, hash, &mut candidates, &mut refused) => proven?,
            };
            match proven {
                (size, FetchStart::Complete) => (size, BlockRanges::all(size)),
                (size, FetchStart::Partial { verified }) => (size, verified),
            }
        }
    };
    let resumed = verified.byte_len(size);
    entry.update(|s| {
        s.size = Some(size);
        s.resumed_bytes = resumed;
        s.phase = Phase::Fetching;
    });
    if verified.block_count() == block_count(size) {
        blobs.announce(hash).await;
        return Ok(());
    }
    if resumed > 0 {
        tracing::info!(%hash, resumed, size, "resuming a blob fetch");
    }

    let fetch_config = FetchConfig {
        stall_timeout: secs(cfg.stall_timeout_secs),
        ..FetchConfig::default()
    };
    let mut driver = Driver {
        blobs: blobs.clone(),
        hash,
        size,
        fetch: Fetch::new(size, &verified, fetch_config, StdRng::from_os_rng()),
        events: mpsc::unbounded_channel(),
        tasks: JoinSet::new(),
        requests: HashMap::new(),
        probing: HashSet::new(),
        candidates: Vec::new(),
        refused,
        failed_at: HashMap::new(),
        dropped: HashMap::new(),
        lookup_running: false,
        need_lookup: false,
        // A fetch that just proved the size has just looked providers up.
        last_lookup: (!candidates.is_empty()).then(Instant::now),
        starving_since: None,
        fetched_bytes: 0,
        ever_had_provider: !candidates.is_empty(),
        early_announce: None,
    };
    driver.offer(candidates);
    driver.lookup_if_needed();
    loop {
        driver.process_actions();
        if driver.fetch.is_complete() {
            break;
        }
        driver.publish(entry);
        let now = Instant::now();
        if let Some(since) = driver.starving_since
            && now.duration_since(since) >= provider_wait
        {
            return Err(if driver.ever_had_provider {
                BlobError::FetchFailed {
                    hash,
                    why: format!(
                        "every provider failed or left, and no other was found within \
                         {provider_wait:?}"
                    ),
                }
            } else {
                BlobError::NotFound {
                    hash,
                    waited: provider_wait,
                }
            });
        }
        let wake = [
            driver.fetch.poll_timeout(),
            driver.next_lookup_at(now),
            driver.starving_since.map(|s| s + provider_wait),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now + Duration::from_secs(1));
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(wake));
        tokio::select! {
            _ = &mut shutdown => return Err(BlobError::ShuttingDown),
            Some(event) = driver.events.1.recv() => driver.handle(event)?,
            Some(blocks) = priorities.recv() => driver.fetch.set_priority(Some(blocks), Instant::now()),
            _ = sleep => {
                driver.fetch.handle_timeout(Instant::now());
                driver.lookup_if_needed();
            }
        }
        while driver.tasks.try_join_next().is_some() {}
    }
    driver.tasks.abort_all();
    driver.publish(entry);
    let early_acks = match driver.early_announce.take() {
        Some(running) => running.await.unwrap_or(0),
        None => 0,
    };
    if early_acks == 0 {
        blobs.announce(hash).await;
    }
    Ok(())
}

/// The state of one fetch's main loop.
struct Driver {
    blobs: Blobs,
    hash: BlobHash,
    size: u64,
    fetch: Fetch<PeerId, StdRng>,
    events: (mpsc::UnboundedSender<Event>, mpsc::UnboundedReceiver<Event>),
    tasks: JoinSet<()>,
    /// Running transfers, to cancel them.
    requests: HashMap<RequestId, tokio::task::AbortHandle>,
    /// Providers whose have query is running.
    probing: HashSet<PeerId>,
    /// Providers found but not used yet.
    candidates: Vec<PeerId>,
    /// Providers never to use again in this fetch (bad size proof, bad have answer).
    refused: HashSet<PeerId>,
    /// When a provider was last dropped as failed or stalled (not taken back for a while).
    failed_at: HashMap<PeerId, Instant>,
    /// Why providers were dropped, for the status.
    dropped: HashMap<PeerId, &'static str>,
    lookup_running: bool,
    need_lookup: bool,
    last_lookup: Option<Instant>,
    /// Since when the fetch has had no provider at all.
    starving_since: Option<Instant>,
    fetched_bytes: u64,
    ever_had_provider: bool,
    /// The provider announce started when the first blocks were stored (peers it reached).
    early_announce: Option<tokio::task::JoinHandle<usize>>,
}

impl Driver {
    fn cfg(&self) -> &super::BlobsConfig {
        self.blobs.config()
    }

    fn active_providers(&self) -> usize {
        self.fetch.providers().filter(|(_, p)| p.active).count()
    }

    /// Takes in providers: asks each new one what it holds, within the per-fetch bound;
    /// keeps the rest for later.
    fn offer(&mut self, found: Vec<PeerId>) {
        let me = self.blobs.ctx().peer_id;
        let retry_after = secs(self.cfg().stall_timeout_secs) * 3;
        let now = Instant::now();
        let in_fetch: HashSet<PeerId> = self
            .fetch
            .providers()
            .filter(|(_, p)| p.active)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in found {
            let recently_failed = self
                .failed_at
                .get(&peer)
                .is_some_and(|t| now.duration_since(*t) < retry_after);
            if peer == me
                || in_fetch.contains(&peer)
                || self.probing.contains(&peer)
                || self.refused.contains(&peer)
                || self.fetch.is_banned(&peer)
                || recently_failed
                || self.candidates.contains(&peer)
            {
                continue;
            }
            if self.candidates.len() < MAX_CANDIDATES {
                self.candidates.push(peer);
            }
        }
        self.fill();
    }

    /// Starts have queries for candidates while below `max_providers_per_fetch`.
    fn fill(&mut self) {
        let max = self.cfg().max_providers_per_fetch;
        while self.active_providers() + self.probing.len() < max && !self.candidates.is_empty() {
            let peer = self.candidates.remove(0);
            self.probing.insert(peer);
            let (blobs, hash, size) = (self.blobs.clone(), self.hash, self.size);
            let tx = self.events.0.clone();
            self.tasks.spawn(async move {
                let answer = have(&blobs, peer, hash, size).await;
                let _ = tx.send(Event::Have {
                    provider: peer,
                    answer,
                });
            });
        }
        if self.active_providers() + self.probing.len() == 0 {
            self.starving_since.get_or_insert_with(Instant::now);
            self.need_lookup = true;
        } else {
            self.starving_since = None;
        }
    }

    /// When the next provider lookup is due: soon when the scheduler needs providers, at
    /// the refresh interval while below the bound, never while one is running.
    fn next_lookup_at(&self, now: Instant) -> Option<Instant> {
        if self.lookup_running {
            return None;
        }
        let below =
            self.active_providers() + self.probing.len() < self.cfg().max_providers_per_fetch;
        let gap = if self.need_lookup {
            URGENT_LOOKUP_GAP
        } else if below {
            secs(self.cfg().provider_refresh_secs)
        } else {
            return None;
        };
        // `now`, not a fresh reading, when none ran yet: due at once for the caller that
        // compares it with its own `now`.
        Some(self.last_lookup.map_or(now, |t| t + gap))
    }

    /// Starts a provider lookup if one is due.
    fn lookup_if_needed(&mut self) {
        let now = Instant::now();
        if self.next_lookup_at(now).is_none_or(|at| now < at) {
            return;
        }
        self.need_lookup = false;
        self.lookup_running = true;
        self.last_lookup = Some(now);
        let (blobs, hash) = (self.blobs.clone(), self.hash);
        let tx = self.events.0.clone();
        self.tasks.spawn(async move {
            let found = blobs.find_providers(hash).await;
            let _ = tx.send(Event::Found(found));
        });
    }

    fn handle(&mut self, event: Event) -> Result<(), BlobError> {
        let now = Instant::now();
        match event {
            Event::Blocks {
                id,
                provider,
                blocks,
                bytes,
            } => {
                self.fetched_bytes += bytes;
                for block in blocks {
                    self.fetch.handle_block(&provider, id, block, now);
                }
                if self.cfg().announce_partial && self.early_announce.is_none() {
                    let (blobs, hash) = (self.blobs.clone(), self.hash);
                    self.early_announce =
                        Some(tokio::spawn(async move { blobs.announce(hash).await }));
                }
            }
            Event::Done {
                id,
                provider,
                result,
            } => {
                self.requests.remove(&id);
                if let Err(failure) = result {
                    tracing::debug!(%provider, hash = %self.hash, "blob request failed: {}", failure.why);
                    // Transfers from a provider already banned for bad data may still
                    // report theirs: its first bad block is the one that counts.
                    if failure.verification && !self.fetch.is_banned(&provider) {
                        self.blobs.0.metrics.verification_failures.inc();
                        tracing::warn!(%provider, hash = %self.hash, "a provider sent data that fails verification: {}", failure.why);
                    }
                    match failure.verdict {
                        Verdict::BadData => self.fetch.handle_bad_data(&provider, now),
                        Verdict::NotAvailable => self.fetch.handle_not_available(id, now),
                        Verdict::Failed => self.fetch.handle_request_failed(id, now),
                    }
                }
            }
            Event::StoreFailed(e) => return Err(e),
            Event::Have { provider, answer } => {
                self.probing.remove(&provider);
                match answer {
                    Ok(Availability::Blocks(blocks)) if blocks.is_empty() => {
                        self.failed_at.insert(provider, now);
                    }
                    Ok(have) => {
                        if self.fetch.add_provider(provider, have, now) {
                            self.ever_had_provider = true;
                            self.dropped.remove(&provider);
                        }
                    }
                    Err(failure) => {
                        tracing::debug!(%provider, hash = %self.hash, "have query failed: {}", failure.why);
                        if failure.verdict == Verdict::BadData {
                            self.refused.insert(provider);
                        } else {
                            self.failed_at.insert(provider, now);
                        }
                    }
                }
                self.fill();
            }
            Event::Found(found) => {
                self.lookup_running = false;
                if !found.is_empty() {
                    self.ever_had_provider = true;
                }
                self.offer(found);
            }
        }
        Ok(())
    }

    /// Carries out what the scheduler asks.
    fn process_actions(&mut self) {
        let now = Instant::now();
        while let Some(action) = self.fetch.poll_action() {
            match action {
                Action::Request {
                    id,
                    provider,
                    blocks,
                } => {
                    let (blobs, hash, size) = (self.blobs.clone(), self.hash, self.size);
                    let tx = self.events.0.clone();
                    let handle = self.tasks.spawn(async move {
                        let result = transfer(&blobs, provider, hash, size, id, blocks, &tx).await;
                        let _ = tx.send(Event::Done {
                            id,
                            provider,
                            result,
                        });
                    });
                    self.requests.insert(id, handle);
                }
                Action::Cancel { id, .. } => {
                    if let Some(handle) = self.requests.remove(&id) {
                        handle.abort();
                    }
                }
                Action::DropProvider { provider, reason } => {
                    let reason = match reason {
                        DropReason::BadData => "bad_data",
                        DropReason::Stalled => "stalled",
                        DropReason::Failed => "failed",
                    };
                    tracing::info!(%provider, hash = %self.hash, reason, "dropping a blob provider");
                    self.blobs.0.metrics.provider_dropped(reason);
                    self.dropped.insert(provider, reason);
                    self.failed_at.insert(provider, now);
                    self.fill();
                }
                Action::NeedProviders => {
                    self.need_lookup = true;
                    self.fill();
                }
                Action::Complete => {}
            }
        }
        self.lookup_if_needed();
    }

    /// Shows the fetch's progress to readers and the status.
    fn publish(&self, entry: &FetchEntry) {
        let mut providers = BTreeMap::new();
        for (peer, status) in self.fetch.providers() {
            providers.insert(
                *peer,
                ProviderState {
                    bytes: status.bytes,
                    active: status.active,
                    rate: status.rate,
                    dropped: if status.active {
                        None
                    } else {
                        self.dropped.get(peer).copied()
                    },
                },
            );
        }
        for (peer, reason) in &self.dropped {
            providers.entry(*peer).or_insert(ProviderState {
                dropped: Some(reason),
                ..ProviderState::default()
            });
        }
        let fetched = self.fetched_bytes;
        entry.update(|s| {
            s.providers = providers;
            s.fetched_bytes = fetched;
        });
    }
}

impl Blobs {
    /// The providers of `hash` the DHT knows, other than this node (their addresses are
    /// learnt, to dial them).
    pub(super) async fn find_providers(&self, hash: BlobHash) -> Vec<PeerId> {
        let ctx = self.ctx();
        let started = Instant::now();
        let found = self.0.kad.provider_peers(hash.as_bytes().to_vec()).await;
        tracing::debug!(%hash, took = ?started.elapsed(), found = ?found.as_ref().map(Vec::len), "provider lookup");
        match found {
            Ok(peers) => peers
                .into_iter()
                .filter(|p| p.id != ctx.peer_id)
                .map(|p| {
                    for addr in p.addrs {
                        ctx.learn_addr(p.id, addr);
                    }
                    p.id
                })
                .collect(),
            Err(e) => {
                tracing::debug!(%hash, "provider lookup failed: {e}");
                Vec::new()
            }
        }
    }
}

/// Finds providers and gets the size proven by one of them, then allocates the blob.
/// Every provider found is left in `found` for the fetch; those whose proof failed are in
/// `refused`.
async fn prove_size(
    blobs: &Blobs,
    hash: BlobHash,
    found: &mut Vec<PeerId>,
    refused: &mut HashSet<PeerId>,
) -> Result<(u64, FetchStart), BlobError> {
    let wait = secs(blobs.config().provider_wait_secs);
    let deadline = Instant::now() + wait;
    let mut backoff = Duration::from_millis(250);
    let mut rng = StdRng::from_os_rng();
    let mut any = false;
    loop {
        let mut providers = blobs.find_providers(hash).await;
        providers.shuffle(&mut rng);
        for peer in &providers {
            if !found.contains(peer) {
                found.push(*peer);
            }
        }
        any |= !providers.is_empty();
        for peer in providers {
            if refused.contains(&peer) {
                continue;
            }
            let answer = query(blobs, peer, &Request::Size { hash }).await;
            let proof = match answer.map(|r| check_size_answer(hash, r)) {
                Ok(Ok(proof)) => proof,
                Ok(Err(e)) => {
                    let failure = Failure::from_download(e);
                    if failure.verdict == Verdict::BadData {
                        blobs.0.metrics.verification_failures.inc();
                        tracing::warn!(%peer, %hash, "a provider's size proof fails verification: {}", failure.why);
                        refused.insert(peer);
                    }
                    continue;
                }
                Err(failure) => {
                    tracing::debug!(%peer, %hash, "size query failed: {}", failure.why);
                    continue;
                }
            };
            let size = proof.size();
            let start = blobs
                .with_store(move |s| s.begin_fetch(&proof, SystemTime::now()))
                .await??;
            return Ok((size, start));
        }
        if Instant::now() + backoff >= deadline {
            return Err(if any {
                BlobError::FetchFailed {
                    hash,
                    why: "no provider proved the blob's size".into(),
                }
            } else {
                BlobError::NotFound { hash, waited: wait }
            });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// A stream of `/bavard/blobs/1` to `peer`, within our per-peer bound and the request
/// timeout. The permit travels with the stream.
async fn open(
    blobs: &Blobs,
    peer: PeerId,
) -> Result<
    (
        tokio::sync::OwnedSemaphorePermit,
        futures::io::BufReader<libp2p::Stream>,
    ),
    Failure,
> {
    let timeout = secs(blobs.config().request_timeout_secs);
    tokio::time::timeout(timeout, async {
        let permit = blobs.0.outbound.acquire(peer).await;
        let stream = open_stream(&blobs.ctx().control, peer, BLOBS_PROTOCOL)
            .await
            .map_err(Failure::failed)?;
        Ok((
            permit,
            futures::io::BufReader::with_capacity(READ_BUFFER, stream),
        ))
    })
    .await
    .map_err(|_| Failure::failed(format!("no stream within {timeout:?}")))?
}

/// Reads the next response of a stream: `None` at its end.
async fn next_response(
    blobs: &Blobs,
    stream: &mut futures::io::BufReader<libp2p::Stream>,
    timeout: Duration,
) -> Result<Option<Response>, Failure> {
    let limits = &blobs.0.limits;
    let frame = tokio::time::timeout(
        timeout,
        crate::wire::read_frame(stream, limits.max_message_len),
    )
    .await
    .map_err(|_| Failure::failed(format!("no answer for {timeout:?}")))?;
    match frame {
        Ok(None) => Ok(None),
        Ok(Some(payload)) => Response::decode(&payload, limits)
            .map(Some)
            .map_err(Failure::bad_data),
        Err(e @ crate::wire::WireError::TooLarge { .. }) => Err(Failure::bad_data(e)),
        Err(e) => Err(Failure::failed(e)),
    }
}

/// One request answered by one response (size and have queries).
async fn query(blobs: &Blobs, peer: PeerId, request: &Request) -> Result<Response, Failure> {
    let (_permit, mut stream) = open(blobs, peer).await?;
    stream
        .write_all(&request.to_frame())
        .await
        .map_err(Failure::failed)?;
    stream.flush().await.map_err(Failure::failed)?;
    let timeout = secs(blobs.config().request_timeout_secs);
    let response = next_response(blobs, &mut stream, timeout)
        .await?
        .ok_or_else(|| Failure::failed("the stream ended without an answer"))?;
    let _ = stream.close().await;
    Ok(response)
}

/// Which blocks `peer` can serve, for a blob of the proven `size`.
async fn have(
    blobs: &Blobs,
    peer: PeerId,
    hash: BlobHash,
    size: u64,
) -> Result<Availability, Failure> {
    match query(blobs, peer, &Request::Have { hash }).await? {
        Response::Have(answer) if answer.size != size => Err(Failure::bad_data(format!(
            "it claims {} bytes, the proven size is {size}",
            answer.size
        ))),
        Response::Have(answer) if answer.complete => Ok(Availability::All),
        Response::Have(answer) => Ok(Availability::Blocks(answer.blocks)),
        Response::Error { code, message } => Err(Failure {
            verdict: if code == ErrorCode::NotFound {
                Verdict::NotAvailable
            } else {
                Verdict::Failed
            },
            verification: false,
            why: format!("refused: {code:?}: {message}"),
        }),
        _ => Err(Failure::bad_data("not a have answer")),
    }
}

/// Transfers `blocks` of the blob from `peer`, writing them to the store as they verify
/// and reporting them to the driver.
async fn transfer(
    blobs: &Blobs,
    peer: PeerId,
    hash: BlobHash,
    size: u64,
    id: RequestId,
    blocks: Range<u64>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), Failure> {
    let ranges = BlockRanges::from_range(blocks);
    let mut download = Download::new(hash, size, &ranges).map_err(Failure::failed)?;
    let (_permit, mut stream) = open(blobs, peer).await?;
    let request = Request::Get { hash, ranges };
    stream
        .write_all(&request.to_frame())
        .await
        .map_err(Failure::failed)?;
    stream.flush().await.map_err(Failure::failed)?;
    let stall = secs(blobs.config().stall_timeout_secs);
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        let response = match next_response(blobs, &mut stream, stall).await {
            Ok(Some(response)) => response,
            Ok(None) => break,
            Err(failure) => {
                store_blocks(blobs, peer, id, &mut batch, events).await?;
                return Err(failure);
            }
        };
        let mut failure = download.handle(response).err();
        while failure.is_none() {
            match download.next_block() {
                Some(Ok(block)) => batch.push(block),
                Some(Err(e)) => failure = Some(e),
                None => break,
            }
        }
        if batch.len() >= WRITE_BATCH || failure.is_some() {
            // The blocks before a bad one are good: keep them.
            store_blocks(blobs, peer, id, &mut batch, events).await?;
        }
        if let Some(e) = failure {
            return Err(Failure::from_download(e));
        }
    }
    store_blocks(blobs, peer, id, &mut batch, events).await?;
    download.finish().map_err(Failure::from_download)
}

/// Writes `batch` to the store and reports it; a store failure ends the whole fetch.
async fn store_blocks(
    blobs: &Blobs,
    provider: PeerId,
    id: RequestId,
    batch: &mut Vec<VerifiedBlock>,
    events: &mpsc::UnboundedSender<Event>,
) -> Result<(), Failure> {
    if batch.is_empty() {
        return Ok(());
    }
    let blocks = std::mem::take(batch);
    let bytes: u64 = blocks.iter().map(|b| b.data().len() as u64).sum();
    let written = blobs
        .with_store(move |s: &mut Store| {
            for block in &blocks {
                s.write_block(block)?;
            }
            Ok::<_, bavard_blobs::store::StoreError>(
                blocks
                    .iter()
                    .map(VerifiedBlock::block)
                    .collect::<Vec<u64>>(),
            )
        })
        .await
        .and_then(|r| r.map_err(BlobError::from));
    match written {
        Ok(indices) => {
            blobs.0.metrics.fetched_bytes.inc_by(bytes);
            let _ = events.send(Event::Blocks {
                id,
                provider,
                blocks: indices,
                bytes,
            });
            Ok(())
        }
        Err(e) => {
            let why = e.to_string();
            let _ = events.send(Event::StoreFailed(e));
            Err(Failure::failed(why))
        }
    }
}
