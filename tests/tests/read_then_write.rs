//! The conditional write bavard had before issue 16 — read the newest version at a quorum,
//! then write at a quorum if it is the expected one — is a check-then-act, not a
//! compare-and-set: two clients that both read version V can both succeed. The
//! linearizability checker must catch it. (The Paxos path, driven through the same kind of
//! races, is checked in `crates/bavard-replica/tests/paxos.rs`.)

use bavard_tests::linearizable::{self, Budget, Call, RegisterOp, Return};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One replica of one key: `(version, value)` under last-writer-wins.
type Replica = Option<(u64, String)>;

/// Three replicas; every quorum operation reaches two of them, chosen by the caller.
struct Cluster {
    replicas: [Replica; 3],
    next_version: u64,
}

impl Cluster {
    fn new() -> Self {
        Self {
            replicas: [None, None, None],
            next_version: 1,
        }
    }

    fn quorum_read(&self, quorum: [usize; 2]) -> Replica {
        quorum
            .iter()
            .filter_map(|&r| self.replicas[r].clone())
            .max_by_key(|(v, _)| *v)
    }

    fn quorum_write(&mut self, quorum: [usize; 2], value: String) {
        let version = self.next_version;
        self.next_version += 1;
        for r in quorum {
            if self.replicas[r].as_ref().is_none_or(|(v, _)| *v < version) {
                self.replicas[r] = Some((version, value.clone()));
            }
        }
    }
}

fn quorum(rng: &mut ChaCha8Rng) -> [usize; 2] {
    let skip = rng.random_range(0..3);
    let q: Vec<usize> = (0..3).filter(|&r| r != skip).collect();
    [q[0], q[1]]
}

/// Where a client is in its increment.
enum Stage {
    /// About to read the counter.
    Read,
    /// Read it (the value, the version); its CAS is invoked next: the check's read.
    Check { seen: Replica },
    /// The check passed at `invoked`; the write goes next.
    Write {
        seen: Replica,
        new: String,
        invoked: u64,
    },
}

/// Clients increment a counter by read, then "CAS" = quorum check + quorum write, one step at
/// a time in an order the seed picks.
fn run(seed: u64, clients: usize, increments: usize) -> Vec<RegisterOp<String>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cluster = Cluster::new();
    let mut stages: Vec<Stage> = (0..clients).map(|_| Stage::Read).collect();
    let mut left = vec![increments; clients];
    let mut history = Vec::new();
    let mut tick = 0u64;
    let value_of = |r: &Replica| r.as_ref().map(|(_, v)| v.clone());
    while left.iter().any(|&l| l > 0) {
        let c = rng.random_range(0..clients);
        if left[c] == 0 {
            continue;
        }
        tick += 1;
        let q = quorum(&mut rng);
        stages[c] = match std::mem::replace(&mut stages[c], Stage::Read) {
            Stage::Read => {
                let seen = cluster.quorum_read(q);
                history.push(RegisterOp {
                    client: c,
                    key: "counter".into(),
                    call: Call::Read,
                    ret: Return::Read(value_of(&seen)),
                    invoked: tick,
                    completed: tick,
                });
                Stage::Check { seen }
            }
            Stage::Check { seen } => {
                let n = seen.as_ref().map_or(0, |(_, v)| {
                    v.split(':').next().unwrap().parse::<u64>().unwrap()
                });
                let new = format!("{}:{c}:{}", n + 1, left[c]);
                let now = cluster.quorum_read(q);
                if now.as_ref().map(|(v, _)| v) == seen.as_ref().map(|(v, _)| v) {
                    Stage::Write {
                        seen,
                        new,
                        invoked: tick,
                    }
                } else {
                    history.push(RegisterOp {
                        client: c,
                        key: "counter".into(),
                        call: Call::Cas {
                            expected: value_of(&seen),
                            new: Some(new),
                        },
                        ret: Return::Mismatch,
                        invoked: tick,
                        completed: tick,
                    });
                    left[c] -= 1;
                    Stage::Read
                }
            }
            Stage::Write { seen, new, invoked } => {
                cluster.quorum_write(q, new.clone());
                history.push(RegisterOp {
                    client: c,
                    key: "counter".into(),
                    call: Call::Cas {
                        expected: value_of(&seen),
                        new: Some(new),
                    },
                    ret: Return::Ok,
                    invoked,
                    completed: tick,
                });
                left[c] -= 1;
                Stage::Read
            }
        };
    }
    history
}

fn linearizable(history: &[RegisterOp<String>]) -> bool {
    let report = linearizable::check(history, Budget::default()).expect("well-formed history");
    report
        .linearizable()
        .expect("small histories are decided within the budget")
}

#[test]
fn two_clients_that_both_read_version_v_both_succeed_and_the_checker_says_no() {
    // Scripted: both check version V before either writes.
    let mut cluster = Cluster::new();
    cluster.quorum_write([0, 1], "0:init:0".into());
    let seen = cluster.quorum_read([0, 1]);
    let seen_too = cluster.quorum_read([1, 2]);
    assert_eq!(seen, seen_too);
    cluster.quorum_write([0, 1], "1:a:1".into());
    cluster.quorum_write([1, 2], "1:b:1".into());
    let value = |r: &Replica| r.as_ref().map(|(_, v)| v.clone());
    let cas = |client, new: &str, invoked, completed| RegisterOp {
        client,
        key: "counter".into(),
        call: Call::Cas {
            expected: value(&seen),
            new: Some(new.to_string()),
        },
        ret: Return::Ok,
        invoked,
        completed,
    };
    let history = vec![
        RegisterOp {
            client: 9,
            key: "counter".into(),
            call: Call::Write(Some("0:init:0".to_string())),
            ret: Return::Ok,
            invoked: 0,
            completed: 1,
        },
        cas(0, "1:a:1", 2, 5),
        cas(1, "1:b:1", 3, 6),
    ];
    let report = linearizable::check(&history, Budget::default()).unwrap();
    assert_eq!(report.linearizable(), Some(false));
    let (_, c) = report.violations().next().unwrap();
    assert_eq!(
        c.linearized.len(),
        2,
        "the write and one CAS: the other cannot follow"
    );
}

#[test]
fn racing_read_then_write_increments_are_caught_and_every_double_success_is_a_violation() {
    let mut caught = 0;
    for seed in 0..40 {
        let history = run(seed, 3, 4);
        // Two successful CAS from the same expected value: the bug, visible in the history.
        let oks: Vec<&Option<String>> = history
            .iter()
            .filter_map(|o| match (&o.call, &o.ret) {
                (Call::Cas { expected, .. }, Return::Ok) => Some(expected),
                _ => None,
            })
            .collect();
        let double = (0..oks.len()).any(|i| oks[i + 1..].contains(&oks[i]));
        let ok = linearizable(&history);
        if double {
            assert!(!ok, "seed {seed}: a double success passed the checker");
        }
        if !ok {
            caught += 1;
        }
    }
    assert!(
        caught >= 30,
        "the broken CAS should be caught often, was caught in {caught} of 40 runs"
    );
}

#[test]
fn one_client_alone_gives_a_linearizable_history() {
    // The check-then-write is only wrong under concurrency: alone, it is fine, and the checker
    // must not cry wolf.
    for seed in 0..10 {
        assert!(linearizable(&run(seed, 1, 8)), "seed {seed}");
    }
}
