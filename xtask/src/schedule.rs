//! Fault schedules for `cargo xtask scenario`: which fault happens to which node when, drawn
//! from a seeded RNG so that a run replays from its seed. Pure: no clock, no I/O.
//!
//! Safety rule: with a replication factor of 3, a quorum survives one replica down, so the
//! process-fault schedules (`crash`, `churn`, `pause`) never have more than one node down or
//! paused at a time; every fault is undone before the schedule ends. `partition` splits the
//! cluster in two random halves, then heals. `cas` runs one fault at a time too: a hard kill, a
//! pause, a partition, in turn.

use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom as _;

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Stop (SIGTERM) and restart random nodes continuously, one at a time.
    Churn,
    /// Split the cluster in two halves for a while, write on both sides, heal.
    Partition,
    /// `kill -9` random nodes amid writes, restart them, one at a time.
    Crash,
    /// Freeze a node (SIGSTOP) longer than the failure detector's timeout, then resume it.
    Pause,
    /// Kill one node, write many keys, restart it and measure how it catches up (its own
    /// driver, `crate::outage`, not a fault schedule).
    Outage,
    /// A long run of mixed kills, pauses, partitions and a hostile peer's request flood under
    /// client load, reporting memory, descriptors and the victim's responsiveness (its own
    /// driver, `crate::soak`).
    Soak,
    /// Linearizable counters (serial read, then compare-and-set) on a few hot keys while nodes
    /// are killed, paused and partitioned, one fault at a time; judged by the linearizability
    /// checker (its own driver, `crate::cas`).
    Cas,
    /// Issue 15's swarm run: a blob added on one node, fetched by the others through a
    /// killed provider, a corrupting provider and an interrupted fetch (its own driver,
    /// `crate::blob_swarm`).
    Blobs,
}

/// One fault action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Stop node: SIGKILL when `hard`, else SIGTERM (a graceful leave).
    Kill {
        /// The node.
        node: usize,
        /// SIGKILL rather than SIGTERM.
        hard: bool,
    },
    /// Start a stopped node again, with its data directory.
    Restart(usize),
    /// SIGSTOP.
    Pause(usize),
    /// SIGCONT.
    Resume(usize),
    /// Cut every link between the two sets.
    Partition(Vec<usize>, Vec<usize>),
    /// Restore every link.
    Heal,
}

/// An action at a time since the start of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    /// When.
    pub(crate) at: Duration,
    /// What.
    pub(crate) action: Action,
}

/// How long a paused node stays frozen: well beyond the default failure detector's timeout
/// (1 s probes, suspicion 4 · max(1, log10 N) s ≈ 4 s for small clusters).
pub(crate) const PAUSE_FOR: Duration = Duration::from_secs(10);

