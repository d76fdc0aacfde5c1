//! A request flood from two hostile members (issue 12) against one victim of a 3-node cluster:
//! one holds 40 streams of anti-entropy tree, listing and fetch requests (over the per-peer
//! limit of 32 streams), the other sends ADD_PROVIDER and GET_PROVIDERS back to back on 8
//! streams (over the per-peer request rate); meanwhile an honest client writes and reads
//! through the victim's HTTP API. Asserts that:
//!
//! - every honest request succeeds within a generous bound (no wall-clock speed is asserted:
//!   the bound only turns a hang into a failure);
//! - the victim stays alive in everyone's membership and keeps answering its status call;
//! - the victim's limits refused part of the flood and counted it
//!   (`bavard_inbound_rejected{reason="too_many_streams"}` and `"rate_limited_peer"`), and the
//!   hostile peer saw those refusals (failed opens, closed streams).
//!
//! (The <100 ms figure for `/v1/status` comes from `cargo xtask scenario soak` on real
//! processes.)

mod common;

#[path = "../examples/hostile_peer/flood.rs"]
mod flood;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bavard_node::Node;
use common::{eventually, start_cluster_with};
use tower::ServiceExt as _;

/// A generous bound for one honest request while the flood runs: only a hang reaches it.
const HONEST_WITHIN: Duration = Duration::from_secs(10);
const FLOOD_FOR: Duration = Duration::from_secs(5);
/// Replica streams of one hostile member: over the per-peer limit of 32.
const REPLICA_STREAMS: usize = 40;
/// Kademlia streams of another: within the limit, but their requests come faster than allowed.
const KAD_STREAMS: usize = 8;
/// The Kademlia request rate a peer may use on every node of the test (the default is 500/s):
/// low enough that the flood is sure to pass it, far above what the honest nodes send.
const RATE_PER_PEER: u32 = 100;
const TOKEN: &str = "flood-test-token-0123456789";

