//! Untrusted input: hostile Kademlia and replica-protocol frames from a raw libp2p peer, floods
//! of streams, and bad HTTP requests. Each is refused with a typed error or a dropped stream,
//! counted, and the node keeps serving everyone else.

mod common;

use std::time::Duration;

use bavard_node::Node;
use common::{eventually, serve_api, start_cluster};
use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use libp2p::{PeerId, StreamProtocol};

/// Reads one replica-protocol answer, leaving the stream open.
async fn read_answer(s: &mut libp2p::Stream) -> bavard_proto::store::Response {
    let read = bavard_node::wire::read_message::<bavard_proto::store::Response, _>(s, 1 << 20);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("answered in time")
        .expect("a well-formed answer")
        .expect("an answer before the stream closed")
}

fn rejected(node: &Node, reason: &str) -> f64 {
    let needle = format!("reason=\"{reason}\"");
    node.metrics_text()
        .lines()
        .find(|l| l.starts_with("bavard_inbound_rejected") && l.contains(&needle))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn open(
    control: &bavard_node::streams::Control,
    peer: PeerId,
    proto: &'static str,
) -> libp2p::Stream {
    let control = control.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        control.open_stream(peer, StreamProtocol::new(proto)),
    )
    .await
    .expect("stream opens in time")
    .expect("stream opens")
}

