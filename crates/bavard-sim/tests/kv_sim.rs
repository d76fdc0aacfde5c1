//! The replicated-store experiment at small sizes: runs without faults and with partitions,
//! crashes and skew are valid and converge; deliberately broken nodes show that the checker
//! catches what each breaks (lost writes, stale reads, phantom reads); runs replay from their
//! seed.

use std::time::Duration;

use bavard_sim::kv::Broken;
use bavard_sim::{KvReport, KvSimConfig, SimError, run_kv_sim};
use bavard_tests::counter::Tristate;

fn small(seed: u64) -> KvSimConfig {
    KvSimConfig {
        nodes: 20,
        clients: 4,
        ops: 1_500,
        keys: 100,
        seed,
        ..KvSimConfig::default()
    }
}

fn run(config: &KvSimConfig) -> KvReport {
    run_kv_sim(config).expect("a valid configuration")
}

#[test]
fn a_fault_free_run_is_valid_and_every_operation_succeeds() {
    let r = run(&small(1));
    assert!(r.is_valid(), "{r:#?}");
    assert_eq!((r.ops, r.ops_ok), (1_500, 1_500));
    assert!(r.puts_ok.quorum > 0 && r.deletes_ok.all > 0 && r.gets_ok.one > 0);
    assert_eq!(r.hints_handed, 0, "nobody failed to answer");
}

#[test]
fn a_run_with_partitions_crashes_and_skew_is_valid_and_converges() {
    let config = KvSimConfig {
        nodes: 30,
        clients: 6,
        ops: 3_000,
        partitions: 1,
        kills: 2,
        skew: Duration::from_millis(200),
        ..small(2)
    };
    let r = run(&config);
    assert!(r.is_valid(), "{r:#?}");
    assert_eq!((r.partitions_run, r.kills_run, r.faults_skipped), (1, 2, 0));
    assert!(
        r.ops_fail + r.ops_unknown > 0,
        "the faults cost some operations"
    );
    assert!(r.hints_handed > 0 && r.hints_delivered > 0, "{r:#?}");
    assert_eq!(r.hints_left, 0);
    assert_eq!(
        r.clock_refusals, 0,
        "200 ms of skew stays within the 500 ms drift bound"
    );
}

#[test]
fn a_replica_that_acknowledges_before_storing_loses_writes_when_it_crashes() {
    // One replica per key, so that a write is only where its replica put it; the crashes are
    // shorter than failure detection, so the placement never moves.
    let config = KvSimConfig {
        replication: 1,
        kills: 3,
        down_for: Duration::from_secs(3),
        ..small(3)
    };
    let honest = run(&config);
    assert_eq!(honest.lost_writes, 0, "{honest:#?}");
    let broken = run(&KvSimConfig {
        broken: Broken {
            ack_before_store: Some(Duration::from_secs(5)),
            ..Broken::default()
        },
        ..config
    });
    assert!(broken.lost_writes > 0, "{broken:#?}");
}

#[test]
fn a_coordinator_reading_one_replica_while_claiming_quorum_returns_stale_reads() {
    let config = KvSimConfig {
        nodes: 30,
        clients: 6,
        ops: 3_000,
        partitions: 1,
        kills: 2,
        ..small(4)
    };
    let broken = run(&KvSimConfig {
        broken: Broken {
            read_one_replica: true,
            ..Broken::default()
        },
        ..config.clone()
    });
    assert!(broken.stale_reads > 0, "{broken:#?}");
    assert_eq!(run(&config).stale_reads, 0);
}

#[test]
fn a_replica_that_invents_values_makes_phantom_reads() {
    let r = run(&KvSimConfig {
        broken: Broken {
            liar: Some(0),
            ..Broken::default()
        },
        ..small(5)
    });
    assert!(r.phantom_reads > 0, "{r:#?}");
    assert!(!r.is_valid());
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let config = KvSimConfig {
        partitions: 1,
        kills: 1,
        skew: Duration::from_millis(100),
        ..small(6)
    };
    let strip = |mut r: KvReport| {
        r.wall_s = 0.0;
        r.peak_rss_mb = 0;
        r.bytes_per_node = 0;
        r
    };
    assert_eq!(strip(run(&config)), strip(run(&config)));
}

#[test]
fn a_run_without_clients_or_with_more_replicas_than_nodes_is_refused() {
    let no_clients = KvSimConfig {
        clients: 0,
        ..small(1)
    };
    assert_eq!(run_kv_sim(&no_clients), Err(SimError::NoClients));
    let too_many = KvSimConfig {
        replication: 21,
        ..small(1)
    };
    assert!(matches!(
        run_kv_sim(&too_many),
        Err(SimError::BadReplication { n: 21, nodes: 20 })
    ));
}

fn small_cas(seed: u64) -> KvSimConfig {
    KvSimConfig {
        nodes: 20,
        clients: 6,
        ops: 1_200,
        keys: 3,
        partitions: 1,
        kills: 2,
        skew: Duration::from_millis(200),
        cas: true,
        seed,
        ..KvSimConfig::default()
    }
}

#[test]
fn cas_increments_under_partitions_crashes_and_skew_are_linearizable_and_none_is_lost() {
    let r = run(&small_cas(7));
    assert!(r.is_valid(), "{r:#?}");
    let cas = r
        .cas
        .as_ref()
        .expect("a compare-and-set run reports its figures");
    assert_eq!(cas.linearizable, Tristate::Yes, "{r:#?}");
    assert!(cas.cas_ok > 50, "{cas:#?}");
    assert!(
        cas.cas_condition_failed > 0,
        "hot keys make clients contend: {cas:#?}"
    );
    assert_eq!((cas.lost_increments, cas.phantom_increments), (0, 0));
    assert!(
        cas.final_counter >= cas.acknowledged_increments
            && cas.final_counter <= cas.acknowledged_increments + cas.cas_unknown,
        "{cas:#?}"
    );
    assert_eq!(
        cas.round_trips_per_cas_p50, 2.0,
        "prepare-and-read, then propose"
    );
    assert_eq!(cas.round_trips_per_serial_read_p50, 1.0);
}

#[test]
fn cas_rounds_on_quorums_that_do_not_intersect_are_caught_by_the_checker() {
    let config = KvSimConfig {
        partitions: 0,
        kills: 0,
        ..small_cas(8)
    };
    let broken = run(&KvSimConfig {
        broken: Broken {
            disjoint_cas_quorums: true,
            ..Broken::default()
        },
        ..config.clone()
    });
    let cas = broken.cas.as_ref().expect("cas figures");
    assert_eq!(cas.linearizable, Tristate::No, "{broken:#?}");
    assert!(!broken.is_valid());
    assert!(
        broken
            .examples
            .iter()
            .any(|e| e.contains("not linearizable")),
        "{:?}",
        broken.examples
    );
    let sound = run(&config);
    assert_eq!(sound.cas.expect("cas figures").linearizable, Tristate::Yes);
}
