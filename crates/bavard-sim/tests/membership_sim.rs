//! Whole-cluster properties of the membership experiment, on small clusters (debug builds run
//! these).

use std::time::Duration;

use bavard_sim::{MembershipReport, MembershipSimConfig, SimError, Start, run_membership_sim};

fn config(nodes: u32, kill: u32, seed: u64) -> MembershipSimConfig {
    MembershipSimConfig {
        nodes,
        kill,
        seed,
        steady: Duration::from_secs(10),
        ..MembershipSimConfig::default()
    }
}

fn without_wall_time(r: &MembershipReport) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap();
    // Wall time and the resident set vary from run to run; nothing else may.
    for key in ["wall_s", "peak_rss_mb", "bytes_per_node"] {
        v.as_object_mut().unwrap().remove(key);
    }
    v
}

#[test]
fn the_same_seed_replays_the_same_report_except_wall_time() {
    let cfg = MembershipSimConfig {
        loss: 0.05,
        ..config(40, 3, 9)
    };
    let a = run_membership_sim(&cfg).unwrap();
    let b = run_membership_sim(&cfg).unwrap();
    assert_eq!(without_wall_time(&a), without_wall_time(&b));
    let json = without_wall_time(&a);
    for key in [
        "nodes",
        "killed",
        "detect_s_p50",
        "detect_s_p99",
        "false_positives",
        "msgs_per_member_s",
        "bytes_per_member_s",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    let c = run_membership_sim(&MembershipSimConfig { seed: 10, ..cfg }).unwrap();
    assert_ne!(without_wall_time(&a), without_wall_time(&c));
}

#[test]
fn without_loss_every_crash_is_detected_everywhere_and_nobody_live_is_declared_dead() {
    let r = run_membership_sim(&config(100, 5, 7)).unwrap();
    assert!(r.converged, "{r:?}");
    assert_eq!(r.killed, 5);
    assert_eq!(r.undetected, 0, "{r:?}");
    assert_eq!(r.false_positives, 0, "{r:?}");
    assert_eq!(r.false_positive_events, 0, "{r:?}");
    assert_eq!(r.rejected, 0, "{r:?}");
    // Suspicion lasts at least suspicion_mult · log10(N) · probe_interval = 8 s here, and the
    // LAN profile keeps the whole detection well under a minute.
    assert!(r.first_detect_s_p50 >= 8.0, "{r:?}");
    assert!(r.detect_s_p99 <= 30.0, "{r:?}");
    assert!(r.detect_s_p50 <= r.detect_s_p99 && r.detect_s_p99 <= r.detect_s_max);
    // A probe, its ack and a few gossip messages per second: a handful of messages each.
    assert!((1.0..20.0).contains(&r.msgs_per_member_s), "{r:?}");
    assert!(
        r.bytes_per_member_s > 100.0 * r.msgs_per_member_s.min(1.0),
        "{r:?}"
    );
}

#[test]
fn a_converged_start_detects_every_crash_without_false_positives_and_replays_per_seed() {
    let cfg = MembershipSimConfig {
        start: Start::Converged,
        loss: 0.1,
        ..config(200, 10, 7)
    };
    let r = run_membership_sim(&cfg).unwrap();
    // Every view holds every member from the start: converged at the first check.
    assert!(r.converged && r.converge_s <= 1.0, "{r:?}");
    assert_eq!(r.start, Start::Converged);
    assert_eq!(r.killed, 10);
    assert_eq!(r.undetected, 0, "{r:?}");
    assert_eq!(r.false_positives, 0, "{r:?}");
    assert_eq!(r.rejected, 0, "{r:?}");
    // At least the minimum suspicion timeout, 4 · log10(200) s ≈ 9.2 s; well under a minute.
    assert!(r.first_detect_s_p50 >= 9.0, "{r:?}");
    assert!(r.detect_s_p99 <= 30.0, "{r:?}");
    let again = run_membership_sim(&cfg).unwrap();
    assert_eq!(without_wall_time(&r), without_wall_time(&again));
    let other = run_membership_sim(&MembershipSimConfig { seed: 8, ..cfg }).unwrap();
    assert_ne!(without_wall_time(&r), without_wall_time(&other));
}

#[test]
fn the_cli_default_joins_up_to_a_thousand_members_and_starts_converged_above() {
    assert_eq!(Start::for_nodes(1_000), Start::Join);
    assert_eq!(Start::for_nodes(1_001), Start::Converged);
    assert_eq!(MembershipSimConfig::default().start, Start::Join);
}

#[test]
fn impossible_parameters_are_refused_before_running() {
    let bad = |c: MembershipSimConfig| run_membership_sim(&c).unwrap_err();
    assert_eq!(bad(config(1, 0, 0)), SimError::TooFewNodes(1));
    assert_eq!(
        bad(config(10, 9, 0)),
        SimError::TooManyKilled {
            killed: 9,
            nodes: 10
        }
    );
    assert_eq!(
        bad(MembershipSimConfig {
            loss: -0.1,
            ..config(10, 1, 0)
        }),
        SimError::LossOutOfRange(-0.1)
    );
}
