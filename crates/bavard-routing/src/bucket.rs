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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<P, V> {
    /// The peer identity.
    pub peer: P,
    /// The peer's key (for libp2p, the SHA-256 of its peer id).
    pub key: Key,
    /// The caller's data for this peer (the node stores addresses).
    pub value: V,
    /// When the peer was last seen alive (inserted, refreshed or answered a ping).
    pub last_seen: Instant,
}

/// A read-only view of one bucket, given to [`AdmissionFilter`]s and returned by
/// [`RoutingTable::bucket`](crate::RoutingTable::bucket).
#[derive(Debug)]
pub struct BucketView<'a, P, V> {
    /// The bucket index (the highest set bit of the distance to the local key).
    pub index: u8,
    /// The entries, least recently seen first.
    pub entries: &'a [Entry<P, V>],
    /// The replacement cache, least recent first.
    pub replacements: &'a [Entry<P, V>],
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
/// Any `Fn(&P, &V, &BucketView<'_, P, V>) -> bool` is a filter; [`AcceptAll`] is the default.
pub trait AdmissionFilter<P, V> {
    /// Whether `peer` (with `value`) may enter `bucket`.
    fn admit(&self, peer: &P, value: &V, bucket: &BucketView<'_, P, V>) -> bool;
}

impl<P, V, F> AdmissionFilter<P, V> for F
where
    F: Fn(&P, &V, &BucketView<'_, P, V>) -> bool,
{
    fn admit(&self, peer: &P, value: &V, bucket: &BucketView<'_, P, V>) -> bool {
        self(peer, value, bucket)
    }
}

/// The default filter: admits every peer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl<P, V> AdmissionFilter<P, V> for AcceptAll {
    fn admit(&self, _: &P, _: &V, _: &BucketView<'_, P, V>) -> bool {
        true
    }
}

/// A ping of the oldest entry that the table asked the driver for and still waits on.
#[derive(Debug, Clone)]
pub(crate) struct PendingPing<P> {
    pub(crate) peer: P,
    pub(crate) since: Instant,
}

/// The state of one bucket.
#[derive(Debug, Clone)]
pub(crate) struct Bucket<P, V> {
    /// Least recently seen first.
    pub(crate) entries: Vec<Entry<P, V>>,
    /// Least recent first; the most recent is promoted first.
    pub(crate) replacements: Vec<Entry<P, V>>,
    pub(crate) pending: Option<PendingPing<P>>,
    pub(crate) last_lookup: Option<Instant>,
}

impl<P, V> Default for Bucket<P, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            replacements: Vec::new(),
            pending: None,
            last_lookup: None,
        }
    }
}

impl<P: Eq, V> Bucket<P, V> {
    pub(crate) fn view(&self, index: u8) -> BucketView<'_, P, V> {
        BucketView {
            index,
            entries: &self.entries,
            replacements: &self.replacements,
        }
    }

    pub(crate) fn position(&self, peer: &P) -> Option<usize> {
        self.entries.iter().position(|e| &e.peer == peer)
    }

    pub(crate) fn remove_replacement(&mut self, peer: &P) -> Option<Entry<P, V>> {
        let pos = self.replacements.iter().position(|e| &e.peer == peer)?;
        Some(self.replacements.remove(pos))
    }

    /// Caches `entry` as the most recent replacement, dropping the least recent beyond `cap`.
    pub(crate) fn cache(&mut self, entry: Entry<P, V>, cap: usize) {
        self.remove_replacement(&entry.peer);
        self.replacements.push(entry);
        if self.replacements.len() > cap {
            let excess = self.replacements.len() - cap;
            self.replacements.drain(..excess);
        }
    }

    /// Moves entry `pos` to the most-recently-seen end.
    pub(crate) fn touch(&mut self, pos: usize, now: Instant) {
        let mut e = self.entries.remove(pos);
        e.last_seen = now;
        self.entries.push(e);
    }
}
