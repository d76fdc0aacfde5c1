//! Request rate limits: token buckets per peer and per IP address.
//!
//! Peer ids cost nothing to mint, so a limit per peer alone lets one host with many identities
//! through; the same requests are therefore also counted against the sender's IP address (the
//! swarm task records each connected peer's address). Buckets refill continuously up to one
//! second's worth of burst. Memory is bounded: at most [`MAX_KEYS`] buckets of each kind, the
//! fullest (idle longest) dropped first when the map is full.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use libp2p::PeerId;

/// Most buckets kept per kind.
const MAX_KEYS: usize = 65_536;

/// Token buckets keyed by `K`.
#[derive(Debug)]
struct Buckets<K> {
    rate: f64,
    map: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(per_sec: u32) -> Self {
        Self {
            rate: f64::from(per_sec),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Spends one token of `key`'s bucket; false when it is empty (0 per second: unlimited).
    fn take(&self, key: &K, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let mut map = self.map.lock().expect("rate lock");
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let rate = self.rate;
            map.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < rate
            });
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        let (tokens, at) = map.entry(key.clone()).or_insert((self.rate, now));
        *tokens =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }
}

/// Per-peer and per-IP limits on inbound requests.
#[derive(Debug)]
pub(crate) struct RateLimits {
    per_peer: Buckets<PeerId>,
    per_ip: Buckets<IpAddr>,
}

/// Which limit a request broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    Peer,
    Ip,
}

impl RateLimits {
    pub(crate) fn new(per_peer: u32, per_ip: u32) -> Self {
        Self {
            per_peer: Buckets::new(per_peer),
            per_ip: Buckets::new(per_ip),
        }
    }

    /// Admits one request of `peer` (from `ip`, when known).
    pub(crate) fn check(
        &self,
        peer: &PeerId,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Limited> {
        if !self.per_peer.take(peer, now) {
            return Err(Limited::Peer);
        }
        match ip {
            Some(ip) if !ip.is_loopback() && !self.per_ip.take(&ip, now) => Err(Limited::Ip),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_beyond_the_rate_is_refused_then_refills() {
        let limits = RateLimits::new(10, 1000);
        let peer = PeerId::random();
        let t = Instant::now();
        for _ in 0..10 {
            assert_eq!(limits.check(&peer, None, t), Ok(()));
        }
        assert_eq!(limits.check(&peer, None, t), Err(Limited::Peer));
        assert_eq!(
            limits.check(&peer, None, t + Duration::from_millis(100)),
            Ok(())
        );
        // Another peer has its own bucket.
        assert_eq!(limits.check(&PeerId::random(), None, t), Ok(()));
    }

    #[test]
    fn many_identities_from_one_address_share_its_bucket_but_loopback_is_exempt() {
        let limits = RateLimits::new(100, 5);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let t = Instant::now();
        for _ in 0..5 {
            assert_eq!(limits.check(&PeerId::random(), Some(ip), t), Ok(()));
        }
        assert_eq!(
            limits.check(&PeerId::random(), Some(ip), t),
            Err(Limited::Ip)
        );
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..50 {
            assert_eq!(limits.check(&PeerId::random(), Some(lo), t), Ok(()));
        }
    }

    #[test]
    fn zero_means_unlimited() {
        let limits = RateLimits::new(0, 0);
        let peer = PeerId::random();
        for _ in 0..1000 {
            assert_eq!(limits.check(&peer, None, Instant::now()), Ok(()));
        }
    }
}
