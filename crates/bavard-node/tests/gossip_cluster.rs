//! In-process clusters running SWIM membership and topic broadcast over MemoryTransport.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bavard_node::Node;
use common::*;

async fn start_gossip_cluster(root: &Path, n: usize) -> Vec<Node> {
    init_tracing();
    let first = Node::start(fast_gossip_config(&root.join("n0"), true))
        .await
        .unwrap();
    let boot = p2p_addr(&first);
    let mut nodes = vec![first];
    for i in 1..n {
        let mut c = fast_gossip_config(&root.join(format!("n{i}")), true);
        c.bootstrap = vec![boot.clone()];
        nodes.push(Node::start(c).await.unwrap());
    }
    wait_all_alive(&nodes, n, Duration::from_secs(40)).await;
    nodes
}

async fn wait_all_alive(nodes: &[Node], n: usize, timeout: Duration) {
    for node in nodes {
        eventually("every member alive everywhere", timeout, || async {
            node.status().members_alive == n
        })
        .await;
    }
}

fn state_of(observer: &Node, member: &Node) -> Option<(String, u64)> {
    let id = member.peer_id().to_string();
    observer
        .members()
        .into_iter()
        .find(|m| m.peer_id == id)
        .map(|m| (m.state, m.incarnation))
}

async fn shutdown_all(nodes: Vec<Node>) {
    for n in nodes {
        n.shutdown().await;
    }
}

type Counts = Arc<Mutex<HashMap<String, usize>>>;

/// Collects the payloads a node receives on `topic`, counting each.
fn collect(node: &Node, topic: &str) -> Counts {
    let mut rx = node.subscribe(topic).unwrap();
    let counts = Counts::default();
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok(ev) = rx.recv().await {
            let text = String::from_utf8_lossy(&ev.payload).into_owned();
            *c.lock().unwrap().entry(text).or_insert(0) += 1;
        }
    });
    counts
}

