//! Anti-entropy: two replicas find what they disagree on and exchange only that.
//!
//! Dynamo (§4.7) compares Merkle trees per key range; Cassandra and Riak keep hash trees, Garage
//! one per partition. Here the tree is three levels over the key-hash space:
//!
//! 1. **subtrees**: 256 hashes (the first byte of the key hash), each the XOR of the digests of
//!    its leaves *that the two replicas share* ([`Placement::shared_leaves`]);
//! 2. **leaves**: for the subtrees whose hashes differ, one hash per shared leaf (first 16 bits,
//!    maintained on every write by the store: [`bavard_store::digest`]);
//! 3. **entries**: for the leaves whose hashes differ, the keys and versions in them.
//!
//! The initiator ([`Initiator`]) sends its hashes and the responder ([`answer`]) says which
//! differ, so hashes travel one way. The initiator then lists the responder's entries of the
//! differing leaves, compares them with its own, **pulls** the keys where the responder is newer
//! and **pushes** those where it is newer itself, each only for keys both replicate (exact,
//! per-key placement). Identical replicas exchange one 10 KiB request and a short answer; a
//! replica that missed 100,000 writes gets them all in one round.
//!
//! **Bounded in bytes.** Every request and every answer is built to stay within
//! [`SyncConfig::max_batch_bytes`] (below the frame limit every reader enforces): leaf hashes
//! and entry listings are paginated, fetches and stores are cut into batches by size, and a
//! fetch answer that would exceed the budget covers a prefix of the keys asked (the initiator
//! asks again for the rest). A round is a sequence of such exchanges; it is resumable in the
//! sense that a failed round leaves everything already pulled durably stored, and the next round
//! starts from the differences that remain.
//!
//! # Driving protocol
//!
//! The initiator is a state machine that never touches the network:
//!
//! 1. [`Initiator::new`] with the placement, the two peers and the limits;
//! 2. call [`Initiator::next`]; it returns a [`Step`]:
//!    - [`Step::Send`]: send the request to the peer and feed its answer to
//!      [`Initiator::handle_response`] (or give up the round on an error or timeout);
//!    - [`Step::Apply`]: store these pulled records durably (and check their clocks), then
//!      report how many were stored with [`Initiator::applied`];
//!    - [`Step::Done`]: the round is over, with its [`SyncStats`];
//! 3. repeat 2.
//!
//! The responder answers each read-only request with [`answer`], statelessly, and applies
//! stores itself.
//!
//! ```
//! use bavard_replica::{
//!     Initiator, Placement, Request, Response, Step, StoreOutcome, SyncConfig, answer,
//! };
//! use bavard_routing::Key;
//! use bavard_store::{HlcTimestamp, MemoryStore, Record, RecordStore, StoreConfig, Version};
//!
//! let placement = std::sync::Arc::new(Placement::new(
//!     [(1u64, Key::hash(b"a")), (2, Key::hash(b"b"))],
//!     3,
//! ));
//! let (mine, theirs) = (
//!     MemoryStore::new(StoreConfig::new(b"a".to_vec())),
//!     MemoryStore::new(StoreConfig::new(b"b".to_vec())),
//! );
//! let v = Version::new(HlcTimestamp::new(1, 0), b"w".to_vec());
//! theirs.put(Record::new(b"k".to_vec(), b"v".to_vec(), v), 0).unwrap();
//!
//! let config = SyncConfig::default();
//! let mut round = Initiator::new(placement, 1, 2, config.clone());
//! let stats = loop {
//!     match round.next(&mine, 0).unwrap() {
//!         Step::Send(Request::Store { records, .. }) => {
//!             // The peer stores pushed records (after its own clock checks).
//!             let results = theirs
//!                 .put_batch(records, 0)
//!                 .unwrap()
//!                 .into_iter()
//!                 .map(|_| StoreOutcome::Stored)
//!                 .collect();
//!             round.handle_response(Response::Store { results }).unwrap();
//!         }
//!         Step::Send(req) => {
//!             let resp = answer(req, &theirs, &config, 0).unwrap();
//!             round.handle_response(resp).unwrap();
//!         }
//!         Step::Apply(records) => {
//!             let n = records.len();
//!             mine.put_batch(records, 0).unwrap();
//!             round.applied(n);
//!         }
//!         Step::Done(stats) => break stats,
//!     }
//! };
//! assert_eq!(stats.keys_pulled, 1);
//! assert!(mine.get(b"k", 0).unwrap().is_some());
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bavard_routing::Key;
use bavard_store::digest::{key_hash, leaf_of};
use bavard_store::{DigestEntry, LeafDigest, Record, RecordStore, StoreError, Value};

