//! `cargo xtask scenario NAME`: a fault-injection run with a correctness check.
//!
//! 1. Starts a cluster (loopback, or network namespaces with `--netns`) whose nodes run short
//!    anti-entropy, hint and request intervals (a generated `scenario.toml`).
//! 2. Runs the workload of [`crate::workload`] (puts and gets at the chosen consistency through
//!    random nodes, a publisher and subscribers) for `--duration` seconds while the fault schedule
//!    of [`crate::schedule`] runs (seeded).
//! 3. Undoes every fault (heal, resume, restart), stops the workload and waits until every node's
//!    membership lists every node alive and every key reads the same version from every node at
//!    `consistency=all`.
//! 4. Feeds the history and the final state of every key to the checker
//!    ([`bavard_tests::check`]): acknowledged writes lost and phantom reads must both be 0.
//! 5. Saves the history as JSON lines (`DIR/history.jsonl`), prints the report (or one JSON object
//!    with `--json`), tears the cluster down, and exits non-zero if the check failed or the
//!    cluster did not converge.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bavard_tests::{FinalRead, Op, OpKind, Outcome, Verdict, check};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::cluster::{self, ClusterState, ProcState};
use crate::faults;
use crate::runs::quantile;
use crate::schedule::{self, Action, Fault, Kind};
use crate::workload::{self, Call, Publish, Shared};

/// Arguments of `cargo xtask scenario`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Which scenario.
    #[arg(value_enum)]
    name: Kind,
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Seconds of workload (faults run from 15% to 80% of it).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Seed of the fault schedule and of the clients' choices [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Run each node in its own network namespace (root only).
    #[arg(long)]
    netns: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Outage: also report the nodes' `*_seconds` histograms (per-stage latencies) counted
    /// before, during and after the catch-up.
    #[arg(long)]
    profile: bool,
    /// Use this bavard binary (e.g. target/debug/bavard) instead of building a release one.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Cluster directory [default: target/scenario].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Concurrent kv clients [default: 4; outage: 32 writers; cas: 4].
    #[arg(long)]
    clients: Option<usize>,
    /// Number of distinct keys the clients use [default: 32; outage: keys written, 100000;
    /// cas: 3 hot keys].
    #[arg(long)]
    keys: Option<usize>,
    /// Outage: bytes per value written.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Outage: the node that is down during the writes [default: the last].
    #[arg(long)]
    kill_node: Option<usize>,
    /// Outage: seconds allowed for the restarted node to catch up.
    #[arg(long, default_value_t = 300)]
    catch_up_timeout: u64,
    /// Consistency of puts and gets (one, quorum, all).
    #[arg(long, default_value = "quorum")]
    consistency: String,
    /// Seconds allowed, after the workload stops, for the cluster to converge.
    #[arg(long, default_value_t = 45)]
    converge_timeout: u64,
    /// Blobs: size of the blob in MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Blobs: MiB per second each provider serves to one peer (so that a fault lands in the
    /// middle of a fetch).
    #[arg(long, default_value_t = 16)]
    serve_mib_s: u64,
}

/// The client's request timeout: above the node's own 5 s request deadline, so that a slow
/// request usually ends in the node's 504 rather than a client-side timeout.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(8);

/// Counts and latencies of one kind of operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct KindStats {
    attempted: usize,
    ok: usize,
    failed: usize,
    unknown: usize,
    p50_ms: f64,
    p99_ms: f64,
}

/// What a scenario run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    scenario: String,
    nodes: usize,
    duration_s: u64,
    seed: u64,
    consistency: String,
    netns: bool,
    faults: Vec<String>,
    ops_attempted: usize,
    ops_ok: usize,
    ops_failed: usize,
    ops_unknown: usize,
    /// Per kind: `write`, `read`, `publish`.
    by_kind: BTreeMap<String, KindStats>,
    /// `ops_ok / ops_attempted`, in percent (connection refusals fail over to another node and
    /// count only when no node could be reached).
    availability: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    /// Seconds from the last fault undone until every node's membership listed every node alive.
    membership_convergence_s: Option<f64>,
    /// Seconds from the end of the workload until every key read the same version everywhere.
    replica_convergence_s: Option<f64>,
    /// The larger of the two.
    convergence_s: Option<f64>,
    converged: bool,
    acknowledged_writes: usize,
    reads_checked: usize,
    lost_writes: usize,
    phantom_reads: usize,
    /// Up to 5 examples of each problem the checker found.
    problems: Vec<String>,
    messages_published: usize,
    messages_delivered: usize,
    messages_expected: usize,
    /// Per subscriber: (node, messages received, messages expected: those published through
    /// other nodes, as a node delivers only what others publish).
    subscribers: Vec<(usize, usize, usize)>,
    history: PathBuf,
}

