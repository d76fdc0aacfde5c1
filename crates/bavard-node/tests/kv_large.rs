//! Large KV values (issue 15 item 4): a value above `[store] inline_value_limit` is a blob
//! held by each of the key's replicas, the record carrying its hash. In process, 4 nodes,
//! N = 3: the replicas hold the blob (complete and pinned) when the write is acknowledged; the
//! value reads back identical from every node at every consistency level, with a replica
//! stopped too; overwrites and deletes unpin the old blob (but not one another key still
//! uses); the limits and bad bodies are typed errors; small values stay inline.
//!
//! Values are 1 MiB, not 1 GiB: the paths are the same, and the machine running the tests is
//! small. Every await is bounded.

mod common;

use std::path::Path;
use std::time::Duration;

use bavard_blobs::BlobHash;
use bavard_node::api::{Consistency, GetOptions, KvValue, NodeError, PutOptions};
use bavard_node::blobs::BlobError;
use bavard_node::replica::Condition;
use bavard_node::{Node, NodeConfig};
use bavard_proto::store as pb;
use bavard_routing::Key;
use common::{eventually, p2p_addr, random_bytes, start_cluster_with, test_config};

const MIB: usize = 1 << 20;
const NODES: usize = 4;
/// Every await is bounded by this.
const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "test-token-0123456789";

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    common::within_limit(what, LONG, f).await
}

fn config(dir: &Path) -> NodeConfig {
    let mut c = test_config(dir, true);
    tune(&mut c);
    c
}

/// What these tests change in [`test_config`]: short timeouts, a 4 MiB value limit, fast
/// background rounds.
fn tune(c: &mut NodeConfig) {
    c.kad.request_timeout_secs = 5.0;
    c.store.max_large_value_size = 4 * MIB as u64;
    c.blobs.request_timeout_secs = 5.0;
    c.blobs.stall_timeout_secs = 5.0;
    c.blobs.provider_wait_secs = 10.0;
    c.blobs.provider_refresh_secs = 1.0;
    c.replication.anti_entropy_interval_secs = 0.5;
    c.replication.hint_delivery_interval_secs = 0.5;
}

/// Serves `node`'s API on an ephemeral port; returns its base URL.
async fn serve(node: &Node) -> String {
    common::serve_api(node, TOKEN).await
}

struct Cluster {
    root: std::path::PathBuf,
    nodes: Vec<Option<Node>>,
    ids: Vec<libp2p::PeerId>,
    apis: Vec<String>,
    http: reqwest::Client,
}

impl Cluster {
    async fn start(root: &Path) -> Cluster {
        let nodes = within(
            "the cluster's start",
            start_cluster_with(root, NODES, NODES - 1, |_, c| tune(c)),
        )
        .await;
        for node in &nodes {
            eventually("every node to know every other", LONG, || async {
                node.status().members_alive >= NODES
            })
            .await;
        }
        let mut apis = Vec::new();
        for node in &nodes {
            apis.push(serve(node).await);
        }
        let http = reqwest::Client::builder().timeout(LONG).build().unwrap();
        Cluster {
            root: root.to_path_buf(),
            ids: nodes.iter().map(Node::peer_id).collect(),
            nodes: nodes.into_iter().map(Some).collect(),
            apis,
            http,
        }
    }

    /// Starts node `i` again on its data directory (same identity and blob store; its records
    /// were in memory), bootstrapping from `from`.
    async fn restart(&mut self, i: usize, from: usize) {
        let mut cfg = config(&self.root.join(format!("n{i}")));
        cfg.bootstrap = vec![p2p_addr(self.node(from))];
        let node = within("a restart", Node::start(cfg)).await.unwrap();
        assert_eq!(node.peer_id(), self.ids[i]);
        self.apis[i] = serve(&node).await;
        self.nodes[i] = Some(node);
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("a running node")
    }

    fn live(&self) -> Vec<usize> {
        (0..NODES).filter(|i| self.nodes[*i].is_some()).collect()
    }