use crate::leafset::{LEAF_SET_BYTES, LeafSet};
use crate::placement::Placement;
use crate::protocol::{Request, Response};

/// Subtrees of the first level: one per first byte of the key hash.
pub const SUBTREES: usize = 256;

/// Limits of one round. Every request and answer stays under `max_batch_bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// Largest request or answer built, in (estimated, conservatively) encoded bytes. Keep it
    /// below the peers' frame limit with room for framing (the default, 96 KiB, is below the
    /// default 128 KiB limit).
    pub max_batch_bytes: usize,
    /// Most records or keys in one fetch or store.
    pub max_batch_records: usize,
    /// Most entries in one listing answer.
    pub max_entries: usize,
    /// Most leaves named in one listing request.
    pub max_leaves_per_request: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            max_batch_bytes: 96 * 1024,
            max_batch_records: 256,
            max_entries: 4096,
            max_leaves_per_request: 1024,
        }
    }
}

/// Why a round stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The local store failed. The round stops; what was pulled so far is stored.
    #[error("local storage error: {0}")]
    Storage(#[from] StoreError),
    /// The peer answered something that does not answer the request. The round stops.
    #[error("bad answer from the peer: {0}")]
    Protocol(String),
    /// [`Initiator::next`] was called while a request or an apply was outstanding; doesn't
    /// affect state.
    #[error("a request or an apply is outstanding")]
    Outstanding,
    /// A request the responder refuses (malformed or over a limit); doesn't affect state.
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// What the driver does next (see the module's driving protocol).
#[derive(Debug)]
pub enum Step<P> {
    /// Send this request to the peer and feed the answer to [`Initiator::handle_response`].
    Send(Request<P>),
    /// Store these pulled records durably, then call [`Initiator::applied`].
    Apply(Vec<Record>),
    /// The round is over.
    Done(SyncStats),
}

/// What a round found and moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Leaves compared.
    pub leaves_compared: usize,
    /// Subtrees whose hashes differed.
    pub subtrees_differing: usize,
    /// Leaves whose hashes differed.
    pub leaves_differing: usize,
    /// Keys the peer had newer, found so far.
    pub keys_to_pull: usize,
    /// Pulled records stored.
    pub keys_pulled: usize,
    /// Records pushed that the peer accepted.
    pub keys_pushed: usize,
    /// Requests sent.
    pub requests: usize,
    /// Estimated bytes sent and received.
    pub bytes: usize,
}

/// Conservative estimate of a record's encoded size.
pub fn record_size(r: &Record) -> usize {
    let value = match &r.value {
        Value::Data(v) => v.len(),
        Value::Tombstone { .. } => 0,
        Value::Blob { .. } => 40,
    };
    64 + r.key.len() + value + r.version.writer.len() + r.publisher.as_ref().map_or(0, Vec::len)
}

/// Conservative estimate of an entry's encoded size.
pub fn entry_size(e: &DigestEntry) -> usize {
    32 + e.key.len() + e.version.writer.len()
}

fn key_size(k: &[u8]) -> usize {
    8 + k.len()
}

const LEAF_HASH_SIZE: usize = 16;

#[derive(Debug)]
enum Awaiting {
    Tree,
    Leaves,
    Entries { leaves: Vec<u16> },
    Fetch { keys: Vec<Vec<u8>> },
    Store,
    Apply,
}

/// The initiating side of one anti-entropy round with one peer (see the module docs).
#[derive(Debug)]
pub struct Initiator<P> {
    placement: Arc<Placement<P>>,
    local: P,
    peer: P,
    config: SyncConfig,
    mask: LeafSet,
    started: bool,
    digests: Vec<LeafDigest>,
    /// Leaves of differing subtrees whose hashes are still to be compared.
    to_compare: VecDeque<u16>,
    leaves: VecDeque<u16>,
    /// Where the listing of the first of `leaves` resumes, and what it gave so far.
    cursor: Option<Vec<u8>>,
    partial: Vec<DigestEntry>,
    /// Leaves whose listing is complete, to compare with ours at the next step.
    completed: VecDeque<(u16, Vec<DigestEntry>)>,
    pull: VecDeque<Vec<u8>>,
    push: VecDeque<Vec<u8>>,
    ready: Vec<Record>,
    awaiting: Option<Awaiting>,
    stats: SyncStats,
}

