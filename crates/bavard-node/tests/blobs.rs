//! Content-addressed blobs across in-process nodes (issue 15): swarmed, verified fetches
//! from the providers the DHT finds, through the faults that must not stop them; the HTTP
//! endpoints; bad input on `/bavard/blobs/1`; the CLI.
//!
//! Sizes are a few MiB, not issue 15's 256 MiB (that run is `cargo xtask bench blobs`), and
//! providers serve at 1 MiB/s per peer (`[blobs] serve_bytes_per_sec_per_peer`) so that a
//! fetch lasts long enough to kill a provider or the fetching node in the middle of it.
//! No test asserts a speed.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bavard_blobs::BlobHash;
use bavard_node::blobs::{BlobStatus, parse_hash};
use bavard_node::{Node, NodeConfig};
use common::{eventually, init_tracing, p2p_addr, random_bytes, test_config};
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};

const MIB: usize = 1 << 20;
/// Every await of a transfer is bounded by this.
const LONG: Duration = Duration::from_secs(90);

/// Awaits `f`, failing the test if it takes longer than [`LONG`].
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    common::within_limit(what, LONG, f).await
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Blob settings for tests: short waits, providers paced to 1 MiB/s per peer.
fn blob_config(dir: &Path) -> NodeConfig {
    let mut c = test_config(dir, true);
    c.blobs.serve_bytes_per_sec_per_peer = MIB as u64;
    c.blobs.request_timeout_secs = 5.0;
    c.blobs.stall_timeout_secs = 5.0;
    c.blobs.provider_wait_secs = 10.0;
    c.blobs.provider_refresh_secs = 1.0;
    c
}

/// Starts `n` nodes (node 0 the bootstrap of the others) with `tweak` applied to each
/// config, and waits until every routing table holds every other node.
async fn start_nodes(
    root: &Path,
    n: usize,
    tweak: impl Fn(usize, &mut NodeConfig),
) -> (Vec<Node>, Vec<NodeConfig>) {
    init_tracing();
    let mut nodes: Vec<Node> = Vec::new();
    let mut configs = Vec::new();
    for i in 0..n {
        let mut c = blob_config(&root.join(format!("n{i}")));
        if let Some(first) = nodes.first() {
            c.bootstrap = vec![p2p_addr(first)];
        }
        tweak(i, &mut c);
        nodes.push(
            within("a node start", Node::start(c.clone()))
                .await
                .unwrap(),
        );
        configs.push(c);
    }
    for node in &nodes {
        eventually("routing tables to fill", LONG, || async {
            node.status().routing_table_size >= n - 1
        })
        .await;
    }
    (nodes, configs)
}

