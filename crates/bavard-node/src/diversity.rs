//! IP diversity for the open DHT: a Sybil defence for the routing table and for lookups.
//!
//! Peer ids cost nothing to mint, IP addresses do. As go-libp2p-kad-dht's diversity filter
//! does, the routing table holds at most `max_peers_per_ip_group` peers of one IP group (an IPv4
//! /24 or an IPv6 /48) and at most `max_peers_per_ip_group_per_bucket` of one group in a bucket,
//! and a lookup takes at most `max_peers_per_ip_group` peers of one group from the answers it
//! gets, so an attacker holding one subnet can neither fill the table nor steer a lookup into a
//! pocket of its own nodes.
//!
//! Only public addresses count: loopback, private (RFC 1918, IPv6 unique local), link-local and
//! in-process (`/memory`) addresses are exempt, so labs and single-host clusters work unchanged,
//! and so are admitted cluster members (a cluster in one data-centre subnet is normal). A peer
//! is grouped by the first public IP address it is known by.
//!
//! When the filter refuses peers, the table is under diversity pressure, and lookups switch to
//! `disjoint_paths_under_pressure` disjoint paths (S/Kademlia) for a while.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// An IP group: the network part that a single operator is assumed to control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// An IPv4 /24.
    V4([u8; 3]),
    /// An IPv6 /48.
    V6([u8; 6]),
}

fn public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified())
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            let unique_local = first & 0xfe00 == 0xfc00;
            let link_local = first & 0xffc0 == 0xfe80;
            !(v6.is_loopback() || v6.is_unspecified() || unique_local || link_local)
        }
    }
}

/// The group of the first public IP address in `addrs`; `None` when there is none (the peer is
/// then exempt).
pub fn group_of<'a>(addrs: impl IntoIterator<Item = &'a Multiaddr>) -> Option<Group> {
    addrs.into_iter().find_map(|a| {
        let ip = match a.iter().next()? {
            Protocol::Ip4(v4) => IpAddr::V4(v4),
            Protocol::Ip6(v6) => IpAddr::V6(v6),
            _ => return None,
        };
        if !public(&ip) {
            return None;
        }
        Some(match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Group::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Group::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
            }
        })
    })
}

/// When the filter last refused a peer, to tell lookups about the pressure.
#[derive(Debug, Default)]
pub struct Pressure {
    last_refusal: Mutex<Option<Instant>>,
}

impl Pressure {
    /// Notes a refusal at `now`.
    pub fn refused(&self, now: Instant) {
        *self.last_refusal.lock().expect("pressure lock") = Some(now);
    }

    /// Whether a peer was refused within `window` before `now`.
    pub fn under_pressure(&self, now: Instant, window: Duration) -> bool {
        self.last_refusal
            .lock()
            .expect("pressure lock")
            .is_some_and(|t| now.saturating_duration_since(t) < window)
    }
}

/// Counts peers per group, refusing those past `max` (for the peers of one lookup). A peer
/// already taken is taken again (answers repeat peers).
#[derive(Debug)]
pub struct GroupCounter<P> {
    max: usize,
    counts: std::collections::HashMap<Group, usize>,
    taken: std::collections::HashSet<P>,
}

impl<P: std::hash::Hash + Eq> GroupCounter<P> {
    /// A counter allowing `max` peers per group (0: no limit).
    pub fn new(max: usize) -> Self {
        Self {
            max,
            counts: Default::default(),
            taken: Default::default(),
        }
    }

    /// Whether `peer` of `group` may be taken; counts it if so.
    pub fn admit(&mut self, peer: P, group: Option<Group>) -> bool {
        let Some(group) = group else { return true };
        if self.max == 0 || self.taken.contains(&peer) {
            return true;
        }
        let n = self.counts.entry(group).or_insert(0);
        if *n >= self.max {
            return false;
        }
        *n += 1;
        self.taken.insert(peer);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_addresses_group_by_24_and_48_and_the_rest_is_exempt() {
        assert_eq!(
            group_of(&[a("/ip4/203.0.113.7/tcp/1")]),
            Some(Group::V4([203, 0, 113]))
        );
        assert_eq!(
            group_of(&[a("/ip4/203.0.113.200/udp/1/quic-v1")]),
            group_of(&[a("/ip4/203.0.113.7/tcp/1")]),
            "same /24"
        );
        assert_ne!(
            group_of(&[a("/ip4/203.0.114.7/tcp/1")]),
            group_of(&[a("/ip4/203.0.113.7/tcp/1")])
        );
        assert_eq!(
            group_of(&[a("/ip6/2001:db8:1:2::1/tcp/1")]),
            Some(Group::V6([0x20, 0x01, 0x0d, 0xb8, 0, 1]))
        );
        for exempt in [
            "/ip4/127.0.0.1/tcp/1",
            "/ip4/10.1.2.3/tcp/1",
            "/ip4/192.168.1.1/tcp/1",
            "/ip4/169.254.1.1/tcp/1",
            "/ip6/::1/tcp/1",
            "/ip6/fd00::1/tcp/1",
            "/ip6/fe80::1/tcp/1",
            "/memory/7",
            "/dns4/example.com/tcp/1",
        ] {
            assert_eq!(group_of(&[a(exempt)]), None, "{exempt}");
        }
        // The first public address decides.
        assert_eq!(
            group_of(&[a("/ip4/10.0.0.1/tcp/1"), a("/ip4/198.51.100.9/tcp/1")]),
            Some(Group::V4([198, 51, 100]))
        );
        assert_eq!(group_of(&[]), None);
    }

    #[test]
    fn a_lookup_takes_at_most_max_peers_of_a_group() {
        let mut c = GroupCounter::new(2);
        let g = group_of(&[a("/ip4/203.0.113.7/tcp/1")]);
        let other = group_of(&[a("/ip4/198.51.100.1/tcp/1")]);
        assert!(c.admit(1, g) && c.admit(2, g));
        assert!(c.admit(1, g), "a peer already taken is taken again");
        assert!(!c.admit(3, g), "a third of one /24 is refused");
        assert!(c.admit(4, other), "another group is not affected");
        assert!(c.admit(5, None), "exempt peers always pass");
        let mut unlimited = GroupCounter::new(0);
        assert!((0..10).all(|i| unlimited.admit(i, g)));
    }

    #[test]
    fn pressure_lasts_for_its_window() {
        let p = Pressure::default();
        let t = Instant::now();
        assert!(!p.under_pressure(t, Duration::from_secs(60)));
        p.refused(t);
        assert!(p.under_pressure(t + Duration::from_secs(59), Duration::from_secs(60)));
        assert!(!p.under_pressure(t + Duration::from_secs(61), Duration::from_secs(60)));
    }
}