/// Reads until the node closes or resets the stream; true when it did within the deadline.
async fn closed_by_node(stream: &mut libp2p::Stream) -> bool {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_kademlia_and_replica_frames_are_dropped_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 3, 2).await;
    let target = &nodes[0];
    let peer = target.peer_id();
    let (_, control) = common::raw_peer(target);

    // A length prefix announcing 10 MiB: refused before any body is read.
    let mut s = open(&control, peer, "/ipfs/kad/1.0.0").await;
    let mut prefix = Vec::new();
    prost::encoding::encode_varint(10 << 20, &mut prefix);
    s.write_all(&prefix).await.unwrap();
    s.flush().await.unwrap();
    assert!(
        closed_by_node(&mut s).await,
        "oversized frame drops the stream"
    );

    // Garbage that is not protobuf.
    let mut s = open(&control, peer, "/ipfs/kad/1.0.0").await;
    s.write_all(&[4, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
    s.flush().await.unwrap();
    assert!(
        closed_by_node(&mut s).await,
        "malformed protobuf drops the stream"
    );

    // A well-formed message of an unknown type.
    let mut s = open(&control, peer, "/ipfs/kad/1.0.0").await;
    let msg = bavard_proto::kad::Message {
        r#type: 42,
        key: b"k".to_vec(),
        ..Default::default()
    };
    s.write_all(&prost::Message::encode_length_delimited_to_vec(&msg))
        .await
        .unwrap();
    s.flush().await.unwrap();
    assert!(
        closed_by_node(&mut s).await,
        "unknown message type drops the stream"
    );

    eventually(
        "the offences are counted",
        Duration::from_secs(10),
        || async { rejected(target, "bad_frame") >= 2.0 && rejected(target, "bad_request") >= 1.0 },
    )
    .await;

    // A replica-protocol stream from a peer that is not a cluster member is refused and counted.
    let mut s = open(&control, peer, "/bavard/kv/1").await;
    let fetch = bavard_proto::store::Request {
        kind: Some(bavard_proto::store::request::Kind::Fetch(
            bavard_proto::store::FetchRequest {
                keys: vec![b"k".to_vec()],
            },
        )),
    };
    let _ = s
        .write_all(&prost::Message::encode_length_delimited_to_vec(&fetch))
        .await;
    assert!(
        closed_by_node(&mut s).await,
        "a stranger's replica stream is dropped"
    );
    eventually(
        "the stranger is counted",
        Duration::from_secs(10),
        || async { rejected(target, "not_admitted") >= 1.0 },
    )
    .await;

    // A member's replica-protocol request over its batch limit gets an error answer, not a
    // crash.
    let (_, member) = common::raw_member(target);
    let mut s = open(&member, peer, "/bavard/kv/1").await;
    let too_many = bavard_proto::store::Request {
        kind: Some(bavard_proto::store::request::Kind::Fetch(
            bavard_proto::store::FetchRequest {
                keys: vec![b"k".to_vec(); 10_000],
            },
        )),
    };
    s.write_all(&prost::Message::encode_length_delimited_to_vec(&too_many))
        .await
        .unwrap();
    s.flush().await.unwrap();
    match read_answer(&mut s).await.kind {
        Some(bavard_proto::store::response::Kind::Error(e)) => {
            assert!(e.contains("over the limit"), "{e}")
        }
        other => panic!("expected an error answer, got {other:?}"),
    }
    // The stream stays usable: the next request on it is answered too.
    let fetch = bavard_proto::store::Request {
        kind: Some(bavard_proto::store::request::Kind::Fetch(
            bavard_proto::store::FetchRequest {
                keys: vec![b"absent".to_vec()],
            },
        )),
    };
    s.write_all(&prost::Message::encode_length_delimited_to_vec(&fetch))
        .await
        .unwrap();
    s.flush().await.unwrap();
    match read_answer(&mut s).await.kind {
        Some(bavard_proto::store::response::Kind::Fetch(f)) => assert!(f.records.is_empty()),
        other => panic!("expected a fetch answer, got {other:?}"),
    }
    drop(s);

    // A flood of streams held open: beyond the per-peer limit they are refused.
    let limit = target.config().limits.max_inbound_streams_per_peer;
    let mut held = Vec::new();
    for _ in 0..limit + 8 {
        let c = control.clone();
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_secs(5),
            c.open_stream(peer, StreamProtocol::new("/ipfs/kad/1.0.0")),
        )
        .await
        {
            held.push(s);
        }
    }
    eventually("the flood is refused", Duration::from_secs(10), || async {
        rejected(target, "too_many_streams") >= 1.0
    })
    .await;

    // Everyone else is still served.
    let closest = tokio::time::timeout(
        Duration::from_secs(20),
        nodes[1].closest_peers(b"still-serving"),
    )
    .await
    .expect("lookup in time")
    .expect("lookup works");
    assert!(closest.contains(&peer), "the attacked node still answers");
    drop(held);
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_requests_get_a_400_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    // Values above 16 KiB are stored as blobs, up to [store] max_large_value_size: lowered
    // here so that a value over it is cheap to send.
    let nodes = common::start_cluster_with(dir.path(), 1, 0, |_, c| {
        c.store.max_large_value_size = 64 * 1024;
    })
    .await;
    let node = &nodes[0];
    let base = serve_api(node, "test-token-0123456789").await;
    // A new connection per case: the server may answer an oversized body with 413 before
    // reading all of it and then close the connection, and a pooled client could send the next
    // case on it before it sees the close (a broken pipe in the test, not the server's fault;
    // seen once in CI on the case after the 70 KiB one).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let long_key = "k".repeat(2000);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            http.put(format!("{base}/v1/kv/a?consistency=most"))
                .body("v"),
            400,
            "consistency",
        ),
        (
            http.put(format!("{base}/v1/kv/a?ttl=soon")).body("v"),
            400,
            "ttl",
        ),
        (
            http.put(format!("{base}/v1/kv/a?ttl=0")).body("v"),
            400,
            "ttl",
        ),
        (
            http.put(format!("{base}/v1/kv/a?colour=red")).body("v"),
            400,
            "colour",
        ),
        (
            http.put(format!("{base}/v1/kv/a?if_version=abc")).body("v"),
            400,
            "if_version",
        ),
        (
            http.put(format!("{base}/v1/kv/a?if_version=1&if_absent"))
                .body("v"),
            400,
            "combined",
        ),
        (
            http.put(format!("{base}/v1/kv/{long_key}")).body("v"),
            400,
            "limit",
        ),
        (
            http.put(format!("{base}/v1/kv/a"))
                .body(vec![0u8; 70 * 1024]),
            413,
            "max_large_value_size",
        ),
        (
            http.get(format!("{base}/v1/kv/missing?consistency=one")),
            404,
            "not found",
        ),
        (http.get(format!("{base}/v1/nope")), 404, "no such endpoint"),
        (
            // A lone node cannot meet a quorum: the error says why and what to do.
            http.put(format!("{base}/v1/kv/lonely")).body("v"),
            503,
            "knows 1 live member (itself) and keys have 3 replicas; write with consistency one",
        ),
        (
            http.get(format!("{base}/v1/providers/%12%20%ff%fe")),
            400,
            "%12%20%ff%fe",
        ),
        (
            http.put(format!("{base}/v1/kv/%ff%fe")).body("v"),
            400,
            "key_encoding=hex",
        ),
        (
            http.get(format!("{base}/v1/kv/a?key_encoding=rot13")),
            400,
            "rot13",
        ),
        (
            http.get(format!("{base}/v1/kv/zz?key_encoding=hex")),
            400,
            "not hex",
        ),
        (
            http.get(format!("{base}/v1/dht/bafy-nope?key_encoding=cid")),
            400,
            "not a CID",
        ),
        (
            http.get(format!(
                "{base}/v1/kv/abc?key_encoding=base64url&consistency=one"
            )),
            404,
            "not found",
        ),
        (
            http.put(format!("{base}/v1/admin/blocked/not-a-peer"))
                .bearer_auth("test-token-0123456789"),
            400,
            "peer id",
        ),
        (
            http.put(format!("{base}/v1/admin/blocked/not-a-peer")),
            401,
            "token",
        ),
        (
            http.put(format!("{base}/v1/admin/blocked/not-a-peer"))
                .bearer_auth("wrong-token-0123456789"),
            401,
            "token",
        ),
    ];
    for (req, status, needle) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{needle}");
        let body: serde_json::Value = resp.json().await.unwrap();
        let error = body["error"].as_str().unwrap_or_default().to_string();
        assert!(
            error.contains(needle),
            "{error:?} should mention {needle:?}"
        );
    }
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_keys_round_trip_through_any_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 1, 0).await;
    let node = &nodes[0];
    let base = serve_api(node, "test-token-0123456789").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let put: serde_json::Value = http
        .put(format!(
            "{base}/v1/kv/1220fffe?key_encoding=hex&consistency=one"
        ))
        .body("binary")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(put["key"], "1220fffe");
    assert_eq!(put["key_encoding"], "hex");
    assert_eq!(put["key_hex"], "1220fffe");
    // The same four bytes, written three ways.
    for url in [
        format!("{base}/v1/kv/1220FFFE?key_encoding=hex&consistency=one"),
        format!("{base}/v1/kv/EiD__g?key_encoding=base64url&consistency=one"),
    ] {
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), b"binary");
    }
    let mut bytes = vec![0x12, 0x20, 0xff, 0xfe];
    assert_eq!(
        node.get(
            &bytes,
            bavard_node::api::GetOptions {
                consistency: bavard_node::api::Consistency::One,
            }
        )
        .await
        .unwrap()
        .map(|r| r.value),
        Some(b"binary".to_vec())
    );
    // A UTF-8 key is still its own bytes, and "1220fffe" as text is another key.
    bytes = b"1220fffe".to_vec();
    assert_eq!(
        node.get(
            &bytes,
            bavard_node::api::GetOptions {
                consistency: bavard_node::api::Consistency::One,
            }
        )
        .await
        .unwrap(),
        None
    );
    let del: serde_json::Value = http
        .delete(format!(
            "{base}/v1/kv/EiD__g?key_encoding=base64url&consistency=one"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(del["key_encoding"], "base64url");
    assert_eq!(del["key_hex"], "1220fffe");
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_past_the_configured_maximum_are_refused_with_a_limit_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path(), true);
    config.gossip.max_topics = 2;
    let node = bavard_node::Node::start(config).await.unwrap();
    node.subscribe("one").unwrap();
    node.subscribe("two").unwrap();
    node.subscribe("one")
        .expect("a topic already joined is not a new one");
    let err = node.subscribe("three").unwrap_err();
    assert!(
        matches!(err, bavard_node::api::NodeError::Limit(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_topics"), "{err}");
    let err = node.publish("four", b"x".to_vec()).await.unwrap_err();
    assert!(matches!(err, bavard_node::api::NodeError::Limit(_)));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_from_one_peer_is_cut_at_the_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path(), true);
    config.limits.max_requests_per_sec_per_peer = 20;
    let node = Node::start(config).await.unwrap();
    let (_, control) = common::raw_peer(&node);
    let mut s = open(&control, node.peer_id(), "/ipfs/kad/1.0.0").await;
    let find = bavard_proto::kad::Message {
        r#type: bavard_proto::kad::message::MessageType::FindNode as i32,
        key: b"k".to_vec(),
        ..Default::default()
    };
    let frame = prost::Message::encode_length_delimited_to_vec(&find);
    let mut answered = 0;
    for _ in 0..200 {
        if s.write_all(&frame).await.is_err() {
            break;
        }
        let read =
            bavard_node::wire::read_message::<bavard_proto::kad::Message, _>(&mut s, 1 << 20);
        match tokio::time::timeout(Duration::from_secs(5), read).await {
            Ok(Ok(Some(_))) => answered += 1,
            _ => break,
        }
    }
    assert!(
        (20..200).contains(&answered),
        "the burst is served, the flood is cut: {answered} answered"
    );
    assert!(rejected(&node, "rate_limited_peer") >= 1.0);
    node.shutdown().await;
}
