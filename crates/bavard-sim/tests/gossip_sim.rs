//! Whole-network properties of the gossip experiment, on small networks (debug builds run these).

use bavard_sim::{GossipReport, GossipSimConfig, SimError, run_gossip_sim};

fn config(nodes: u32, messages: u32, seed: u64) -> GossipSimConfig {
    GossipSimConfig {
        nodes,
        messages,
        seed,
        ..GossipSimConfig::default()
    }
}

fn without_wall_time(reports: &[GossipReport]) -> Vec<serde_json::Value> {
    reports
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap();
            // Wall time and the resident set vary from run to run; nothing else may.
            for key in ["wall_s", "peak_rss_mb", "bytes_per_node"] {
                v.as_object_mut().unwrap().remove(key);
            }
            v
        })
        .collect()
}

#[test]
fn the_same_seed_replays_the_same_report_except_wall_time() {
    let cfg = GossipSimConfig {
        baseline: true,
        loss: 0.02,
        kill: 0.1,
        ..config(80, 10, 5)
    };
    let a = run_gossip_sim(&cfg).unwrap();
    let b = run_gossip_sim(&cfg).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(without_wall_time(&a), without_wall_time(&b));
    let json = &without_wall_time(&a)[0];
    for key in [
        "strategy",
        "nodes",
        "messages",
        "delivery_ratio",
        "rmr",
        "ldh_max",
        "latency_ms_p50",
        "latency_ms_p99",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    let c = run_gossip_sim(&GossipSimConfig { seed: 6, ..cfg }).unwrap();
    assert_ne!(without_wall_time(&a), without_wall_time(&c));
}

#[test]
fn without_failures_every_message_reaches_every_node_with_less_redundancy_than_the_mesh() {
    let reports = run_gossip_sim(&GossipSimConfig {
        baseline: true,
        ..config(150, 20, 7)
    })
    .unwrap();
    let (ours, mesh) = (&reports[0], &reports[1]);
    assert_eq!(
        (ours.strategy.as_str(), mesh.strategy.as_str()),
        ("ours", "baseline")
    );
    for r in &reports {
        assert_eq!(r.delivery_ratio, 1.0, "{r:?}");
        assert_eq!(r.complete_messages, 1.0, "{r:?}");
        assert_eq!(r.rejected, 0, "{r:?}");
        assert!(
            r.latency_ms_p50 > 0.0 && r.latency_ms_p50 <= r.latency_ms_p99,
            "{r:?}"
        );
    }
    assert!(ours.rmr < 0.5, "{ours:?}");
    assert!(
        ours.rmr < mesh.rmr,
        "ours {} baseline {}",
        ours.rmr,
        mesh.rmr
    );
    // A mesh of degree about 6 sends about D - 2 redundant copies per receiver.
    assert!((3.0..5.5).contains(&mesh.rmr), "{mesh:?}");
    // The warm-up is reported apart and floods while the tree forms.
    assert_eq!(ours.warmup_delivery_ratio, Some(1.0));
    assert!(ours.warmup_rmr.unwrap() > ours.rmr, "{ours:?}");
    assert_eq!((mesh.warmup_messages, mesh.warmup_rmr), (0, None));
}

#[test]
fn after_killing_thirty_percent_the_survivors_still_get_at_least_99_percent() {
    let reports = run_gossip_sim(&GossipSimConfig {
        kill: 0.3,
        ..config(150, 20, 3)
    })
    .unwrap();
    let ours = &reports[0];
    assert_eq!((ours.killed, ours.live_nodes), (45, 105));
    assert!(ours.delivery_ratio >= 0.99, "{ours:?}");
}

#[test]
fn impossible_parameters_are_refused_before_running() {
    let bad = |c: GossipSimConfig| run_gossip_sim(&c).unwrap_err();
    assert_eq!(bad(config(1, 5, 0)), SimError::TooFewNodes(1));
    assert_eq!(bad(config(10, 0, 0)), SimError::NoMessages);
    assert_eq!(
        bad(GossipSimConfig {
            loss: 1.0,
            ..config(10, 5, 0)
        }),
        SimError::LossOutOfRange(1.0)
    );
    assert_eq!(
        bad(GossipSimConfig {
            kill: 0.95,
            ..config(10, 5, 0)
        }),
        SimError::KillOutOfRange(0.95)
    );
    let mut no_neighbours = config(10, 5, 0);
    no_neighbours.broadcast.hyparview.active_view_capacity = 0;
    assert_eq!(bad(no_neighbours), SimError::EmptyActiveView);
}
