//! Linearizable compare-and-set in process: Paxos rounds on a key's replicas through real
//! nodes. Concurrent increments through different nodes, checked by the linearizability
//! checker; a replica down; the HTTP shapes of a failed condition and of an undecided round;
//! serial reads; acceptor state that survives a restart, and a crashed proposer's accepted
//! proposal finished by the next round; hostile Paxos frames.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bavard_node::api::{Consistency, GetOptions, NodeError, PutOptions, Undecided};
use bavard_node::replica::Condition;
use bavard_node::{Node, NodeConfig};
use bavard_proto::store as pb;
use bavard_routing::Key;
use bavard_tests::linearizable::{self, Budget, Call, RegisterOp, Return};
use common::{eventually, init_tracing, p2p_addr, serve_api, test_config};
use futures::AsyncWriteExt as _;
use libp2p::{Multiaddr, PeerId, StreamProtocol};

const N: usize = 5;

fn cas_config(dir: &Path, bootstrap: Option<Multiaddr>) -> NodeConfig {
    let mut c = test_config(dir, false);
    c.kad.request_timeout_secs = 2.0;
    c.kad.lookup_timeout_secs = 6.0;
    c.http.request_timeout_secs = 10.0;
    c.replication.anti_entropy_interval_secs = 0.5;
    c.bootstrap = bootstrap.into_iter().collect();
    c
}

struct Cluster {
    dirs: Vec<PathBuf>,
    nodes: Vec<Option<Node>>,
    ids: Vec<PeerId>,
    boot: Multiaddr,
}

impl Cluster {
    async fn start(root: &Path) -> Cluster {
        init_tracing();
        let dirs: Vec<PathBuf> = (0..N).map(|i| root.join(format!("n{i}"))).collect();
        let first = Node::start(cas_config(&dirs[0], None)).await.unwrap();
        let boot = p2p_addr(&first);
        let mut nodes = vec![Some(first)];
        for d in &dirs[1..] {
            nodes.push(Some(
                Node::start(cas_config(d, Some(boot.clone())))
                    .await
                    .unwrap(),
            ));
        }
        let ids = nodes
            .iter()
            .map(|n| n.as_ref().unwrap().peer_id())
            .collect();
        let c = Cluster {
            dirs,
            nodes,
            ids,
            boot,
        };
        c.wait_converged().await;
        c
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

    fn live(&self) -> Vec<usize> {
        (0..N).filter(|i| self.nodes[*i].is_some()).collect()
    }

    /// Every live node's membership lists every node alive.
    async fn wait_converged(&self) {
        for i in self.live() {
            let node = self.node(i).clone();
            eventually(
                "every node sees every member alive",
                Duration::from_secs(60),
                || {
                    let node = node.clone();
                    async move { node.members().iter().filter(|m| m.state == "alive").count() == N }
                },
            )
            .await;
        }
    }

    /// Stops node `i` like a crash (no graceful leave: the others only suspect it).
    async fn crash(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.kill().await;
        }
    }

    async fn restart(&mut self, i: usize) {
        let boot = (i != 0).then(|| self.boot.clone());
        let node = Node::start(cas_config(&self.dirs[i], boot)).await.unwrap();
        if i == 0 {
            for j in self.live() {
                node.dial(p2p_addr(self.node(j))).unwrap();
            }
            self.boot = p2p_addr(&node);
        }
        assert_eq!(node.peer_id(), self.ids[i], "identity survives a restart");
        self.nodes[i] = Some(node);
    }

    /// The key's N = 3 replicas by global knowledge, nearest first.
    fn replicas(&self, key: &[u8]) -> Vec<usize> {
        let target = Key::hash(key);
        let mut idx: Vec<usize> = (0..N).collect();
        idx.sort_by_key(|i| Key::hash(&self.ids[*i].to_bytes()).distance(&target));
        idx.truncate(3);
        idx
    }

    fn cut(&self, a: &[usize], b: &[usize]) {
        for &i in a {
            for &j in b {
                if let (Some(x), Some(y)) = (&self.nodes[i], &self.nodes[j]) {
                    x.block_peer(y.peer_id());
                    y.block_peer(x.peer_id());
                }
            }
        }
    }