impl Report {
    /// True when the run passed: nothing lost, nothing invented, converged.
    pub(crate) fn passed(&self) -> bool {
        self.lost_writes == 0 && self.phantom_reads == 0 && self.converged
    }
}

/// Runs `cargo xtask scenario …`.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| crate::workspace_root().join("target").join("scenario"));
    if args.name == Kind::Soak {
        return crate::soak::run(&crate::soak::Settings {
            nodes: args.nodes,
            duration: Duration::from_secs(args.duration),
            seed: args.seed.unwrap_or(1),
            json: args.json,
            bin: args.bin.clone(),
            dir,
            clients: args.clients.unwrap_or(4),
            keys: args.keys.unwrap_or(32),
            consistency: args.consistency.clone(),
            converge_timeout: Duration::from_secs(args.converge_timeout),
        });
    }
    if args.name == Kind::Outage {
        return crate::outage::run(&crate::outage::Settings {
            nodes: args.nodes,
            keys: args.keys.unwrap_or(100_000),
            value_size: args.value_size,
            clients: args.clients.unwrap_or(32),
            kill_node: args.kill_node.unwrap_or(args.nodes.saturating_sub(1)),
            catch_up_timeout: Duration::from_secs(args.catch_up_timeout),
            netns: args.netns,
            json: args.json,
            profile: args.profile,
            bin: args.bin.clone(),
            dir,
        });
    }
    if args.name == Kind::Blobs {
        if args.netns {
            bail!("scenario blobs runs on loopback only");
        }
        return crate::blob_swarm::run(&crate::blob_swarm::Settings {
            size_mib: args.size_mib,
            serve_mib_s: args.serve_mib_s,
            seed: args.seed.unwrap_or(1),
            json: args.json,
            bin: args.bin.clone(),
            dir,
        });
    }
    if args.name == Kind::Cas {
        return crate::cas::run(&crate::cas::Settings {
            nodes: args.nodes,
            duration: Duration::from_secs(args.duration),
            seed: args.seed,
            clients: args.clients.unwrap_or(4),
            keys: args.keys.unwrap_or(3),
            netns: args.netns,
            json: args.json,
            bin: args.bin.clone(),
            dir,
            converge_timeout: Duration::from_secs(args.converge_timeout),
        });
    }
    let (clients, keys) = (args.clients.unwrap_or(4), args.keys.unwrap_or(32));
    if args.nodes < 3 {
        bail!("--nodes must be at least 3 (a key has 3 replicas)");
    }
    if clients == 0 || keys == 0 {
        bail!("--clients and --keys must be at least 1");
    }
    if !["one", "quorum", "all"].contains(&args.consistency.as_str()) {
        bail!(
            "--consistency must be one, quorum or all, not {:?}",
            args.consistency
        );
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let duration = Duration::from_secs(args.duration);
    let faults = schedule::schedule(
        args.name,
        args.nodes,
        duration,
        &mut ChaCha8Rng::seed_from_u64(seed),
    );

    let (_teardown, state) =
        crate::runs::start_scenario_cluster(&dir, args.nodes, args.bin.clone(), args.netns)?;
    let report = drive(args, &dir, state, &faults, seed)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", human(&report));
    }
    if !report.passed() {
        bail!(
            "scenario {} failed: {} lost writes, {} phantom reads, converged: {} (history in {})",
            report.scenario,
            report.lost_writes,
            report.phantom_reads,
            report.converged,
            report.history.display()
        );
    }
    Ok(())
}

