//! The Kademlia routing table: 256 k-buckets by distance to the local key.
//!
//! Rules (Kademlia, Maymounkov & Mazières 2002, §2.2 and §4.1):
//! - a peer whose key is at distance `d` from the local key lives in bucket `d.bucket_index()`;
//!   the local key itself is never stored;
//! - each bucket holds at most k entries, least recently seen first; seeing a known peer again
//!   moves it to the most-recent end and updates its value;
//! - a newcomer to a full bucket never evicts anyone directly: it goes to the bucket's bounded
//!   replacement cache and the table returns [`InsertOutcome::PingOldest`], asking the driver to
//!   ping the least-recently-seen entry (one ping per bucket at a time). The driver reports with
//!   [`RoutingTable::ping_result`]: alive keeps the entry (moved to most recent), dead evicts it
//!   and promotes the most recent cached candidate. Long-lived peers thus stay, which both
//!   matches observed uptime distributions and resists flooding with fresh identities;
//! - an [`AdmissionFilter`] can refuse new peers (IP diversity, Sybil defence);
//! - every bucket remembers when a lookup last targeted it; [`RoutingTable::buckets_due_for_refresh`]
//!   lists those to refresh with a lookup of [`Key::random_in_bucket`].
//!
//! **Key and time types.** The table is generic over the key space `K` ([`KadKey`]: [`Key`], 256
//! bits, by default) and over the type of its timestamps `T` ([`Timestamp`]: [`Instant`] by
//! default). A node uses the defaults; the simulator, which holds a million tables, gives them
//! `u64` keys and 8-byte virtual times (an entry of a `u32` peer then takes 24 bytes instead of
//! 56), and answers exactly as with the defaults (see [`KadKey`]).
//!
//! **Memory.** Entries live in their buckets only: there is no index from peer to bucket, so a
//! peer given without its key (`get`, `contains`, `remove`, `ping_result`) is found by a scan of
//! the table — a few hundred entries at most, about the cost of hashing a libp2p peer id once,
//! for half the memory (the index held a clone of every peer id). Buckets are allocated down to
//! the deepest one used, and a bucket's entries grow to exactly k slots.
//!
//! Driving protocol: the table is passive. The driver calls `insert` for every peer that proved
//! alive (answered a request, or sent one in server mode), acts on a `PingOldest` by pinging and
//! then calling `ping_result`, calls `remove` when it learns a peer is gone, and periodically asks
//! `buckets_due_for_refresh(now)` and calls `mark_looked_up` when a lookup completes.

use std::fmt::Debug;
use std::time::Instant;

use crate::bucket::{AcceptAll, AdmissionFilter, Bucket, BucketView, Entry, PendingPing};
use crate::config::{ConfigError, TableConfig};
use crate::key::{KadKey, Key, Timestamp};

/// What [`RoutingTable::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome<P> {
    /// The peer was already in the table: moved to most recently seen, value updated.
    Updated,
    /// The peer entered its bucket.
    Inserted,
    /// The bucket is full: the peer was put in the replacement cache. The driver should ping
    /// `oldest` and report with [`RoutingTable::ping_result`].
    PingOldest {
        /// The least-recently-seen entry of the bucket.
        oldest: P,
    },
    /// The bucket is full and a ping for it is already pending: the peer was only cached.
    Cached,
    /// The peer was not added; the table is unchanged.
    Rejected(RejectReason),
}

/// Why [`RoutingTable::insert`] refused a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The key is the local key.
    LocalKey,
    /// The peer is in the table under a different key.
    KeyMismatch,
    /// The admission filter refused the peer.
    Filtered,
    /// The bucket is full and the replacement cache is disabled (`replacement_cache = 0`).
    BucketFull,
}

/// What [`RoutingTable::ping_result`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingOutcome<P> {
    /// The peer answered: it stays, as most recently seen.
    Kept,
    /// The peer did not answer: it was evicted, and `promoted` (if any) took its place.
    Evicted {
        /// The replacement-cache candidate that entered the bucket.
        promoted: Option<P>,
    },
    /// The peer is not in the table; nothing changed.
    Unknown,
}

