//! One k-bucket: at most k entries in least-recently-seen order, plus a bounded replacement cache.
//!
//! Kademlia (Maymounkov & Mazières 2002, §2.2) keeps long-lived peers: when a bucket is full, a
//! newcomer does not evict anyone; the least-recently-seen entry is pinged and only evicted if it
//! fails to answer. Section 4.1 adds the replacement cache: newcomers seen while the bucket is
//! full wait there (most recent first) and replace entries that turn out dead. The bucket holds
//! the data; [`RoutingTable`](crate::RoutingTable) applies those rules.

use std::time::Instant;

use crate::key::Key;

/// A peer in the routing table (or in a replacement cache).
///
/// `K` and `T` are the table's key and time types (see
/// [`RoutingTable`](crate::RoutingTable)): [`Key`] and [`Instant`] unless a simulator chose
/// smaller ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<P, V, K = Key, T = Instant> {
    /// The peer identity.
    pub peer: P,
    /// The peer's key (for libp2p, the SHA-256 of its peer id).
    pub key: K,
    /// The caller's data for this peer (the node stores addresses).
    pub value: V,
    /// When the peer was last seen alive (inserted, refreshed or answered a ping).
    pub last_seen: T,
}

/// A read-only view of one bucket, given to [`AdmissionFilter`]s and returned by
/// [`RoutingTable::bucket`](crate::RoutingTable::bucket).
#[derive(Debug)]
pub struct BucketView<'a, P, V, K = Key, T = Instant> {
    /// The bucket index (the highest set bit of the distance to the local key).
    pub index: u8,
    /// The entries, least recently seen first.
    pub entries: &'a [Entry<P, V, K, T>],
    /// The replacement cache, least recent first.
    pub replacements: &'a [Entry<P, V, K, T>],
}

/// Decides whether a *new* peer may enter the table (a bucket or its replacement cache).
///
/// It is asked before a peer that is not yet in the table is inserted or cached, and again before
/// a cached peer is promoted (the bucket may have changed meanwhile). Refreshing a peer already in
/// the table never asks it. The intended use is a Sybil defence such as go-libp2p-kad-dht's IP
/// diversity filter (at most 2 peers of one IP group per bucket): the value `V` carries the
/// addresses, the [`BucketView`] shows who is already there. A filter that needs table-wide counts
/// keeps them itself.
///
/// Any `Fn(&P, &V, &BucketView<'_, P, V, K, T>) -> bool` is a filter; [`AcceptAll`] is the
/// default.
pub trait AdmissionFilter<P, V, K = Key, T = Instant> {
    /// Whether `peer` (with `value`) may enter `bucket`.
    fn admit(&self, peer: &P, value: &V, bucket: &BucketView<'_, P, V, K, T>) -> bool;
}

impl<P, V, K, T, F> AdmissionFilter<P, V, K, T> for F
where
    F: Fn(&P, &V, &BucketView<'_, P, V, K, T>) -> bool,
{
    fn admit(&self, peer: &P, value: &V, bucket: &BucketView<'_, P, V, K, T>) -> bool {
        self(peer, value, bucket)
    }
}

/// The default filter: admits every peer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl<P, V, K, T> AdmissionFilter<P, V, K, T> for AcceptAll {
    fn admit(&self, _: &P, _: &V, _: &BucketView<'_, P, V, K, T>) -> bool {
        true
    }
}

/// A ping of the oldest entry that the table asked the driver for and still waits on.
#[derive(Debug, Clone)]
pub(crate) struct PendingPing<P, T> {
    pub(crate) peer: P,
    pub(crate) since: T,
}

/// The state of one bucket.
#[derive(Debug, Clone)]
pub(crate) struct Bucket<P, V, K, T> {
    /// Least recently seen first.
    pub(crate) entries: Vec<Entry<P, V, K, T>>,
    /// Least recent first; the most recent is promoted first.
    pub(crate) replacements: Vec<Entry<P, V, K, T>>,
    pub(crate) pending: Option<PendingPing<P, T>>,
    pub(crate) last_lookup: Option<T>,
}

impl<P, V, K, T> Default for Bucket<P, V, K, T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            replacements: Vec::new(),
            pending: None,
            last_lookup: None,
        }
    }
}

impl<P: Eq, V, K, T> Bucket<P, V, K, T> {
    pub(crate) fn view(&self, index: u8) -> BucketView<'_, P, V, K, T> {
        BucketView {
            index,
            entries: &self.entries,
            replacements: &self.replacements,
        }
    }

    pub(crate) fn position(&self, peer: &P) -> Option<usize> {
        self.entries.iter().position(|e| &e.peer == peer)
    }

    pub(crate) fn remove_replacement(&mut self, peer: &P) -> Option<Entry<P, V, K, T>> {
        let pos = self.replacements.iter().position(|e| &e.peer == peer)?;
        Some(self.replacements.remove(pos))
    }

    /// Caches `entry` as the most recent replacement, dropping the least recent beyond `cap`.
    pub(crate) fn cache(&mut self, entry: Entry<P, V, K, T>, cap: usize) {
        self.remove_replacement(&entry.peer);
        if cap == 0 {
            return;
        }
        if self.replacements.len() >= cap {
            let excess = self.replacements.len() + 1 - cap;
            self.replacements.drain(..excess);
        }
        reserve_up_to(&mut self.replacements, cap);
        self.replacements.push(entry);
    }

    /// Adds `entry` as the most recently seen (the caller checked that there is room: fewer than
    /// `k` entries).
    pub(crate) fn push(&mut self, entry: Entry<P, V, K, T>, k: usize) {
        reserve_up_to(&mut self.entries, k);
        self.entries.push(entry);
    }

    /// Moves entry `pos` to the most-recently-seen end.
    pub(crate) fn touch(&mut self, pos: usize, now: T) {
        let mut e = self.entries.remove(pos);
        e.last_seen = now;
        self.entries.push(e);
    }
}

/// Makes room for one more element in a vector that never holds more than `cap`: it grows by
/// doubling as usual, but never past `cap`, so a full k-bucket holds exactly k slots (20), not
/// the next power of two (32). In a simulator of a million tables, that is a third of their
/// memory.
fn reserve_up_to<E>(v: &mut Vec<E>, cap: usize) {
    if v.len() < v.capacity() {
        return;
    }
    let want = (2 * v.len()).max(4).min(cap).max(v.len() + 1);
    v.reserve_exact(want - v.len());
}
