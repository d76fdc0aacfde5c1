//! A request flood from one hostile member (issue 12): 32 streams of anti-entropy, fetch,
//! ADD_PROVIDER and GET_PROVIDERS requests against one victim of a 3-node cluster. The victim
//! stays alive in everyone's membership and keeps answering its status call. (The <100 ms figure
//! for `/v1/status` comes from `cargo xtask scenario soak` on real processes; this test only
//! bounds the call generously so that a busy machine does not make it flaky.)

mod common;

#[path = "../examples/hostile_peer/flood.rs"]
mod flood;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::{eventually, start_cluster};
use tower::ServiceExt as _;

/// A generous bound for one status call while the flood runs.
const STATUS_WITHIN: Duration = Duration::from_secs(2);
const FLOOD_FOR: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_flooding_32_streams_does_not_get_its_victim_suspected() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 3, 2).await;
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
        tokio::time::timeout(Duration::from_secs(10), put)
            .await
            .expect("put in time")
            .expect("put");
    }

    let (me, control) = common::raw_member(victim);
    let victim_peer = victim.peer_id();
    let flood = tokio::spawn(async move {
        flood::flood(
            control,
            me,
            victim_peer,
            flood::Target::Both,
            32,
            FLOOD_FOR,
        )
        .await
    });

    let router = bavard_node::http::router(
        victim.clone(),
        bavard_node::http::Access::with_token("flood-test-token-0123456789", false),
    );
    let mut polls = 0;
    let mut suspected = Vec::new();
    while !flood.is_finished() {
        let req = Request::get("/v1/status").body(Body::empty()).unwrap();
        let resp = tokio::time::timeout(STATUS_WITHIN, router.clone().oneshot(req))
            .await
            .expect("the victim's status answers during the flood")
            .unwrap();
        assert_eq!(resp.status(), 200);
        polls += 1;
        for n in others {
            for m in n.members() {
                if m.peer_id == victim_id && m.state != "alive" {
                    suspected.push(format!("{} sees the victim {}", n.peer_id(), m.state));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = tokio::time::timeout(Duration::from_secs(30), flood)
        .await
        .expect("the flood ends")
        .unwrap();
    assert!(
        suspected.is_empty(),
        "the victim was suspected: {suspected:?}"
    );
    assert!(polls >= 10, "the status was polled throughout ({polls} polls)");
    assert!(
        stats.requests >= 100 && stats.answers >= 50,
        "the flood ran: {stats:?}"
    );
    // And it keeps serving everyone else afterwards.
    assert!(alive_everywhere());
    let read = nodes[0].get(b"k7", Default::default());
    let value = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("read in time")
        .expect("read");
    assert_eq!(value.map(|v| v.value), Some(vec![b'v'; 256]));
    for n in nodes {
        n.shutdown().await;
    }
}