fn rejected(node: &Node, reason: &str) -> u64 {
    let needle = format!("reason=\"{reason}\"");
    node.metrics_text()
        .lines()
        .find(|l| l.starts_with("bavard_inbound_rejected") && l.contains(&needle))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Sends one request through the router within [`HONEST_WITHIN`]; its status and body.
async fn call(router: &axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let what = format!("{} {}", req.method(), req.uri());
    let resp = tokio::time::timeout(HONEST_WITHIN, router.clone().oneshot(req))
        .await
        .unwrap_or_else(|_| panic!("{what} answered within {HONEST_WITHIN:?} during the flood"))
        .unwrap();
    let status = resp.status();
    let body = tokio::time::timeout(
        HONEST_WITHIN,
        axum::body::to_bytes(resp.into_body(), 1 << 20),
    )
    .await
    .expect("body in time")
    .unwrap()
    .to_vec();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_flooding_the_victim_is_refused_by_its_limits_while_honest_requests_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster_with(dir.path(), 3, 2, |_, c| {
        c.limits.max_requests_per_sec_per_peer = RATE_PER_PEER;
    })
    .await;
    let victim = &nodes[1];
    let victim_id = victim.peer_id().to_string();
    let others = [&nodes[0], &nodes[2]];
    let alive_everywhere = || {
        others.iter().all(|n| {
            n.members()
                .iter()
                .any(|m| m.peer_id == victim_id && m.state == "alive")
        })
    };
    eventually(
        "the others list the victim alive",
        Duration::from_secs(60),
        || async { alive_everywhere() },
    )
    .await;
    // Some records for the anti-entropy and fetch requests to read.
    for i in 0..50 {
        let put = victim.put(
            format!("k{i}").into_bytes(),
            vec![b'v'; 256],
            Default::default(),
        );
        tokio::time::timeout(HONEST_WITHIN, put)
            .await
            .expect("put in time")
            .expect("put");
    }
    let streams_refused_before = rejected(victim, "too_many_streams");
    let rate_limited_before = rejected(victim, "rate_limited_peer");

    // Two hostile members: one opens more replica streams than a peer may hold, the other
    // sends Kademlia requests on fewer streams but faster than a peer may.
    let victim_peer = victim.peer_id();
    let (me, control) = common::raw_member(victim);
    let streams_flood = tokio::spawn(async move {
        flood::flood(
            control,
            me,
            victim_peer,
            flood::Target::Replica,
            REPLICA_STREAMS,
            FLOOD_FOR,
        )
        .await
    });
    let (me, control) = common::raw_member(victim);
    let rate_flood = tokio::spawn(async move {
        flood::flood(
            control,
            me,
            victim_peer,
            flood::Target::Kademlia,
            KAD_STREAMS,
            FLOOD_FOR,
        )
        .await
    });
    let flood = async {
        let a = streams_flood.await.unwrap();
        let b = rate_flood.await.unwrap();
        (a, b)
    };
    tokio::pin!(flood);

    let router = bavard_node::http::router(
        victim.clone(),
        bavard_node::http::Access::with_token(TOKEN, false),
    );
    let mut honest_ops = 0;
    let mut suspected = Vec::new();
    let mut i = 0;
    let (stats, kad_stats) = loop {
        // An honest client: a status call, a write and a read of what it wrote.
        let (status, _) = call(
            &router,
            Request::get("/v1/status").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "status during the flood");
        let key = format!("/v1/kv/honest-{i}");
        let value = format!("value {i}");
        let (status, body) = call(
            &router,
            Request::put(&key).body(Body::from(value.clone())).unwrap(),
        )
        .await;
        assert!(
            status.is_success(),
            "PUT {key} during the flood: {status} {}",
            String::from_utf8_lossy(&body)
        );
        let (status, body) = call(&router, Request::get(&key).body(Body::empty()).unwrap()).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "GET {key} during the flood: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(body, value.as_bytes(), "GET {key} reads what was written");
        honest_ops += 3;
        i += 1;
        for n in others {
            for m in n.members() {
                if m.peer_id == victim_id && m.state != "alive" {
                    suspected.push(format!("{} sees the victim {}", n.peer_id(), m.state));
                }
            }
        }
        if let Ok(done) = tokio::time::timeout(Duration::from_millis(50), &mut flood).await {
            break done;
        }
    };
    assert!(
        suspected.is_empty(),
        "the victim was suspected: {suspected:?}"
    );
    assert!(
        honest_ops >= 6,
        "the honest client ran throughout ({honest_ops} requests)"
    );
    assert!(
        stats.requests >= 100 && stats.answers >= 50,
        "the replica flood ran: {stats:?}"
    );
    assert!(
        kad_stats.requests >= 100,
        "the Kademlia flood ran: {kad_stats:?}"
    );
    // The limits refused part of the flood, counted it, and the flood saw it.
    let streams_refused = rejected(victim, "too_many_streams") - streams_refused_before;
    let rate_limited = rejected(victim, "rate_limited_peer") - rate_limited_before;
    assert!(
        streams_refused >= 1,
        "{REPLICA_STREAMS} streams from one peer exceed its 32: none refused ({stats:?})"
    );
    assert!(
        rate_limited >= 1,
        "the flood's Kademlia requests exceed {RATE_PER_PEER}/s: none refused ({kad_stats:?})"
    );
    assert!(
        stats.opens_failed + stats.streams_closed >= 1,
        "the hostile peer saw its streams refused: {stats:?}"
    );
    assert!(
        kad_stats.opens_failed + kad_stats.streams_closed >= 1,
        "the hostile peer saw its requests refused: {kad_stats:?}"
    );
    // And it keeps serving everyone else afterwards.
    assert!(alive_everywhere());
    let read = nodes[0].get(b"k7", Default::default());
    let value = tokio::time::timeout(HONEST_WITHIN, read)
        .await
        .expect("read in time")
        .expect("read");
    assert_eq!(value.map(|v| v.value), Some(vec![b'v'; 256]));
    let last = format!("honest-{}", i - 1);
    let read = nodes[2].get(last.as_bytes(), Default::default());
    let value = tokio::time::timeout(HONEST_WITHIN, read)
        .await
        .expect("read in time")
        .expect("read");
    assert_eq!(
        value.map(|v| v.value),
        Some(format!("value {}", i - 1).into_bytes())
    );
    eprintln!(
        "flood: {stats:?}, {kad_stats:?}; victim refused {streams_refused} streams and rate-limited \
         {rate_limited} requests; honest client: {honest_ops} requests, all served"
    );
    for n in nodes {
        n.shutdown().await;
    }
}