/// A removed entry and the candidate promoted in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal<P, V, K = Key, T = Instant> {
    /// The entry that left the table.
    pub entry: Entry<P, V, K, T>,
    /// The replacement-cache candidate that entered the bucket, if any.
    pub promoted: Option<P>,
}

/// A Kademlia routing table around a local key, generic over the peer identity `P` and a
/// per-entry value `V` (the node stores the peer's addresses there), and over the key space `K`
/// and the timestamps `T` (see the module docs). See the module docs for the rules and the
/// driving protocol.
pub struct RoutingTable<P, V = (), K = Key, T = Instant> {
    local: K,
    config: TableConfig,
    /// Bucket `i` at slot `K::BITS - 1 - i`, allocated on demand up to the deepest bucket used: a
    /// node among N peers only ever fills the top ~log2(N) buckets, so a simulator holding a
    /// million tables pays for about 20 buckets each, not 256.
    buckets: Vec<Bucket<P, V, K, T>>,
    /// The number of entries (replacement caches excluded).
    len: usize,
    filter: Box<dyn AdmissionFilter<P, V, K, T> + Send + Sync>,
}

impl<P: Debug, V: Debug, K: Debug, T> Debug for RoutingTable<P, V, K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutingTable")
            .field("local", &self.local)
            .field("config", &self.config)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<P, V, K, T> RoutingTable<P, V, K, T>