impl<P: Clone + PartialEq> Initiator<P> {
    /// A round of `local` with `peer` over the leaves they share in `placement`.
    pub fn new(placement: Arc<Placement<P>>, local: P, peer: P, config: SyncConfig) -> Self {
        let mask = placement.shared_leaves(&local, &peer);
        Self::with_leaves(placement, local, peer, mask, config)
    }

    /// A round over the given leaves (the caller computed or cached the shared leaves).
    pub fn with_leaves(
        placement: Arc<Placement<P>>,
        local: P,
        peer: P,
        mask: LeafSet,
        config: SyncConfig,
    ) -> Self {
        Self {
            placement,
            local,
            peer,
            config,
            stats: SyncStats {
                leaves_compared: mask.len(),
                ..SyncStats::default()
            },
            mask,
            started: false,
            digests: Vec::new(),
            to_compare: VecDeque::new(),
            leaves: VecDeque::new(),
            cursor: None,
            partial: Vec::new(),
            completed: VecDeque::new(),
            pull: VecDeque::new(),
            push: VecDeque::new(),
            ready: Vec::new(),
            awaiting: None,
        }
    }

    /// The peer of this round.
    pub fn peer(&self) -> &P {
        &self.peer
    }

    /// The figures so far.
    pub fn stats(&self) -> SyncStats {
        self.stats
    }

    /// Keys known to be newer on the peer and not yet stored here.
    pub fn keys_behind(&self) -> usize {
        self.stats
            .keys_to_pull
            .saturating_sub(self.stats.keys_pulled)
    }

    /// Leaves known to differ whose entries are not compared yet.
    pub fn leaves_pending(&self) -> usize {
        self.leaves.len()
    }

    /// The next step (see the driving protocol). Reads the local store (digests, one leaf's
    /// index, records to push) but never writes it.
    ///
    /// # Errors
    ///
    /// [`SyncError::Outstanding`] if the previous step is not answered yet (no effect);
    /// [`SyncError::Storage`] if the local store fails (the round should be dropped).
    pub fn next(&mut self, store: &dyn RecordStore, now_ms: u64) -> Result<Step<P>, SyncError> {
        if self.awaiting.is_some() {
            return Err(SyncError::Outstanding);
        }
        if !self.started {
            self.started = true;
            if self.mask.is_empty() {
                return Ok(Step::Done(self.stats));
            }
            self.digests = store.leaf_digests()?;
            let hashes = (0..SUBTREES)
                .map(|s| {
                    self.mask
                        .iter_subtree(s as u8)
                        .fold(0u64, |h, l| h ^ self.digests[usize::from(l)].hash)
                })
                .collect();
            return Ok(self.send(
                Request::Tree {
                    leaves: self.mask.clone(),
                    hashes,
                },
                Awaiting::Tree,
                LEAF_SET_BYTES + SUBTREES * 9,
            ));
        }
        if !self.ready.is_empty() {
            self.awaiting = Some(Awaiting::Apply);
            return Ok(Step::Apply(std::mem::take(&mut self.ready)));
        }
        while let Some((leaf, theirs)) = self.completed.pop_front() {
            self.diff_leaf(leaf, theirs, store, now_ms)?;
        }
        if !self.to_compare.is_empty() {
            return Ok(self.next_leaves());
        }
        if !self.pull.is_empty() {
            return Ok(self.next_fetch());
        }
        if !self.push.is_empty()
            && let Some(step) = self.next_store(store, now_ms)?
        {
            return Ok(step);
        }
        if !self.leaves.is_empty() {
            let leaves: Vec<u16> = self
                .leaves
                .iter()
                .take(self.config.max_leaves_per_request.max(1))
                .copied()
                .collect();
            let size = 16 + leaves.len() * 4 + self.cursor.as_ref().map_or(0, Vec::len);
            return Ok(self.send(
                Request::Entries {
                    leaves: leaves.clone(),
                    after: self.cursor.clone(),
                },
                Awaiting::Entries { leaves },
                size,
            ));
        }
        Ok(Step::Done(self.stats))
    }

    fn send(&mut self, req: Request<P>, awaiting: Awaiting, size: usize) -> Step<P> {
        self.stats.requests += 1;
        self.stats.bytes += size;
        self.awaiting = Some(awaiting);
        Step::Send(req)
    }

