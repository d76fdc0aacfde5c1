//! `cargo xtask scenario cas`: linearizable counters on real processes under faults.
//!
//! 1. Starts a cluster (loopback, or one network namespace per node with `--netns`) with the
//!    scenario node settings.
//! 2. `--clients` clients (default 4) increment counters on `--keys` hot keys (default 3) for
//!    `--duration` seconds, each through random nodes: a serial read
//!    (`GET /v1/kv/{k}?consistency=serial`), then a compare-and-set of the value read plus one
//!    (`PUT /v1/kv/{k}?if_version=V`, or `?if_absent` when absent). Every operation is
//!    recorded with its invocation and completion times. Meanwhile the fault schedule
//!    ([`crate::schedule`], kind `cas`) kills (`-9`), pauses and partitions nodes, one at a
//!    time.
//! 3. Undoes every fault, waits for the membership to agree, and reads every hot key once more,
//!    serially (the final counters, also part of the history).
//! 4. Judges the history: the linearizability checker ([`bavard_tests::linearizable`]) and the
//!    counters against the acknowledged increments ([`bavard_tests::counter`]).
//! 5. Saves the history (`DIR/cas-history.jsonl`), prints the report (one JSON object with
//!    `--json`: `linearizable` true / false / "unknown", `cas_ok`, `cas_failed`,
//!    `cas_unknown`, `round_trips_per_cas_p50`, `final_counter`, `acknowledged_increments`,
//!    …), tears the cluster down and exits non-zero on a violation, a lost or invented
//!    increment, or a counter that could not be read.
//!
//! How a reply is classified (the checker relies on it): a read answered 200 or 404 observed
//! a value; any other read observed nothing and is left out. A CAS answered 200 took effect
//! (`ok`); 409 did not (`mismatch`: the condition failed); 503 with `"outcome": "not_applied"`
//! did not (`fail`), nor did a request that could not be sent to any node; anything else — 503
//! `"outcome": "unknown"`, another error, a timeout, a dropped connection — may have
//! (`unknown`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use bavard_tests::counter::{CounterVerdict, Tristate, check_counters};
use bavard_tests::linearizable::{self, Budget, Call as Invoked, RegisterOp, Return};
use rand::Rng as _;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::cluster::ClusterState;
use crate::runs::quantile;
use crate::scenario::{apply, restore_all, save_history, sleep_until, wait_membership};
use crate::schedule::{self, Fault, Kind};
use crate::workload::{Call, Shared, call_any_node};

/// The settings of one run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) nodes: usize,
    pub(crate) duration: Duration,
    pub(crate) seed: Option<u64>,
    pub(crate) clients: usize,
    pub(crate) keys: usize,
    pub(crate) netns: bool,
    pub(crate) json: bool,
    pub(crate) bin: Option<PathBuf>,
    pub(crate) dir: PathBuf,
    pub(crate) converge_timeout: Duration,
}

/// The client's request timeout: above the node's 5 s request deadline (the scenario
/// settings), so that a slow operation ends in the node's own answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(8);

/// The checker's budget per key: steps (deterministic) and a wall-clock bound.
const CHECK_BUDGET: Budget = Budget {
    max_steps: 50_000_000,
    max_time: Some(Duration::from_secs(120)),
};

/// What a run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    scenario: &'static str,
    nodes: usize,
    duration_s: u64,
    seed: u64,
    netns: bool,
    clients: usize,
    keys: usize,
    faults: Vec<String>,
    /// The checker's verdict: true, false or "unknown" (budget exhausted).
    linearizable: Tristate,
    /// Compare-and-sets that took effect (acknowledged increments).
    cas_ok: usize,
    /// Compare-and-sets known not to have: failed conditions and `not_applied`.
    cas_failed: usize,
    /// Of them, failed conditions (409).
    cas_condition_failed: usize,
    /// Compare-and-sets whose outcome is unknown.
    cas_unknown: usize,
    serial_reads_ok: usize,
    serial_reads_failed: usize,
    /// Round trips of a committed compare-and-set, as the node reports them.
    round_trips_per_cas_p50: f64,
    round_trips_per_cas_p99: f64,
    /// Latency of a committed compare-and-set.
    cas_latency_p50_ms: f64,
    cas_latency_p99_ms: f64,
    /// Latency of a serial read.
    serial_read_p50_ms: f64,
    /// Final counters, and their judgement against the acknowledged increments.
    #[serde(flatten)]
    counters: CounterVerdict,
    /// Each hot key's final value (`null`: could not be read).
    finals: BTreeMap<String, Option<u64>>,
    /// Seconds from the end of the workload until the membership agreed.
    membership_convergence_s: Option<f64>,
    problems: Vec<String>,
    history: PathBuf,
}