/// The subscriber nodes: the two nodes the schedule faults least (ties: lowest index).
fn subscriber_nodes(faults: &[Fault], nodes: usize) -> Vec<usize> {
    let mut hits = vec![0usize; nodes];
    for f in faults {
        match &f.action {
            Action::Kill { node, .. } | Action::Pause(node) => hits[*node] += 1,
            _ => {}
        }
    }
    let mut order: Vec<usize> = (0..nodes).collect();
    order.sort_by_key(|&i| (hits[i], i));
    order.truncate(2);
    order
}

fn drive(
    args: &Args,
    dir: &Path,
    mut state: ClusterState,
    faults: &[Fault],
    seed: u64,
) -> anyhow::Result<Report> {
    let apis = state.nodes.iter().map(|n| n.api.clone()).collect();
    let subs = subscriber_nodes(faults, args.nodes);
    let shared = Shared::new(apis, subs.len(), CLIENT_TIMEOUT);
    let mut fault_log = Vec::new();
    let mut membership_s = None;
    let mut replica_s = None;
    let mut finals = None;
    std::thread::scope(|s| -> anyhow::Result<()> {
        // Stops the workload however this scope is left.
        struct StopOnDrop<'a>(&'a Shared);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.stop.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&shared);
        for (slot, &node) in subs.iter().enumerate() {
            let shared = &shared;
            s.spawn(move || workload::subscriber(shared, slot, node));
        }
        warm_up(&shared, seed);
        let start = Instant::now();
        let (clients, keys) = (args.clients.unwrap_or(4), args.keys.unwrap_or(32));
        for id in 0..clients {
            let (shared, consistency) = (&shared, args.consistency.as_str());
            s.spawn(move || workload::client(shared, id, seed, keys, consistency));
        }
        {
            let shared = &shared;
            s.spawn(move || workload::publisher(shared, seed, Duration::from_millis(200)));
        }
        for f in faults {
            sleep_until(start + f.at);
            let what = apply(dir, &mut state, &f.action, &shared);
            let line = format!("{:>6.1}s {}", start.elapsed().as_secs_f64(), what);
            if !args.json {
                eprintln!("fault {line}");
            }
            fault_log.push(line);
        }
        let healed = Instant::now();
        let end = start + Duration::from_secs(args.duration);
        // Membership can converge while the clients still run.
        let converge_deadline = end + Duration::from_secs(args.converge_timeout);
        membership_s = wait_membership(&state, healed, converge_deadline);
        sleep_until(end);
        shared.stop.store(true, Ordering::Relaxed);
        Ok(())
    })?;
    // The workload has stopped (the scope joined every thread): undo anything left, converge.
    let stopped = Instant::now();
    restore_all(dir, &mut state, &mut fault_log);
    let deadline = stopped + Duration::from_secs(args.converge_timeout);
    if membership_s.is_none() {
        membership_s = wait_membership(&state, stopped, deadline);
    }
    let history = std::mem::take(&mut *shared.history.lock().expect("lock"));
    let keys: BTreeSet<String> = history
        .iter()
        .filter(|o| o.kind != OpKind::Read)
        .map(|o| o.key.clone())
        .collect();
    if let Some(f) = wait_replicas(&state, &keys, deadline) {
        replica_s = Some(stopped.elapsed().as_secs_f64());
        finals = Some(f);
    }
    let history_path = dir.join("history.jsonl");
    save_history(&history_path, &history)?;
    // Without agreement, judge by quorum reads; keys that cannot be read are left out.
    let finals = match finals {
        Some(f) => f,
        None => quorum_finals(&state, &keys),
    };
    let readable: BTreeSet<&str> = finals.iter().map(|f| f.key.as_str()).collect();
    let judged: Vec<Op> = history
        .iter()
        .filter(|o| o.kind == OpKind::Read || readable.contains(o.key.as_str()))
        .cloned()
        .collect();
    let verdict = check(&judged, &finals);
    let publishes = std::mem::take(&mut *shared.publishes.lock().expect("lock"));
    let received: Vec<BTreeSet<String>> = shared
        .received
        .iter()
        .map(|r| r.lock().expect("lock").iter().cloned().collect())
        .collect();
    Ok(report(
        args,
        seed,
        fault_log,
        &history,
        &publishes,
        &received,
        &subs,
        &verdict,
        (membership_s, replica_s),
        history_path,
    ))
}