    fn next_leaves(&mut self) -> Step<P> {
        let count = (self.config.max_batch_bytes / LEAF_HASH_SIZE)
            .max(1)
            .min(self.to_compare.len());
        let hashes: Vec<(u16, u64)> = self
            .to_compare
            .drain(..count)
            .map(|l| (l, self.digests[usize::from(l)].hash))
            .collect();
        let size = hashes.len() * LEAF_HASH_SIZE;
        self.send(Request::Leaves { hashes }, Awaiting::Leaves, size)
    }

    fn next_fetch(&mut self) -> Step<P> {
        let mut keys = Vec::new();
        let mut size = 0;
        while let Some(k) = self.pull.front() {
            if !keys.is_empty()
                && (keys.len() >= self.config.max_batch_records
                    || size + key_size(k) > self.config.max_batch_bytes)
            {
                break;
            }
            size += key_size(k);
            keys.push(self.pull.pop_front().expect("front exists"));
        }
        self.send(
            Request::Fetch { keys: keys.clone() },
            Awaiting::Fetch { keys },
            size,
        )
    }

    fn next_store(
        &mut self,
        store: &dyn RecordStore,
        now_ms: u64,
    ) -> Result<Option<Step<P>>, SyncError> {
        let mut records = Vec::new();
        let mut size = 0;
        while let Some(k) = self.push.front() {
            if records.len() >= self.config.max_batch_records {
                break;
            }
            let found = match store.get(k, now_ms) {
                // A corrupt row is not pushed (the peer's copy repairs it when pulled).
                Err(StoreError::Corrupt { .. }) => None,
                other => other?,
            };
            let Some(r) = found else {
                // Expired, removed since the listing, or corrupt: nothing to push.
                self.push.pop_front();
                continue;
            };
            if !records.is_empty() && size + record_size(&r) > self.config.max_batch_bytes {
                break;
            }
            size += record_size(&r);
            records.push(r);
            self.push.pop_front();
        }
        if records.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.send(
            Request::Store {
                records,
                hint_for: None,
            },
            Awaiting::Store,
            size,
        )))
    }

    /// Feeds the peer's answer to the last [`Step::Send`].
    ///
    /// # Errors
    ///
    /// [`SyncError::Protocol`] when the answer does not fit the request (wrong kind, unknown
    /// leaves or keys, entries out of order): the round should be dropped. The state is left
    /// consistent (what was found so far can still be applied).
    pub fn handle_response(&mut self, resp: Response) -> Result<(), SyncError> {
        let awaiting = self.awaiting.take();
        match (awaiting, resp) {
            (Some(Awaiting::Tree), Response::Tree { differing }) => {
                self.stats.bytes += differing.len() * 2;
                let mut differing: Vec<u8> = differing
                    .into_iter()
                    .filter(|s| self.mask.iter_subtree(*s).next().is_some())
                    .collect();
                differing.sort_unstable();
                differing.dedup();
                self.stats.subtrees_differing = differing.len();
                for s in differing {
                    self.to_compare.extend(self.mask.iter_subtree(s));
                }
                Ok(())
            }
            (Some(Awaiting::Leaves), Response::Leaves { differing }) => {
                self.stats.bytes += differing.len() * 3;
                let mut differing: Vec<u16> = differing
                    .into_iter()
                    .filter(|l| self.mask.contains(*l))
                    .collect();
                differing.sort_unstable();
                differing.dedup();
                self.stats.leaves_differing += differing.len();
                // Leaves are compared in ascending order, so `leaves` stays sorted.
                self.leaves.extend(differing);
                Ok(())
            }
            (Some(Awaiting::Entries { leaves }), Response::Entries { entries, more }) => {
                self.stats.bytes += entries.iter().map(entry_size).sum::<usize>();
                self.take_entries(&leaves, entries, more)
            }
            (Some(Awaiting::Fetch { keys }), Response::Fetch { records, covered }) => {
                self.stats.bytes += records.iter().map(record_size).sum::<usize>();
                let covered = if covered == 0 || covered > keys.len() {
                    keys.len()
                } else {
                    covered
                };
                let asked: HashSet<&[u8]> = keys[..covered].iter().map(Vec::as_slice).collect();
                if let Some(r) = records.iter().find(|r| !asked.contains(r.key.as_slice())) {
                    return Err(SyncError::Protocol(format!(
                        "a fetch answer carries key {} that was not asked for",
                        String::from_utf8_lossy(&r.key)
                    )));
                }
                for k in keys[covered..].iter().rev() {
                    self.pull.push_front(k.clone());
                }
                // A key the peer no longer has (expired, purged) is simply not pulled.
                self.stats.keys_to_pull -= covered - records.len().min(covered);
                self.ready = records;
                Ok(())
            }
            (Some(Awaiting::Store), Response::Store { results }) => {
                self.stats.keys_pushed += results.iter().filter(|r| r.holds()).count();
                Ok(())
            }
            (awaiting, resp) => {
                self.awaiting = awaiting;
                Err(SyncError::Protocol(format!(
                    "unexpected {} answer",
                    resp.kind()
                )))
            }
        }
    }

    /// Reports that `stored` of the records of the last [`Step::Apply`] are durably stored (the
    /// others were refused, for example for a version too far in the future).
    pub fn applied(&mut self, stored: usize) {
        if matches!(self.awaiting, Some(Awaiting::Apply)) {
            self.awaiting = None;
        }
        self.stats.keys_pulled += stored;
    }

    fn take_entries(
        &mut self,
        asked: &[u16],
        entries: Vec<DigestEntry>,
        more: bool,
    ) -> Result<(), SyncError> {
        // Entries come in leaf order, each leaf in index order; check before changing anything.
        let mut position = 0;
        for e in &entries {
            let leaf = leaf_of(&e.key);
            match asked[position..].iter().position(|l| *l == leaf) {
                Some(p) => position += p,
                None => {
                    return Err(SyncError::Protocol(format!(
                        "an entry of leaf {leaf} answers a listing of other leaves"
                    )));
                }
            }
        }
        if more && entries.is_empty() {
            return Err(SyncError::Protocol("an empty page announces more".into()));
        }
        let last_leaf = entries.last().map(|e| leaf_of(&e.key));
        let mut by_leaf: HashMap<u16, Vec<DigestEntry>> = HashMap::new();
        for e in entries {
            by_leaf.entry(leaf_of(&e.key)).or_default().push(e);
        }
        for &leaf in asked {
            let theirs = by_leaf.remove(&leaf).unwrap_or_default();
            let complete = !more || Some(leaf) != last_leaf;
            if self.leaves.front() == Some(&leaf) {
                self.partial.extend(theirs);
                if !complete {
                    self.cursor = self.partial.last().map(|e| e.key.clone());
                    return Ok(());
                }
                self.leaves.pop_front();
                self.cursor = None;
                let theirs = std::mem::take(&mut self.partial);
                self.completed.push_back((leaf, theirs));
            }
        }
        Ok(())
    }

    /// Compares one complete leaf: the peer's entries against ours.
    fn diff_leaf(
        &mut self,
        leaf: u16,
        theirs: Vec<DigestEntry>,
        store: &dyn RecordStore,
        now_ms: u64,
    ) -> Result<(), SyncError> {
        let mut mine: Vec<DigestEntry> = Vec::new();
        loop {
            let page = store.leaf_entries(
                leaf,
                mine.last().map(|e| e.key.as_slice()),
                self.config.max_entries.max(1),
                now_ms,
            )?;
            let done = page.len() < self.config.max_entries.max(1);
            mine.extend(page);
            if done {
                break;
            }
        }
        let their_versions: HashMap<&[u8], &bavard_store::Version> = theirs
            .iter()
            .map(|e| (e.key.as_slice(), &e.version))
            .collect();
        let my_versions: HashMap<&[u8], &bavard_store::Version> = mine
            .iter()
            .map(|e| (e.key.as_slice(), &e.version))
            .collect();
        let mut pull = Vec::new();
        for e in &theirs {
            let behind = my_versions
                .get(e.key.as_slice())
                .is_none_or(|v| **v < e.version);
            if behind && self.both_replicate(&e.key) {
                pull.push(e.key.clone());
            }
        }
        let mut push = Vec::new();
        for e in &mine {
            let ahead = their_versions
                .get(e.key.as_slice())
                .is_none_or(|v| **v < e.version);
            if ahead && self.both_replicate(&e.key) {
                push.push(e.key.clone());
            }
        }
        self.stats.keys_to_pull += pull.len();
        self.pull.extend(pull);
        self.push.extend(push);
        Ok(())
    }

    fn both_replicate(&self, key: &[u8]) -> bool {
        let target = Key::from_raw(key_hash(key));
        self.placement.is_replica(&target, &self.local)
            && self.placement.is_replica(&target, &self.peer)
    }
}