where
    P: Clone + Eq + Debug,
    K: KadKey,
    T: Timestamp,
{
    /// An empty table around `local`, accepting every peer.
    pub fn new(local: K, config: TableConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            local,
            config,
            buckets: Vec::new(),
            len: 0,
            filter: Box::new(AcceptAll),
        })
    }

    /// Replaces the admission filter (the default accepts everyone). It must be `Send + Sync`
    /// so that the table can be shared with or moved into async tasks. Peers already in the table
    /// stay; the filter applies to later newcomers and promotions.
    pub fn set_admission_filter(
        &mut self,
        filter: impl AdmissionFilter<P, V, K, T> + Send + Sync + 'static,
    ) {
        self.filter = Box::new(filter);
    }

    /// The local key.
    pub fn local_key(&self) -> &K {
        &self.local
    }

    /// The configuration.
    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// The number of entries (replacement caches excluded).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bucket a key belongs to, `None` for the local key.
    pub fn bucket_index(&self, key: &K) -> Option<u8> {
        K::bucket_of(&self.local.distance_to(key))
    }

    /// Where `peer` is: (bucket index, position in the bucket). Its own bucket `hint`, if given,
    /// is searched first.
    fn find(&self, peer: &P, hint: Option<u8>) -> Option<(u8, usize)> {
        if let Some(i) = hint
            && let Some(pos) = self
                .buckets
                .get(slot::<K>(i))
                .and_then(|b| b.position(peer))
        {
            return Some((i, pos));
        }
        self.buckets
            .iter()
            .enumerate()
            .find_map(|(s, b)| Some((index::<K>(s), b.position(peer)?)))
    }

    /// Adds or refreshes a peer seen alive at `now`. See [`InsertOutcome`].
    pub fn insert(&mut self, now: T, peer: P, key: K, value: V) -> InsertOutcome<P> {
        let Some(i) = self.bucket_index(&key) else {
            return InsertOutcome::Rejected(RejectReason::LocalKey);
        };
        if let Some((at, pos)) = self.find(&peer, Some(i)) {
            let bucket = &mut self.buckets[slot::<K>(at)];
            if bucket.entries[pos].key != key {
                return InsertOutcome::Rejected(RejectReason::KeyMismatch);
            }
            bucket.entries[pos].value = value;
            bucket.touch(pos, now);
            return InsertOutcome::Updated;
        }
        let bucket = grow(&mut self.buckets, i);
        if !self.filter.admit(&peer, &value, &bucket.view(i)) {
            return InsertOutcome::Rejected(RejectReason::Filtered);
        }
        let entry = Entry {
            peer,
            key,
            value,
            last_seen: now,
        };
        if bucket.entries.len() < self.config.k {
            bucket.remove_replacement(&entry.peer);
            bucket.push(entry, self.config.k);
            self.len += 1;
            return InsertOutcome::Inserted;
        }
        if self.config.replacement_cache == 0 {
            return InsertOutcome::Rejected(RejectReason::BucketFull);
        }
        bucket.cache(entry, self.config.replacement_cache);
        // A pending ping whose result never came back is forgotten after `ping_timeout`, so a
        // lost result cannot freeze the bucket forever.
        let pending_live = bucket
            .pending
            .as_ref()
            .is_some_and(|p| now.saturating_duration_since(p.since) < self.config.ping_timeout);
        if pending_live {
            return InsertOutcome::Cached;
        }
        let oldest = bucket.entries[0].peer.clone();
        bucket.pending = Some(PendingPing {
            peer: oldest.clone(),
            since: now,
        });
        InsertOutcome::PingOldest { oldest }
    }

    /// Reports the result of a ping (asked for by [`InsertOutcome::PingOldest`], or any liveness
    /// check). Alive: the entry becomes most recently seen and the cached candidates stay cached.
    /// Dead: the entry is evicted and the most recent admissible cached candidate promoted.
    pub fn ping_result(&mut self, now: T, peer: &P, alive: bool) -> PingOutcome<P> {
        let Some((at, pos)) = self.find(peer, None) else {
            return PingOutcome::Unknown;
        };
        let bucket = &mut self.buckets[slot::<K>(at)];
        if bucket.pending.as_ref().is_some_and(|p| &p.peer == peer) {
            bucket.pending = None;
        }
        if alive {
            bucket.touch(pos, now);
            PingOutcome::Kept
        } else {
            let removal = self.remove_at(at, pos);
            PingOutcome::Evicted {
                promoted: removal.promoted,
            }
        }
    }

    /// Removes a peer (e.g. the driver learned it is gone) and promotes the most recent
    /// admissible replacement in its place. The peer is also dropped from every replacement cache.
    /// Returns `None` if the peer was not in the table.
    pub fn remove(&mut self, peer: &P) -> Option<Removal<P, V, K, T>> {
        let Some((at, pos)) = self.find(peer, None) else {
            for bucket in &mut self.buckets {
                bucket.remove_replacement(peer);
            }
            return None;
        };
        Some(self.remove_at(at, pos))
    }

    /// Removes entry `pos` of bucket `at` and promotes a replacement in its place.
    fn remove_at(&mut self, at: u8, pos: usize) -> Removal<P, V, K, T> {
        let bucket = &mut self.buckets[slot::<K>(at)];
        let entry = bucket.entries.remove(pos);
        self.len -= 1;
        if bucket
            .pending
            .as_ref()
            .is_some_and(|p| p.peer == entry.peer)
        {
            bucket.pending = None;
        }
        let promoted = self.promote(at);
        Removal { entry, promoted }
    }

    /// Moves the most recent admissible replacement of bucket `at` into the bucket, at its place
    /// in least-recently-seen order.
    fn promote(&mut self, at: u8) -> Option<P> {
        let bucket = &mut self.buckets[slot::<K>(at)];
        while bucket.entries.len() < self.config.k {
            let candidate = bucket.replacements.pop()?;
            if self
                .filter
                .admit(&candidate.peer, &candidate.value, &bucket.view(at))
            {
                let peer = candidate.peer.clone();
                // Keep least-recently-seen order: the candidate was last seen when cached.
                let pos = bucket
                    .entries
                    .partition_point(|e| e.last_seen <= candidate.last_seen);
                bucket.entries.insert(pos, candidate);
                self.len += 1;
                return Some(peer);
            }
        }
        None
    }

    /// The entry of a peer.
    pub fn get(&self, peer: &P) -> Option<&Entry<P, V, K, T>> {
        let (at, pos) = self.find(peer, None)?;
        Some(&self.buckets[slot::<K>(at)].entries[pos])
    }

    /// Whether a peer is in the table.
    pub fn contains(&self, peer: &P) -> bool {
        self.find(peer, None).is_some()
    }

    /// All entries, bucket 0 first, least recently seen first within a bucket.
    pub fn iter(&self) -> impl Iterator<Item = &Entry<P, V, K, T>> + '_ {
        self.buckets.iter().rev().flat_map(|b| b.entries.iter())
    }

    /// A view of one bucket.
    pub fn bucket(&self, index: u8) -> BucketView<'_, P, V, K, T> {
        match self.buckets.get(slot::<K>(index)) {
            Some(bucket) => bucket.view(index),
            None => BucketView {
                index,
                entries: &[],
                replacements: &[],
            },
        }
    }

    /// `(index, number of entries)` of every non-empty bucket, in index order.
    pub fn bucket_fill(&self) -> Vec<(u8, usize)> {
        self.buckets
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| !b.entries.is_empty())
            .map(|(s, b)| (index::<K>(s), b.entries.len()))
            .collect()
    }

    /// The `n` entries closest to `target`, closest first.
    ///
    /// Does not sort the table: for a target at distance `x` from the local key, every entry of
    /// bucket `i` is closer to the target than every entry of bucket `j < i` when bit `i` of `x` is
    /// set, and farther when it is clear. So the allocated buckets are visited in the order "set
    /// bits of `x` from high to low, then clear bits from low to high", and the walk stops once `n`
    /// entries are collected. Within a bucket, each entry's distance is computed once; when the
    /// bucket holds more entries than are still needed, `select_nth_unstable` keeps only those
    /// before they are sorted, so the cost is O(k) per visited bucket plus O(m log m) for the `m`
    /// returned, and only returned entries are cloned. Ties (equal keys) keep bucket order.
    pub fn closest(&self, target: &K, n: usize) -> Vec<Entry<P, V, K, T>>
    where
        V: Clone,
    {
        let mut out: Vec<Entry<P, V, K, T>> = Vec::with_capacity(n.min(self.len));
        if n == 0 || self.len == 0 {
            return out;
        }
        let x = self.local.distance_to(target);
        // Increasing slots are decreasing bucket indices.
        let slots = self.buckets.len();
        let set = (0..slots).filter(|&s| K::bit_of(&x, index::<K>(s)));
        let clear = (0..slots).rev().filter(|&s| !K::bit_of(&x, index::<K>(s)));
        let mut order: Vec<(K::Distance, usize)> = Vec::new();
        for s in set.chain(clear) {
            let entries = &self.buckets[s].entries;
            if entries.is_empty() {
                continue;
            }
            let need = n - out.len();
            order.clear();
            order.extend(
                entries
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (target.distance_to(&e.key), i)),
            );
            if order.len() > need {
                order.select_nth_unstable(need - 1);
                order.truncate(need);
            }
            order.sort_unstable();
            out.extend(order.iter().map(|&(_, i)| entries[i].clone()));
            if out.len() == n {
                break;
            }
        }
        out
    }

    /// Records that a lookup for `target` completed at `now`, which refreshes `target`'s bucket.
    /// A lookup of the local key refreshes no bucket (it is the bootstrap self-lookup).
    pub fn mark_looked_up(&mut self, now: T, target: &K) {
        if let Some(i) = self.bucket_index(target) {
            grow(&mut self.buckets, i).last_lookup = Some(now);
        }
    }

    /// The buckets to refresh now (look up `local_key().random_in_bucket(i, rng)` for each):
    /// every bucket from the lowest non-empty one up to the highest (255 for [`Key`]) that was
    /// never looked up or not within `refresh_interval`. Buckets below the lowest non-empty one
    /// are the self-lookup's job (they are almost surely empty: bucket `i` covers a `2^(i-256)`
    /// share of the key space). Empty table: nothing (bootstrap first).
    pub fn buckets_due_for_refresh(&self, now: T) -> Vec<u8> {
        let Some(deepest) = self.buckets.iter().rposition(|b| !b.entries.is_empty()) else {
            return Vec::new();
        };
        // Slot `deepest` holds the lowest non-empty bucket; slots 0..=deepest are the highest
        // bucket down to the lowest.
        (0..=deepest)
            .rev()
            .filter(|&s| match self.buckets[s].last_lookup {
                None => true,
                Some(t) => now.saturating_duration_since(t) >= self.config.refresh_interval,
            })
            .map(index::<K>)
            .collect()
    }

    /// Gives back the memory the table holds beyond its entries: the slack of buckets and
    /// replacement caches that grew and shrank, and trailing buckets left empty. Nothing else
    /// changes. For a caller that keeps many tables that stopped changing (a simulator).
    pub fn shrink_to_fit(&mut self) {
        while self.buckets.last().is_some_and(|b| {
            b.entries.is_empty()
                && b.replacements.is_empty()
                && b.pending.is_none()
                && b.last_lookup.is_none()
        }) {
            self.buckets.pop();
        }
        self.buckets.shrink_to_fit();
        for b in &mut self.buckets {
            b.entries.shrink_to_fit();
            b.replacements.shrink_to_fit();
        }
    }

    /// The bytes of heap the table holds: its buckets, their entries and replacement caches at
    /// their capacities, and the admission filter. Not counted: what `P` and `V` themselves own
    /// on the heap, and the allocator's overhead. For a caller that budgets the memory of many
    /// tables (a simulator).
    pub fn heap_bytes(&self) -> usize {
        let entry = size_of::<Entry<P, V, K, T>>();
        let entries: usize = self
            .buckets
            .iter()
            .map(|b| (b.entries.capacity() + b.replacements.capacity()) * entry)
            .sum();
        self.buckets.capacity() * size_of::<Bucket<P, V, K, T>>()
            + entries
            + size_of_val(&*self.filter)
    }
}

