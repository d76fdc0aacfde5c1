//! Idle replica-protocol streams kept for reuse, per peer.
//!
//! Opening a stream costs a yamux stream setup, a multistream-select negotiation and a slot in
//! the remote acceptor's queue.
//! The replica server answers any number of requests on one stream, one at a time, so the
//! coordinator keeps the streams of answered requests and sends the next request to that peer on
//! one of them. A stream is only returned after a complete request and response; a stream that
//! failed, timed out or was cancelled mid-request is dropped, never reused. Idle streams older
//! than `max_idle` are dropped, well before the server's idle timeout closes them.
//!
//! Memory is bounded: at most `max_per_peer` idle streams per peer, and expired entries of
//! every peer are purged whenever the pool holds streams for more than `PURGE_ABOVE_PEERS` peers.
//!
//! The replica service keeps each stream's permit (its share of the peer's inbound stream
//! limit) with it in the pool, so idle and busy streams together stay within the limit, and a
//! request that finds neither an idle stream nor a free permit waits for whichever comes first
//! ([`StreamPool::returned`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Above this many peers with idle streams, a `put` purges every expired entry.
const PURGE_ABOVE_PEERS: usize = 64;

/// Idle streams per peer (generic so that it can be tested without a network).
#[derive(Debug)]
pub(crate) struct StreamPool<S> {
    idle: Mutex<HashMap<PeerId, Vec<(S, Instant)>>>,
    max_per_peer: usize,
    max_idle: Duration,
    /// Woken whenever a stream is returned (for requests waiting for a stream to a peer).
    returned: tokio::sync::Notify,
}

impl<S> StreamPool<S> {
    pub(crate) fn new(max_per_peer: usize, max_idle: Duration) -> Self {
        Self {
            idle: Mutex::new(HashMap::new()),
            max_per_peer,
            max_idle,
            returned: tokio::sync::Notify::new(),
        }
    }

    /// Resolves at the next [`put`](Self::put) (create it before checking the pool, so that a
    /// stream returned in between is not missed).
    pub(crate) fn returned(&self) -> tokio::sync::futures::Notified<'_> {
        self.returned.notified()
    }

    /// The most recently returned idle stream to `peer` that has not expired.
    pub(crate) fn take(&self, peer: &PeerId, now: Instant) -> Option<S> {
        let mut idle = self.idle.lock().expect("stream pool lock");
        let streams = idle.get_mut(peer)?;
        let fresh = loop {
            match streams.pop() {
                Some((s, since)) if now.saturating_duration_since(since) < self.max_idle => {
                    break Some(s);
                }
                Some(_) => continue,
                None => break None,
            }
        };
        if streams.is_empty() {
            idle.remove(peer);
        }
        fresh
    }

    /// Returns a stream whose last request completed; dropped if the peer has enough idle ones.
    pub(crate) fn put(&self, peer: PeerId, stream: S, now: Instant) {
        if self.max_per_peer == 0 {
            return;
        }
        let mut idle = self.idle.lock().expect("stream pool lock");
        if idle.len() > PURGE_ABOVE_PEERS {
            let max_idle = self.max_idle;
            idle.retain(|_, streams| {
                streams.retain(|(_, since)| now.saturating_duration_since(*since) < max_idle);
                !streams.is_empty()
            });
        }
        let streams = idle.entry(peer).or_default();
        if streams.len() < self.max_per_peer {
            streams.push((stream, now));
        }
        drop(idle);
        self.returned.notify_waiters();
    }

    /// Idle streams held, over all peers.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle
            .lock()
            .expect("stream pool lock")
            .values()
            .map(Vec::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_stream_is_reused_newest_first_until_it_expires() {
        let pool = StreamPool::new(2, Duration::from_secs(10));
        let peer = PeerId::random();
        let t = Instant::now();
        assert_eq!(pool.take(&peer, t), None);
        pool.put(peer, 1, t);
        pool.put(peer, 2, t + Duration::from_secs(1));
        pool.put(peer, 3, t + Duration::from_secs(2));
        assert_eq!(pool.len(), 2, "at most two idle streams per peer");
        assert_eq!(pool.take(&peer, t + Duration::from_secs(3)), Some(2));
        // Stream 1 is eleven seconds old: expired, dropped.
        assert_eq!(pool.take(&peer, t + Duration::from_secs(11)), None);
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.take(&PeerId::random(), t), None);
    }

    #[test]
    fn expired_streams_of_many_peers_are_purged_and_zero_capacity_keeps_nothing() {
        let pool = StreamPool::new(1, Duration::from_secs(1));
        let t = Instant::now();
        for i in 0..=PURGE_ABOVE_PEERS {
            pool.put(PeerId::random(), i, t);
        }
        pool.put(PeerId::random(), 999, t + Duration::from_secs(5));
        assert_eq!(pool.len(), 1, "only the fresh stream is left");
        let none = StreamPool::new(0, Duration::from_secs(1));
        none.put(PeerId::random(), 1, t);
        assert_eq!(none.len(), 0);
    }
}