/// The blob as `node` holds it, read back through its local reader.
async fn read_back(node: &Node, hash: BlobHash) -> Vec<u8> {
    let read = tokio::time::timeout(LONG, node.blobs().open_read(hash))
        .await
        .expect("open in time")
        .unwrap();
    let size = read.size();
    let mut chunks = std::pin::pin!(read.into_stream(0..size));
    let mut out = Vec::new();
    while let Some(chunk) = tokio::time::timeout(LONG, chunks.next())
        .await
        .expect("read in time")
    {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

async fn fetch(node: &Node, hash: BlobHash) -> u64 {
    tokio::time::timeout(LONG, node.blobs().fetch(hash))
        .await
        .expect("the fetch ends in time")
        .unwrap()
}

async fn status(node: &Node, hash: BlobHash) -> BlobStatus {
    within("a status", node.blobs().status(hash)).await.unwrap()
}

/// The status, or `None` while the node knows nothing of the blob (a fetch just spawned).
async fn status_if_known(node: &Node, hash: BlobHash) -> Option<BlobStatus> {
    within("a status", node.blobs().status(hash)).await.ok()
}

fn delivered(status: &BlobStatus, peer: &Node) -> u64 {
    let id = peer.peer_id().to_string();
    status
        .providers
        .iter()
        .find(|p| p.peer_id == id)
        .map_or(0, |p| p.bytes)
}

/// A metric's value in the node's Prometheus text (0 when absent).
fn metric(node: &Node, name: &str) -> f64 {
    node.metrics_text()
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with(' '))
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Issue 15's first "must show", scaled: a file added on node 1 of 6; nodes 2 and 3 fetch
/// it and become providers; node 4 gets bytes from at least 3 providers; a provider killed
/// in the middle of node 5's fetch does not stop it; a provider serving corrupt blocks is
/// dropped at its first bad block and the result is still right; an interrupted fetch
/// resumes without downloading its verified blocks again. Every copy's SHA-256 matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_swarms_from_several_providers_through_a_killed_and_a_corrupting_one() {
    let root = tempfile::tempdir().unwrap();
    // Node 6 (index 5) serves corrupt blocks.
    let (mut nodes, configs) = start_nodes(root.path(), 6, |i, c| {
        if i == 5 {
            c.fault_injection.enabled = true;
            c.fault_injection.corrupt_blob_blocks = true;
        }
    })
    .await;
    let file = random_bytes(4 * MIB + 12_345, 1);
    let digest = sha256(&file);
    let added = within("an add", nodes[0].blobs().add_bytes(file.clone()))
        .await
        .unwrap();
    let hash = parse_hash(&added.hash).unwrap();
    assert_eq!(added.size, file.len() as u64);
    assert_eq!(hash, BlobHash::of(&file));

    // Nodes 2 and 3 fetch it, one after the other: each then provides it.
    for i in [1, 2] {
        assert_eq!(fetch(&nodes[i], hash).await, file.len() as u64);
        assert_eq!(status(&nodes[i], hash).await.state, "complete");
    }

    // Node 4 finds three providers and gets bytes from each.
    fetch(&nodes[3], hash).await;
    let s = status(&nodes[3], hash).await;
    let contributing: Vec<_> = s.providers.iter().filter(|p| p.bytes > 0).collect();
    assert!(
        contributing.len() >= 3,
        "node 4 got bytes from {} providers: {:?}",
        contributing.len(),
        s.providers
    );
    // The last block came with the size proof, before any transfer.
    assert_eq!(
        s.providers.iter().map(|p| p.bytes).sum::<u64>() + s.resumed_bytes,
        file.len() as u64,
        "every byte came from one provider, once"
    );

    // Node 5 fetches from four providers; node 2 is killed once it has delivered some.
    let fetcher = nodes[4].clone();
    let running = tokio::spawn(async move { fetcher.blobs().fetch(hash).await });
    let victim = nodes[1].clone();
    let verified_at_kill = AtomicU64::new(0);
    eventually("node 2 to deliver part of node 5's fetch", LONG, || async {
        let Some(s) = status_if_known(&nodes[4], hash).await else {
            return false;
        };
        verified_at_kill.store(s.verified_bytes, Ordering::Relaxed);
        delivered(&s, &victim) > 0
    })
    .await;
    within("the kill", victim.kill()).await;
    assert!(
        verified_at_kill.load(Ordering::Relaxed) < file.len() as u64,
        "the provider was killed in the middle of the fetch"
    );
    let size = tokio::time::timeout(LONG, running)
        .await
        .expect("the fetch ends in time")
        .unwrap()
        .expect("the fetch survives the killed provider");
    assert_eq!(size, file.len() as u64);

    for i in [0, 2, 3, 4] {
        assert_eq!(
            sha256(&read_back(&nodes[i], hash).await),
            digest,
            "node {}'s copy",
            i + 1
        );
    }

    // A second file, held by node 1 and by the corrupting node 6; node 4 fetches it.
    let other = random_bytes(3 * MIB + 7, 2);
    let other_hash = BlobHash::of(&other);
    within("an add", nodes[0].blobs().add_bytes(other.clone()))
        .await
        .unwrap();
    within("an add", nodes[5].blobs().add_bytes(other.clone()))
        .await
        .unwrap();
    let failures_before = metric(&nodes[3], "bavard_blobs_verification_failures_total");
    fetch(&nodes[3], other_hash).await;
    let s = status(&nodes[3], other_hash).await;
    let corrupt = s
        .providers
        .iter()
        .find(|p| p.peer_id == nodes[5].peer_id().to_string())
        .expect("the corrupting provider was tried");
    assert_eq!(corrupt.dropped.as_deref(), Some("bad_data"));
    assert_eq!(corrupt.bytes, 0, "none of its blocks was kept");
    assert_eq!(
        metric(&nodes[3], "bavard_blobs_verification_failures_total") - failures_before,
        1.0,
        "dropped at its first bad block"
    );
    assert_eq!(
        sha256(&read_back(&nodes[3], other_hash).await),
        sha256(&other)
    );

    // Node 3 starts fetching the second file and is stopped a third of the way in.
    let fetcher = nodes[2].clone();
    let running = tokio::spawn(async move { fetcher.blobs().fetch(other_hash).await });
    eventually("node 3 to verify a third of the file", LONG, || async {
        status_if_known(&nodes[2], other_hash)
            .await
            .is_some_and(|s| s.verified_bytes >= other.len() as u64 / 3)
    })
    .await;
    within("the kill", nodes[2].kill()).await;
    let _ = tokio::time::timeout(LONG, running).await;
    // Restarted on its data directory, it resumes the fetch by itself.
    nodes[2] = within("the restart", Node::start(configs[2].clone()))
        .await
        .unwrap();
    let size = fetch(&nodes[2], other_hash).await;
    assert_eq!(size, other.len() as u64);
    let s = status(&nodes[2], other_hash).await;
    assert!(
        s.resumed_bytes >= other.len() as u64 / 3,
        "the fetch resumed with its verified blocks ({} bytes)",
        s.resumed_bytes
    );
    let new_bytes: u64 = s.providers.iter().map(|p| p.bytes).sum();
    assert_eq!(
        new_bytes,
        other.len() as u64 - s.resumed_bytes,
        "only the missing blocks were delivered"
    );
    assert!(
        s.fetched_bytes < other.len() as u64 - s.resumed_bytes + MIB as u64,
        "the verified ranges were not downloaded again ({} bytes received, {} missing)",
        s.fetched_bytes,
        other.len() as u64 - s.resumed_bytes
    );
    assert_eq!(
        sha256(&read_back(&nodes[2], other_hash).await),
        sha256(&other)
    );

    for (i, node) in nodes.iter().enumerate() {
        if i != 1 {
            within("a shutdown", node.shutdown()).await;
        }
    }
}

/// The HTTP endpoints: upload, listing, full and ranged reads (here and through another
/// node), unpinning, and the errors: 413, 416, 404 for a blob nobody has, 400 for a bad
/// hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_uploads_ranges_and_errors() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, _) = start_nodes(root.path(), 2, |_, c| {
        c.blobs.max_upload_bytes = 2 * MIB as u64;
        c.blobs.provider_wait_secs = 1.0;
        c.blobs.serve_bytes_per_sec_per_peer = 0;
    })
    .await;
    let mut apis = Vec::new();
    for node in &nodes {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        apis.push(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(bavard_node::http::serve(
            listener,
            node.clone(),
            bavard_node::http::Access::with_token("test-token-0123456789", false),
            node.shutdown_signal(),
        ));
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let data = random_bytes(MIB + 999, 3);

    let added: serde_json::Value = http
        .post(format!("{}/v1/blobs", apis[0]))
        .body(data.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hash = added["hash"].as_str().unwrap().to_string();
    assert_eq!(hash, BlobHash::of(&data).to_hex());
    assert_eq!(added["size"], data.len() as u64);

    let list: serde_json::Value = http
        .get(format!("{}/v1/blobs", apis[0]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["hash"], hash.as_str());
    assert_eq!(list[0]["pinned"], true);
    assert_eq!(list[0]["complete"], true);

    let whole = http
        .get(format!("{}/v1/blobs/{hash}", apis[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().await.unwrap(), data);

    let get_range = |api: &str, spec: &str| {
        http.get(format!("{api}/v1/blobs/{hash}"))
            .header("range", spec.to_string())
            .send()
    };
    let part = get_range(&apis[0], "bytes=100-199").await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{}", data.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), data[100..200]);
    let tail = get_range(&apis[0], "bytes=-10").await.unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), data[data.len() - 10..]);
    let past = get_range(&apis[0], &format!("bytes={}-", data.len()))
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    assert_eq!(
        past.headers()["content-range"],
        format!("bytes */{}", data.len()).as_str()
    );
    assert!(past.text().await.unwrap().contains("does not fit"));

    // A range of a blob the other node does not hold: it fetches it to answer.
    let far = get_range(&apis[1], "bytes=700000-700999").await.unwrap();
    assert_eq!(far.status(), 206);
    assert_eq!(far.bytes().await.unwrap(), data[700_000..701_000]);

    // Unpinning.
    let unpinned = http
        .delete(format!("{}/v1/blobs/{hash}/pin", apis[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(unpinned.status(), 200);
    let list: serde_json::Value = http
        .get(format!("{}/v1/blobs", apis[0]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["pinned"], false);

    // Over the upload limit: a declared length is refused before any of the body is sent
    // (raw HTTP, so that the client sends only the head), ...
    let too_big = raw_http(
        &apis[0],
        &format!(
            "POST /v1/blobs HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            2 * MIB + 1
        ),
    )
    .await;
    assert!(too_big.starts_with("HTTP/1.1 413"), "{too_big}");
    assert!(too_big.contains("max_upload_bytes"), "{too_big}");
    // ... and a streamed body without a length once it passes the limit.
    let chunks = futures::stream::iter((0..3).map(|_| Ok::<_, std::io::Error>(vec![1u8; MIB])));
    let streamed = http
        .post(format!("{}/v1/blobs", apis[0]))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    // The node answers 413 as soon as the limit is passed; the client may see the answer or,
    // still sending, a closed connection. Either way nothing was stored.
    if let Ok(resp) = streamed {
        assert_eq!(resp.status(), 413);
    }
    assert_eq!(
        within("a listing", nodes[0].blobs().list())
            .await
            .unwrap()
            .len(),
        1
    );

    // Bad hashes, and a blob nobody has (bounded by provider_wait_secs).
    for bad in ["not-a-hash", "abc", &"g".repeat(64)] {
        let resp = http
            .get(format!("{}/v1/blobs/{bad}", apis[0]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        let error: serde_json::Value = resp.json().await.unwrap();
        assert!(error["error"].as_str().unwrap().contains("not a blob hash"));
    }
    let nobody = BlobHash::of(b"nobody has this").to_hex();
    let missing = http
        .get(format!("{}/v1/blobs/{nobody}", apis[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let error: serde_json::Value = missing.json().await.unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("no provider"),
        "{error}"
    );
    let status = http
        .get(format!("{}/v1/blobs/{}/status", apis[0], "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 404);

    for node in &nodes {
        within("a shutdown", node.shutdown()).await;
    }
}

/// Sends `head` to the API at `api` (`http://HOST:PORT`) and returns what comes back.
async fn raw_http(api: &str, head: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = api.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(LONG, sock.read(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// Hostile `/bavard/blobs/1` input: a malformed request and an oversized frame cost the
/// peer its stream, are counted, and the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_blob_requests_are_refused_counted_and_the_node_keeps_serving() {
    use bavard_blobs::protocol::{Limits, Request, Response};
    use futures::{AsyncReadExt as _, AsyncWriteExt as _};
    let root = tempfile::tempdir().unwrap();
    let (nodes, _) = start_nodes(root.path(), 1, |_, _| {}).await;
    let node = &nodes[0];
    let data = random_bytes(50_000, 4);
    let hash = BlobHash::of(&data);
    within("an add", node.blobs().add_bytes(data))
        .await
        .unwrap();
    let (_, control) = common::raw_peer(node);
    let protocol = libp2p::StreamProtocol::new("/bavard/blobs/1");
    let open = || {
        let control = control.clone();
        let protocol = protocol.clone();
        async move {
            tokio::time::timeout(LONG, async {
                loop {
                    match control.open_stream(node.peer_id(), protocol.clone()).await {
                        Ok(s) => return s,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
            .await
            .expect("a stream in time")
        }
    };
    let rejected = |reason: &str| {
        metric(
            node,
            &format!("bavard_inbound_rejected_total{{reason=\"{reason}\"}}"),
        )
    };

    // Protobuf that is not a request (a hash of 3 bytes).
    let mut stream = open().await;
    let garbage = bavard_proto::encode_frame(&bavard_proto::blobs::Request {
        hash: vec![1, 2, 3],
        kind: None,
    });
    stream.write_all(&garbage).await.unwrap();
    stream.flush().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(LONG, stream.read_to_end(&mut answer)).await;
    assert_eq!(rejected("blobs_bad_request"), 1.0);

    // A frame announcing 100 MiB.
    let mut stream = open().await;
    let mut prefix = Vec::new();
    prost::encoding::encode_varint(100 << 20, &mut prefix);
    stream.write_all(&prefix).await.unwrap();
    stream.flush().await.unwrap();
    let _ = tokio::time::timeout(LONG, stream.read_to_end(&mut Vec::new())).await;
    assert_eq!(rejected("blobs_bad_frame"), 1.0);

    // A valid size query is still answered.
    let mut stream = open().await;
    stream
        .write_all(&Request::Size { hash }.to_frame())
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let frame = tokio::time::timeout(LONG, bavard_node::wire::read_frame(&mut stream, 1 << 20))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let response = Response::decode(&frame, &Limits::default()).unwrap();
    assert!(matches!(response, Response::Size { size: 50_000, .. }));
    within("a shutdown", node.shutdown()).await;
}

/// `bavard add`, `fetch`, `blobs` and `unpin` against the HTTP APIs of two nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_fetches_lists_and_unpins() {
    let root = tempfile::tempdir().unwrap();
    let (nodes, _) = start_nodes(root.path(), 2, |_, c| {
        c.blobs.serve_bytes_per_sec_per_peer = 0
    })
    .await;
    let mut apis = Vec::new();
    for node in &nodes {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        apis.push(listener.local_addr().unwrap().to_string());
        tokio::spawn(bavard_node::http::serve(
            listener,
            node.clone(),
            bavard_node::http::Access::with_token("test-token-0123456789", false),
            node.shutdown_signal(),
        ));
    }
    let bavard = |args: Vec<String>| async move {
        let out = tokio::time::timeout(
            LONG,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_bavard"))
                .args(&args)
                .output(),
        )
        .await
        .expect("the command ends in time")
        .unwrap();
        assert!(
            out.status.success(),
            "bavard {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let data = random_bytes(700_000, 5);
    let input = root.path().join("input.bin");
    std::fs::write(&input, &data).unwrap();
    let api = |i: usize| vec!["--api".to_string(), apis[i].clone()];

    let hash = bavard([vec!["add".into(), input.display().to_string()], api(0)].concat()).await;
    let hash = hash.trim().to_string();
    assert_eq!(hash, BlobHash::of(&data).to_hex());

    let output = root.path().join("output.bin");
    bavard(
        [
            vec![
                "fetch".into(),
                hash.clone(),
                "-o".into(),
                output.display().to_string(),
            ],
            api(1),
        ]
        .concat(),
    )
    .await;
    assert_eq!(std::fs::read(&output).unwrap(), data);

    let list: serde_json::Value =
        serde_json::from_str(&bavard([vec!["blobs".into()], api(1)].concat()).await).unwrap();
    assert_eq!(list[0]["hash"], hash.as_str());
    assert_eq!(list[0]["pinned"], false, "a fetched blob is not pinned");
    let status: serde_json::Value =
        serde_json::from_str(&bavard([vec!["blobs".into(), hash.clone()], api(1)].concat()).await)
            .unwrap();
    assert_eq!(status["state"], "complete");
    // Every block but the last, which came with the size proof.
    assert_eq!(
        status["providers"][0]["bytes"].as_u64().unwrap()
            + status["resumed_bytes"].as_u64().unwrap(),
        data.len() as u64
    );

    bavard([vec!["unpin".into(), hash.clone()], api(0)].concat()).await;
    let list: serde_json::Value =
        serde_json::from_str(&bavard([vec!["blobs".into()], api(0)].concat()).await).unwrap();
    assert_eq!(list[0]["pinned"], false);

    for node in &nodes {
        within("a shutdown", node.shutdown()).await;
    }
}

/// A node fetching a blob is findable as a provider from its first stored blocks, before it
/// completes (`[blobs] announce_partial`, the default), so that leechers arriving together
/// trade blocks among themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetching_node_announces_itself_before_it_completes() {
    let root = tempfile::tempdir().unwrap();
    // The seeder serves 256 KiB/s: the 4 MiB fetch lasts about 16 s, far longer than an
    // announce and a lookup on loopback.
    let (nodes, _) = start_nodes(root.path(), 3, |i, c| {
        if i == 0 {
            c.blobs.serve_bytes_per_sec_per_peer = 256 * 1024;
        }
    })
    .await;
    let file = random_bytes(4 * MIB, 7);
    let added = within("an add", nodes[0].blobs().add_bytes(file.clone()))
        .await
        .unwrap();
    let hash = parse_hash(&added.hash).unwrap();

    let fetcher = nodes[1].clone();
    let running = tokio::spawn(async move { fetcher.blobs().fetch(hash).await });
    let leecher = nodes[1].peer_id().to_string();
    eventually("the leecher to be found as a provider", LONG, || async {
        nodes[2]
            .providers(hash.as_bytes().to_vec())
            .await
            .is_ok_and(|found| found.iter().any(|p| p.peer_id == leecher))
    })
    .await;
    let s = status(&nodes[1], hash).await;
    assert_ne!(
        s.state, "complete",
        "the leecher was found only after it completed ({} of {:?} bytes)",
        s.verified_bytes, s.size
    );
    assert!(
        s.verified_bytes > 0,
        "announced before any block was stored"
    );

    let fetched = within("the fetch", running).await.unwrap().unwrap();
    assert_eq!(fetched, file.len() as u64);
    assert_eq!(read_back(&nodes[1], hash).await, file);
    for node in &nodes {
        within("a shutdown", node.shutdown()).await;
    }
}