/// The position of bucket `index` in `RoutingTable::buckets`.
fn slot<K: KadKey>(index: u8) -> usize {
    usize::from(K::BITS) - 1 - usize::from(index)
}

/// The bucket index at position `slot` of `RoutingTable::buckets`.
fn index<K: KadKey>(slot: usize) -> u8 {
    // Slots are below `K::BITS` ≤ 256.
    (usize::from(K::BITS) - 1 - slot) as u8
}

/// Bucket `index`, allocating the slots up to it if needed.
fn grow<P, V, K: KadKey, T>(
    buckets: &mut Vec<Bucket<P, V, K, T>>,
    index: u8,
) -> &mut Bucket<P, V, K, T> {
    let s = slot::<K>(index);
    if buckets.len() <= s {
        buckets.resize_with(s + 1, Bucket::default);
    }
    &mut buckets[s]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LOCAL: Key = Key::from_raw([0; 32]);

    /// A key in bucket `bucket` of `LOCAL`'s table, distinct for each `n` (n < 2^24).
    fn key_in(bucket: u8, n: u32) -> Key {
        let mut d = [0u8; 32];
        d[31 - usize::from(bucket / 8)] |= 1 << (bucket % 8);
        // Low bits well below bit 200 so that they never reach the chosen bucket bit.
        let nb = n.to_be_bytes();
        d[29] ^= nb[1];
        d[30] ^= nb[2];
        d[31] ^= nb[3];
        Key::from_raw(d)
    }

    fn table(k: usize, cache: usize) -> RoutingTable<u64> {
        let config = TableConfig {
            k,
            replacement_cache: cache,
            ..TableConfig::default()
        };
        RoutingTable::new(LOCAL, config).unwrap()
    }

    fn fill(t: &mut RoutingTable<u64>, now: Instant, bucket: u8, ids: std::ops::Range<u64>) {
        for id in ids {
            assert_eq!(
                t.insert(now, id, key_in(bucket, id as u32), ()),
                InsertOutcome::Inserted
            );
        }
    }

    #[test]
    fn invalid_config_is_refused() {
        let config = TableConfig {
            k: 0,
            ..TableConfig::default()
        };
        assert_eq!(
            RoutingTable::<u64>::new(LOCAL, config).err(),
            Some(ConfigError::ZeroK)
        );
    }

    #[test]
    fn tables_and_lookups_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RoutingTable<u64, Vec<String>>>();
        assert_send_sync::<crate::Lookup<u64>>();
    }

    #[test]
    fn table_never_holds_the_local_key() {
        let mut t = table(20, 20);
        let now = Instant::now();
        assert_eq!(
            t.insert(now, 1, LOCAL, ()),
            InsertOutcome::Rejected(RejectReason::LocalKey)
        );
        assert!(t.is_empty());
        assert_eq!(t.get(&1), None);
    }

    #[test]
    fn inserting_a_known_peer_moves_it_to_most_recent_and_updates_its_value() {
        let mut t: RoutingTable<u64, &str> = RoutingTable::new(
            LOCAL,
            TableConfig {
                k: 3,
                ..TableConfig::default()
            },
        )
        .unwrap();
        let t0 = Instant::now();
        for id in 0..3 {
            t.insert(t0, id, key_in(200, id as u32), "old");
        }
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            t.insert(t1, 0, key_in(200, 0), "new"),
            InsertOutcome::Updated
        );
        let order: Vec<u64> = t.bucket(200).entries.iter().map(|e| e.peer).collect();
        assert_eq!(order, vec![1, 2, 0]);
        assert_eq!(t.get(&0).map(|e| (e.value, e.last_seen)), Some(("new", t1)));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn a_known_peer_with_a_different_key_is_rejected() {
        let mut t = table(20, 20);
        let now = Instant::now();
        fill(&mut t, now, 100, 1..2);
        let out = t.insert(now, 1, key_in(101, 1), ());
        assert_eq!(out, InsertOutcome::Rejected(RejectReason::KeyMismatch));
        assert_eq!(t.get(&1).unwrap().key, key_in(100, 1));
    }

    #[test]
    fn full_bucket_pings_oldest_before_evicting() {
        let mut t = table(3, 5);
        let now = Instant::now();
        fill(&mut t, now, 200, 0..3);
        assert_eq!(
            t.insert(now, 10, key_in(200, 10), ()),
            InsertOutcome::PingOldest { oldest: 0 }
        );
        // Nobody was evicted yet; the newcomer waits in the cache.
        assert_eq!(t.len(), 3);
        assert!(t.contains(&0) && !t.contains(&10));
        assert_eq!(t.bucket(200).replacements.len(), 1);
        // A second newcomer while the ping is pending is only cached.
        assert_eq!(
            t.insert(now, 11, key_in(200, 11), ()),
            InsertOutcome::Cached
        );
        assert_eq!(t.bucket(200).replacements.len(), 2);
    }

    #[test]
    fn dead_ping_evicts_and_promotes_the_most_recent_replacement() {
        let mut t = table(3, 5);
        let now = Instant::now();
        fill(&mut t, now, 200, 0..3);
        t.insert(now, 10, key_in(200, 10), ());
        t.insert(now, 11, key_in(200, 11), ());
        let out = t.ping_result(now, &0, false);
        assert_eq!(out, PingOutcome::Evicted { promoted: Some(11) });
        assert!(!t.contains(&0) && t.contains(&11) && !t.contains(&10));
        assert_eq!(t.len(), 3);
        let order: Vec<u64> = t.bucket(200).entries.iter().map(|e| e.peer).collect();
        assert_eq!(order, vec![1, 2, 11]);
        // The next newcomer triggers a ping of the new oldest.
        assert_eq!(
            t.insert(now, 12, key_in(200, 12), ()),
            InsertOutcome::PingOldest { oldest: 1 }
        );
    }

    #[test]
    fn live_ping_keeps_the_entry_and_the_candidate_stays_cached() {
        let mut t = table(3, 5);
        let now = Instant::now();
        fill(&mut t, now, 200, 0..3);
        t.insert(now, 10, key_in(200, 10), ());
        let later = now + Duration::from_secs(2);
        assert_eq!(t.ping_result(later, &0, true), PingOutcome::Kept);
        let order: Vec<u64> = t.bucket(200).entries.iter().map(|e| e.peer).collect();
        assert_eq!(order, vec![1, 2, 0]);
        assert_eq!(t.get(&0).unwrap().last_seen, later);
        assert_eq!(t.bucket(200).replacements[0].peer, 10);
        // The ping is no longer pending: the next newcomer asks to ping the new oldest.
        assert_eq!(
            t.insert(later, 11, key_in(200, 11), ()),
            InsertOutcome::PingOldest { oldest: 1 }
        );
    }

    #[test]
    fn ping_result_for_an_unknown_peer_changes_nothing() {
        let mut t = table(3, 5);
        let now = Instant::now();
        fill(&mut t, now, 200, 0..3);
        assert_eq!(t.ping_result(now, &99, false), PingOutcome::Unknown);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn a_lost_ping_result_is_forgotten_after_the_ping_timeout() {
        let mut t = table(2, 5);
        let now = Instant::now();
        fill(&mut t, now, 200, 0..2);
        assert_eq!(
            t.insert(now, 10, key_in(200, 10), ()),
            InsertOutcome::PingOldest { oldest: 0 }
        );
        let soon = now + Duration::from_secs(5);
        assert_eq!(
            t.insert(soon, 11, key_in(200, 11), ()),
            InsertOutcome::Cached
        );
        let late = now + t.config().ping_timeout;
        assert_eq!(
            t.insert(late, 12, key_in(200, 12), ()),
            InsertOutcome::PingOldest { oldest: 0 }
        );
    }

    #[test]
    fn replacement_cache_is_bounded_and_keeps_the_most_recent() {
        let mut t = table(2, 3);
        let now = Instant::now();
        fill(&mut t, now, 200, 0..2);
        for id in 10..20 {
            t.insert(now, id, key_in(200, id as u32), ());
        }
        let cached: Vec<u64> = t.bucket(200).replacements.iter().map(|e| e.peer).collect();
        assert_eq!(cached, vec![17, 18, 19]);
    }

    #[test]
    fn a_full_bucket_without_cache_rejects_newcomers() {
        let mut t = table(2, 0);
        let now = Instant::now();
        fill(&mut t, now, 200, 0..2);
        let out = t.insert(now, 5, key_in(200, 5), ());
        assert_eq!(out, InsertOutcome::Rejected(RejectReason::BucketFull));
    }

    #[test]
    fn remove_promotes_a_replacement_and_purges_caches() {
        let mut t = table(2, 3);
        let now = Instant::now();
        fill(&mut t, now, 200, 0..2);
        t.insert(now, 10, key_in(200, 10), ());
        t.insert(now, 11, key_in(200, 11), ());
        let removal = t.remove(&1).unwrap();
        assert_eq!((removal.entry.peer, removal.promoted), (1, Some(11)));
        // A dead cached peer is purged so it is never promoted.
        assert_eq!(t.remove(&10), None);
        assert!(t.bucket(200).replacements.is_empty());
        assert_eq!(t.remove(&0).map(|r| r.promoted), Some(None));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_rejecting_admission_filter_rejects_newcomers_but_not_refreshes() {
        let mut t = table(20, 20);
        let now = Instant::now();
        fill(&mut t, now, 200, 0..2);
        // At most 2 per bucket, e.g. an IP-diversity rule.
        t.set_admission_filter(|_: &u64, _: &(), b: &BucketView<'_, u64, ()>| b.entries.len() < 2);
        let out = t.insert(now, 5, key_in(200, 5), ());
        assert_eq!(out, InsertOutcome::Rejected(RejectReason::Filtered));
        assert_eq!(t.insert(now, 0, key_in(200, 0), ()), InsertOutcome::Updated);
        assert_eq!(
            t.insert(now, 6, key_in(150, 6), ()),
            InsertOutcome::Inserted
        );
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn promotion_skips_candidates_the_filter_refuses() {
        let mut t = table(2, 3);
        let now = Instant::now();
        fill(&mut t, now, 200, 0..2);
        t.insert(now, 10, key_in(200, 10), ());
        t.insert(now, 11, key_in(200, 11), ());
        t.set_admission_filter(|p: &u64, _: &(), _: &BucketView<'_, u64, ()>| *p != 11);
        assert_eq!(
            t.ping_result(now, &0, false),
            PingOutcome::Evicted { promoted: Some(10) }
        );
    }

    #[test]
    fn closest_returns_the_n_closest_sorted_by_distance() {
        let mut t = table(20, 20);
        let now = Instant::now();
        let mut keys = Vec::new();
        for id in 0..400u64 {
            let key = Key::hash(&id.to_le_bytes());
            t.insert(now, id, key, ());
            if t.contains(&id) {
                keys.push((id, key));
            }
        }
        for seed in 0..20u64 {
            let target = Key::hash(&(1_000_000 + seed).to_le_bytes());
            let got: Vec<u64> = t.closest(&target, 25).iter().map(|e| e.peer).collect();
            let mut want = keys.clone();
            want.sort_by_key(|(_, k)| target.distance(k));
            let want: Vec<u64> = want.iter().take(25).map(|(id, _)| *id).collect();
            assert_eq!(got, want);
        }
        // The local key as target, and more than the table holds.
        assert_eq!(t.closest(&LOCAL, 10_000).len(), t.len());
        assert!(t.closest(&LOCAL, 0).is_empty());
    }

    #[test]
    fn closest_selects_the_needed_entries_of_a_full_bucket_in_distance_order() {
        let mut t = table(20, 0);
        let now = Instant::now();
        // Inserted farthest-from-the-target first, so bucket order is the reverse of the answer.
        fill(&mut t, now, 200, 0..20);
        fill(&mut t, now, 100, 20..25);
        let target = key_in(200, 19);
        let got: Vec<u64> = t.closest(&target, 3).iter().map(|e| e.peer).collect();
        let mut want: Vec<u64> = (0..20).collect();
        want.sort_by_key(|&id| target.distance(&key_in(200, id as u32)));
        assert_eq!(got, want[..3].to_vec());
        assert_eq!(got[0], 19);
        // Past the full bucket, the walk continues into the next one in distance order.
        let all: Vec<u64> = t.closest(&target, 22).iter().map(|e| e.peer).collect();
        assert_eq!(all[..20].to_vec(), want);
        assert!(all[20..].iter().all(|id| (20..25).contains(id)));
    }

    #[test]
    fn tables_allocate_only_the_buckets_down_to_the_deepest_used() {
        let mut t = table(20, 20);
        let now = Instant::now();
        fill(&mut t, now, 250, 0..1);
        assert_eq!(t.buckets.len(), 6);
        assert!(t.bucket(3).entries.is_empty());
        assert_eq!(t.closest(&key_in(3, 0), 5).len(), 1);
        assert_eq!(t.buckets.len(), 6);
    }

    #[test]
    fn bucket_fill_lists_non_empty_buckets() {
        let mut t = table(20, 20);
        let now = Instant::now();
        fill(&mut t, now, 200, 0..3);
        fill(&mut t, now, 7, 3..4);
        assert_eq!(t.bucket_fill(), vec![(7, 1), (200, 3)]);
        assert_eq!(t.iter().count(), 4);
    }

    #[test]
    fn buckets_are_due_for_refresh_until_looked_up_within_the_interval() {
        let mut t = table(20, 20);
        let t0 = Instant::now();
        assert!(t.buckets_due_for_refresh(t0).is_empty());
        fill(&mut t, t0, 250, 0..1);
        assert_eq!(
            t.buckets_due_for_refresh(t0),
            (250..=255).collect::<Vec<u8>>()
        );
        t.mark_looked_up(t0, &key_in(252, 77));
        t.mark_looked_up(t0, &LOCAL);
        assert_eq!(t.buckets_due_for_refresh(t0), vec![250, 251, 253, 254, 255]);
        let almost = t0 + t.config().refresh_interval - Duration::from_secs(1);
        assert!(!t.buckets_due_for_refresh(almost).contains(&252));
        let due = t0 + t.config().refresh_interval;
        assert!(t.buckets_due_for_refresh(due).contains(&252));
    }
}