pub(crate) fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Publishes `warm-N` until every subscriber has received one (at most 20 s), so that the count
/// of deliveries starts with the topic's tree in place.
fn warm_up(shared: &Shared, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7761_726d);
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in 0.. {
        let ready = shared.received.iter().all(|r| {
            r.lock()
                .expect("lock")
                .iter()
                .any(|m| m.starts_with("warm-"))
        });
        if ready || Instant::now() > deadline {
            if !ready {
                eprintln!("warning: subscribers did not receive the warm-up messages in 20 s");
            }
            return;
        }
        workload::publish_one(shared, &mut rng, &format!("warm-{n}"));
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Applies one fault; returns a line describing it.
pub(crate) fn apply(
    dir: &Path,
    state: &mut ClusterState,
    action: &Action,
    shared: &Shared,
) -> String {
    let result = match action {
        Action::Kill { node, hard } => {
            let sig = if *hard { "KILL" } else { "TERM" };
            cluster::signal(state.nodes[*node].pid, sig).map(|()| format!("SIG{sig} node {node}"))
        }
        Action::Restart(node) => cluster::restart(dir, state, *node).map(|()| {
            shared.apis.write().expect("lock")[*node] = state.nodes[*node].api.clone();
            format!("restart node {node}")
        }),
        Action::Pause(node) => {
            cluster::signal(state.nodes[*node].pid, "STOP").map(|()| format!("pause node {node}"))
        }
        Action::Resume(node) => {
            cluster::signal(state.nodes[*node].pid, "CONT").map(|()| format!("resume node {node}"))
        }
        Action::Partition(a, b) => {
            faults::partition(state, a, b).map(|()| format!("partition {a:?} | {b:?}"))
        }
        Action::Heal => faults::heal(state).map(|()| "heal".to_string()),
    };
    result.unwrap_or_else(|e| format!("{action:?} FAILED: {e:#}"))
}

/// Resumes paused nodes, restarts dead ones and heals every link.
pub(crate) fn restore_all(dir: &Path, state: &mut ClusterState, log: &mut Vec<String>) {
    for i in 0..state.nodes.len() {
        match cluster::proc_state(state.nodes[i].pid) {
            ProcState::Running => {}
            ProcState::Stopped => {
                let _ = cluster::signal(state.nodes[i].pid, "CONT");
                log.push(format!("final: resume node {i}"));
            }
            ProcState::Gone => {
                let r = cluster::restart(dir, state, i);
                log.push(format!("final: restart node {i}: {r:?}"));
            }
        }
    }
    if let Err(e) = faults::heal(state) {
        log.push(format!("final heal: {e:#}"));
    }
}

/// Peer id → state (`alive`, `suspect`, `dead`, `left`), as node `api` lists its members.
pub(crate) fn member_states(api: &str) -> Option<BTreeMap<String, String>> {
    let r = crate::http::get(api, "/v1/members", Duration::from_secs(3)).ok()?;
    if r.status != 200 {
        return None;
    }
    let members: Vec<serde_json::Value> = serde_json::from_slice(&r.body).ok()?;
    Some(
        members
            .iter()
            .filter_map(|m| {
                let id = m["peer_id"].as_str()?.to_string();
                Some((id, m["state"].as_str()?.to_string()))
            })
            .collect(),
    )
}

/// The alive members node `api` sees, itself included.
fn alive_members(api: &str, me: &str) -> Option<BTreeSet<String>> {
    let mut alive: BTreeSet<String> = member_states(api)?
        .into_iter()
        .filter(|(_, state)| state == "alive")
        .map(|(id, _)| id)
        .collect();
    alive.insert(me.to_string());
    Some(alive)
}

/// Waits until every node lists every node alive; returns the seconds since `since`.
pub(crate) fn wait_membership(
    state: &ClusterState,
    since: Instant,
    deadline: Instant,
) -> Option<f64> {
    let all: BTreeSet<String> = state.nodes.iter().map(|n| n.peer_id.clone()).collect();
    loop {
        let agree = state
            .nodes
            .iter()
            .all(|n| alive_members(&n.api, &n.peer_id).as_ref() == Some(&all));
        if agree {
            return Some(since.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Reads `key` at consistency `c` through node `api`: `Some(final)` on 200 or 404.
fn read_final(api: &str, key: &str, c: &str) -> Option<FinalRead> {
    let path = format!("/v1/kv/{key}?consistency={c}");
    match workload::call(api, "GET", &path, &[], Duration::from_secs(5)) {
        Call::Reply(200, version, body) => Some(FinalRead {
            key: key.to_string(),
            value: Some(String::from_utf8_lossy(&body).into_owned()),
            version: version.and_then(|v| v.parse().ok()),
        }),
        Call::Reply(404, ..) => Some(FinalRead {
            key: key.to_string(),
            value: None,
            version: None,
        }),
        _ => None,
    }
}

/// Waits until every key reads the same version from every node at `consistency=all`; returns
/// the agreed final state.
pub(crate) fn wait_replicas(
    state: &ClusterState,
    keys: &BTreeSet<String>,
    deadline: Instant,
) -> Option<Vec<FinalRead>> {
    'round: loop {
        if Instant::now() > deadline {
            return None;
        }
        let mut finals = Vec::with_capacity(keys.len());
        for key in keys {
            let mut seen: Option<FinalRead> = None;
            for n in &state.nodes {
                let r = read_final(&n.api, key, "all");
                let agrees = match (&r, &seen) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(a), Some(b)) => a == b,
                };
                if !agrees {
                    std::thread::sleep(Duration::from_millis(250));
                    continue 'round;
                }
                seen = r;
            }
            finals.extend(seen);
        }
        return Some(finals);
    }
}

/// The final state of each key by a quorum read through any node that answers.
pub(crate) fn quorum_finals(state: &ClusterState, keys: &BTreeSet<String>) -> Vec<FinalRead> {
    keys.iter()
        .filter_map(|k| {
            state
                .nodes
                .iter()
                .find_map(|n| read_final(&n.api, k, "quorum"))
        })
        .collect()
}

pub(crate) fn save_history<T: Serialize>(path: &Path, history: &[T]) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for op in history {
        serde_json::to_writer(&mut w, op)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

fn stats(outcomes: impl Iterator<Item = (Outcome, f64)>) -> (KindStats, Vec<f64>) {
    let mut s = KindStats::default();
    let mut lat = Vec::new();
    for (o, ms) in outcomes {
        s.attempted += 1;
        match o {
            Outcome::Ok => {
                s.ok += 1;
                lat.push(ms);
            }
            Outcome::Fail => s.failed += 1,
            Outcome::Unknown => s.unknown += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    s.p50_ms = quantile(&lat, 0.5);
    s.p99_ms = quantile(&lat, 0.99);
    (s, lat)
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    seed: u64,
    faults: Vec<String>,
    history: &[Op],
    publishes: &[Publish],
    received: &[BTreeSet<String>],
    sub_nodes: &[usize],
    verdict: &Verdict,
    (membership_s, replica_s): (Option<f64>, Option<f64>),
    history_path: PathBuf,
) -> Report {
    let mut by_kind = BTreeMap::new();
    let mut all_lat = Vec::new();
    for (name, kind) in [("write", OpKind::Write), ("read", OpKind::Read)] {
        let (s, lat) = stats(history.iter().filter(|o| o.kind == kind).map(|o| {
            (
                o.outcome,
                o.completed_ms.saturating_sub(o.invoked_ms) as f64,
            )
        }));
        by_kind.insert(name.to_string(), s);
        all_lat.extend(lat);
    }
    let (pub_stats, lat) = stats(
        publishes
            .iter()
            .map(|p| (p.outcome, p.latency.as_secs_f64() * 1000.0)),
    );
    by_kind.insert("publish".to_string(), pub_stats);
    all_lat.extend(lat);
    all_lat.sort_by(f64::total_cmp);
    let sum = |f: fn(&KindStats) -> usize| by_kind.values().map(f).sum::<usize>();
    let (attempted, ok) = (sum(|s| s.attempted), sum(|s| s.ok));
    let published: Vec<&Publish> = publishes
        .iter()
        .filter(|p| p.outcome == Outcome::Ok)
        .collect();
    // A subscriber expects what was published through any node but its own.
    let per_sub: Vec<(usize, usize, usize)> = received
        .iter()
        .zip(sub_nodes)
        .map(|(r, &node)| {
            let expected: Vec<&&Publish> =
                published.iter().filter(|p| p.node != Some(node)).collect();
            let got = expected.iter().filter(|p| r.contains(&p.payload)).count();
            (node, got, expected.len())
        })
        .collect();
    let delivered = per_sub.iter().map(|s| s.1).sum();
    let expected = per_sub.iter().map(|s| s.2).sum();
    let converged = membership_s.is_some() && replica_s.is_some();
    let problems = verdict
        .lost_writes
        .iter()
        .take(5)
        .map(|w| {
            format!(
                "lost write: client {} wrote {:?} to {} (version {:?}) at {} ms",
                w.client, w.value, w.key, w.version, w.completed_ms
            )
        })
        .chain(verdict.phantom_reads.iter().take(5).cloned())
        .collect();
    Report {
        scenario: format!("{:?}", args.name).to_lowercase(),
        nodes: args.nodes,
        duration_s: args.duration,
        seed,
        consistency: args.consistency.clone(),
        netns: args.netns,
        faults,
        ops_attempted: attempted,
        ops_ok: ok,
        ops_failed: sum(|s| s.failed),
        ops_unknown: sum(|s| s.unknown),
        availability: if attempted == 0 {
            0.0
        } else {
            100.0 * ok as f64 / attempted as f64
        },
        latency_p50_ms: quantile(&all_lat, 0.5),
        latency_p99_ms: quantile(&all_lat, 0.99),
        by_kind,
        membership_convergence_s: membership_s,
        replica_convergence_s: replica_s,
        convergence_s: membership_s.zip(replica_s).map(|(a, b)| a.max(b)),
        converged,
        acknowledged_writes: verdict.acknowledged_writes,
        reads_checked: verdict.reads_checked,
        lost_writes: verdict.lost_writes.len(),
        phantom_reads: verdict.phantom_reads.len(),
        problems,
        messages_published: published.len(),
        messages_delivered: delivered,
        messages_expected: expected,
        subscribers: per_sub,
        history: history_path,
    }
}

fn human(r: &Report) -> String {
    let secs =
        |v: Option<f64>| v.map_or_else(|| "not reached".to_string(), |s| format!("{s:.1} s"));
    let mut out = format!(
        "scenario {}: {} nodes, {} s, seed {}, consistency {}{}\n",
        r.scenario,
        r.nodes,
        r.duration_s,
        r.seed,
        r.consistency,
        if r.netns { ", netns" } else { ", loopback" }
    );
    let rows: Vec<Vec<String>> = r
        .by_kind
        .iter()
        .map(|(k, s)| {
            vec![
                k.clone(),
                s.attempted.to_string(),
                s.ok.to_string(),
                s.failed.to_string(),
                s.unknown.to_string(),
                format!("{:.1}", s.p50_ms),
                format!("{:.1}", s.p99_ms),
            ]
        })
        .collect();
    out += &cluster::table(
        &[
            "op",
            "attempted",
            "ok",
            "failed",
            "unknown",
            "p50 ms",
            "p99 ms",
        ],
        &rows,
    );
    out += &format!(
        "\navailability {:.1}% ({} of {} ops ok), latency p50 {:.1} ms p99 {:.1} ms\n\
         membership agreed {} after the last fault; replicas agreed {} after the workload stopped\n\
         checker: {} acknowledged writes, {} reads: lost writes {}, phantom reads {}\n\
         messages delivered {} / expected {} ({} published; per subscriber (node, received, expected): {:?})\n",
        r.availability,
        r.ops_ok,
        r.ops_attempted,
        r.latency_p50_ms,
        r.latency_p99_ms,
        secs(r.membership_convergence_s),
        secs(r.replica_convergence_s),
        r.acknowledged_writes,
        r.reads_checked,
        r.lost_writes,
        r.phantom_reads,
        r.messages_delivered,
        r.messages_expected,
        r.messages_published,
        r.subscribers,
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
    use crate::runs::NODE_CONFIG;

    fn args() -> Args {
        Args {
            name: Kind::Crash,
            nodes: 5,
            duration: 30,
            seed: Some(1),
            netns: false,
            json: true,
            profile: false,
            bin: None,
            dir: None,
            clients: Some(2),
            keys: Some(4),
            value_size: 1024,
            kill_node: None,
            catch_up_timeout: 300,
            consistency: "quorum".into(),
            converge_timeout: 10,
            size_mib: 256,
            serve_mib_s: 16,
        }
    }

    fn op(kind: OpKind, outcome: Outcome, took: u64) -> Op {
        Op {
            client: 0,
            key: "k0".into(),
            kind,
            outcome,
            value: Some("c0-1".into()),
            version: Some(1),
            invoked_ms: 100,
            completed_ms: 100 + took,
        }
    }

    #[test]
    fn the_json_report_has_the_documented_keys_and_counts_by_outcome() {
        let history = vec![
            op(OpKind::Write, Outcome::Ok, 10),
            op(OpKind::Write, Outcome::Fail, 5),
            op(OpKind::Read, Outcome::Ok, 20),
            op(OpKind::Read, Outcome::Unknown, 8000),
        ];
        let publish = |payload: &str, node| Publish {
            outcome: Outcome::Ok,
            latency: Duration::from_millis(3),
            payload: payload.into(),
            node: Some(node),
        };
        // m2 is published through node 1: its own subscriber does not expect it.
        let publishes = vec![publish("m1", 3), publish("m2", 1)];
        let received = vec![
            ["m1", "m2", "warm-0"].map(String::from).into(),
            ["m1"].map(String::from).into(),
        ];
        let r = report(
            &args(),
            1,
            vec![],
            &history,
            &publishes,
            &received,
            &[0, 1],
            &Verdict::default(),
            (Some(1.5), Some(2.5)),
            "h.jsonl".into(),
        );
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "ops_ok",
            "ops_failed",
            "availability",
            "lost_writes",
            "phantom_reads",
            "converged",
            "convergence_s",
            "messages_delivered",
            "messages_expected",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(
            (r.ops_attempted, r.ops_ok, r.ops_failed, r.ops_unknown),
            (6, 4, 1, 1)
        );
        assert!((r.availability - 100.0 * 4.0 / 6.0).abs() < 1e-9);
        assert_eq!(r.convergence_s, Some(2.5));
        assert!(r.converged && r.passed());
        // Warm-up messages are not counted; a subscriber expects what other nodes published.
        assert_eq!((r.messages_delivered, r.messages_expected), (3, 3));
        assert_eq!(r.subscribers, [(0, 2, 2), (1, 1, 1)]);
        assert_eq!(
            r.by_kind["read"].p50_ms, 20.0,
            "unknown ops have no latency"
        );
    }

    #[test]
    fn a_lost_write_or_no_convergence_fails_the_run() {
        let w = op(OpKind::Write, Outcome::Ok, 1);
        let verdict = Verdict {
            lost_writes: vec![w.clone()],
            ..Verdict::default()
        };
        let r = report(
            &args(),
            1,
            vec![],
            &[w],
            &[],
            &[],
            &[],
            &verdict,
            (Some(1.0), Some(1.0)),
            "h".into(),
        );
        assert_eq!(r.lost_writes, 1);
        assert!(!r.passed());
        assert!(r.problems[0].starts_with("lost write"));
        let r = report(
            &args(),
            1,
            vec![],
            &[],
            &[],
            &[],
            &[],
            &Verdict::default(),
            (Some(1.0), None),
            "h".into(),
        );
        assert!(!r.converged && !r.passed());
        assert_eq!(r.convergence_s, None);
        assert_eq!(r.availability, 0.0);
    }

    #[test]
    fn subscribers_go_to_the_least_faulted_nodes() {
        let kill = |node, s| Fault {
            at: Duration::from_secs(s),
            action: Action::Kill { node, hard: true },
        };
        let faults = [kill(0, 1), kill(1, 2), kill(0, 3), kill(3, 4)];
        assert_eq!(subscriber_nodes(&faults, 4), [2, 1]);
        assert_eq!(subscriber_nodes(&[], 5), [0, 1]);
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn the_node_config_sets_short_repair_intervals() {
        assert!(NODE_CONFIG.contains("anti_entropy_interval_secs = 1.0"));
        assert!(NODE_CONFIG.contains("hint_delivery_interval_secs = 1.0"));
        assert!(NODE_CONFIG.contains("request_timeout_secs = 2.0"));
    }
}
