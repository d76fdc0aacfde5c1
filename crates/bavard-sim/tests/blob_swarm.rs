//! The swarm experiment on small runs: every leecher completes, swarming beats one provider at a
//! time, upload is spread, a departing seeder does not stop the swarm, and a seed replays.

use std::time::Duration;

use bavard_sim::{BlobsReport, BlobsSimConfig, run_blobs_sim};

/// 1 seeder, 20 leechers on 60 nodes, a 4 MiB blob (256 blocks), 100 Mbit/s links, all at
/// once.
fn small() -> BlobsSimConfig {
    BlobsSimConfig {
        nodes: 60,
        seeders: 1,
        leechers: 20,
        size: 4 << 20,
        seed: 3,
        // Lookups every second: the blob takes seconds here, not the minutes of the node's 10 s.
        refresh: Duration::from_secs(1),
        ..BlobsSimConfig::default()
    }
}

fn run(config: &BlobsSimConfig) -> Vec<BlobsReport> {
    run_blobs_sim(config).expect("valid parameters")
}

#[test]
fn every_leecher_completes_in_both_strategies() {
    let reports = run(&BlobsSimConfig {
        baseline: true,
        ..small()
    });
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert_eq!(r.completed, 20, "{}", r.strategy);
        assert!(r.completion_s_max >= r.ideal_s * 0.99, "{r:?}");
        assert!(r.blocks_requested_per_block >= 1.0, "{r:?}");
    }
}

#[test]
fn swarming_beats_one_provider_at_a_time_when_leechers_serve_each_other() {
    let reports = run(&BlobsSimConfig {
        baseline: true,
        announce_partial: true,
        ..small()
    });
    let (swarm, baseline) = (&reports[0], &reports[1]);
    assert!(
        swarm.completion_s_p50 * 1.5 < baseline.completion_s_p50,
        "swarm {} s, baseline {} s",
        swarm.completion_s_p50,
        baseline.completion_s_p50
    );
    assert!(swarm.providers_used_mean > 2.0, "{swarm:?}");
}

#[test]
fn swarming_beats_one_provider_at_a_time_when_leechers_arrive_over_time() {
    // Only complete nodes are found (`--announce-complete`): early arrivals become providers.
    let reports = run(&BlobsSimConfig {
        announce_partial: false,
        baseline: true,
        arrival: Duration::from_secs(30),
        ..small()
    });
    let (swarm, baseline) = (&reports[0], &reports[1]);
    assert_eq!((swarm.completed, baseline.completed), (20, 20));
    assert!(
        swarm.completion_s_p50 < baseline.completion_s_p50,
        "swarm {} s, baseline {} s",
        swarm.completion_s_p50,
        baseline.completion_s_p50
    );
}

#[test]
fn upload_is_spread_over_the_leechers_in_a_swarm() {
    let swarm = &run(&BlobsSimConfig {
        announce_partial: true,
        ..small()
    })[0];
    assert!(swarm.seeder_share < 0.5, "{swarm:?}");
    assert!(swarm.uploaders >= 15, "{swarm:?}");
    assert!(swarm.upload_gini < 0.5, "{swarm:?}");
}

#[test]
fn a_seeder_departing_mid_transfer_does_not_stop_the_swarm() {
    // Leechers serve each other from their first blocks (the default), so the swarm is done
    // in about a second: the seeders leave at 0.5 s, mid-transfer.
    let config = BlobsSimConfig {
        seeders: 3,
        depart: 2,
        depart_at: Duration::from_millis(500),
        ..small()
    };
    let r = &run(&config)[0];
    assert_eq!(r.departed, 2, "{r:?}");
    assert_eq!(r.completed, 20, "{r:?}");
    // They went mid-transfer: the run lasted beyond their departure, and what they had in
    // flight was asked again of the seeder left or of other leechers (endgame), or dropped at
    // the stall timeout.
    assert!(r.sim_s > 0.5, "{r:?}");
}

#[test]
fn the_same_seed_gives_the_same_figures() {
    let config = BlobsSimConfig {
        baseline: true,
        announce_partial: true,
        capacity_spread: 0.5,
        ..small()
    };
    let strip = |mut rs: Vec<BlobsReport>| {
        for r in &mut rs {
            (r.wall_s, r.peak_rss_mb, r.bytes_per_node) = (0.0, 0, 0);
        }
        serde_json::to_string(&rs).expect("serialises")
    };
    assert_eq!(strip(run(&config)), strip(run(&config)));
}

#[test]
fn bad_parameters_are_refused() {
    let bad = [
        BlobsSimConfig {
            seeders: 0,
            ..small()
        },
        BlobsSimConfig {
            leechers: 60,
            ..small()
        },
        BlobsSimConfig { size: 0, ..small() },
        BlobsSimConfig {
            depart: 1,
            ..small()
        },
        BlobsSimConfig {
            capacity_spread: 1.0,
            ..small()
        },
    ];
    for config in bad {
        assert!(run_blobs_sim(&config).is_err(), "{config:?}");
    }
}