    async fn shutdown(mut self) {
        for i in 0..N {
            if let Some(n) = self.nodes[i].take() {
                n.shutdown().await;
            }
        }
    }
}

fn serial() -> GetOptions {
    GetOptions {
        consistency: Consistency::Serial,
    }
}

fn when(condition: Condition) -> PutOptions {
    PutOptions {
        condition: Some(condition),
        ..PutOptions::default()
    }
}

/// Every call is bounded: a test never hangs on a node.
async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, NodeError>>,
) -> Result<T, NodeError> {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| Err(NodeError::Timeout("the test's bound".into())))
}

/// A serial read of a counter: its value (0 when absent) and version.
async fn read_counter(node: &Node, key: &str) -> Result<Option<(u64, u64)>, NodeError> {
    let got = bounded(node.get(key.as_bytes(), serial())).await?;
    Ok(got.map(|r| {
        let value = String::from_utf8(r.value).unwrap().parse().unwrap();
        (value, r.version.parse().unwrap())
    }))
}

/// One increment through `node`: a serial read, then a compare-and-set of the value plus one
/// on the version read. Both operations go to `history`, with times in ms since `start`.
async fn increment(
    node: &Node,
    key: &str,
    client: usize,
    start: Instant,
    history: &mut Vec<RegisterOp<u64>>,
) {
    let ms = || start.elapsed().as_millis() as u64;
    let invoked = ms();
    let read = read_counter(node, key).await;
    let completed = ms();
    let seen = match read {
        Ok(seen) => seen,
        Err(_) => return, // a failed read observed nothing
    };
    history.push(RegisterOp {
        client,
        key: key.into(),
        call: Call::Read,
        ret: Return::Read(seen.map(|(v, _)| v)),
        invoked,
        completed,
    });
    let (expected, condition) = match seen {
        Some((value, version)) => (Some(value), Condition::Version(version)),
        None => (None, Condition::Absent),
    };
    let new = expected.unwrap_or(0) + 1;
    let invoked = ms();
    let put = bounded(node.put(
        key.as_bytes().to_vec(),
        new.to_string().into_bytes(),
        when(condition),
    ))
    .await;
    let ret = match put {
        Ok(reply) => {
            assert!(reply.round_trips.is_some_and(|r| r >= 2), "{reply:?}");
            Return::Ok
        }
        Err(NodeError::Conflict { .. }) => Return::Mismatch,
        Err(NodeError::Undecided {
            outcome: Undecided::NotApplied,
            ..
        }) => Return::Fail,
        // Under contention an attempt can be overtaken after a minority accepted it: its
        // outcome is honestly unknown, and the checker tries it both ways.
        Err(NodeError::Undecided {
            outcome: Undecided::Unknown,
            ..
        }) => Return::Unknown,
        Err(e) => panic!("a healthy cluster decides a round or says it could not: {e:?}"),
    };
    history.push(RegisterOp {
        client,
        key: key.into(),
        call: Call::Cas {
            expected,
            new: Some(new),
        },
        ret,
        invoked,
        completed: ms(),
    });
}