impl Report {
    fn passed(&self) -> bool {
        self.linearizable != Tristate::No
            && self.counters.is_ok()
            && self.finals.values().all(Option::is_some)
    }
}

/// What the clients record.
#[derive(Default)]
struct Records {
    history: Vec<RegisterOp<u64>>,
    round_trips: Vec<f64>,
    cas_latency: Vec<f64>,
    read_latency: Vec<f64>,
    reads_failed: usize,
}

/// Runs the scenario.
pub(crate) fn run(s: &Settings) -> anyhow::Result<()> {
    if s.nodes < 3 {
        bail!("--nodes must be at least 3 (a key has 3 replicas)");
    }
    if s.clients == 0 || s.keys == 0 {
        bail!("--clients and --keys must be at least 1");
    }
    let seed = s.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let faults = schedule::schedule(
        Kind::Cas,
        s.nodes,
        s.duration,
        &mut ChaCha8Rng::seed_from_u64(seed),
    );
    let (_teardown, state) =
        crate::runs::start_scenario_cluster(&s.dir, s.nodes, s.bin.clone(), s.netns)?;
    let report = drive(s, state, &faults, seed)?;
    if s.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", human(&report));
    }
    if !report.passed() {
        bail!(
            "scenario cas failed: linearizable {:?}, lost increments {}, phantom increments {}, \
             finals {:?} (history in {})",
            report.linearizable,
            report.counters.lost_increments,
            report.counters.phantom_increments,
            report.finals,
            report.history.display()
        );
    }
    Ok(())
}