    /// The key's N = 3 replicas (the placement's rule: the closest members by XOR).
    fn replicas(&self, key: &[u8]) -> Vec<usize> {
        let target = Key::hash(key);
        let mut idx: Vec<usize> = (0..NODES).collect();
        idx.sort_by_key(|i| Key::hash(&self.node_id(*i).to_bytes()).distance(&target));
        idx.truncate(3);
        idx
    }

    fn node_id(&self, i: usize) -> libp2p::PeerId {
        self.ids[i]
    }

    async fn put_http(
        &self,
        i: usize,
        key: &str,
        value: Vec<u8>,
        query: &str,
    ) -> reqwest::Response {
        within(
            "a put",
            self.http
                .put(format!("{}/v1/kv/{key}{query}", self.apis[i]))
                .body(value)
                .send(),
        )
        .await
        .unwrap()
    }

    async fn get_http(&self, i: usize, key: &str, consistency: &str) -> reqwest::Response {
        within(
            "a get",
            self.http
                .get(format!(
                    "{}/v1/kv/{key}?consistency={consistency}",
                    self.apis[i]
                ))
                .send(),
        )
        .await
        .unwrap()
    }

    /// The value of the counter `name` (its exposition name, `_total` included) in node `i`'s
    /// `/metrics`, 0 when absent.
    async fn metric(&self, i: usize, name: &str) -> u64 {
        let text = within(
            "metrics",
            self.http.get(format!("{}/metrics", self.apis[i])).send(),
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether node `i` holds `hash` complete, and whether pinned.
    async fn holds(&self, i: usize, hash: BlobHash) -> (bool, bool) {
        match within("a blob status", self.node(i).blobs().status(hash)).await {
            Ok(s) => (s.complete, s.pinned),
            Err(_) => (false, false),
        }
    }

    async fn shutdown(mut self) {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            node.shutdown().await;
        }
    }
}

/// Puts `value` at `consistency` through node `i`'s HTTP API; returns the reply's JSON.
async fn put_ok(
    c: &Cluster,
    i: usize,
    key: &str,
    value: &[u8],
    consistency: &str,
) -> serde_json::Value {
    let resp = c
        .put_http(
            i,
            key,
            value.to_vec(),
            &format!("?consistency={consistency}"),
        )
        .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_value_is_held_by_its_replicas_before_the_ack_and_reads_back_from_every_node() {
    let root = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(root.path()).await;

    for (key, consistency, seed) in [("big-quorum", "quorum", 1), ("big-all", "all", 2)] {
        let value = random_bytes(MIB + 123, seed);
        let hash = BlobHash::of(&value);
        let reply = put_ok(&c, 0, key, &value, consistency).await;
        let acks = reply["acks"].as_u64().unwrap() as usize;
        assert!(acks >= if consistency == "all" { 3 } else { 2 }, "{reply}");
        // At the ack, at least `acks` nodes hold the blob complete and pinned (replicas, or a
        // hint holder): the coordinator's upload pin is gone unless it is a replica.
        let mut holders = 0;
        for i in c.live() {
            if c.holds(i, hash).await == (true, true) {
                holders += 1;
            }
        }
        assert!(
            holders >= acks,
            "{holders} nodes hold {key}'s blob, {acks} acked"
        );
        if consistency == "all" {
            for r in c.replicas(key.as_bytes()) {
                assert_eq!(c.holds(r, hash).await, (true, true), "replica {r} of {key}");
            }
        }
        // A read at `one` after a write at `quorum` may reach the replica still fetching the
        // blob (R + W <= N: no read-your-writes, as in Dynamo; a large value widens the
        // window). Once every replica holds it, every level reads it.
        for r in c.replicas(key.as_bytes()) {
            eventually("every replica to hold the blob", LONG, || async {
                c.holds(r, hash).await == (true, true)
            })
            .await;
            eventually("every replica to store the record", LONG, || async {
                c.node(r).status().records_stored >= 1
            })
            .await;
        }
        for i in c.live() {
            for level in ["quorum", "all", "one"] {
                let resp = c.get_http(i, key, level).await;
                assert_eq!(resp.status(), 200, "node {i} at {level}");
                assert_eq!(resp.headers()["content-type"], "application/octet-stream");
                assert_eq!(
                    resp.headers()["x-bavard-version"],
                    reply["version"].as_str().unwrap()
                );
                assert_eq!(resp.headers()["x-bavard-blob"], hash.to_hex().as_str());
                assert_eq!(
                    resp.headers()["content-length"],
                    value.len().to_string().as_str()
                );
                let body = within("a body", resp.bytes()).await.unwrap();
                assert!(body == value, "node {i} at {level}: the value differs");
            }
            // The library API answers the same bytes.
            let got = within(
                "a get",
                c.node(i).get(
                    key.as_bytes(),
                    GetOptions {
                        consistency: Consistency::Quorum,
                    },
                ),
            )
            .await
            .unwrap()
            .unwrap();
            assert!(got.value == value);
        }
    }
    assert_eq!(c.metric(0, "bavard_kv_large_writes_total").await, 2);
    // The replicas fetched the blobs (the coordinator had them).
    let mut fetched = 0;
    for i in c.live() {
        fetched += c.metric(i, "bavard_kv_blob_fetches_total").await;
    }
    assert!(fetched >= 3, "{fetched} blob fetches by replicas");

    // A replica stopped: reads still answer (from the two others), at quorum.
    let key = "big-all";
    let value = random_bytes(MIB + 123, 2);
    let stopped = c.replicas(key.as_bytes())[0];
    let reader = (0..NODES).find(|i| *i != stopped).unwrap();
    c.nodes[stopped].take().unwrap().shutdown().await;
    let resp = c.get_http(reader, key, "quorum").await;
    assert_eq!(resp.status(), 200);
    assert!(within("a body", resp.bytes()).await.unwrap() == value);
    // And a large write at quorum still succeeds; the fallback node holds the blob with
    // the hint.
    let replicas = c.replicas(key.as_bytes());
    let other = random_bytes(MIB, 3);
    let reply = put_ok(&c, reader, key, &other, "quorum").await;
    assert!(reply["acks"].as_u64().unwrap() >= 2);
    // The node outside the preference list stands in for the stopped one: it holds the blob
    // pinned, with the hint (or as a replica, once the membership declared the other dead).
    let fallback = c
        .live()
        .into_iter()
        .find(|i| !replicas.contains(i))
        .unwrap();
    let other_hash = BlobHash::of(&other);
    eventually("the fallback node to hold the blob", LONG, || async {
        c.holds(fallback, other_hash).await == (true, true)
    })
    .await;
    for i in c.live() {
        let resp = c.get_http(i, key, "quorum").await;
        assert_eq!(resp.status(), 200);
        assert!(within("a body", resp.bytes()).await.unwrap() == other);
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overwrites_and_deletes_unpin_a_blob_once_no_key_uses_it() {
    let root = tempfile::tempdir().unwrap();
    let c = Cluster::start(root.path()).await;
    let v1 = random_bytes(MIB, 11);
    let v2 = random_bytes(MIB, 12);
    let (h1, h2) = (BlobHash::of(&v1), BlobHash::of(&v2));

    put_ok(&c, 0, "doc", &v1, "all").await;
    for r in c.replicas(b"doc") {
        assert_eq!(c.holds(r, h1).await, (true, true), "replica {r}");
    }
    // The same content under a second key: one blob backs both.
    put_ok(&c, 1, "copy", &v1, "all").await;
    // Overwrite the first key: v1 stays pinned where "copy" lives, and only there.
    put_ok(&c, 0, "doc", &v2, "all").await;
    let copies = c.replicas(b"copy");
    for i in c.live() {
        let want_pinned = copies.contains(&i);
        let (_, pinned) = c.holds(i, h1).await;
        assert_eq!(pinned, want_pinned, "node {i}: v1 pinned");
    }
    for r in c.replicas(b"doc") {
        assert_eq!(c.holds(r, h2).await, (true, true), "replica {r} holds v2");
    }
    // Delete both keys (tombstones at `all`): no blob stays pinned anywhere.
    for key in ["copy", "doc"] {
        let resp = within(
            "a delete",
            c.http
                .delete(format!("{}/v1/kv/{key}?consistency=all", c.apis[2]))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
    }
    for i in c.live() {
        assert!(!c.holds(i, h1).await.1, "node {i}: v1 unpinned");
        assert!(!c.holds(i, h2).await.1, "node {i}: v2 unpinned");
        assert_eq!(c.get_http(i, "doc", "quorum").await.status(), 404);
    }
    // Both blobs were unpinned somewhere, and counted where they were.
    let mut released = 0;
    for i in c.live() {
        released += c.metric(i, "bavard_kv_blobs_released_total").await;
    }
    assert!(released >= 2, "{released} blobs released");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn small_values_stay_inline_and_bad_large_writes_are_typed_errors() {
    let root = tempfile::tempdir().unwrap();
    let c = Cluster::start(root.path()).await;
    let node = c.node(0);

    // At the inline limit (16 KiB): a plain record, no blob anywhere.
    let small = random_bytes(16 * 1024, 21);
    put_ok(&c, 0, "small", &small, "all").await;
    let resp = c.get_http(1, "small", "quorum").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-bavard-blob").is_none());
    assert!(within("a body", resp.bytes()).await.unwrap() == small);
    for i in c.live() {
        assert!(
            within("a listing", c.node(i).blobs().list())
                .await
                .unwrap()
                .is_empty()
        );
    }
    let read = within("a get", node.get_value(b"small", GetOptions::default()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.value, KvValue::Inline(small));

    // One byte over: a blob.
    let over = random_bytes(16 * 1024 + 1, 22);
    put_ok(&c, 0, "over", &over, "quorum").await;
    let read = within("a get", node.get_value(b"over", GetOptions::default()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read.value,
        KvValue::Blob {
            hash: BlobHash::of(&over),
            size: over.len() as u64
        }
    );

    // Over [store] max_large_value_size (4 MiB here): 413 with the typed body, whether the
    // length is declared or the body is streamed; nothing written.
    // A declared length is refused before any of the body is sent (raw HTTP, so that the
    // client sends only the head).
    let too_big = raw_http(
        &c.apis[0],
        &format!(
            "PUT /v1/kv/huge HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            4 * MIB + 1
        ),
    )
    .await;
    assert!(too_big.starts_with("HTTP/1.1 413"), "{too_big}");
    assert!(
        too_big.contains("\"code\":\"payload_too_large\""),
        "{too_big}"
    );
    assert!(too_big.contains("max_large_value_size"), "{too_big}");
    let chunks = futures::stream::iter((0..5).map(|_| Ok::<_, std::io::Error>(vec![1u8; MIB])));
    let streamed = within(
        "a streamed put",
        c.http
            .put(format!("{}/v1/kv/huge", c.apis[0]))
            .body(reqwest::Body::wrap_stream(chunks))
            .send(),
    )
    .await;
    // The node answers 413 once the limit is passed; the client may instead see the
    // connection closed while still sending. Nothing is stored either way.
    if let Ok(resp) = streamed {
        assert_eq!(resp.status(), 413);
    }
    assert_eq!(c.get_http(0, "huge", "quorum").await.status(), 404);

    // A compare-and-set of a large value is refused (nothing written).
    let resp = c.put_http(0, "over", over.clone(), "?if_absent").await;
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("inline_value_limit"),
        "{body}"
    );
    let refused = within(
        "a conditional put",
        node.put(
            b"cas".to_vec(),
            over.clone(),
            PutOptions {
                condition: Some(Condition::Absent),
                ..PutOptions::default()
            },
        ),
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(NodeError::LargeValueCondition { limit: 16384 })
        ),
        "{refused:?}"
    );

    // A body cut short: a typed error, nothing stored.
    let broken = futures::stream::iter(vec![
        Ok(bytes::Bytes::from(vec![1u8; 64 * 1024])),
        Err("the client went away"),
    ]);
    let cut = within(
        "a cut put",
        node.put_stream(b"cut".to_vec(), broken, PutOptions::default()),
    )
    .await;
    assert!(
        matches!(cut, Err(NodeError::LargeValue(BlobError::Upload(_)))),
        "{cut:?}"
    );
    assert!(
        within("a get", node.get(b"cut", GetOptions::default()))
            .await
            .unwrap()
            .is_none()
    );
    // Over raw HTTP: a declared length the body never reaches, then the client closes.
    {
        use tokio::io::AsyncWriteExt as _;
        let addr = c.apis[0].trim_start_matches("http://");
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "PUT /v1/kv/cut HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            2 * MIB
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&vec![5u8; 100 * 1024]).await.unwrap();
        drop(sock);
    }
    assert_eq!(c.get_http(0, "cut", "quorum").await.status(), 404);
    c.shutdown().await;
}

/// Sends `head` on a new connection to `api` and returns the start of the answer.
async fn raw_http(api: &str, head: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = api.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = within("an answer", sock.read(&mut answer)).await.unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// Sends one `/bavard/kv/1` request from a raw member to `peer`; `None` when the stream closes
/// unanswered.
async fn ask(
    control: &bavard_node::streams::Control,
    peer: libp2p::PeerId,
    kind: pb::request::Kind,
) -> Option<pb::response::Kind> {
    use futures::AsyncWriteExt as _;
    let mut stream = within(
        "a stream",
        control
            .clone()
            .open_stream(peer, libp2p::StreamProtocol::new("/bavard/kv/1")),
    )
    .await
    .expect("a stream opens");
    let req = pb::Request { kind: Some(kind) };
    stream
        .write_all(&prost::Message::encode_length_delimited_to_vec(&req))
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let read = bavard_node::wire::read_message::<pb::Response, _>(&mut stream, 1 << 20);
    within("an answer", read)
        .await
        .ok()
        .flatten()
        .and_then(|r| r.kind)
}

fn blob_record(key: &str, hash: Vec<u8>, size: u64, value: Vec<u8>) -> pb::Record {
    pb::Record {
        key: key.as_bytes().to_vec(),
        value,
        version: Some(pb::Version {
            hlc: 1 << 20,
            writer: b"raw".to_vec(),
        }),
        blob: Some(pb::BlobRef { hash, size }),
        ..Default::default()
    }
}

fn store(record: pb::Record) -> pb::request::Kind {
    pb::request::Kind::Store(pb::StoreRequest {
        records: vec![record],
        hint_for: Vec::new(),
    })
}

/// A replica stores a record naming a blob only once it holds that blob, as described: a
/// record whose blob is the wrong size is refused, one whose blob nobody has is never stored,
/// and malformed references are refused as a whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_refuses_records_whose_blob_it_cannot_hold_as_described() {
    let root = tempfile::tempdir().unwrap();
    let c = Cluster::start(root.path()).await;
    let value = random_bytes(MIB, 31);
    let hash = BlobHash::of(&value);
    put_ok(&c, 0, "real", &value, "all").await;
    let target = c.node(1);
    let (_, control) = common::raw_member(target);
    let before = target.status().records_stored;

    // The right blob with the wrong size: fetched (from the replicas), then refused.
    let answer = ask(
        &control,
        target.peer_id(),
        store(blob_record(
            "liar",
            hash.as_bytes().to_vec(),
            MIB as u64 + 1,
            Vec::new(),
        )),
    )
    .await;
    match answer {
        Some(pb::response::Kind::Store(resp)) => {
            assert_eq!(resp.results[0].outcome, pb::Outcome::Rejected as i32);
            assert!(
                resp.results[0].error.contains("bytes"),
                "{:?}",
                resp.results[0]
            );
        }
        other => panic!("unexpected answer {other:?}"),
    }
    // A blob nobody has: refused, or left unanswered past the request timeout (the fetch
    // waits for providers); never stored.
    let ghost = BlobHash::of(b"nobody has this");
    let answer = ask(
        &control,
        target.peer_id(),
        store(blob_record(
            "ghost",
            ghost.as_bytes().to_vec(),
            100_000,
            Vec::new(),
        )),
    )
    .await;
    if let Some(pb::response::Kind::Store(resp)) = &answer {
        assert_eq!(resp.results[0].outcome, pb::Outcome::Rejected as i32);
    } else {
        assert!(answer.is_none(), "{answer:?}");
    }
    // Malformed references: the request is refused as a whole.
    for (record, why) in [
        (
            blob_record("short", vec![1; 31], 10, Vec::new()),
            "32 bytes",
        ),
        (
            blob_record("both", hash.as_bytes().to_vec(), MIB as u64, b"x".to_vec()),
            "inline",
        ),
        (
            pb::Record {
                tombstone: true,
                ..blob_record("dead", hash.as_bytes().to_vec(), MIB as u64, Vec::new())
            },
            "tombstone",
        ),
    ] {
        match ask(&control, target.peer_id(), store(record)).await {
            Some(pb::response::Kind::Error(e)) => assert!(e.contains(why), "{e}"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(target.status().records_stored, before, "nothing was stored");
    assert!(c.metric(1, "bavard_kv_blob_fetch_failures_total").await >= 1);
    c.shutdown().await;
}

/// A replica that was down while a large value was written gets the record back (hinted
/// handoff or anti-entropy) only with its blob: it fetches the blob, holds it pinned, and
/// serves the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_back_from_an_outage_gets_the_record_with_its_blob() {
    let root = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(root.path()).await;
    // A key one of whose replicas is not node 0 (the others bootstrap from node 0).
    let key = (0..)
        .map(|i| format!("late-{i}"))
        .find(|k| c.replicas(k.as_bytes()).iter().any(|r| *r != 0))
        .unwrap();
    let down = *c
        .replicas(key.as_bytes())
        .iter()
        .find(|r| **r != 0)
        .unwrap();
    let writer = (0..NODES).find(|i| *i != down).unwrap();
    c.nodes[down].take().unwrap().shutdown().await;

    let value = random_bytes(MIB + 7, 41);
    let hash = BlobHash::of(&value);
    let reply = put_ok(&c, writer, &key, &value, "quorum").await;
    assert!(reply["acks"].as_u64().unwrap() >= 2);

    c.restart(down, 0).await;
    eventually("the returning replica to hold the blob", LONG, || async {
        c.holds(down, hash).await == (true, true)
    })
    .await;
    eventually("the returning replica to hold the record", LONG, || async {
        c.node(down).status().records_stored >= 1
    })
    .await;
    let resp = c.get_http(down, &key, "all").await;
    assert_eq!(resp.status(), 200);
    assert!(within("a body", resp.bytes()).await.unwrap() == value);
    // It fetched the blob to take the record (it never had it; the hint and anti-entropy may
    // both have asked for it, sharing one fetch).
    assert!(c.metric(down, "bavard_kv_blob_fetches_total").await >= 1);
    c.shutdown().await;
}

/// The large-value settings are checked at start: the inline limit fits a record, and the
/// largest value fits the blob protocol; the defaults are 16 KiB and 1 GiB.
#[test]
fn large_value_settings_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let base = test_config(dir.path(), true);
    assert_eq!(base.store.inline_value_limit, 16 * 1024);
    assert_eq!(base.store.max_large_value_size, 1 << 30);
    base.validate().unwrap();
    let mut c = base.clone();
    c.store.inline_value_limit = c.store.max_value_size + 1;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("inline_value_limit"), "{err}");
    let mut c = base.clone();
    c.store.max_large_value_size = u64::MAX;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("max_large_value_size"), "{err}");
    let mut c = base;
    c.store.max_large_value_size = 100;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("max_large_value_size"), "{err}");
}