/// The schedule of scenario `kind` on `nodes` nodes over `duration`. Faults start after 15% of
/// the run and are all undone by 80%, leaving a calm tail in which the workload runs without
/// faults.
pub(crate) fn schedule(
    kind: Kind,
    nodes: usize,
    duration: Duration,
    rng: &mut impl Rng,
) -> Vec<Fault> {
    let ms = |d: Duration| d.as_millis() as u64;
    let start = ms(duration) * 15 / 100;
    let end = ms(duration) * 80 / 100;
    let at = |t: u64| Duration::from_millis(t);
    let mut out = Vec::new();
    if nodes < 2 {
        return out;
    }
    match kind {
        Kind::Partition => {
            let mut order: Vec<usize> = (0..nodes).collect();
            order.shuffle(rng);
            let (a, b) = order.split_at(nodes / 2);
            let (mut a, mut b) = (a.to_vec(), b.to_vec());
            a.sort_unstable();
            b.sort_unstable();
            out.push(Fault {
                at: at(start),
                action: Action::Partition(a, b),
            });
            out.push(Fault {
                at: at(end),
                action: Action::Heal,
            });
        }
        Kind::Crash | Kind::Churn => {
            // (down for, up for) ranges in ms: crashes are rarer and give the node time to catch
            // up; churn never lets the cluster settle.
            let (down, up) = if kind == Kind::Crash {
                (2_000..4_000, 4_000..7_000)
            } else {
                (1_000..3_000, 500..2_000)
            };
            let mut t = start;
            loop {
                let back = t + rng.random_range(down.clone());
                if back > end {
                    break;
                }
                let node = rng.random_range(0..nodes);
                out.push(Fault {
                    at: at(t),
                    action: Action::Kill {
                        node,
                        hard: kind == Kind::Crash,
                    },
                });
                out.push(Fault {
                    at: at(back),
                    action: Action::Restart(node),
                });
                t = back + rng.random_range(up.clone());
            }
        }
        Kind::Pause => {
            let mut t = start;
            while t + ms(PAUSE_FOR) <= end {
                let node = rng.random_range(0..nodes);
                out.push(Fault {
                    at: at(t),
                    action: Action::Pause(node),
                });
                t += ms(PAUSE_FOR);
                out.push(Fault {
                    at: at(t),
                    action: Action::Resume(node),
                });
                t += rng.random_range(3_000..6_000);
            }
        }
        // The outage run kills and restarts its node itself.
        Kind::Outage | Kind::Soak | Kind::Blobs => {}
        Kind::Cas => {
            // One fault at a time, each kind in turn from a random start: a hard kill, a pause
            // past the failure detector, a partition into halves; then a few calm seconds.
            let mut t = start;
            let mut kind = rng.random_range(0..3u32);
            loop {
                let (hold, action, undo) = match kind % 3 {
                    0 => {
                        let node = rng.random_range(0..nodes);
                        (
                            rng.random_range(2_000..5_000),
                            Action::Kill { node, hard: true },
                            Action::Restart(node),
                        )
                    }
                    1 => {
                        let node = rng.random_range(0..nodes);
                        (
                            ms(PAUSE_FOR) / 2 + rng.random_range(0..2_000),
                            Action::Pause(node),
                            Action::Resume(node),
                        )
                    }
                    _ => {
                        let mut order: Vec<usize> = (0..nodes).collect();
                        order.shuffle(rng);
                        let (a, b) = order.split_at(nodes / 2);
                        let (mut a, mut b) = (a.to_vec(), b.to_vec());
                        a.sort_unstable();
                        b.sort_unstable();
                        (
                            rng.random_range(3_000..6_000),
                            Action::Partition(a, b),
                            Action::Heal,
                        )
                    }
                };
                if t + hold > end {
                    break;
                }
                out.push(Fault { at: at(t), action });
                out.push(Fault {
                    at: at(t + hold),
                    action: undo,
                });
                t += hold + rng.random_range(2_000..4_000);
                kind += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn sched(kind: Kind, nodes: usize, secs: u64, seed: u64) -> Vec<Fault> {
        schedule(
            kind,
            nodes,
            Duration::from_secs(secs),
            &mut ChaCha8Rng::seed_from_u64(seed),
        )
    }

    /// Replays a schedule and returns the most nodes ever down or paused at once, checking that
    /// every fault is undone by the end.
    fn max_down(faults: &[Fault], nodes: usize) -> usize {
        let mut down = vec![false; nodes];
        let mut most = 0;
        for f in faults {
            match &f.action {
                Action::Kill { node, .. } | Action::Pause(node) => {
                    assert!(!down[*node], "node {node} faulted twice");
                    down[*node] = true;
                }
                Action::Restart(node) | Action::Resume(node) => {
                    assert!(down[*node], "node {node} restored while up");
                    down[*node] = false;
                }
                Action::Partition(..) | Action::Heal => {}
            }
            most = most.max(down.iter().filter(|d| **d).count());
        }
        assert!(down.iter().all(|d| !d), "a fault is never undone");
        most
    }

    #[test]
    fn process_faults_take_down_at_most_one_node_at_a_time_and_are_all_undone() {
        for seed in 0..50 {
            for kind in [Kind::Crash, Kind::Churn, Kind::Pause, Kind::Cas] {
                let faults = sched(kind, 5, 60, seed);
                assert!(!faults.is_empty(), "{kind:?} seed {seed} has no fault");
                assert_eq!(max_down(&faults, 5), 1, "{kind:?} seed {seed}");
            }
        }
    }

    #[test]
    fn the_cas_schedule_kills_pauses_and_partitions_one_at_a_time() {
        let faults = sched(Kind::Cas, 5, 60, 1);
        let has = |f: fn(&Action) -> bool| faults.iter().any(|x| f(&x.action));
        assert!(has(|a| matches!(a, Action::Kill { hard: true, .. })));
        assert!(has(|a| matches!(a, Action::Pause(_))));
        assert!(has(|a| matches!(a, Action::Partition(..))));
        // Every fault is undone before the next one starts.
        for pair in faults.chunks(2) {
            let undone = matches!(
                (&pair[0].action, &pair[1].action),
                (Action::Kill { node: a, .. }, Action::Restart(b)) | (Action::Pause(a), Action::Resume(b))
                    if a == b
            ) || matches!(
                (&pair[0].action, &pair[1].action),
                (Action::Partition(..), Action::Heal)
            );
            assert!(undone, "{pair:?}");
        }
    }

    #[test]
    fn faults_are_in_time_order_within_the_fault_window() {
        for kind in [
            Kind::Crash,
            Kind::Churn,
            Kind::Pause,
            Kind::Partition,
            Kind::Cas,
        ] {
            let faults = sched(kind, 5, 60, 7);
            assert!(faults.windows(2).all(|w| w[0].at <= w[1].at), "{kind:?}");
            assert!(faults.iter().all(|f| f.at >= Duration::from_secs(9)));
            assert!(faults.iter().all(|f| f.at <= Duration::from_secs(48)));
        }
    }

    #[test]
    fn crash_kills_hard_and_churn_stops_gracefully() {
        let hard = |faults: &[Fault]| {
            faults.iter().find_map(|f| match f.action {
                Action::Kill { hard, .. } => Some(hard),
                _ => None,
            })
        };
        assert_eq!(hard(&sched(Kind::Crash, 5, 60, 1)), Some(true));
        assert_eq!(hard(&sched(Kind::Churn, 5, 60, 1)), Some(false));
    }

    #[test]
    fn a_pause_outlasts_the_failure_detector() {
        let faults = sched(Kind::Pause, 5, 45, 3);
        assert!(faults.len() >= 2);
        assert_eq!(faults[1].at - faults[0].at, PAUSE_FOR);
        assert!(PAUSE_FOR > Duration::from_secs(5));
    }

    #[test]
    fn a_partition_splits_every_node_into_two_halves_then_heals() {
        let faults = sched(Kind::Partition, 5, 60, 11);
        let [
            Fault {
                action: Action::Partition(a, b),
                ..
            },
            Fault {
                action: Action::Heal,
                ..
            },
        ] = faults.as_slice()
        else {
            panic!("unexpected schedule {faults:?}");
        };
        assert_eq!((a.len(), b.len()), (2, 3));
        let mut all: Vec<usize> = a.iter().chain(b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        assert_eq!(sched(Kind::Crash, 5, 60, 42), sched(Kind::Crash, 5, 60, 42));
        assert_ne!(sched(Kind::Crash, 5, 60, 42), sched(Kind::Crash, 5, 60, 43));
    }

    #[test]
    fn a_single_node_or_a_too_short_run_gets_no_faults() {
        assert!(sched(Kind::Crash, 1, 60, 1).is_empty());
        assert!(sched(Kind::Pause, 5, 5, 1).is_empty());
    }
}