fn drive(
    s: &Settings,
    mut state: ClusterState,
    faults: &[Fault],
    seed: u64,
) -> anyhow::Result<Report> {
    let apis = state.nodes.iter().map(|n| n.api.clone()).collect();
    let shared = Shared::new(apis, 0, CLIENT_TIMEOUT);
    let records = Mutex::new(Records::default());
    let mut fault_log = Vec::new();
    std::thread::scope(|scope| {
        struct StopOnDrop<'a>(&'a Shared);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.stop.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&shared);
        let start = Instant::now();
        for id in 0..s.clients {
            let (shared, records) = (&shared, &records);
            scope.spawn(move || client(shared, records, id, seed, s.keys));
        }
        for f in faults {
            sleep_until(start + f.at);
            let what = apply(&s.dir, &mut state, &f.action, &shared);
            let line = format!("{:>6.1}s {}", start.elapsed().as_secs_f64(), what);
            if !s.json {
                eprintln!("fault {line}");
            }
            fault_log.push(line);
        }
        sleep_until(start + s.duration);
        shared.stop.store(true, Ordering::Relaxed);
    });
    let stopped = Instant::now();
    restore_all(&s.dir, &mut state, &mut fault_log);
    let membership_s = wait_membership(&state, stopped, stopped + s.converge_timeout);
    for (i, n) in state.nodes.iter().enumerate() {
        shared.apis.write().expect("lock")[i] = n.api.clone();
    }
    let mut records = records.into_inner().expect("lock");
    // The final counters: serial reads, retried until one answers or the timeout.
    let mut finals = BTreeMap::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6669_6e61);
    let deadline = Instant::now() + s.converge_timeout;
    for k in 0..s.keys {
        let key = key(k);
        let value = loop {
            let (op, value) = serial_read(&shared, &mut rng, &key, usize::MAX);
            if let Some(op) = op {
                records.history.push(op);
                break value;
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        // Absent is a counter at 0; `None`: never answered.
        finals.insert(key, value.map(|v| v.unwrap_or(0)));
    }
    let history_path = s.dir.join("cas-history.jsonl");
    save_history(&history_path, &records.history)?;
    Ok(report(
        s,
        seed,
        fault_log,
        &records,
        finals,
        membership_s,
        history_path,
    ))
}

/// The hot key of index `k`.
fn key(k: usize) -> String {
    format!("counter-{k}")
}

/// One serial read of `key` through a random node: the history entry (`None` when the read
/// observed nothing) and the value read (`None` inside: absent).
fn serial_read(
    shared: &Shared,
    rng: &mut ChaCha8Rng,
    key: &str,
    client: usize,
) -> (Option<RegisterOp<u64>>, Option<Option<u64>>) {
    let (op, seen) = serial_read_versioned(shared, rng, key, client);
    (op, seen.map(|s| s.map(|(v, _)| v)))
}

/// What a serial read saw: `None` when it observed nothing (it failed), `Some(None)` when the
/// key is absent, else the counter's value and version.
type Seen = Option<Option<(u64, String)>>;

/// A serial read returning the value and its version.
fn serial_read_versioned(
    shared: &Shared,
    rng: &mut ChaCha8Rng,
    key: &str,
    client: usize,
) -> (Option<RegisterOp<u64>>, Seen) {
    let path = format!("/v1/kv/{key}?consistency=serial");
    let invoked = shared.ms();
    let (reply, _) = call_any_node(shared, rng, "GET", &path, &[]);
    let completed = shared.ms();
    let seen = match reply {
        Call::Reply(200, Some(version), body) => {
            let value = String::from_utf8_lossy(&body).parse::<u64>().ok();
            // Not a counter (`None`): nothing this scenario wrote.
            value.map(|v| Some((v, version)))
        }
        Call::Reply(404, ..) => Some(None),
        _ => None,
    };
    let op = seen.as_ref().map(|seen| RegisterOp {
        client,
        key: key.to_string(),
        call: Invoked::Read,
        ret: Return::Read(seen.as_ref().map(|(v, _)| *v)),
        invoked,
        completed,
    });
    (op, seen)
}

/// A CAS reply's outcome for the checker, and the round trips of a committed one.
fn classify_cas(reply: &Call) -> (Return<u64>, Option<f64>) {
    match reply {
        Call::Reply(200, _, body) => {
            let rt = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["round_trips"].as_f64());
            (Return::Ok, rt)
        }
        Call::Reply(409, ..) => (Return::Mismatch, None),
        Call::Reply(503, _, body) => {
            let outcome = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["outcome"].as_str().map(str::to_string));
            match outcome.as_deref() {
                Some("not_applied") => (Return::Fail, None),
                _ => (Return::Unknown, None),
            }
        }
        Call::NotSent => (Return::Fail, None),
        Call::Reply(..) | Call::Unknown => (Return::Unknown, None),
    }
}

