//! Helpers for in-process clusters over libp2p's MemoryTransport.
#![allow(
    dead_code,
    missing_docs,
    unreachable_pub,
    clippy::field_reassign_with_default
)]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use bavard_node::{Node, NodeConfig};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// The cluster authority of this test process: every test node is certified by it, so all the
/// nodes a test starts are members of one cluster.
pub fn test_authority() -> &'static bavard_node::admission::Authority {
    static AUTHORITY: std::sync::OnceLock<bavard_node::admission::Authority> =
        std::sync::OnceLock::new();
    AUTHORITY.get_or_init(bavard_node::admission::Authority::generate)
}

/// Certifies the node of `dir` (creating its identity) as a member of the test cluster.
pub fn admit(dir: &Path) {
    let key = bavard_node::identity::load_or_create(dir).unwrap();
    let cert = test_authority().certify(key.public().to_peer_id(), u64::MAX);
    bavard_node::admission::install_certificate(dir, &cert).unwrap();
}

/// A config for an in-process test node with short intervals, certified as a member of the test
/// cluster.
pub fn test_config(dir: &Path, in_memory: bool) -> NodeConfig {
    admit(dir);
    let mut c = NodeConfig::default();
    c.data_dir = dir.to_path_buf();
    c.listen = vec!["/memory/0".parse().unwrap()];
    c.api = None;
    c.store.in_memory = in_memory;
    c.kad.request_timeout_secs = 5.0;
    c.kad.lookup_timeout_secs = 20.0;
    c.kad.refresh_interval_secs = 2.0;
    c
}

/// The node's first address with its `/p2p/` suffix.
pub fn p2p_addr(node: &Node) -> Multiaddr {
    node.listen_addrs()[0]
        .clone()
        .with(Protocol::P2p(node.peer_id()))
}

/// Polls `cond` every 50 ms until it holds, panicking after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves `node`'s HTTP API (with `token`) on an ephemeral loopback port until the node shuts
/// down; returns its base URL.
/// Awaits `f`, panicking with `what` if it takes longer than `limit`.
pub async fn within_limit<T>(what: &str, limit: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

/// `len` bytes from a ChaCha8 stream seeded with `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore as _, SeedableRng as _};
    let mut data = vec![0u8; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

pub async fn serve_api(node: &Node, token: &str) -> String {
    serve_api_with(node, bavard_node::http::Access::with_token(token, false)).await
}

/// [`serve_api`] with the given access rules.
pub async fn serve_api_with(node: &Node, access: bavard_node::http::Access) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the API");
    let addr = listener.local_addr().expect("API address");
    tokio::spawn(bavard_node::http::serve(
        listener,
        node.clone(),
        access,
        node.shutdown_signal(),
    ));
    format!("http://{addr}")
}

/// [`test_config`] with short gossip intervals, so that a failure is detected in a few seconds.
pub fn fast_gossip_config(dir: &Path, in_memory: bool) -> NodeConfig {
    let mut c = test_config(dir, in_memory);
    c.gossip.probe_interval_secs = 0.2;
    c.gossip.probe_timeout_secs = 0.1;
    c.gossip.suspicion_mult = 3;
    c.gossip.gossip_interval_secs = 0.1;
    c.gossip.push_pull_interval_secs = 2.0;
    // Long enough that a partition heals before the other side is forgotten.
    c.gossip.dead_member_retention_secs = 120.0;
    c.gossip.join_retry_secs = 0.5;
    c.gossip.topic_retry_secs = 0.5;
    c
}

/// Starts `n` nodes, node 0 the bootstrap of the others, and waits until every routing table
/// holds at least `min_peers` entries.
pub async fn start_cluster(root: &Path, n: usize, min_peers: usize) -> Vec<Node> {
    start_cluster_with(root, n, min_peers, |_, _| {}).await
}

/// [`start_cluster`] with `tweak(i, config)` applied to node `i`'s config before it starts.
pub async fn start_cluster_with(
    root: &Path,
    n: usize,
    min_peers: usize,
    tweak: impl Fn(usize, &mut NodeConfig),
) -> Vec<Node> {
    init_tracing();
    let mut nodes = Vec::new();
    let mut c = test_config(&root.join("n0"), true);
    tweak(0, &mut c);
    let first = Node::start(c).await.unwrap();
    let boot = p2p_addr(&first);
    nodes.push(first);
    for i in 1..n {
        let mut c = test_config(&root.join(format!("n{i}")), true);
        c.bootstrap = vec![boot.clone()];
        tweak(i, &mut c);
        nodes.push(Node::start(c).await.unwrap());
    }
    for node in &nodes {
        eventually(
            "routing tables to fill",
            Duration::from_secs(60),
            || async { node.status().routing_table_size >= min_peers },
        )
        .await;
    }
    nodes
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A raw libp2p peer (the node's own transport stack, no protocol logic) dialled to `target`,
/// for tests that speak a protocol by hand. Returns its peer id and stream control.
pub fn raw_peer(target: &Node) -> (libp2p::PeerId, bavard_node::streams::Control) {
    raw_peer_with(target, false)
}

/// A raw peer like [`raw_peer`], but a member of the test cluster: it answers the node's
/// `/bavard/admit/1` hello with a certificate of the test authority.
pub fn raw_member(target: &Node) -> (libp2p::PeerId, bavard_node::streams::Control) {
    raw_peer_with(target, true)
}

/// A raw member like [`raw_member`] whose key the test holds (to sign claims by hand).
pub fn raw_member_with(
    target: &Node,
    key: libp2p::identity::Keypair,
) -> bavard_node::streams::Control {
    raw_peer_keyed(target, true, key).1
}

fn raw_peer_with(target: &Node, member: bool) -> (libp2p::PeerId, bavard_node::streams::Control) {
    raw_peer_keyed(
        target,
        member,
        libp2p::identity::Keypair::generate_ed25519(),
    )
}

fn raw_peer_keyed(
    target: &Node,
    member: bool,
    key: libp2p::identity::Keypair,
) -> (libp2p::PeerId, bavard_node::streams::Control) {
    use futures::StreamExt as _;
    let id = key.public().to_peer_id();
    let mut swarm = bavard_node::swarm::build(
        key,
        bavard_node::addresses::AddressBook::default(),
        Duration::from_secs(60),
        &Default::default(),
        Default::default(),
    )
    .unwrap();
    let control = swarm.behaviour().stream.new_control();
    if member {
        let cert = test_authority().certify(id, u64::MAX).encode();
        let mut incoming = control
            .clone()
            .accept(libp2p::StreamProtocol::new("/bavard/admit/1"))
            .unwrap();
        tokio::spawn(async move {
            use bavard_proto::admission as pb;
            while let Some((_, mut stream)) = incoming.next().await {
                let cert = cert.clone();
                tokio::spawn(async move {
                    let _: Option<pb::Request> =
                        bavard_node::wire::read_message(&mut stream, 1 << 20)
                            .await
                            .ok()
                            .flatten();
                    let hello = pb::Response {
                        kind: Some(pb::response::Kind::Hello(pb::Hello {
                            certificate: cert,
                            revocations_version: 0,
                        })),
                    };
                    let _ = bavard_node::wire::write_message(&mut stream, &hello).await;
                });
            }
        });
    }
    swarm.dial(p2p_addr(target)).unwrap();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    (id, control)
}
