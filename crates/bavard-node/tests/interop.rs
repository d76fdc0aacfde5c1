//! Interoperability with stock rust-libp2p Kademlia nodes (libp2p-kad with identify) in one DHT,
//! in-process over MemoryTransport: bootstrap through bavard, records and provider records both
//! ways, and routing-table admission (Kademlia servers in, client-mode peers out).

// common.rs builds configs field by field, which clippy flags in every test that includes it.
mod common;
mod stock;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use bavard_node::Node;
use bavard_node::api::{Consistency, GetOptions, PutOptions};
use bavard_routing::Key;
use common::*;
use libp2p::PeerId;
use libp2p::kad::Mode;
use stock::StockNode;

/// A bound on any one bavard operation.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// A bound on convergence (routing tables filling).
const CONVERGE: Duration = Duration::from_secs(40);

/// Awaits `fut`, panicking with `what` if it takes longer than [`OP_TIMEOUT`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(OP_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {OP_TIMEOUT:?}"))
}

/// A mixed network: bavard nodes (a cluster) and stock Kademlia servers.
struct Net {
    bavard: Vec<Node>,
    stock: Vec<StockNode>,
    _dir: tempfile::TempDir,
}

impl Net {
    /// Every peer id in the network.
    fn all_peers(&self) -> Vec<PeerId> {
        self.bavard
            .iter()
            .map(Node::peer_id)
            .chain(self.stock.iter().map(StockNode::peer_id))
            .collect()
    }

    async fn shutdown(self) {
        for n in &self.bavard {
            n.shutdown().await;
        }
    }
}

/// The peers in a bavard node's routing table.
fn bavard_table(node: &Node) -> HashSet<String> {
    node.routing()
        .buckets
        .into_iter()
        .flat_map(|b| b.peers)
        .collect()
}

/// Starts a stock server that bootstraps through `via` (an address ending in `/p2p/PEER`).
async fn start_stock_server(via: &libp2p::Multiaddr) -> StockNode {
    let s = StockNode::start(Mode::Server).await;
    s.add_address(via).await.expect("add the bootstrap address");
    s.bootstrap().await.expect("bootstrap through bavard");
    s
}

/// Starts `b` bavard nodes and `s` stock servers, stock node i bootstrapping through bavard node
/// i mod b, and waits until every routing table, bavard and stock, holds every other node.
async fn start_net(b: usize, s: usize) -> Net {
    let dir = tempfile::tempdir().expect("tempdir");
    let bavard = start_cluster(dir.path(), b, b - 1).await;
    let mut stock = Vec::new();
    for i in 0..s {
        stock.push(start_stock_server(&p2p_addr(&bavard[i % b])).await);
    }
    let net = Net {
        bavard,
        stock,
        _dir: dir,
    };
    let total = b + s;
    for node in &net.bavard {
        eventually("bavard tables to hold every node", CONVERGE, || async {
            node.status().routing_table_size >= total - 1
        })
        .await;
    }
    for node in &net.stock {
        eventually("stock tables to hold every node", CONVERGE, || async {
            node.routing_table().await.len() >= total - 1
        })
        .await;
    }
    net
}

