//! In-process clusters of bavard nodes over MemoryTransport.

mod common;

use std::time::Duration;

use bavard_node::Node;
use bavard_node::api::{Consistency, GetOptions, PutOptions};
use common::*;

async fn shutdown_all(nodes: Vec<Node>) {
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_join_and_values_put_on_one_are_read_on_every_other() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 30, 3).await;
    for i in 0..10usize {
        let writer = &nodes[(i * 7) % nodes.len()];
        let key = format!("key-{i}");
        let reply = tokio::time::timeout(
            Duration::from_secs(30),
            writer.put(
                key.clone().into_bytes(),
                format!("value-{i}").into_bytes(),
                PutOptions::default(),
            ),
        )
        .await
        .expect("put hangs")
        .expect("put fails");
        assert!(reply.acks >= 2, "quorum of 3 acknowledged: {reply:?}");
    }
    for i in 0..10usize {
        let reader = &nodes[(i * 11 + 3) % nodes.len()];
        let got = tokio::time::timeout(
            Duration::from_secs(30),
            reader.get(
                format!("key-{i}").as_bytes(),
                GetOptions {
                    consistency: Consistency::One,
                },
            ),
        )
        .await
        .expect("get hangs")
        .expect("get fails")
        .expect("value found");
        assert_eq!(got.value, format!("value-{i}").into_bytes());
    }
    assert!(
        nodes[5]
            .get(b"never-written", GetOptions::default())
            .await
            .unwrap()
            .is_none()
    );
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_announced_on_one_node_are_found_from_others() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 12, 3).await;
    let acks = nodes[3].provide(b"some-file".to_vec()).await.unwrap();
    assert!(acks >= 2);
    nodes[8].provide(b"some-file".to_vec()).await.unwrap();
    let found = nodes[10].providers(b"some-file".to_vec()).await.unwrap();
    let ids: Vec<String> = found.iter().map(|p| p.peer_id.clone()).collect();
    assert!(ids.contains(&nodes[3].peer_id().to_string()), "{ids:?}");
    assert!(ids.contains(&nodes[8].peer_id().to_string()), "{ids:?}");
    assert!(found.iter().all(|p| !p.addrs.is_empty()));
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_keeps_identity_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(&dir.path().join("persistent"), false);
    let node = Node::start(cfg.clone()).await.unwrap();
    let id = node.peer_id();
    // Alone in its network, the node is its own only replica.
    node.put(
        b"k".to_vec(),
        b"v".to_vec(),
        PutOptions {
            consistency: Consistency::One,
            ..PutOptions::default()
        },
    )
    .await
    .unwrap();
    node.shutdown().await;
    drop(node);
    let node = Node::start(cfg).await.unwrap();
    assert_eq!(node.peer_id(), id);
    let got = node
        .get(
            b"k",
            GetOptions {
                consistency: Consistency::One,
            },
        )
        .await
        .unwrap()
        .expect("record survives restart");
    assert_eq!(got.value, b"v");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kademlia_request_whose_stream_is_dropped_is_sent_again() {
    use bavard_proto::kad::{Message, message::MessageType};
    use futures::StreamExt as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(test_config(dir.path(), true)).await.unwrap();
    let (remote, control) = raw_peer(&node);
    let mut incoming = control
        .accept(libp2p::StreamProtocol::new("/ipfs/kad/1.0.0"))
        .unwrap();
    let streams = Arc::new(AtomicUsize::new(0));
    let seen = streams.clone();
    // A peer whose acceptor drops the first stream (as a peer past its limits, or libp2p-stream behind a
    // burst) and answers the next ones.
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                drop(stream);
                continue;
            }
            tokio::spawn(async move {
                while let Ok(Some(req)) =
                    bavard_node::wire::read_message::<Message, _>(&mut stream, 1 << 20).await
                {
                    let reply = Message {
                        r#type: MessageType::FindNode as i32,
                        key: req.key,
                        ..Message::default()
                    };
                    if bavard_node::wire::write_message(&mut stream, &reply)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    eventually(
        "the raw peer is in the routing table",
        Duration::from_secs(20),
        || {
            let node = node.clone();
            async move { node.routing().size >= 1 }
        },
    )
    .await;
    let closest = tokio::time::timeout(Duration::from_secs(20), node.closest_peers(b"any key"))
        .await
        .expect("lookup finished")
        .unwrap();
    assert_eq!(closest, vec![remote], "answered on the second stream");
    assert!(streams.load(Ordering::SeqCst) >= 2);
    node.shutdown().await;
}
