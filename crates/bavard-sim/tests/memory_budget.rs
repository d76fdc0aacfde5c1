//! The memory budget of a simulated node: fails when the state per node of the lookup experiment
//! grows by more than 20% over the figure committed in `baseline/bytes_per_node.json`.
//!
//! The figure is `state_bytes_per_node` (see [`StrategyReport`]): computed from the nodes' structs
//! and the capacities of what they own, so it is the same on every machine and in debug and
//! release builds, unlike the resident set. When a change makes nodes larger on purpose, or
//! smaller, update the file in the same commit (the failure message gives the new figure).

use bavard_sim::{LookupSimConfig, StrategyReport, run_lookup_sim};

/// How much the figure may grow before the check fails.
const TOLERANCE: f64 = 1.2;

fn baseline(name: &str) -> u64 {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/baseline/bytes_per_node.json");
    let text = std::fs::read_to_string(path).expect("the committed baseline");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the baseline is JSON");
    json[name]["state_bytes_per_node"]
        .as_u64()
        .unwrap_or_else(|| panic!("{path} has no {name}.state_bytes_per_node"))
}

fn run(nodes: u32) -> StrategyReport {
    let config = LookupSimConfig {
        nodes,
        lookups: 10,
        seed: 7,
        fast_join: true,
        ..LookupSimConfig::default()
    };
    run_lookup_sim(&config).unwrap().remove(0)
}

#[test]
fn a_lookup_node_stays_within_its_committed_memory_budget() {
    let report = run(20_000);
    let budget = baseline("lookup_fast_join_20000");
    let got = report.state_bytes_per_node;
    assert!(
        got as f64 <= budget as f64 * TOLERANCE,
        "a simulated lookup node takes {got} B, more than 120% of the committed {budget} B \
         (crates/bavard-sim/baseline/bytes_per_node.json; update it if the growth is intended)"
    );
    // A figure that fell far below the baseline is a stale baseline: the check would let the
    // next regression through.
    assert!(
        got as f64 >= budget as f64 / 2.0,
        "a simulated lookup node takes {got} B, less than half the committed {budget} B: \
         lower crates/bavard-sim/baseline/bytes_per_node.json to {got}"
    );
    // The figure counts what the tables hold: about (log2(N / k) + 1) full buckets of 16-byte
    // entries, and no slack once built.
    assert!(report.table_entries_mean > 200.0, "{report:?}");
    assert!(got as f64 >= report.table_entries_mean * 16.0, "{report:?}");
}

#[test]
fn the_state_per_node_is_the_same_in_every_run() {
    assert_eq!(
        run(2_000).state_bytes_per_node,
        run(2_000).state_bytes_per_node
    );
}