/// The first key `prefix-N` whose closest node (by the XOR metric over SHA-256 keys, as both
/// implementations route) satisfies `pred`.
fn key_whose_closest(peers: &[PeerId], prefix: &str, pred: impl Fn(&PeerId) -> bool) -> Vec<u8> {
    (0..10_000)
        .map(|i| format!("{prefix}-{i}").into_bytes())
        .find(|key| {
            let target = Key::hash(key);
            let closest = peers
                .iter()
                .min_by_key(|p| Key::hash(&p.to_bytes()).distance(&target))
                .expect("peers");
            pred(closest)
        })
        .expect("some key matches")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_node_bootstraps_through_a_bavard_node_and_finds_bavard_and_stock_peers() {
    let net = start_net(4, 2).await;
    let newcomer = StockNode::start(Mode::Server).await;
    newcomer
        .add_address(&p2p_addr(&net.bavard[0]))
        .await
        .expect("add the bavard bootstrap address");
    newcomer.bootstrap().await.expect("bootstrap succeeds");

    // Everything it knows beyond its bootstrap node it learned from bavard's FIND_NODE answers.
    let everyone: HashSet<PeerId> = net.all_peers().into_iter().collect();
    eventually(
        "the newcomer's table to hold every bavard and stock node",
        CONVERGE,
        || async {
            let table: HashSet<PeerId> = newcomer.routing_table().await.into_iter().collect();
            everyone.is_subset(&table)
        },
    )
    .await;

    let closest = newcomer
        .get_closest_peers(b"some-key")
        .await
        .expect("get_closest_peers succeeds");
    let closest: HashSet<PeerId> = closest.into_iter().collect();
    assert!(
        net.bavard.iter().any(|n| closest.contains(&n.peer_id())),
        "bavard nodes among the closest peers: {closest:?}"
    );
    assert!(
        net.stock.iter().any(|n| closest.contains(&n.peer_id())),
        "stock nodes among the closest peers: {closest:?}"
    );
    assert_eq!(
        closest, everyone,
        "in a 7-node network, with k = 20, the closest peers are all of the other nodes"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_put_by_a_stock_node_is_a_dht_record_for_every_bavard_node_and_never_kv() {
    let net = start_net(4, 3).await;
    let one = GetOptions {
        consistency: Consistency::One,
    };

    // put_record: stored locally, then PUT_VALUE to the closest peers.
    net.stock[0]
        .put_record(b"stock-key", b"stock-value")
        .await
        .expect("put_record with Quorum::One succeeds");
    for node in &net.bavard {
        let got = within("bavard dht get", node.dht_get(b"stock-key"))
            .await
            .expect("dht get succeeds")
            .expect("the record is found");
        assert_eq!(got, b"stock-value");
        // The KV store never serves what came through Kademlia.
        let kv = within("bavard kv get", node.get(b"stock-key", one.clone()))
            .await
            .expect("get succeeds");
        assert!(kv.is_none(), "a Kademlia record is not a KV value");
        assert_eq!(node.status().records_stored, 0, "the KV store is untouched");
    }

    // put_record_to stock nodes only: no bavard node holds it, so each must fetch it with
    // GET_VALUE from a stock node.
    let holders = vec![net.stock[1].peer_id(), net.stock[2].peer_id()];
    net.stock[0]
        .put_record_to(b"stock-only-key", b"stock-only-value", holders)
        .await
        .expect("put_record_to stock nodes succeeds");
    for node in &net.bavard {
        let got = within("bavard dht get", node.dht_get(b"stock-only-key"))
            .await
            .expect("dht get succeeds")
            .expect("the record is found on a stock node");
        assert_eq!(got, b"stock-only-value");
    }
    assert!(
        within(
            "dht get of an absent key",
            net.bavard[0].dht_get(b"never-written")
        )
        .await
        .expect("dht get succeeds")
        .is_none(),
        "a key nobody wrote is absent"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_put_value_neither_overwrites_nor_expires_a_kv_value() {
    let net = start_net(4, 2).await;
    let reply = within(
        "bavard put",
        net.bavard[0].put(
            b"account".to_vec(),
            b"kv-value".to_vec(),
            PutOptions {
                consistency: Consistency::All,
                ..PutOptions::default()
            },
        ),
    )
    .await
    .expect("put succeeds");
    assert_eq!(reply.acks, 3);
    // An outsider overwrites the key through Kademlia, then tries to expire it with a TTL of
    // one second.
    net.stock[0]
        .put_record(b"account", b"outsider")
        .await
        .expect("the outsider's PUT_VALUE goes out");
    net.stock[1]
        .put_record_with_ttl(b"account", b"expiring", Some(Duration::from_secs(1)))
        .await
        .expect("the outsider's PUT_VALUE goes out");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for level in [Consistency::One, Consistency::Quorum, Consistency::All] {
        for node in &net.bavard {
            let got = within(
                "bavard get",
                node.get(b"account", GetOptions { consistency: level }),
            )
            .await
            .expect("get succeeds")
            .expect("the KV value is still there");
            assert_eq!(got.value, b"kv-value", "at {level:?}");
        }
    }
    // The outsider's values live in the DHT record table, where they belong.
    let dht = within("dht get", net.bavard[1].dht_get(b"account"))
        .await
        .expect("dht get succeeds");
    assert!(
        dht.as_deref()
            .is_none_or(|v| v == b"outsider".as_slice() || v == b"expiring".as_slice()),
        "the DHT copy is one of the outsider's (or expired): {dht:?}"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dht_record_put_by_a_bavard_node_is_read_by_every_stock_node() {
    let net = start_net(4, 3).await;
    // A key whose closest node is a bavard node other than the writer, so a bavard node must
    // serve the stock nodes' GET_VALUE.
    let writer = net.bavard[0].peer_id();
    let bavard_ids: HashSet<PeerId> = net.bavard.iter().map(Node::peer_id).collect();
    let key = key_whose_closest(&net.all_peers(), "bavard-key", |p| {
        bavard_ids.contains(p) && *p != writer
    });
    let acks = within(
        "bavard dht put",
        net.bavard[0].dht_put(key.clone(), b"bavard-value".to_vec()),
    )
    .await
    .expect("dht put succeeds");
    assert!(acks >= 2, "stored here and on the closest nodes: {acks}");
    for reader in &net.stock {
        let found = reader.get_record(&key).await.expect("get_record succeeds");
        assert!(!found.is_empty(), "the record is found");
        assert!(
            found.iter().all(|f| f.value == b"bavard-value"),
            "every copy holds the value: {found:?}"
        );
        let remote: HashSet<PeerId> = found.iter().filter_map(|f| f.peer).collect();
        assert!(
            remote.iter().any(|p| bavard_ids.contains(p)),
            "a bavard node served the record (got {remote:?})"
        );
    }
    // And a KV value never goes out as a Kademlia record.
    let kv_key = key_whose_closest(&net.all_peers(), "kv-only", |p| bavard_ids.contains(p));
    within(
        "bavard put",
        net.bavard[0].put(kv_key.clone(), b"private".to_vec(), PutOptions::default()),
    )
    .await
    .expect("put succeeds");
    for reader in &net.stock {
        let found = reader.get_record(&kv_key).await.unwrap_or_default();
        assert!(
            found.is_empty(),
            "a KV value is not served to Kademlia: {found:?}"
        );
    }
    net.shutdown().await;
}

/// The peer ids of a `GET /v1/providers/…` answer, sorted.
fn peer_ids(listing: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = listing
        .as_array()
        .expect("a list of providers")
        .iter()
        .map(|p| p["peer_id"].as_str().expect("a peer id").to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cid_announced_by_a_stock_node_is_listed_by_the_http_api_under_that_cid() {
    let net = start_net(3, 2).await;
    // The CIDv1 (raw, sha2-256) of "hello world": IPFS keys its provider records by the
    // multihash, which is what the stock node announces.
    let cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";
    let multihash = bavard_node::keys::cid_multihash(cid).expect("a valid CID");
    let provider = net.stock[0].peer_id().to_string();
    net.stock[0]
        .start_providing(&multihash)
        .await
        .expect("start_providing succeeds");
    let http = reqwest::Client::builder()
        .timeout(OP_TIMEOUT)
        .build()
        .expect("http client");
    for node in &net.bavard {
        let base = serve_api(node, "interop-token-0123456789").await;
        let resp = http
            .get(format!("{base}/v1/providers/{cid}"))
            .send()
            .await
            .expect("the API answers");
        assert_eq!(resp.status().as_u16(), 200);
        let found: serde_json::Value = resp.json().await.expect("JSON");
        let listed = found
            .as_array()
            .expect("a list of providers")
            .iter()
            .any(|p| p["peer_id"] == provider.as_str());
        assert!(listed, "the stock provider is listed under {cid}: {found}");
        // The same key written in hex names the same record; the CID's string bytes do not.
        let hex = hex::encode(&multihash);
        let by_hex: serde_json::Value = http
            .get(format!("{base}/v1/providers/{hex}?key_encoding=hex"))
            .send()
            .await
            .expect("the API answers")
            .json()
            .await
            .expect("JSON");
        // Two lookups: compare who they list (the addresses are what each lookup met).
        assert_eq!(peer_ids(&by_hex), peer_ids(&found));
        let as_text: serde_json::Value = http
            .get(format!("{base}/v1/providers/{cid}?key_encoding=utf8"))
            .send()
            .await
            .expect("the API answers")
            .json()
            .await
            .expect("JSON");
        assert_eq!(as_text, serde_json::json!([]), "nobody provides the string");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_records_announced_on_either_side_are_found_on_the_other() {
    let net = start_net(4, 3).await;

    // Stock announces, bavard finds.
    let provider = net.stock[0].peer_id().to_string();
    net.stock[0]
        .start_providing(b"stock-provided")
        .await
        .expect("start_providing succeeds");
    for node in &net.bavard {
        let found = within(
            "bavard providers",
            node.providers(b"stock-provided".to_vec()),
        )
        .await
        .expect("providers succeeds");
        let entry = found
            .iter()
            .find(|p| p.peer_id == provider)
            .unwrap_or_else(|| panic!("the stock provider is found: {found:?}"));
        assert!(
            !entry.addrs.is_empty(),
            "the provider comes with an address: {entry:?}"
        );
    }

    // Bavard announces, stock finds.
    let acks = within(
        "bavard provide",
        net.bavard[2].provide(b"bavard-provided".to_vec()),
    )
    .await
    .expect("provide succeeds");
    assert!(acks >= 2, "a remote node accepted the announcement: {acks}");
    for reader in &net.stock {
        let found = reader
            .get_providers(b"bavard-provided")
            .await
            .expect("get_providers succeeds");
        assert!(
            found.contains(&net.bavard[2].peer_id()),
            "the bavard provider is found: {found:?}"
        );
    }
    let none = net.stock[0]
        .get_providers(b"nobody-provides")
        .await
        .expect("get_providers succeeds");
    assert!(none.is_empty(), "a key nobody provides has no providers");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bavard_tables_admit_stock_servers_but_not_stock_clients() {
    let net = start_net(4, 3).await;
    for node in &net.bavard {
        let table = bavard_table(node);
        for s in &net.stock {
            assert!(
                table.contains(&s.peer_id().to_string()),
                "bavard node {} holds stock server {}",
                node.peer_id(),
                s.peer_id()
            );
        }
        assert_eq!(node.status().routing_table_size, 6, "every other node");
    }

    // A client-mode stock node queries through bavard but never serves, so it must stay out.
    let client = StockNode::start(Mode::Client).await;
    client
        .add_address(&p2p_addr(&net.bavard[0]))
        .await
        .expect("add the bavard address");
    let closest = client
        .get_closest_peers(b"client-query")
        .await
        .expect("a client can query through bavard");
    assert!(!closest.is_empty(), "the client finds peers");
    let client_id = client.peer_id().to_string();
    eventually("bavard to see the client connected", CONVERGE, || async {
        net.bavard[0].peers().iter().any(|p| p.peer_id == client_id)
    })
    .await;

    // A server that joins after the client: once bavard admitted it, bavard has processed
    // identify for connections at least as old, the client's included.
    let late = start_stock_server(&p2p_addr(&net.bavard[0])).await;
    let late_id = late.peer_id().to_string();
    eventually("bavard to admit the late server", CONVERGE, || async {
        bavard_table(&net.bavard[0]).contains(&late_id)
    })
    .await;
    for node in &net.bavard {
        assert!(
            !bavard_table(node).contains(&client_id),
            "bavard node {} must not hold the client-mode node",
            node.peer_id()
        );
    }
    assert!(
        net.bavard[0].peers().iter().any(|p| p.peer_id == client_id),
        "the client is still connected, so its absence from the table is by choice"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_records_keep_the_highest_valid_sequence_whoever_puts_them() {
    use bavard_node::api::NodeError;
    use bavard_node::kad::records::{PK_PREFIX, SignedRecord, signed_key};
    use libp2p::identity::ed25519;

    let net = start_net(4, 2).await;
    let kp = ed25519::Keypair::generate();
    let pk = kp.public().to_bytes();
    let salt = b"profile";
    let sign = |seq: u64, value: &[u8]| SignedRecord::sign(&kp, salt, seq, value.to_vec());
    let put = |node: &Node, r: SignedRecord, cas: Option<u64>| {
        let node = node.clone();
        async move { within("signed put", node.signed_put(r, cas)).await }
    };
    let current = |node: &Node| {
        let node = node.clone();
        async move {
            within("signed get", node.signed_get(&pk, salt))
                .await
                .expect("signed get succeeds")
                .map(|r| (r.seq, r.value))
        }
    };

    assert!(put(&net.bavard[0], sign(1, b"one"), None).await.unwrap() >= 2);
    assert_eq!(current(&net.bavard[3]).await, Some((1, b"one".to_vec())));
    // Not newer: refused.
    let err = put(&net.bavard[1], sign(1, b"again"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::Conflict { .. }), "{err:?}");
    // Compare-and-swap on the sequence number.
    let err = put(&net.bavard[1], sign(2, b"two"), Some(7))
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::Conflict { .. }), "{err:?}");
    put(&net.bavard[1], sign(2, b"two"), Some(1)).await.unwrap();
    assert_eq!(current(&net.bavard[2]).await, Some((2, b"two".to_vec())));
    // A record whose signature does not cover its value is refused through the API...
    let mut forged = sign(3, b"three");
    forged.value = b"evil".to_vec();
    let err = put(&net.bavard[0], forged.clone(), None).await.unwrap_err();
    assert!(matches!(err, NodeError::BadRequest(_)), "{err:?}");
    // ...and through Kademlia: bavard nodes keep the valid record.
    let key = signed_key(&pk, salt);
    net.stock[0]
        .put_record(&key, &forged.encode())
        .await
        .expect("the PUT_VALUE goes out");
    for node in &net.bavard {
        assert_eq!(current(node).await, Some((2, b"two".to_vec())));
    }
    // A stock node that puts a valid newer record is heard.
    net.stock[1]
        .put_record(&key, &sign(3, b"three").encode())
        .await
        .expect("the PUT_VALUE goes out");
    for node in &net.bavard {
        assert_eq!(current(node).await, Some((3, b"three".to_vec())));
    }
    // Public-key records must name their key.
    let owner = libp2p::identity::Keypair::generate_ed25519();
    let mut pk_key = PK_PREFIX.to_vec();
    pk_key.extend_from_slice(&owner.public().to_peer_id().to_bytes());
    let wrong = libp2p::identity::Keypair::generate_ed25519();
    net.stock[0]
        .put_record(&pk_key, &wrong.public().encode_protobuf())
        .await
        .expect("the PUT_VALUE goes out");
    assert_eq!(
        within("dht get", net.bavard[1].dht_get(&pk_key))
            .await
            .unwrap(),
        None,
        "a key that does not match its name is ignored"
    );
    net.stock[0]
        .put_record(&pk_key, &owner.public().encode_protobuf())
        .await
        .expect("the PUT_VALUE goes out");
    assert_eq!(
        within("dht get", net.bavard[1].dht_get(&pk_key))
            .await
            .unwrap(),
        Some(owner.public().encode_protobuf())
    );
    let rejected = net
        .bavard
        .iter()
        .map(|n| n.metrics_text())
        .collect::<String>();
    assert!(
        rejected.contains("reason=\"put_rejected\""),
        "refused PUT_VALUEs are counted"
    );
    net.shutdown().await;
}