/// Answers a request that only reads — a fetch or an anti-entropy request — from the local
/// store, statelessly (the responder's side). Stores are the caller's: they involve clock checks,
/// durable group commits and hints.
///
/// # Errors
///
/// [`SyncError::BadRequest`] for a store, a malformed request or one over a limit of `config`
/// (nothing was read); [`SyncError::Storage`] when the store fails.
pub fn answer<P>(
    req: Request<P>,
    store: &dyn RecordStore,
    config: &SyncConfig,
    now_ms: u64,
) -> Result<Response, SyncError> {
    match req {
        Request::Tree { leaves, hashes } => {
            if hashes.len() != SUBTREES {
                return Err(SyncError::BadRequest(format!(
                    "a tree request carries {SUBTREES} subtree hashes, got {}",
                    hashes.len()
                )));
            }
            let digests = store.leaf_digests()?;
            let differing = (0..SUBTREES)
                .filter(|&s| {
                    let mine = leaves
                        .iter_subtree(s as u8)
                        .fold(0u64, |h, l| h ^ digests[usize::from(l)].hash);
                    mine != hashes[s]
                })
                .map(|s| s as u8)
                .collect();
            Ok(Response::Tree { differing })
        }
        Request::Leaves { hashes } => {
            let max = config.max_batch_bytes / LEAF_HASH_SIZE + SUBTREES;
            if hashes.len() > max {
                return Err(SyncError::BadRequest(format!(
                    "{} leaf hashes in one request, over the limit of {max}",
                    hashes.len()
                )));
            }
            let digests = store.leaf_digests()?;
            let differing = hashes
                .into_iter()
                .filter(|(l, h)| digests[usize::from(*l)].hash != *h)
                .map(|(l, _)| l)
                .collect();
            Ok(Response::Leaves { differing })
        }
        Request::Entries { leaves, after } => {
            if leaves.len() > config.max_leaves_per_request {
                return Err(SyncError::BadRequest(format!(
                    "{} leaves in one listing, over the limit of {}",
                    leaves.len(),
                    config.max_leaves_per_request
                )));
            }
            if leaves.windows(2).any(|w| w[0] >= w[1]) {
                return Err(SyncError::BadRequest(
                    "the leaves of a listing must be ascending".into(),
                ));
            }
            list_entries(&leaves, after, store, config, now_ms)
        }
        Request::Fetch { keys } => {
            if keys.len() > config.max_batch_records {
                return Err(SyncError::BadRequest(format!(
                    "{} keys in one fetch, over the limit of {}",
                    keys.len(),
                    config.max_batch_records
                )));
            }
            let mut records = Vec::new();
            let mut size = 0;
            let mut covered = 0;
            for key in &keys {
                // A corrupt row is left out (as absent): one bad record must not fail the rest.
                let found = match store.get(key, now_ms) {
                    Err(StoreError::Corrupt { .. }) => None,
                    other => other?,
                };
                if let Some(r) = found {
                    if covered > 0 && size + record_size(&r) > config.max_batch_bytes {
                        break;
                    }
                    size += record_size(&r);
                    records.push(r);
                }
                covered += 1;
            }
            Ok(Response::Fetch { records, covered })
        }
        Request::Store { .. } => Err(SyncError::BadRequest(
            "stores are applied by the caller, not answered from the store".into(),
        )),
    }
}

fn list_entries(
    leaves: &[u16],
    mut after: Option<Vec<u8>>,
    store: &dyn RecordStore,
    config: &SyncConfig,
    now_ms: u64,
) -> Result<Response, SyncError> {
    let max = config.max_entries.max(1);
    let mut entries: Vec<DigestEntry> = Vec::new();
    let mut size = 0;
    for &leaf in leaves {
        loop {
            let want = max - entries.len();
            let page = store.leaf_entries(leaf, after.as_deref(), want.min(512) + 1, now_ms)?;
            let short = page.len() <= want.min(512);
            for e in page {
                if entries.len() == max
                    || (!entries.is_empty() && size + entry_size(&e) > config.max_batch_bytes)
                {
                    return Ok(Response::Entries {
                        entries,
                        more: true,
                    });
                }
                size += entry_size(&e);
                after = Some(e.key.clone());
                entries.push(e);
            }
            if short {
                break;
            }
        }
        after = None;
    }
    Ok(Response::Entries {
        entries,
        more: false,
    })
}
