//! Bounded, expiring caches of delivered message ids and of payloads.
//!
//! Both are insertion-ordered: since `now` never goes backwards, insertion order is expiry
//! order, so a `VecDeque` of (expiry, id) gives O(1) eviction of both the expired and the oldest
//! entries.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::message::{MessageBody, MessageId};

/// What a node remembers about a delivered message.
#[derive(Clone, Debug)]
pub(crate) struct SeenEntry<P> {
    /// Hops from the publisher at which it was delivered here (0 for our own messages).
    pub(crate) hops: u16,
    /// The peer we got it from (the tree parent for this message), `None` if we published it.
    pub(crate) parent: Option<P>,
}

/// Ids of delivered messages, remembered for `ttl` and at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct SeenCache<P> {
    entries: HashMap<MessageId, SeenEntry<P>>,
    order: VecDeque<(Instant, MessageId)>,
    ttl: Duration,
    capacity: usize,
}

impl<P> SeenCache<P> {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            ttl,
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn contains(&self, id: &MessageId) -> bool {
        self.entries.contains_key(id)
    }

    pub(crate) fn get(&self, id: &MessageId) -> Option<&SeenEntry<P>> {
        self.entries.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &MessageId) -> Option<&mut SeenEntry<P>> {
        self.entries.get_mut(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Remembers `id`; the caller checked it was not there.
    pub(crate) fn insert(&mut self, now: Instant, id: MessageId, entry: SeenEntry<P>) {
        self.expire(now);
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some((_, old)) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        self.entries.insert(id, entry);
        self.order.push_back((now + self.ttl, id));
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(&(expiry, id)) = self.order.front() {
            if expiry > now {
                break;
            }
            self.order.pop_front();
            self.entries.remove(&id);
        }
    }
}

/// A delivered message as its publisher signed it: what a `Gossip` carries besides its id and
/// hop count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CachedPayload<P> {
    pub(crate) publisher: P,
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: Vec<u8>,
}

impl<P: Clone> CachedPayload<P> {
    /// The `Gossip` that sends this message on at `hops`.
    pub(crate) fn to_gossip(&self, id: MessageId, hops: u16) -> MessageBody<P> {
        MessageBody::Gossip {
            id,
            hops,
            publisher: self.publisher.clone(),
            payload: self.payload.clone(),
            signature: self.signature.clone(),
        }
    }
}

impl<P> CachedPayload<P> {
    /// Bytes counted against the cache's byte bound.
    fn weight(&self) -> usize {
        self.payload.len() + self.signature.len()
    }
}

/// Payloads of recent messages with their publisher and signature, kept to answer `Graft`s;
/// bounded by count, bytes (payload and signature) and age.
#[derive(Debug)]
pub(crate) struct PayloadCache<P> {
    entries: HashMap<MessageId, CachedPayload<P>>,
    order: VecDeque<(Instant, MessageId)>,
    bytes: usize,
    ttl: Duration,
    max_entries: usize,
    max_bytes: usize,
}

impl<P> PayloadCache<P> {
    pub(crate) fn new(ttl: Duration, max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            ttl,
            max_entries,
            max_bytes,
        }
    }

    pub(crate) fn get(&self, id: &MessageId) -> Option<&CachedPayload<P>> {
        self.entries.get(id)
    }