fn lookup_hops(node: &Node) -> (f64, f64) {
    let text = node.metrics_text();
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("bavard_lookup_hops_sum"),
        value("bavard_lookup_hops_count"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_deliver_every_message_to_every_subscriber_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_gossip_cluster(dir.path(), 30).await;

    // Membership seeds lookups: in the converged cluster a lookup starts at the closest nodes.
    let (sum0, count0) = lookup_hops(&nodes[4]);
    for i in 0..5 {
        nodes[4]
            .closest_peers(format!("probe-key-{i}").as_bytes())
            .await
            .unwrap();
    }
    let (sum1, count1) = lookup_hops(&nodes[4]);
    let mean_hops = (sum1 - sum0) / (count1 - count0);
    eprintln!("mean lookup hops in the converged cluster: {mean_hops:.2}");
    // Background lookups (bucket refreshes) run meanwhile and are counted too.
    assert!(mean_hops < 2.0, "lookups take {mean_hops} hops");

    let counts: Vec<Counts> = nodes.iter().map(|n| collect(n, "news")).collect();
    for node in &nodes {
        eventually(
            "a neighbour in the topic",
            Duration::from_secs(30),
            || async { node.topic_neighbors("news") > 0 },
        )
        .await;
    }
    // Warm up until the overlay spans every subscriber (simultaneous joins may form islands
    // for a moment, which the periodic re-joins merge).
    let publisher = &nodes[0];
    let mut round = 0;
    eventually(
        "a warm-up message reaches everyone",
        Duration::from_secs(40),
        || {
            round += 1;
            let warm = format!("warmup-{round}");
            let counts = &counts;
            async move {
                publisher.publish("news", warm.into_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
                counts[1..]
                    .iter()
                    .all(|c| c.lock().unwrap().keys().any(|k| k.starts_with("warmup-")))
            }
        },
    )
    .await;

    let messages: Vec<String> = (0..20).map(|i| format!("m-{i}")).collect();
    let started = Instant::now();
    for m in &messages {
        let id = publisher
            .publish("news", m.clone().into_bytes())
            .await
            .unwrap();
        assert_eq!(id.len(), 64, "hex of a 32-byte id");
    }
    for c in &counts[1..] {
        eventually(
            "every message delivered",
            Duration::from_secs(30),
            || async {
                let c = c.lock().unwrap();
                messages.iter().all(|m| c.contains_key(m))
            },
        )
        .await;
    }
    eprintln!(
        "20 messages reached 29 subscribers in {:?}",
        started.elapsed()
    );
    // A last message, published after the others, flushes any late duplicate.
    publisher.publish("news", b"end".to_vec()).await.unwrap();
    for c in &counts[1..] {
        eventually("the end marker", Duration::from_secs(30), || async {
            c.lock().unwrap().contains_key("end")
        })
        .await;
    }
    for (i, c) in counts.iter().enumerate() {
        let c = c.lock().unwrap();
        for m in &messages {
            assert_eq!(c.get(m), Some(&1), "node {i} got {m} {:?} times", c.get(m));
        }
    }
    let duplicates: f64 = nodes
        .iter()
        .map(|n| {
            n.metrics_text()
                .lines()
                .find(|l| l.starts_with("bavard_gossip_duplicates_total"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .sum();
    eprintln!("duplicate payloads received over the whole run, all nodes: {duplicates}");
    // The publisher's own subscription got its messages once too (delivered locally).
    assert_eq!(counts[0].lock().unwrap().get("m-0"), Some(&1));
    let text = nodes[7].metrics_text();
    assert!(text.contains("bavard_gossip_delivered_total"), "{text}");
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_marked_dead_by_every_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_gossip_cluster(dir.path(), 8).await;
    let victim = nodes.pop().unwrap();
    let killed_at = Instant::now();
    victim.kill().await;
    for node in &nodes {
        eventually(
            "the killed node is dead",
            Duration::from_secs(30),
            || async { state_of(node, &victim).is_some_and(|(s, _)| s == "dead") },
        )
        .await;
    }
    eprintln!(
        "killed node seen dead by all 7 others after {:?}",
        killed_at.elapsed()
    );
    for node in &nodes {
        assert_eq!(node.status().members_alive, 7);
    }
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halves_cut_apart_and_rejoined_converge_to_one_membership() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_gossip_cluster(dir.path(), 10).await;
    let (a, b) = nodes.split_at(5);
    for x in a {
        for y in b {
            x.gossip_block(y.peer_id());
            y.gossip_block(x.peer_id());
        }
    }
    for (side, other) in [(a, b), (b, a)] {
        for x in side {
            eventually(
                "the other half is dead",
                Duration::from_secs(40),
                || async {
                    other
                        .iter()
                        .all(|y| state_of(x, y).is_some_and(|(s, _)| s == "dead"))
                },
            )
            .await;
            assert_eq!(x.status().members_alive, 5);
        }
    }
    let healed_at = Instant::now();
    for x in a {
        for y in b {
            x.gossip_unblock(y.peer_id());
            y.gossip_unblock(x.peer_id());
        }
    }
    wait_all_alive(&nodes, 10, Duration::from_secs(40)).await;
    eprintln!("partition healed in {:?}", healed_at.elapsed());
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_rejoins_and_is_alive_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_gossip_cluster(dir.path(), 4).await;
    let persistent = dir.path().join("persistent");
    let mut cfg = fast_gossip_config(&persistent, false);
    cfg.bootstrap = vec![p2p_addr(&nodes[0])];
    let node = Node::start(cfg.clone()).await.unwrap();
    let id = node.peer_id();
    nodes.push(node);
    wait_all_alive(&nodes, 5, Duration::from_secs(30)).await;

    // A graceful stop is seen as a leave.
    let node = nodes.pop().unwrap();
    node.shutdown().await;
    for other in &nodes {
        eventually(
            "the stopped node has left",
            Duration::from_secs(30),
            || async { state_of(other, &node).is_some_and(|(s, _)| s == "left") },
        )
        .await;
    }
    let (_, left_incarnation) = state_of(&nodes[1], &node).unwrap();
    drop(node);

    // Tasks that served the old instance's last requests may hold its record store for a moment
    // after shutdown: retry until the store can be opened again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let node = loop {
        match Node::start(cfg.clone()).await {
            Ok(node) => break node,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("restart not possible yet: {e:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot restart the node: {e:#}"),
        }
    };
    assert_eq!(node.peer_id(), id, "persistent identity");
    nodes.push(node);
    wait_all_alive(&nodes, 5, Duration::from_secs(30)).await;
    let restarted = nodes.last().unwrap();
    for other in &nodes[..4] {
        // Alive everywhere, at an incarnation above its leave (it refuted it). A loaded test
        // machine can make a probe miss for a moment, hence the wait.
        eventually(
            "the restarted node is alive above its leave",
            Duration::from_secs(30),
            || async {
                state_of(other, restarted)
                    .is_some_and(|(s, inc)| s == "alive" && inc > left_incarnation)
            },
        )
        .await;
    }
    shutdown_all(nodes).await;
}

async fn api_client(node: &Node) -> bavard_node::client::Client {
    let base = serve_api(node, "test-token-0123456789").await;
    let addr = base.strip_prefix("http://").expect("an http URL");
    bavard_node::client::Client::new(addr, Duration::from_secs(20)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_lists_members_publishes_and_streams_topic_events() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_gossip_cluster(dir.path(), 3).await;
    let api0 = api_client(&nodes[0]).await;
    let api2 = api_client(&nodes[2]).await;

    let members = api0.members().await.unwrap();
    assert_eq!(members.len(), 3);
    assert!(
        members
            .iter()
            .all(|m| m.state == "alive" && !m.addrs.is_empty())
    );

    let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let sink = got.clone();
    let sub = api2.clone();
    tokio::spawn(async move {
        let _ = sub
            .subscribe("chat", |payload| {
                sink.lock().unwrap().push(payload);
                Ok(())
            })
            .await;
    });
    // Publish until the subscription is wired up, then a binary payload (sent as base64).
    eventually(
        "the subscriber hears the publisher",
        Duration::from_secs(30),
        || async {
            api0.publish("chat", b"hello".to_vec()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            got.lock().unwrap().iter().any(|p| p == b"hello")
        },
    )
    .await;
    let binary = vec![0u8, 159, 146, 150, 255];
    let reply = api0.publish("chat", binary.clone()).await.unwrap();
    assert_eq!(reply.message_id.len(), 64);
    eventually(
        "the binary payload arrives intact",
        Duration::from_secs(20),
        || async { got.lock().unwrap().contains(&binary) },
    )
    .await;

    // Both ends list the topic with the other in its tree (2 of 3 nodes take part: each is the
    // other's eager neighbour once a message went through).
    let peer0 = nodes[0].peer_id().to_string();
    let peer2 = nodes[2].peer_id().to_string();
    for (api, me, other) in [(&api0, &peer0, &peer2), (&api2, &peer2, &peer0)] {
        let topics = api.topics().await.unwrap();
        assert_eq!(topics.len(), 1, "{me}: {topics:?}");
        let chat = &topics[0];
        assert_eq!(chat.topic, "chat");
        assert!(chat.seen >= 2, "{me}: {chat:?}");
        assert!(
            chat.eager.contains(other) || chat.lazy.contains(other),
            "{me} does not list {other} as a neighbour: {chat:?}"
        );
    }
    assert!(!api0.topics().await.unwrap()[0].subscriber);
    assert!(api2.topics().await.unwrap()[0].subscriber);

    let long = "x".repeat(300);
    let err = api0.publish(&long, b"m".to_vec()).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 400"), "{err}");
    let status = api0.status().await.unwrap();
    assert_eq!(status.members_alive, 3);
    shutdown_all(nodes).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_gossip_frames_are_dropped_and_counted() {
    use bavard_proto::gossip as pb;
    use futures::AsyncWriteExt as _;
    use libp2p::StreamProtocol;

    let dir = tempfile::tempdir().unwrap();
    let nodes = start_gossip_cluster(dir.path(), 2).await;
    let target = &nodes[0];
    // A stranger (no certificate of the cluster) is refused at the stream, whatever it sends.
    let (_, stranger) = common::raw_peer(target);
    let mut s = stranger
        .clone()
        .open_stream(target.peer_id(), StreamProtocol::new("/bavard/gossip/1"))
        .await
        .unwrap();
    let _ = s.write_all(&[1, 0]).await;
    eventually(
        "the stranger is counted",
        Duration::from_secs(10),
        || async { rejected(target, "not_admitted") >= 1.0 },
    )
    .await;
    drop(s);
    // A raw libp2p peer that is a member and speaks the gossip protocol by hand.
    let (attacker, control) = common::raw_member(target);
    let proto = StreamProtocol::new("/bavard/gossip/1");
    let send = |frame: Vec<u8>| {
        let control = control.clone();
        let proto = proto.clone();
        let peer = target.peer_id();
        async move {
            let mut s = control.open_stream(peer, proto).await.unwrap();
            let _ = s.write_all(&frame).await;
            let _ = s.flush().await;
            s
        }
    };
    let frame = |m: pb::GossipMessage| prost::Message::encode_length_delimited_to_vec(&m);

    // A frame announcing more than the size limit.
    let mut oversized = Vec::new();
    prost::encoding::encode_varint(10 << 20, &mut oversized);
    let _s1 = send(oversized).await;
    eventually(
        "the oversized frame is counted",
        Duration::from_secs(10),
        || async { rejected(target, "gossip_bad_frame") >= 1.0 },
    )
    .await;

    // A broadcast message for a topic the node never joined.
    let unknown = pb::GossipMessage {
        body: Some(pb::gossip_message::Body::Broadcast(pb::BroadcastMessage {
            topic: vec![7; 32],
            kind: Some(pb::broadcast_message::Kind::Prune(pb::Prune {})),
        })),
    };
    let _s2 = send(frame(unknown)).await;
    eventually(
        "the unknown topic is counted",
        Duration::from_secs(10),
        || async { rejected(target, "gossip_unknown_topic") >= 1.0 },
    )
    .await;

    // A malformed peer id.
    let bad_id = pb::GossipMessage {
        body: Some(pb::gossip_message::Body::Membership(
            pb::MembershipMessage {
                kind: Some(pb::membership_message::Kind::PingReq(pb::PingReq {
                    seq: 1,
                    target: vec![1, 2, 3],
                    piggyback: vec![],
                })),
            },
        )),
    };
    let _s3 = send(frame(bad_id)).await;
    eventually(
        "the malformed frame is counted",
        Duration::from_secs(10),
        || async { rejected(target, "gossip_malformed") >= 1.0 },
    )
    .await;

    // A forged leave for another member, asserted by the attacker: ignored (only a member
    // itself may declare that it left), so the victim stays alive.
    let victim = nodes[1].peer_id();
    let forged = pb::GossipMessage {
        body: Some(pb::gossip_message::Body::Membership(
            pb::MembershipMessage {
                kind: Some(pb::membership_message::Kind::Gossip(pb::MembershipGossip {
                    piggyback: vec![pb::Update {
                        member: victim.to_bytes(),
                        incarnation: 1_000,
                        state: pb::MemberState::Left as i32,
                        meta: vec![],
                        from: attacker.to_bytes(),
                        signature: vec![],
                    }],
                })),
            },
        )),
    };
    let _s4 = send(frame(forged)).await;

    // A flood of streams: beyond the per-peer bound they are reset and counted.
    let max = target.config().gossip.max_inbound_streams_per_peer;
    let mut held = Vec::new();
    for _ in 0..max + 4 {
        let c = control.clone();
        if let Ok(s) = c
            .open_stream(target.peer_id(), StreamProtocol::new("/bavard/gossip/1"))
            .await
        {
            held.push(s);
        }
    }
    eventually(
        "excess streams are counted",
        Duration::from_secs(10),
        || async { rejected(target, "gossip_too_many_streams") >= 1.0 },
    )
    .await;

    let (state, _) = state_of(target, &nodes[1]).unwrap();
    assert_eq!(state, "alive", "a forged leave is ignored");
    assert_eq!(target.status().members_alive, 2);
    drop(held);
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_never_becomes_a_member() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_gossip_cluster(dir.path(), 3).await;
    // A node without this cluster's certificate: it creates a cluster of its own.
    let outsider_dir = dir.path().join("outsider");
    let mut c = fast_gossip_config(&outsider_dir, true);
    std::fs::remove_file(outsider_dir.join(bavard_node::admission::CERT_FILE)).unwrap();
    c.bootstrap = vec![p2p_addr(&nodes[0])];
    let outsider = Node::start(c).await.unwrap();
    assert_ne!(outsider.cluster_id(), nodes[0].cluster_id());
    // Its attempts to join are refused and counted...
    eventually(
        "the outsider is refused",
        Duration::from_secs(20),
        || async { rejected(&nodes[0], "not_admitted") >= 1.0 },
    )
    .await;
    // ...and a while later nobody lists it, nor does it list anyone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in &nodes {
        assert!(
            state_of(n, &outsider).is_none(),
            "the outsider is no member"
        );
        assert_eq!(n.status().members_alive, 3);
    }
    assert_eq!(outsider.status().members_alive, 1);
    // Its replica requests are refused: a write it coordinates reaches only itself.
    let put = outsider
        .put(
            b"k".to_vec(),
            b"v".to_vec(),
            bavard_node::api::PutOptions::default(),
        )
        .await;
    assert!(put.is_err(), "no quorum outside the cluster: {put:?}");
    for n in &nodes {
        assert_eq!(n.local_record(b"k").unwrap(), None);
    }
    outsider.shutdown().await;
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_with_tokens_and_a_revoked_member_is_refused_everywhere() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    // The first node creates the cluster: no certificate installed.
    let first_dir = dir.path().join("authority");
    let c = fast_gossip_config(&first_dir, true);
    std::fs::remove_file(first_dir.join(bavard_node::admission::CERT_FILE)).unwrap();
    let authority = Node::start(c).await.unwrap();
    let boot = p2p_addr(&authority);
    let mut nodes = vec![authority];
    for i in 1..3 {
        let d = dir.path().join(format!("member-{i}"));
        let mut c = fast_gossip_config(&d, true);
        std::fs::remove_file(d.join(bavard_node::admission::CERT_FILE)).unwrap();
        c.bootstrap = vec![boot.clone()];
        c.cluster.join = Some(nodes[0].join_token(Duration::from_secs(60)).unwrap());
        nodes.push(Node::start(c).await.unwrap());
        assert_eq!(nodes[i].cluster_id(), nodes[0].cluster_id());
    }
    wait_all_alive(&nodes, 3, Duration::from_secs(40)).await;
    // A token is spent once.
    let token = nodes[0].join_token(Duration::from_secs(60)).unwrap();
    let d = dir.path().join("late");
    let mut c = fast_gossip_config(&d, true);
    std::fs::remove_file(d.join(bavard_node::admission::CERT_FILE)).unwrap();
    c.bootstrap = vec![boot.clone()];
    c.cluster.join = Some(token.clone());
    c.cluster.join_timeout_secs = 5.0;
    let late = Node::start(c).await.unwrap();
    let d2 = dir.path().join("thief");
    let mut c = fast_gossip_config(&d2, true);
    std::fs::remove_file(d2.join(bavard_node::admission::CERT_FILE)).unwrap();
    c.bootstrap = vec![boot.clone()];
    c.cluster.join = Some(token);
    c.cluster.join_timeout_secs = 5.0;
    let Err(err) = Node::start(c).await else {
        panic!("a spent token admitted a second node");
    };
    assert!(format!("{err:#}").contains("already used"), "{err:#}");
    nodes.push(late);
    wait_all_alive(&nodes, 4, Duration::from_secs(40)).await;

    // A member cannot revoke; the authority can, and everyone refuses the revoked node.
    assert!(nodes[1].revoke(nodes[0].peer_id()).await.is_err());
    let revoked = nodes.pop().unwrap();
    nodes[0].revoke(revoked.peer_id()).await.unwrap();
    for n in &nodes {
        eventually(
            "the revoked member is dead to every member",
            Duration::from_secs(30),
            || async { state_of(n, &revoked).is_some_and(|(s, _)| s == "dead") },
        )
        .await;
    }
    eventually(
        "the revoked member's streams are refused",
        Duration::from_secs(20),
        || async {
            nodes
                .iter()
                .map(|n| rejected(n, "not_admitted"))
                .sum::<f64>()
                >= 1.0
        },
    )
    .await;
    revoked.shutdown().await;
    shutdown_all(nodes).await;
}

/// A membership frame carrying `updates`.
fn membership_frame(updates: Vec<bavard_proto::gossip::Update>) -> Vec<u8> {
    use bavard_proto::gossip as pb;
    prost::Message::encode_length_delimited_to_vec(&pb::GossipMessage {
        body: Some(pb::gossip_message::Body::Membership(
            pb::MembershipMessage {
                kind: Some(pb::membership_message::Kind::Gossip(pb::MembershipGossip {
                    piggyback: updates,
                })),
            },
        )),
    })
}

/// A self-claim signed with `key` as the node's authenticator signs it.
fn signed_alive(
    key: &libp2p::identity::Keypair,
    incarnation: u64,
    meta: Vec<u8>,
) -> bavard_proto::gossip::Update {
    use bavard_gossip::membership::{MemberState, SignedFields};
    let id = key.public().to_peer_id();
    let bytes = SignedFields {
        member: &id,
        incarnation,
        state: MemberState::Alive,
        meta: &meta,
    }
    .signing_bytes(&id.to_bytes());
    bavard_proto::gossip::Update {
        member: id.to_bytes(),
        incarnation,
        state: bavard_proto::gossip::MemberState::Alive as i32,
        meta,
        from: id.to_bytes(),
        signature: key.sign(&bytes).unwrap(),
    }
}

/// Metadata as members write it: a varint-prefixed certificate, then no addresses.
fn meta_with(certificate: &[u8]) -> Vec<u8> {
    let mut meta = Vec::new();
    prost::encoding::encode_varint(certificate.len() as u64, &mut meta);
    meta.extend_from_slice(certificate);
    meta
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_member_cannot_forge_claims_invent_members_overflow_incarnations_or_publish_as_another()
 {
    use bavard_proto::gossip as pb;
    use futures::AsyncWriteExt as _;
    use libp2p::StreamProtocol;

    let dir = tempfile::tempdir().unwrap();
    let nodes = start_gossip_cluster(dir.path(), 2).await;
    let target = &nodes[0];
    let victim = nodes[1].peer_id();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let attacker = key.public().to_peer_id();
    let control = common::raw_member_with(target, key.clone());
    let proto = StreamProtocol::new("/bavard/gossip/1");
    let send = |frame: Vec<u8>| {
        let control = control.clone();
        let proto = proto.clone();
        let peer = target.peer_id();
        async move {
            let mut s = control.open_stream(peer, proto).await.unwrap();
            s.write_all(&frame).await.unwrap();
            s.flush().await.unwrap();
            s
        }
    };
    let member_ids =
        |node: &Node| -> Vec<String> { node.members().into_iter().map(|m| m.peer_id).collect() };

    // The control case: the attacker's own claim, signed and with its certificate, makes it a
    // member — so what follows is refused for what it is, not because nothing is accepted.
    let cert = common::test_authority()
        .certify(attacker, u64::MAX)
        .encode();
    let _s0 = send(membership_frame(vec![signed_alive(
        &key,
        1,
        meta_with(&cert),
    )]))
    .await;
    eventually(
        "a genuine, certified claim is accepted",
        Duration::from_secs(10),
        || async { member_ids(target).contains(&attacker.to_string()) },
    )
    .await;

    // 1. A forged Alive in the victim's name (a higher incarnation would let the attacker rewrite
    //    its addresses): the signature is not the victim's.
    let (_, victim_incarnation) = state_of(target, &nodes[1]).unwrap();
    let before = rejected(target, "gossip_bad_signature");
    let forged = pb::Update {
        member: victim.to_bytes(),
        incarnation: victim_incarnation + 10,
        state: pb::MemberState::Alive as i32,
        meta: meta_with(&[]),
        // As if relayed from the victim (a claim "from" anyone else is not even considered).
        from: victim.to_bytes(),
        signature: key
            .sign(b"anything: it is the attacker's key, not the victim's")
            .unwrap(),
    };
    let _s1 = send(membership_frame(vec![forged])).await;
    eventually(
        "the forged claim is counted",
        Duration::from_secs(10),
        || async { rejected(target, "gossip_bad_signature") > before },
    )
    .await;
    assert_eq!(
        state_of(target, &nodes[1]).unwrap(),
        ("alive".to_string(), victim_incarnation),
        "the victim's entry is unchanged"
    );

    // 2. Invented members: fresh keys that sign their own claims but hold no certificate of the
    //    cluster (none, or one from another authority).
    let before = rejected(target, "gossip_bad_signature");
    let other_authority = bavard_node::admission::Authority::generate();
    let mut fakes = Vec::new();
    let mut updates = Vec::new();
    for i in 0..4 {
        let fake = libp2p::identity::Keypair::generate_ed25519();
        let fake_id = fake.public().to_peer_id();
        let meta = if i % 2 == 0 {
            meta_with(&[])
        } else {
            meta_with(&other_authority.certify(fake_id, u64::MAX).encode())
        };
        updates.push(signed_alive(&fake, 1, meta));
        fakes.push(fake_id);
    }
    let _s2 = send(membership_frame(updates)).await;
    eventually(
        "the invented members are counted",
        Duration::from_secs(10),
        || async { rejected(target, "gossip_bad_signature") >= before + 4.0 },
    )
    .await;
    let ids = member_ids(target);
    assert!(
        fakes.iter().all(|f| !ids.contains(&f.to_string())),
        "no invented member enters the view"
    );

    // 3. A suspicion and a death at u64::MAX (which would make the victim unable to refute, or
    //    overflow its incarnation): ignored as too far ahead.
    let before = rejected(target, "gossip_incarnation_jump");
    let extreme = |state: pb::MemberState| pb::Update {
        member: victim.to_bytes(),
        incarnation: u64::MAX,
        state: state as i32,
        meta: vec![],
        from: attacker.to_bytes(),
        signature: vec![],
    };
    let _s3 = send(membership_frame(vec![
        extreme(pb::MemberState::Suspect),
        extreme(pb::MemberState::Dead),
    ]))
    .await;
    eventually("the jumps are counted", Duration::from_secs(10), || async {
        rejected(target, "gossip_incarnation_jump") >= before + 2.0
    })
    .await;
    assert_eq!(
        state_of(target, &nodes[1]).unwrap().0,
        "alive",
        "the victim stays alive"
    );

    // 4. A topic message in the victim's name: not delivered, whatever route it takes.
    let topic = "hostile-topic";
    let received = collect(target, topic);
    let before = rejected(target, "gossip_broadcast_rejected");
    let forged_message = pb::GossipMessage {
        body: Some(pb::gossip_message::Body::Broadcast(pb::BroadcastMessage {
            topic: bavard_node::gossip::topic_id(topic).as_bytes().to_vec(),
            kind: Some(pb::broadcast_message::Kind::Gossip(pb::PlumtreeGossip {
                id: vec![5; 32],
                hops: 0,
                payload: b"transfer everything to the attacker".to_vec(),
                publisher: victim.to_bytes(),
                signature: key.sign(b"not the victim's signature").unwrap(),
            })),
        })),
    };
    let _s4 = send(prost::Message::encode_length_delimited_to_vec(
        &forged_message,
    ))
    .await;
    eventually(
        "the forged topic message is counted",
        Duration::from_secs(10),
        || async { rejected(target, "gossip_broadcast_rejected") > before },
    )
    .await;
    assert!(
        received.lock().unwrap().is_empty(),
        "a forged topic message is never delivered"
    );
    // Genuine messages still flow between the honest nodes.
    let honest = collect(&nodes[1], topic);
    eventually(
        "a genuine publication is delivered",
        Duration::from_secs(20),
        || async {
            let _ = target.publish(topic, b"genuine".to_vec()).await;
            honest.lock().unwrap().contains_key("genuine")
        },
    )
    .await;
    // (The attacker answers no probes, so by now it may be suspected: not asserted.)
    assert_eq!(state_of(target, &nodes[1]).unwrap().0, "alive");
    shutdown_all(nodes).await;
}
