//! Addresses beyond one machine: a bootstrap address given by DNS name (`/dns4/NAME/…`, as a
//! Kubernetes StatefulSet's stable pod names are) and advertised addresses (what a node behind
//! NAT or a port mapping tells others to dial).

mod common;

use std::time::Duration;

use bavard_node::Node;
use common::*;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// A node listening on loopback TCP (DNS names resolve to IPs, not to `/memory/` addresses).
fn tcp_config(dir: &std::path::Path) -> bavard_node::NodeConfig {
    let mut c = test_config(dir, true);
    c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    c
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within 30 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_bootstraps_through_a_dns_name() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(tcp_config(da.path())).await.unwrap();
    let port = a
        .listen_addrs()
        .iter()
        .flat_map(|addr| addr.iter())
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let by_name: Multiaddr = format!("/dns4/localhost/tcp/{port}/p2p/{}", a.peer_id())
        .parse()
        .unwrap();
    let mut cb = tcp_config(db.path());
    cb.bootstrap = vec![by_name];
    cb.validate().unwrap();
    let b = Node::start(cb).await.unwrap();
    within("b knowing a through its name", async {
        while !b
            .peers()
            .iter()
            .any(|p| p.peer_id == a.peer_id().to_string())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // And a learned b in return: the two form a network.
    within("a knowing b", async {
        while !a
            .peers()
            .iter()
            .any(|p| p.peer_id == b.peer_id().to_string())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_announces_its_advertised_addresses_instead_of_its_listen_addresses() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(tcp_config(da.path())).await.unwrap();
    let public: Multiaddr = "/ip4/203.0.113.7/tcp/4001".parse().unwrap();
    let mut cb = tcp_config(db.path());
    cb.advertise = vec![public.clone()];
    cb.bootstrap = vec![p2p_addr(&a)];
    cb.validate().unwrap();
    let b = Node::start(cb).await.unwrap();
    assert_eq!(b.listen_addrs(), vec![public.clone()]);
    assert_eq!(b.status().listen_addrs, vec![public.to_string()]);
    // The membership carries it to the others.
    within("a seeing b's advertised address in the membership", async {
        loop {
            let members = a.members();
            if let Some(m) = members
                .iter()
                .find(|m| m.peer_id == b.peer_id().to_string())
                && m.addrs
                    .iter()
                    .any(|x| x.starts_with("/ip4/203.0.113.7/tcp/4001"))
            {
                assert!(
                    !m.addrs.iter().any(|x| x.starts_with("/ip4/127.0.0.1")),
                    "the bound address leaked: {:?}",
                    m.addrs
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    b.shutdown().await;
    a.shutdown().await;
}

#[test]
fn bad_advertised_and_bootstrap_addresses_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = tcp_config(dir.path());
    c.advertise = vec!["/ip4/0.0.0.0/tcp/4001".parse().unwrap()];
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("unspecified"), "{err}");
    c.advertise = vec![
        "/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWGzhCfY7ArVbwamqAwe3wzFkSX1TdmsmbcN7xFSyWuZ7F"
            .parse()
            .unwrap(),
    ];
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("must not end in /p2p/"), "{err}");
    c.advertise.clear();
    c.bootstrap = vec!["/dns4/seed.example/tcp/4001".parse().unwrap()];
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("/p2p/PEER_ID"), "{err}");
}

#[tokio::test]
async fn dns_names_resolve_to_addresses_of_the_family_asked_for() {
    use bavard_node::util::resolve_dns;
    let t = Duration::from_secs(5);
    let peer = "12D3KooWGzhCfY7ArVbwamqAwe3wzFkSX1TdmsmbcN7xFSyWuZ7F";
    let addr: Multiaddr = format!("/dns4/localhost/tcp/4001/p2p/{peer}")
        .parse()
        .unwrap();
    let got = resolve_dns(&addr, t).await.unwrap();
    assert!(
        got.contains(
            &format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")
                .parse()
                .unwrap()
        ),
        "{got:?}"
    );
    assert!(
        got.iter()
            .all(|a| matches!(a.iter().next(), Some(Protocol::Ip4(_))))
    );
    // Not a name: unchanged.
    let ip: Multiaddr = "/ip4/10.0.0.1/udp/4001/quic-v1".parse().unwrap();
    assert_eq!(resolve_dns(&ip, t).await.unwrap(), vec![ip]);
    // A name that cannot resolve (.invalid is reserved for that) is an error, not a hang.
    let nowhere: Multiaddr = "/dns4/nowhere.invalid/tcp/4001".parse().unwrap();
    assert!(resolve_dns(&nowhere, Duration::from_secs(3)).await.is_err());
}
