//! The libp2p Kademlia protocol (`/ipfs/kad/1.0.0`) on top of the `bavard-routing` core: message
//! conversion, the inbound server, outbound requests and the lookup driver.

pub(crate) mod client;
mod dht;
pub(crate) mod lookup;
pub mod protocol;
mod providers;
pub mod records;
pub(crate) mod server;

pub use protocol::{KAD_PROTOCOL, KadPeer, ProtocolError, Request, Response, WireRecord};

type Table = bavard_routing::RoutingTable<libp2p::PeerId, Vec<libp2p::Multiaddr>>;
type View<'a> = bavard_routing::BucketView<'a, libp2p::PeerId, Vec<libp2p::Multiaddr>>;

/// Installs the routing table's IP-diversity filter (see [`crate::diversity`] and
/// [`diversity_filter`]).
pub(crate) fn install_diversity_filter(ctx: &crate::context::Context) {
    let max = ctx.config.kad.max_peers_per_ip_group_per_bucket;
    if max == 0 {
        return;
    }
    let admission = ctx.admission.clone();
    let filter = diversity_filter(move |p| admission.is_admitted(p), max, ctx.pressure.clone());
    ctx.table
        .lock()
        .expect("table lock")
        .set_admission_filter(filter);
}

/// At most `max` peers of one IP group per bucket (entries and replacement cache), peers
/// `exempt` says so (cluster members) and peers without a public address exempt; a refusal
/// puts the table under `pressure`. (The table-wide bound is [`group_full`], checked by
/// [`client::Kad::add_to_table`], which sees the whole table.)
pub(crate) fn diversity_filter(
    exempt: impl Fn(&libp2p::PeerId) -> bool + Send + Sync + 'static,
    max: usize,
    pressure: std::sync::Arc<crate::diversity::Pressure>,
) -> impl Fn(&libp2p::PeerId, &Vec<libp2p::Multiaddr>, &View<'_>) -> bool + Send + Sync + 'static {
    move |peer, addrs, bucket| {
        if exempt(peer) {
            return true;
        }
        let Some(group) = crate::diversity::group_of(addrs) else {
            return true;
        };
        let same = bucket
            .entries
            .iter()
            .chain(bucket.replacements)
            .filter(|e| crate::diversity::group_of(&e.value) == Some(group))
            .count();
        let ok = same < max;
        if !ok {
            pressure.refused(std::time::Instant::now());
        }
        ok
    }
}

/// Whether the table already holds `max` peers of the IP group of `addrs` (so a new `peer`
/// of that group may not enter); `false` for a peer already in the table or without a public
/// address, and when `max` is 0.
pub(crate) fn group_full(
    table: &Table,
    peer: &libp2p::PeerId,
    addrs: &[libp2p::Multiaddr],
    max: usize,
) -> bool {
    if max == 0 || table.contains(peer) {
        return false;
    }
    let Some(group) = crate::diversity::group_of(addrs) else {
        return false;
    };
    table
        .iter()
        .filter(|e| crate::diversity::group_of(&e.value) == Some(group))
        .count()
        >= max
}

#[cfg(test)]
mod tests {
    use super::*;
    use bavard_routing::{Key, RoutingTable, TableConfig};
    use libp2p::{Multiaddr, PeerId};
    use std::sync::Arc;
    use std::time::Instant;

    fn peer_in(subnet: u8, host: u8) -> (PeerId, Vec<Multiaddr>) {
        let addr = format!("/ip4/203.0.{subnet}.{host}/tcp/4001")
            .parse()
            .unwrap();
        (PeerId::random(), vec![addr])
    }

    fn table() -> Table {
        RoutingTable::new(Key::hash(b"local"), TableConfig::default()).unwrap()
    }

    #[test]
    fn one_subnet_gets_at_most_two_peers_per_bucket() {
        let pressure = Arc::new(crate::diversity::Pressure::default());
        let mut t = table();
        t.set_admission_filter(diversity_filter(|_| false, 2, pressure.clone()));
        let now = Instant::now();
        for host in 0..200 {
            let (peer, addrs) = peer_in(113, host);
            let key = crate::context::peer_key(&peer);
            t.insert(now, peer, key, addrs);
        }
        for i in 0..=255u8 {
            let b = t.bucket(i);
            assert!(b.entries.len() + b.replacements.len() <= 2, "bucket {i}");
        }
        assert!(pressure.under_pressure(Instant::now(), std::time::Duration::from_secs(60)));
        // Cluster members are exempt.
        let mut members = table();
        members.set_admission_filter(diversity_filter(|_| true, 2, pressure));
        for host in 0..20 {
            let (peer, addrs) = peer_in(113, host);
            let key = crate::context::peer_key(&peer);
            members.insert(now, peer, key, addrs);
        }
        let n = members.iter().count();
        assert!(n > 3, "cluster members are exempt, got {n}");
    }

    #[test]
    fn one_subnet_gets_at_most_three_peers_in_the_table() {
        let mut t = table();
        let now = Instant::now();
        let mut refused = 0;
        for host in 0..50 {
            let (peer, addrs) = peer_in(113, host);
            if group_full(&t, &peer, &addrs, 3) {
                refused += 1;
                continue;
            }
            let key = crate::context::peer_key(&peer);
            t.insert(now, peer, key, addrs);
        }
        assert_eq!(t.iter().count(), 3);
        assert_eq!(refused, 47);
        // A peer already in the table stays refreshable; other subnets and peers without a
        // public address are unaffected; 0 means no limit.
        let inside = t.iter().next().unwrap().clone();
        assert!(!group_full(&t, &inside.peer, &inside.value, 3));
        let (peer, addrs) = peer_in(114, 1);
        assert!(!group_full(&t, &peer, &addrs, 3));
        let local: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()];
        assert!(!group_full(&t, &PeerId::random(), &local, 3));
        let (peer, addrs) = peer_in(113, 99);
        assert!(group_full(&t, &peer, &addrs, 3) && !group_full(&t, &peer, &addrs, 0));
    }
}