fn count(history: &[RegisterOp<u64>], ret: &Return<u64>) -> u64 {
    history
        .iter()
        .filter(|o| matches!(o.call, Call::Cas { .. }) && &o.ret == ret)
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_through_different_nodes_are_linearizable_and_none_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path()).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..4 {
        let node = c.node(client).clone();
        tasks.push(tokio::spawn(async move {
            let mut history = Vec::new();
            for _ in 0..8 {
                increment(&node, "counter", client, start, &mut history).await;
            }
            history
        }));
    }
    let mut history = Vec::new();
    for t in tasks {
        history.extend(
            tokio::time::timeout(Duration::from_secs(300), t)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    // The final value, through the fifth node, is part of the history too.
    let invoked = start.elapsed().as_millis() as u64;
    let (last, _) = read_counter(c.node(4), "counter").await.unwrap().unwrap();
    history.push(RegisterOp {
        client: 99,
        key: "counter".into(),
        call: Call::Read,
        ret: Return::Read(Some(last)),
        invoked,
        completed: start.elapsed().as_millis() as u64,
    });
    let ok = count(&history, &Return::Ok);
    let unknown = count(&history, &Return::Unknown);
    assert!(ok >= 1, "some increment commits");
    assert!(
        last >= ok && last <= ok + unknown,
        "counter {last}: {ok} acknowledged and {unknown} unknown increments"
    );
    let report = linearizable::check(&history, Budget::default()).unwrap();
    if let Some((key, counterexample)) = report.violations().next() {
        panic!("{key}: {counterexample}");
    }
    assert_eq!(report.linearizable(), Some(true));
    // The metrics counted the rounds.
    let metrics: String = (0..N).map(|i| c.node(i).metrics_text()).collect();
    assert!(
        metrics.contains("bavard_cas_rounds_total{outcome=\"committed\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("bavard_cas_round_trips_bucket"));
    assert!(metrics.contains("bavard_cas_contention_retries_total"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cas_with_a_replica_down_commits_at_quorum_and_a_serial_read_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path()).await;
    let key = "one-down";
    let replicas = c.replicas(key.as_bytes());
    let coordinator = (0..N).find(|i| !replicas.contains(i)).unwrap();
    let reader = (0..N)
        .find(|i| *i != coordinator && !replicas.contains(i))
        .unwrap();
    c.crash(replicas[0]).await;
    let v1 = bounded(c.node(coordinator).put(
        key.as_bytes().to_vec(),
        b"first".to_vec(),
        when(Condition::Absent),
    ))
    .await
    .expect("two of three replicas are a quorum");
    assert_eq!(v1.acks, 2);
    // Immediately, through another node: a serial read sees the committed value.
    let got = bounded(c.node(reader).get(key.as_bytes(), serial()))
        .await
        .unwrap()
        .expect("the committed value");
    assert_eq!(
        (got.value.as_slice(), got.version.as_str()),
        (&b"first"[..], v1.version.as_str())
    );
    // A conditional delete on that version, then the key reads absent everywhere serially.
    let v: u64 = v1.version.parse().unwrap();
    bounded(
        c.node(reader)
            .delete(key.as_bytes().to_vec(), when(Condition::Version(v))),
    )
    .await
    .unwrap();
    assert!(
        bounded(c.node(coordinator).get(key.as_bytes(), serial()))
            .await
            .unwrap()
            .is_none()
    );
    // The old version no longer matches.
    let err = bounded(c.node(coordinator).put(
        key.as_bytes().to_vec(),
        b"late".to_vec(),
        when(Condition::Version(v)),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(err, NodeError::Conflict { ref current } if current == "none"),
        "{err:?}"
    );
    c.shutdown().await;
}

async fn http(
    client: &reqwest::Client,
    req: reqwest::RequestBuilder,
) -> (u16, serde_json::Value, Option<String>) {
    let _ = client;
    let resp = tokio::time::timeout(Duration::from_secs(30), req.send())
        .await
        .expect("answered in time")
        .expect("answered");
    let status = resp.status().as_u16();
    let version = resp
        .headers()
        .get("x-bavard-version")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.bytes().await.unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, json, version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_condition_is_a_409_with_the_current_version_and_no_quorum_a_503_with_the_outcome()
{
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path()).await;
    let key = "shapes";
    let replicas = c.replicas(key.as_bytes());
    let coordinator = (0..N).find(|i| !replicas.contains(i)).unwrap();
    let base = serve_api(c.node(coordinator), "test-token-0123456789").await;
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/kv/{key}");

    let (status, body, _) = http(
        &client,
        client.put(&url).query(&[("if_absent", "")]).body("a"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["round_trips"], 2,
        "an uncontended CAS takes two round trips: {body}"
    );
    let version = body["version"].as_str().unwrap().to_string();

    let (status, body, _) = http(
        &client,
        client.put(&url).query(&[("if_absent", "true")]).body("b"),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["outcome"], "condition_failed");
    assert_eq!(body["current_version"], version.as_str());
    assert!(body["error"].as_str().unwrap().contains(&version));

    let (status, body, _) = http(
        &client,
        client.put(&url).query(&[("if_version", "1")]).body("b"),
    )
    .await;
    assert_eq!(
        (status, body["current_version"].as_str()),
        (409, Some(version.as_str()))
    );

    // A serial read answers the value and its version.
    let (status, _, got) = http(
        &client,
        client.get(&url).query(&[("consistency", "serial")]),
    )
    .await;
    assert_eq!((status, got.as_deref()), (200, Some(version.as_str())));

    // Cut the coordinator from two of the three replicas: no round can gather a majority, and
    // the answer says the write was not applied (no proposal went out).
    c.cut(&[coordinator], &replicas[..2]);
    let (status, body, _) = http(
        &client,
        client
            .put(&url)
            .query(&[("if_version", version.as_str())])
            .body("c"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["outcome"], "not_applied", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("never takes effect"),
        "{body}"
    );
    let (status, body, _) = http(
        &client,
        client.get(&url).query(&[("consistency", "serial")]),
    )
    .await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (503, Some("not_applied")),
        "{body}"
    );
    c.shutdown().await;
}

#[test]
fn an_unknown_outcome_is_a_503_that_says_so() {
    use axum::response::IntoResponse as _;
    let err = bavard_node::http::ApiError::from(NodeError::Undecided {
        outcome: Undecided::Unknown,
        reason: "only 1 of the 2 required replicas answered".into(),
    });
    let resp = err.into_response();
    assert_eq!(resp.status().as_u16(), 503);
    let body =
        futures::executor::block_on(axum::body::to_bytes(resp.into_body(), 1 << 16)).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["outcome"], "unknown");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("may still take effect"),
        "{json}"
    );
}

/// Sends one replica-protocol request on a fresh stream and reads the answer.
async fn ask(
    control: &bavard_node::streams::Control,
    peer: PeerId,
    kind: pb::request::Kind,
) -> Option<pb::response::Kind> {
    let control = control.clone();
    let mut stream = tokio::time::timeout(
        Duration::from_secs(10),
        control.open_stream(peer, StreamProtocol::new("/bavard/kv/1")),
    )
    .await
    .expect("stream opens in time")
    .expect("stream opens");
    let req = pb::Request { kind: Some(kind) };
    stream
        .write_all(&prost::Message::encode_length_delimited_to_vec(&req))
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let read = bavard_node::wire::read_message::<pb::Response, _>(&mut stream, 1 << 20);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("answered in time")
        .expect("a well-formed answer")
        .and_then(|r| r.kind)
}

fn now_hlc(offset_ms: u64) -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    bavard_store::HlcTimestamp::new(ms + offset_ms, 0).as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptor_state_survives_a_restart_and_a_crashed_proposers_proposal_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path()).await;
    let key = b"orphan".to_vec();
    let replicas = c.replicas(&key);
    // A member that proposes by hand and "crashes" before committing: it prepares and gets
    // its proposal accepted by all three replicas, then never sends the commit.
    let member_key = libp2p::identity::Keypair::generate_ed25519();
    let member = member_key.public().to_peer_id();
    let ballot = pb::Version {
        hlc: now_hlc(0),
        writer: member.to_bytes(),
    };
    let proposal = pb::Record {
        key: key.clone(),
        value: b"orphaned".to_vec(),
        version: Some(ballot.clone()),
        ..Default::default()
    };
    let mut controls = Vec::new();
    for &r in &replicas {
        let control = common::raw_member_with(c.node(r), member_key.clone());
        let peer = c.ids[r];
        let promise = ask(
            &control,
            peer,
            pb::request::Kind::PaxosPrepare(pb::PaxosPrepare {
                key: key.clone(),
                ballot: Some(ballot.clone()),
            }),
        )
        .await;
        assert!(
            matches!(promise, Some(pb::response::Kind::PaxosPromise(_))),
            "{promise:?}"
        );
        let accepted = ask(
            &control,
            peer,
            pb::request::Kind::PaxosPropose(pb::PaxosPropose {
                ballot: Some(ballot.clone()),
                proposal: Some(proposal.clone()),
            }),
        )
        .await;
        assert!(
            matches!(accepted, Some(pb::response::Kind::PaxosAccepted(_))),
            "{accepted:?}"
        );
        controls.push(control);
    }
    // Accepted is not committed: no replica stores the value.
    for &r in &replicas {
        assert_eq!(c.node(r).local_record(&key).unwrap(), None);
    }
    // Every replica restarts: the promise and the acceptance were on disk before the answers.
    for &r in &replicas {
        c.crash(r).await;
    }
    for &r in &replicas {
        c.restart(r).await;
    }
    c.wait_converged().await;
    // A lower ballot from the same member is refused by a restarted replica: it remembers.
    let stale = pb::Version {
        hlc: ballot.hlc - 1,
        writer: member.to_bytes(),
    };
    let control = common::raw_member_with(c.node(replicas[0]), member_key.clone());
    let refused = ask(
        &control,
        c.ids[replicas[0]],
        pb::request::Kind::PaxosPrepare(pb::PaxosPrepare {
            key: key.clone(),
            ballot: Some(stale),
        }),
    )
    .await;
    match refused {
        Some(pb::response::Kind::PaxosRejected(r)) => {
            assert_eq!(r.promised.unwrap().hlc, ballot.hlc)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The next round — here a serial read through a node that took no part — finds the
    // proposal in progress and finishes it before answering.
    let reader = (0..N).find(|i| !replicas.contains(i)).unwrap();
    let got = bounded(c.node(reader).get(&key, serial()))
        .await
        .unwrap()
        .expect("the orphaned proposal, finished");
    assert_eq!(got.value, b"orphaned");
    assert_eq!(
        got.version,
        ballot.hlc.to_string(),
        "it keeps its proposer's version"
    );
    // The commit reaches the replicas.
    for &r in &replicas {
        let node = c.node(r).clone();
        let k = key.clone();
        eventually(
            "the commit reaches every replica",
            Duration::from_secs(20),
            || {
                let node = node.clone();
                let k = k.clone();
                async move { node.local_record(&k).unwrap().is_some() }
            },
        )
        .await;
    }
    drop(controls);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paxos_frames_get_typed_refusals_and_the_node_keeps_deciding() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path()).await;
    let target = c.node(0);
    let peer = c.ids[0];
    let (member, control) = common::raw_member(target);
    let refusal = |answer: Option<pb::response::Kind>| match answer {
        Some(pb::response::Kind::Error(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    };
    // No ballot.
    let e = refusal(
        ask(
            &control,
            peer,
            pb::request::Kind::PaxosPrepare(pb::PaxosPrepare {
                key: b"k".to_vec(),
                ballot: None,
            }),
        )
        .await,
    );
    assert!(e.contains("without a ballot"), "{e}");
    // A ballot in another node's name.
    let e = refusal(
        ask(
            &control,
            peer,
            pb::request::Kind::PaxosPrepare(pb::PaxosPrepare {
                key: b"k".to_vec(),
                ballot: Some(pb::Version {
                    hlc: now_hlc(0),
                    writer: c.ids[1].to_bytes(),
                }),
            }),
        )
        .await,
    );
    assert!(e.contains("not the sender's"), "{e}");
    // A ballot from ten seconds in the future would win every later round.
    let e = refusal(
        ask(
            &control,
            peer,
            pb::request::Kind::PaxosPrepare(pb::PaxosPrepare {
                key: b"k".to_vec(),
                ballot: Some(pb::Version {
                    hlc: now_hlc(10_000),
                    writer: member.to_bytes(),
                }),
            }),
        )
        .await,
    );
    assert!(e.contains("ahead"), "{e}");
    // A proposal without its record, a ballot node id over the limit.
    let e = refusal(
        ask(
            &control,
            peer,
            pb::request::Kind::PaxosPropose(pb::PaxosPropose {
                ballot: Some(pb::Version {
                    hlc: now_hlc(0),
                    writer: member.to_bytes(),
                }),
                proposal: None,
            }),
        )
        .await,
    );
    assert!(e.contains("without its proposal"), "{e}");
    let e = refusal(
        ask(
            &control,
            peer,
            pb::request::Kind::PaxosCommit(pb::PaxosCommit {
                ballot: Some(pb::Version {
                    hlc: now_hlc(0),
                    writer: vec![1; 4096],
                }),
                proposal: None,
            }),
        )
        .await,
    );
    assert!(e.contains("ballot node id"), "{e}");
    // The node still decides rounds.
    bounded(target.put(b"after".to_vec(), b"1".to_vec(), when(Condition::Absent)))
        .await
        .unwrap();
    c.shutdown().await;
}