    /// Keeps `message` for `id` if it fits the bounds, evicting the oldest entries as needed.
    /// The first message kept under an id stays: a later one never replaces it.
    pub(crate) fn insert(&mut self, now: Instant, id: MessageId, message: CachedPayload<P>) {
        self.expire(now);
        let weight = message.weight();
        if self.max_entries == 0 || weight > self.max_bytes || self.entries.contains_key(&id) {
            return;
        }
        while self.entries.len() >= self.max_entries || self.bytes + weight > self.max_bytes {
            if !self.pop_oldest() {
                break;
            }
        }
        self.bytes += weight;
        self.entries.insert(id, message);
        self.order.push_back((now + self.ttl, id));
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(expiry, _)| *expiry <= now) {
            self.pop_oldest();
        }
    }

    /// The ids of the `n` most recently cached payloads, newest first.
    pub(crate) fn recent(&self, n: usize) -> impl Iterator<Item = MessageId> + '_ {
        self.order.iter().rev().take(n).map(|(_, id)| *id)
    }

    fn pop_oldest(&mut self) -> bool {
        match self.order.pop_front() {
            Some((_, id)) => {
                if let Some(p) = self.entries.remove(&id) {
                    self.bytes -= p.weight();
                }
                true
            }
            None => false,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(payload: Vec<u8>) -> CachedPayload<u64> {
        CachedPayload {
            publisher: 1,
            payload,
            signature: vec![],
        }
    }

    fn id(n: u32) -> MessageId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        MessageId(b)
    }

    #[test]
    fn seen_cache_never_holds_more_than_its_capacity_and_forgets_the_oldest() {
        let now = Instant::now();
        let mut cache = SeenCache::<u64>::new(Duration::from_secs(60), 100);
        for n in 0..1_000 {
            cache.insert(
                now,
                id(n),
                SeenEntry {
                    hops: 0,
                    parent: None,
                },
            );
            assert!(cache.len() <= 100);
        }
        assert_eq!(cache.len(), 100);
        assert!(!cache.contains(&id(899)));
        assert!(cache.contains(&id(900)));
        assert!(cache.contains(&id(999)));
    }

    #[test]
    fn seen_cache_forgets_ids_after_their_ttl() {
        let start = Instant::now();
        let mut cache = SeenCache::<u64>::new(Duration::from_secs(10), 100);
        cache.insert(
            start,
            id(1),
            SeenEntry {
                hops: 0,
                parent: None,
            },
        );
        cache.insert(
            start + Duration::from_secs(5),
            id(2),
            SeenEntry {
                hops: 0,
                parent: None,
            },
        );
        cache.expire(start + Duration::from_secs(10));
        assert!(!cache.contains(&id(1)));
        assert!(cache.contains(&id(2)));
    }

    #[test]
    fn payload_cache_keeps_the_first_message_under_an_id_and_counts_signatures_in_its_bytes() {
        let now = Instant::now();
        let mut cache = PayloadCache::new(Duration::from_secs(60), 10, 100);
        cache.insert(now, id(1), msg(vec![1; 10]));
        let other = CachedPayload {
            publisher: 2,
            payload: vec![2; 10],
            signature: vec![2; 8],
        };
        cache.insert(now, id(1), other);
        assert_eq!(cache.get(&id(1)), Some(&msg(vec![1; 10])), "not replaced");
        let signed = CachedPayload {
            signature: vec![0; 40],
            ..msg(vec![0; 55])
        };
        cache.insert(now, id(2), signed);
        assert!(
            cache.get(&id(1)).is_none(),
            "10 + 55 + 40 bytes exceed 100: the oldest goes"
        );
        assert!(cache.get(&id(2)).is_some());
        let too_big = CachedPayload {
            signature: vec![0; 60],
            ..msg(vec![0; 50])
        };
        cache.insert(now, id(3), too_big);
        assert!(cache.get(&id(3)).is_none(), "110 bytes never fit in 100");
        assert!(cache.get(&id(2)).is_some());
    }

    #[test]
    fn payload_cache_respects_count_and_byte_bounds() {
        let now = Instant::now();
        let mut cache = PayloadCache::new(Duration::from_secs(60), 10, 1_000);
        for n in 0..50 {
            cache.insert(now, id(n), msg(vec![0; 300]));
            assert!(
                cache.len() <= 3,
                "1000 bytes hold at most three 300-byte payloads"
            );
        }
        assert!(cache.get(&id(49)).is_some());
        assert!(cache.get(&id(46)).is_none());
        cache.insert(now, id(100), msg(vec![0; 2_000]));
        assert!(
            cache.get(&id(100)).is_none(),
            "a payload larger than the byte bound is not kept"
        );
        let mut small = PayloadCache::new(Duration::from_secs(60), 10, 1_000_000);
        for n in 0..50 {
            small.insert(now, id(n), msg(vec![1]));
        }
        assert_eq!(small.len(), 10);
        small.expire(now + Duration::from_secs(60));
        assert_eq!(small.len(), 0);
    }
}