/// One client: serial read, then CAS of the value plus one, on random hot keys until stopped.
fn client(shared: &Shared, records: &Mutex<Records>, id: usize, seed: u64, keys: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9E37_79B9));
    while !shared.stopped() {
        let k = key(rng.random_range(0..keys));
        let (op, seen) = serial_read_versioned(shared, &mut rng, &k, id);
        let Some(seen) = seen else {
            records.lock().expect("lock").reads_failed += 1;
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if let Some(op) = op {
            let mut r = records.lock().expect("lock");
            r.read_latency
                .push(op.completed.saturating_sub(op.invoked) as f64);
            r.history.push(op);
        }
        let (expected, condition) = match &seen {
            Some((value, version)) => (Some(*value), format!("if_version={version}")),
            None => (None, "if_absent=true".to_string()),
        };
        let new = expected.unwrap_or(0) + 1;
        let path = format!("/v1/kv/{k}?{condition}");
        let invoked = shared.ms();
        let (reply, _) = call_any_node(shared, &mut rng, "PUT", &path, new.to_string().as_bytes());
        let completed = shared.ms();
        let (ret, round_trips) = classify_cas(&reply);
        let mut r = records.lock().expect("lock");
        if ret == Return::Ok {
            r.cas_latency.push(completed.saturating_sub(invoked) as f64);
        }
        r.round_trips.extend(round_trips);
        r.history.push(RegisterOp {
            client: id,
            key: k,
            call: Invoked::Cas {
                expected,
                new: Some(new),
            },
            ret,
            invoked,
            completed,
        });
    }
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

fn report(
    s: &Settings,
    seed: u64,
    faults: Vec<String>,
    records: &Records,
    finals: BTreeMap<String, Option<u64>>,
    membership_s: Option<f64>,
    history: PathBuf,
) -> Report {
    let mut problems = Vec::new();
    let linearizable = match linearizable::check(&records.history, CHECK_BUDGET) {
        Ok(r) => {
            for (key, c) in r.violations().take(3) {
                problems.push(format!("not linearizable on {key}: {c}"));
            }
            Tristate::from(r.linearizable())
        }
        Err(e) => {
            problems.push(format!("malformed history: {e}"));
            Tristate::No
        }
    };
    let read: BTreeMap<String, Option<u64>> = finals
        .iter()
        .filter_map(|(k, v)| v.map(|v| (k.clone(), Some(v))))
        .collect();
    let counters = check_counters(&records.history, &read);
    problems.extend(counters.problems.iter().cloned());
    for (k, v) in &finals {
        if v.is_none() {
            problems.push(format!("{k}: the final serial read never answered"));
        }
    }
    let cas = |ret: &Return<u64>| {
        records
            .history
            .iter()
            .filter(|o| matches!(o.call, Invoked::Cas { .. }) && &o.ret == ret)
            .count()
    };
    let (ok, mismatch, fail, unknown) = (
        cas(&Return::Ok),
        cas(&Return::Mismatch),
        cas(&Return::Fail),
        cas(&Return::Unknown),
    );
    let reads_ok = records
        .history
        .iter()
        .filter(|o| o.call == Invoked::Read && o.client != usize::MAX)
        .count();
    let (rt, cas_lat, read_lat) = (
        sorted(&records.round_trips),
        sorted(&records.cas_latency),
        sorted(&records.read_latency),
    );
    Report {
        scenario: "cas",
        nodes: s.nodes,
        duration_s: s.duration.as_secs(),
        seed,
        netns: s.netns,
        clients: s.clients,
        keys: s.keys,
        faults,
        linearizable,
        cas_ok: ok,
        cas_failed: mismatch + fail,
        cas_condition_failed: mismatch,
        cas_unknown: unknown,
        serial_reads_ok: reads_ok,
        serial_reads_failed: records.reads_failed,
        round_trips_per_cas_p50: quantile(&rt, 0.5),
        round_trips_per_cas_p99: quantile(&rt, 0.99),
        cas_latency_p50_ms: quantile(&cas_lat, 0.5),
        cas_latency_p99_ms: quantile(&cas_lat, 0.99),
        serial_read_p50_ms: quantile(&read_lat, 0.5),
        counters,
        finals,
        membership_convergence_s: membership_s,
        problems,
        history,
    }
}

fn human(r: &Report) -> String {
    let mut out = format!(
        "scenario cas: {} nodes, {} s, seed {}, {} clients on {} hot keys{}\n",
        r.nodes,
        r.duration_s,
        r.seed,
        r.clients,
        r.keys,
        if r.netns { ", netns" } else { ", loopback" }
    );
    for f in &r.faults {
        out += &format!("  fault {f}\n");
    }
    out += &format!(
        "CAS: {} ok, {} failed ({} condition), {} unknown; serial reads {} ok, {} failed\n\
         round trips per committed CAS p50 {} p99 {}; CAS latency p50 {:.1} ms p99 {:.1} ms; \
         serial read p50 {:.1} ms\n\
         counters: {} in all for {} acknowledged and {} unknown increments (lost {}, phantom {}); \
         finals {:?}\n\
         linearizable: {}\n",
        r.cas_ok,
        r.cas_failed,
        r.cas_condition_failed,
        r.cas_unknown,
        r.serial_reads_ok,
        r.serial_reads_failed,
        r.round_trips_per_cas_p50,
        r.round_trips_per_cas_p99,
        r.cas_latency_p50_ms,
        r.cas_latency_p99_ms,
        r.serial_read_p50_ms,
        r.counters.final_counter,
        r.counters.acknowledged_increments,
        r.counters.unknown_increments,
        r.counters.lost_increments,
        r.counters.phantom_increments,
        r.finals,
        serde_json::to_string(&r.linearizable).unwrap_or_default(),
    );
    for p in &r.problems {
        out += &format!("  {p}\n");
    }
    out += &format!("history: {}\n", r.history.display());
    out += if r.passed() { "PASS\n" } else { "FAIL\n" };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            nodes: 5,
            duration: Duration::from_secs(30),
            seed: Some(1),
            clients: 2,
            keys: 1,
            netns: false,
            json: true,
            bin: None,
            dir: PathBuf::from("d"),
            converge_timeout: Duration::from_secs(10),
        }
    }

    fn op(call: Invoked<u64>, ret: Return<u64>, t: u64) -> RegisterOp<u64> {
        RegisterOp {
            client: 0,
            key: key(0),
            call,
            ret,
            invoked: t,
            completed: t + 1,
        }
    }

    #[test]
    fn replies_are_classified_as_the_checker_needs() {
        let body = |s: &str| s.as_bytes().to_vec();
        assert_eq!(
            classify_cas(&Call::Reply(
                200,
                None,
                body(r#"{"version":"9","round_trips":2}"#)
            )),
            (Return::Ok, Some(2.0))
        );
        assert_eq!(
            classify_cas(&Call::Reply(409, None, vec![])).0,
            Return::Mismatch
        );
        let not_applied = body(r#"{"error":"x","outcome":"not_applied"}"#);
        assert_eq!(
            classify_cas(&Call::Reply(503, None, not_applied)).0,
            Return::Fail
        );
        let unknown = body(r#"{"error":"x","outcome":"unknown"}"#);
        assert_eq!(
            classify_cas(&Call::Reply(503, None, unknown)).0,
            Return::Unknown
        );
        // A 503 that says nothing, a 504, a dropped connection: may have happened.
        assert_eq!(
            classify_cas(&Call::Reply(503, None, vec![])).0,
            Return::Unknown
        );
        assert_eq!(
            classify_cas(&Call::Reply(504, None, vec![])).0,
            Return::Unknown
        );
        assert_eq!(classify_cas(&Call::Unknown).0, Return::Unknown);
        assert_eq!(classify_cas(&Call::NotSent).0, Return::Fail);
    }

    #[test]
    fn the_json_report_has_the_documented_keys_and_fails_on_a_lost_increment() {
        let cas = |expected, new| Invoked::Cas {
            expected,
            new: Some(new),
        };
        let records = Records {
            history: vec![
                op(Invoked::Read, Return::Read(None), 0),
                op(cas(None, 1), Return::Ok, 2),
                op(Invoked::Read, Return::Read(Some(1)), 4),
                op(cas(Some(1), 2), Return::Ok, 6),
            ],
            round_trips: vec![2.0, 2.0],
            ..Records::default()
        };
        let finals = BTreeMap::from([(key(0), Some(2))]);
        let r = report(
            &settings(),
            1,
            vec![],
            &records,
            finals,
            Some(1.0),
            "h".into(),
        );
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "linearizable",
            "cas_ok",
            "cas_failed",
            "cas_unknown",
            "round_trips_per_cas_p50",
            "final_counter",
            "acknowledged_increments",
            "lost_increments",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["linearizable"], serde_json::json!(true));
        assert_eq!((r.cas_ok, r.round_trips_per_cas_p50), (2, 2.0));
        assert!(r.passed());
        // The counter lost one of its two acknowledged increments.
        let finals = BTreeMap::from([(key(0), Some(1))]);
        let r = report(
            &settings(),
            1,
            vec![],
            &records,
            finals,
            Some(1.0),
            "h".into(),
        );
        assert_eq!(r.counters.lost_increments, 1);
        assert_eq!(r.linearizable, Tristate::Yes, "the history alone is fine");
        assert!(!r.passed());
        // A counter never read fails the run too.
        let finals = BTreeMap::from([(key(0), None)]);
        let r = report(&settings(), 1, vec![], &records, finals, None, "h".into());
        assert!(!r.passed());
    }
}
