//! `cargo xtask scenario soak`: a long run of mixed faults and a hostile request flood under
//! steady client load, checking correctness, memory and the victim's responsiveness.
//!
//! 1. Starts a cluster with the scenario node settings and the workload of [`crate::workload`]
//!    (puts and gets at `--consistency` through random nodes, a publisher, two subscribers).
//! 2. **Warm-up** (a tenth of the run, 20 to 60 s), which includes one short flood, so that the
//!    baseline holds the buffers a flood needs; then each node's RSS (`/proc/PID/status` VmRSS)
//!    and open file descriptors (`/proc/PID/fd`) are recorded.
//! 3. **Episodes**, one at a time with a settling pause after each, in a seeded order, until 85%
//!    of the run: `kill -9` a node and restart it, SIGSTOP one past the failure detector's
//!    timeout and resume it, partition the cluster in two halves and heal, and a **flood**: a
//!    separate process (the `hostile_peer` example of bavard-node) joins the cluster with a join
//!    token and opens 32 streams of anti-entropy tree and listing requests, fetches,
//!    ADD_PROVIDER and GET_PROVIDERS against one victim for 20 s. During a flood the victim's
//!    `/v1/status` is polled every 100 ms (its latency) and the other nodes' `/v1/members` every
//!    250 ms (is the victim ever `suspect` or `dead`?). The victim is never killed or paused, so
//!    its memory is comparable from start to end.
//! 4. The workload stops, every fault is undone, the cluster converges, RSS and descriptors are
//!    read again, and the history goes to the checker ([`bavard_tests::check`]).
//!
//! The run fails on any lost write or phantom read, if the cluster does not converge, if any
//! node that ran throughout grew its RSS by more than 10% after the warm-up, or if any node
//! marked the victim suspect during a flood. `/v1/status` latency is reported (`status_ms_max`,
//! `status_ms_p99`): the target is under 100 ms, which a busy machine may not show.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bavard_tests::{OpKind, Outcome, check};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::cluster::{self, ClusterState};
use crate::runs::quantile;
use crate::scenario;
use crate::schedule::{Action, PAUSE_FOR};
use crate::workload::{self, Shared};

/// Arguments of `cargo xtask soak` (the same run as `cargo xtask scenario soak`, with the
/// soak's own defaults).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Seconds of run (warm-up included; at least 60).
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Seed of the episode order and of the clients' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Use this bavard binary instead of building a release one (the hostile_peer example is
    /// looked for in its `examples/` directory).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Cluster directory [default: target/scenario].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Concurrent kv clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Number of distinct keys the clients use.
    #[arg(long, default_value_t = 32)]
    keys: usize,
    /// Consistency of puts and gets (one, quorum, all).
    #[arg(long, default_value = "quorum")]
    consistency: String,
    /// Seconds allowed, after the run, for the cluster to converge.
    #[arg(long, default_value_t = 45)]
    converge_timeout: u64,
}

/// Runs `cargo xtask soak`.
pub(crate) fn run_args(a: &Args) -> anyhow::Result<()> {
    run(&Settings {
        nodes: a.nodes,
        duration: Duration::from_secs(a.duration),
        seed: a.seed,
        json: a.json,
        bin: a.bin.clone(),
        dir: a
            .dir
            .clone()
            .unwrap_or_else(|| crate::workspace_root().join("target").join("scenario")),
        clients: a.clients,
        keys: a.keys,
        consistency: a.consistency.clone(),
        converge_timeout: Duration::from_secs(a.converge_timeout),
    })
}

/// The settings of one soak run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) nodes: usize,
    pub(crate) duration: Duration,
    pub(crate) seed: u64,
    pub(crate) json: bool,
    pub(crate) bin: Option<PathBuf>,
    pub(crate) dir: PathBuf,
    pub(crate) clients: usize,
    pub(crate) keys: usize,
    pub(crate) consistency: String,
    pub(crate) converge_timeout: Duration,
}

/// Streams the hostile peer opens.
pub(crate) const FLOOD_STREAMS: usize = 32;
/// How long one flood lasts.
const FLOOD_FOR: Duration = Duration::from_secs(20);
/// How often the victim's status is polled during a flood.
const STATUS_EVERY: Duration = Duration::from_millis(100);
/// What a status poll may take before it counts as failed.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// The most RSS growth allowed after the warm-up, in percent.
const MAX_GROWTH_PCT: f64 = 10.0;
/// The client request timeout (as the scenarios').
const CLIENT_TIMEOUT: Duration = Duration::from_secs(8);

/// One kind of episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Episode {
    /// `kill -9` a node, restart it.
    Kill,
    /// SIGSTOP a node past the failure detector's timeout, resume it.
    Pause,
    /// Two halves, then heal.
    Partition,
    /// The hostile peer floods the victim.
    Flood,
}

/// A planned episode: what, to whom, how long, then how long to settle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) episode: Episode,
    /// The node killed or paused; the first side of a partition.
    pub(crate) nodes: Vec<usize>,
    pub(crate) lasts: Duration,
    pub(crate) settle: Duration,
}

/// The episodes of a run of `total` after the warm-up, on `n` nodes with `victim` (never killed
/// or paused): every kind once per round, in a seeded order, until the time is used. Pure.
pub(crate) fn plan(
    n: usize,
    victim: usize,
    total: Duration,
    rng: &mut impl rand::Rng,
) -> Vec<Planned> {
    use rand::seq::SliceRandom as _;
    let others: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    let mut out = Vec::new();
    let mut used = Duration::ZERO;
    'rounds: loop {
        let mut round = [
            Episode::Flood,
            Episode::Kill,
            Episode::Pause,
            Episode::Partition,
        ];
        round.shuffle(rng);
        for episode in round {
            let p = match episode {
                Episode::Kill => Planned {
                    episode,
                    nodes: vec![others[rng.random_range(0..others.len())]],
                    lasts: Duration::from_millis(rng.random_range(2_000..5_000)),
                    settle: Duration::from_secs(8),
                },
                Episode::Pause => Planned {
                    episode,
                    nodes: vec![others[rng.random_range(0..others.len())]],
                    lasts: PAUSE_FOR,
                    settle: Duration::from_secs(8),
                },
                Episode::Partition => {
                    let mut order: Vec<usize> = (0..n).collect();
                    order.shuffle(rng);
                    let mut side = order[..n / 2].to_vec();
                    side.sort_unstable();
                    Planned {
                        episode,
                        nodes: side,
                        lasts: Duration::from_secs(15),
                        settle: Duration::from_secs(10),
                    }
                }
                Episode::Flood => Planned {
                    episode,
                    nodes: vec![victim],
                    lasts: FLOOD_FOR,
                    settle: Duration::from_secs(5),
                },
            };
            if used + p.lasts + p.settle > total {
                break 'rounds;
            }
            used += p.lasts + p.settle;
            out.push(p);
        }
    }
    out
}

/// A node's memory and descriptors at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Sample {
    pid: u32,
    rss_kb: u64,
    fds: usize,
}

/// One node's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct NodeFigures {
    node: usize,
    start: Option<Sample>,
    end: Option<Sample>,
    /// The largest RSS sampled between the two (each episode's end).
    rss_max_kb: u64,
    /// Killed and restarted during the run: start and end are different processes.
    restarted: bool,
    /// End RSS over start RSS, in percent (only for a node that ran throughout).
    rss_growth_pct: Option<f64>,
}

/// What a soak run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    scenario: &'static str,
    nodes: usize,
    duration_s: u64,
    seed: u64,
    consistency: String,
    victim: usize,
    warm_up_s: f64,
    episodes: Vec<String>,
    floods: usize,
    flood_streams: usize,
    /// What the hostile peer did, summed over the floods (requests, answers, …).
    flood_stats: serde_json::Value,
    /// Victim `/v1/status` polls during floods, and their latency.
    status_polls: usize,
    status_failures: usize,
    status_ms_p50: f64,
    status_ms_p99: f64,
    status_ms_max: f64,
    /// Whether any other node listed the victim as suspect or dead during a flood.
    victim_suspected: bool,
    suspicions: Vec<String>,
    per_node: Vec<NodeFigures>,
    /// The largest RSS growth of a node that ran throughout, in percent.
    max_rss_growth_pct: f64,
    memory_flat: bool,
    ops_attempted: usize,
    ops_ok: usize,
    availability: f64,
    acknowledged_writes: usize,
    reads_checked: usize,
    lost_writes: usize,
    phantom_reads: usize,
    problems: Vec<String>,
    converged: bool,
    history: PathBuf,
}

impl Report {
    /// Nothing lost or invented, converged, flat memory, the victim never suspected.
    pub(crate) fn passed(&self) -> bool {
        self.lost_writes == 0
            && self.phantom_reads == 0
            && self.converged
            && self.memory_flat
            && !self.victim_suspected
            && self.floods > 0
    }
}

/// RSS and descriptors of `pid`, from `/proc`.
pub(crate) fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = parse_vm_rss(&status)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample { pid, rss_kb, fds })
}

/// The `VmRSS:` line of `/proc/PID/status`, in kB.
pub(crate) fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Growth of `end` over `start`, in percent.
pub(crate) fn growth_pct(start: u64, end: u64) -> f64 {
    if start == 0 {
        return 0.0;
    }
    (end as f64 - start as f64) * 100.0 / start as f64
}

/// Runs `cargo xtask scenario soak`.
pub(crate) fn run(s: &Settings) -> anyhow::Result<()> {
    if s.nodes < 3 {
        bail!("--nodes must be at least 3 (a key has 3 replicas)");
    }
    if s.duration < Duration::from_secs(60) {
        bail!("a soak needs at least 60 s (--duration)");
    }
    let hostile = hostile_binary(s.bin.as_deref())?;
    let (_teardown, state) =
        crate::runs::start_scenario_cluster(&s.dir, s.nodes, s.bin.clone(), false)?;
    let report = drive(s, state, &hostile)?;
    if s.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", human(&report));
    }
    if !report.passed() {
        bail!(
            "soak failed: {} lost writes, {} phantom reads, converged {}, memory flat {} (max \
             growth {:.1}%), victim suspected {} (history in {})",
            report.lost_writes,
            report.phantom_reads,
            report.converged,
            report.memory_flat,
            report.max_rss_growth_pct,
            report.victim_suspected,
            report.history.display()
        );
    }
    Ok(())
}

/// The `hostile_peer` example: next to `--bin` (its `examples/`), else built in release.
fn hostile_binary(bin: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = bin.and_then(Path::parent) {
        let candidate = dir.join("examples").join("hostile_peer");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the hostile_peer example (release)…");
    let status = Command::new(cargo)
        .current_dir(crate::workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            "bavard-node",
            "--example",
            "hostile_peer",
        ])
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build of the hostile_peer example failed ({status})");
    }
    let path = crate::workspace_root().join("target/release/examples/hostile_peer");
    if !path.exists() {
        bail!("no hostile_peer at {} after the build", path.display());
    }
    Ok(path)
}

/// What the pollers of one flood saw.
#[derive(Default)]
struct FloodWatch {
    status_ms: Vec<f64>,
    status_failures: usize,
    suspicions: Vec<String>,
}

fn drive(s: &Settings, mut state: ClusterState, hostile: &Path) -> anyhow::Result<Report> {
    let n = s.nodes;
    // The victim: not node 0 (which holds the cluster's authority and hands out the tokens).
    let victim = 1;
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let warm_up = (s.duration / 10).clamp(Duration::from_secs(20), Duration::from_secs(60));
    let run_for = s.duration.mul_f64(0.85).saturating_sub(warm_up);
    let episodes = plan(n, victim, run_for, &mut rng);
    let apis = state.nodes.iter().map(|x| x.api.clone()).collect();
    let subs = [0, victim];
    let shared = Shared::new(apis, subs.len(), CLIENT_TIMEOUT);
    let mut log = Vec::new();
    let mut watch = FloodWatch::default();
    let mut flood_stats = serde_json::Map::new();
    let mut floods = 0;
    let mut start_samples: Vec<Option<Sample>> = Vec::new();
    let mut rss_max = vec![0u64; n];
    let mut restarted = vec![false; n];
    let started = Instant::now();
    let mut warm_up_s = 0.0;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        struct StopOnDrop<'a>(&'a Shared);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.stop.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&shared);
        for (slot, &node) in subs.iter().enumerate() {
            let shared = &shared;
            scope.spawn(move || workload::subscriber(shared, slot, node));
        }
        for id in 0..s.clients {
            let (shared, consistency, seed, keys) =
                (&shared, s.consistency.as_str(), s.seed, s.keys);
            scope.spawn(move || workload::client(shared, id, seed, keys, consistency));
        }
        {
            let (shared, seed) = (&shared, s.seed);
            scope.spawn(move || workload::publisher(shared, seed, Duration::from_millis(200)));
        }
        // Warm-up, with a short flood in it.
        std::thread::sleep(warm_up / 4);
        let line = flood(
            s,
            &state,
            victim,
            hostile,
            warm_up / 4,
            &mut FloodWatch::default(),
            &mut flood_stats,
        );
        log.push(format!(
            "{:>6.1}s warm-up {line}",
            started.elapsed().as_secs_f64()
        ));
        sleep_until(started + warm_up);
        start_samples = state.nodes.iter().map(|x| sample(x.pid)).collect();
        warm_up_s = started.elapsed().as_secs_f64();
        for (i, x) in start_samples.iter().enumerate() {
            rss_max[i] = x.map_or(0, |x| x.rss_kb);
        }
        for p in &episodes {
            let at = started.elapsed().as_secs_f64();
            let line = match p.episode {
                Episode::Flood => {
                    floods += 1;
                    flood(
                        s,
                        &state,
                        victim,
                        hostile,
                        p.lasts,
                        &mut watch,
                        &mut flood_stats,
                    )
                }
                Episode::Kill => {
                    let node = p.nodes[0];
                    restarted[node] = true;
                    let a = apply(
                        &s.dir,
                        &mut state,
                        &shared,
                        &Action::Kill { node, hard: true },
                    );
                    std::thread::sleep(p.lasts);
                    let b = apply(&s.dir, &mut state, &shared, &Action::Restart(node));
                    format!("{a}; {b}")
                }
                Episode::Pause => {
                    let node = p.nodes[0];
                    let a = apply(&s.dir, &mut state, &shared, &Action::Pause(node));
                    std::thread::sleep(p.lasts);
                    let b = apply(&s.dir, &mut state, &shared, &Action::Resume(node));
                    format!("{a}; {b}")
                }
                Episode::Partition => {
                    let other: Vec<usize> = (0..n).filter(|i| !p.nodes.contains(i)).collect();
                    let a = apply(
                        &s.dir,
                        &mut state,
                        &shared,
                        &Action::Partition(p.nodes.clone(), other),
                    );
                    std::thread::sleep(p.lasts);
                    let b = apply(&s.dir, &mut state, &shared, &Action::Heal);
                    format!("{a}; {b}")
                }
            };
            let line = format!("{at:>6.1}s {line}");
            if !s.json {
                eprintln!("episode {line}");
            }
            log.push(line);
            std::thread::sleep(p.settle);
            for (i, x) in state.nodes.iter().enumerate() {
                if let Some(x) = sample(x.pid) {
                    rss_max[i] = rss_max[i].max(x.rss_kb);
                }
            }
        }
        sleep_until(started + s.duration);
        shared.stop.store(true, Ordering::Relaxed);
        Ok(())
    })?;

    // Undo anything left, converge, then read memory once more and judge the history.
    let stopped = Instant::now();
    let deadline = stopped + s.converge_timeout;
    scenario::restore_all(&s.dir, &mut state, &mut log);
    let membership = scenario::wait_membership(&state, stopped, deadline);
    let history = std::mem::take(&mut *shared.history.lock().expect("lock"));
    let keys: BTreeSet<String> = history
        .iter()
        .filter(|o| o.kind != OpKind::Read)
        .map(|o| o.key.clone())
        .collect();
    let finals = scenario::wait_replicas(&state, &keys, deadline);
    let converged = membership.is_some() && finals.is_some();
    let finals = finals.unwrap_or_else(|| scenario::quorum_finals(&state, &keys));
    let end_samples: Vec<Option<Sample>> = state.nodes.iter().map(|x| sample(x.pid)).collect();
    let history_path = s.dir.join("history.jsonl");
    scenario::save_history(&history_path, &history)?;
    let readable: BTreeSet<&str> = finals.iter().map(|f| f.key.as_str()).collect();
    let judged: Vec<_> = history
        .iter()
        .filter(|o| o.kind == OpKind::Read || readable.contains(o.key.as_str()))
        .cloned()
        .collect();
    let verdict = check(&judged, &finals);

    let per_node: Vec<NodeFigures> = (0..n)
        .map(|i| {
            let (start, end) = (start_samples.get(i).copied().flatten(), end_samples[i]);
            let same = matches!((start, end), (Some(a), Some(b)) if a.pid == b.pid);
            let restarted = restarted[i] || !same;
            NodeFigures {
                node: i,
                start,
                end,
                rss_max_kb: rss_max[i].max(end.map_or(0, |e| e.rss_kb)),
                restarted,
                rss_growth_pct: match (start, end) {
                    (Some(a), Some(b)) if !restarted => Some(growth_pct(a.rss_kb, b.rss_kb)),
                    _ => None,
                },
            }
        })
        .collect();
    let max_growth = per_node
        .iter()
        .filter_map(|x| x.rss_growth_pct)
        .fold(f64::MIN, f64::max);
    let judged_nodes = per_node
        .iter()
        .filter(|x| x.rss_growth_pct.is_some())
        .count();
    let mut status = watch.status_ms.clone();
    status.sort_by(f64::total_cmp);
    let attempted = history.len();
    let ok = history.iter().filter(|o| o.outcome == Outcome::Ok).count();
    let problems = verdict
        .lost_writes
        .iter()
        .take(5)
        .map(|w| {
            format!(
                "lost write: client {} wrote {:?} to {} (version {:?})",
                w.client, w.value, w.key, w.version
            )
        })
        .chain(verdict.phantom_reads.iter().take(5).cloned())
        .collect();
    Ok(Report {
        scenario: "soak",
        nodes: n,
        duration_s: s.duration.as_secs(),
        seed: s.seed,
        consistency: s.consistency.clone(),
        victim,
        warm_up_s,
        episodes: log,
        floods,
        flood_streams: FLOOD_STREAMS,
        flood_stats: serde_json::Value::Object(flood_stats),
        status_polls: status.len() + watch.status_failures,
        status_failures: watch.status_failures,
        status_ms_p50: quantile(&status, 0.5),
        status_ms_p99: quantile(&status, 0.99),
        status_ms_max: status.last().copied().unwrap_or(0.0),
        victim_suspected: !watch.suspicions.is_empty(),
        suspicions: watch.suspicions.iter().take(10).cloned().collect(),
        max_rss_growth_pct: if judged_nodes == 0 { 0.0 } else { max_growth },
        memory_flat: judged_nodes > 0 && max_growth <= MAX_GROWTH_PCT,
        per_node,
        ops_attempted: attempted,
        ops_ok: ok,
        availability: if attempted == 0 {
            0.0
        } else {
            100.0 * ok as f64 / attempted as f64
        },
        acknowledged_writes: verdict.acknowledged_writes,
        reads_checked: verdict.reads_checked,
        lost_writes: verdict.lost_writes.len(),
        phantom_reads: verdict.phantom_reads.len(),
        problems,
        converged,
        history: history_path,
    })
}

fn apply(dir: &Path, state: &mut ClusterState, shared: &Shared, action: &Action) -> String {
    scenario::apply(dir, state, action, shared)
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// One flood of `victim` for `lasts`, watched by the pollers; returns a line for the log.
fn flood(
    s: &Settings,
    state: &ClusterState,
    victim: usize,
    hostile: &Path,
    lasts: Duration,
    watch: &mut FloodWatch,
    totals: &mut serde_json::Map<String, serde_json::Value>,
) -> String {
    let token = match cluster::join_token(&state.nodes[0]) {
        Ok(t) => t,
        Err(e) => return format!("flood skipped: no join token: {e:#}"),
    };
    let target = state.nodes[victim].p2p();
    let log = s.dir.join("hostile_peer.log");
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let child = Command::new(hostile)
        .args(["--target", &target, "--join", &token])
        .args(["--streams", &FLOOD_STREAMS.to_string()])
        .args(["--duration", &format!("{:.1}", lasts.as_secs_f64())])
        .args(["--protocols", "both"])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return format!("flood skipped: cannot start {}: {e}", hostile.display()),
    };
    let done = AtomicBool::new(false);
    let status_ms = Mutex::new(Vec::new());
    let failures = Mutex::new(0usize);
    let suspicions = Mutex::new(Vec::new());
    let victim_api = state.nodes[victim].api.clone();
    let victim_id = state.nodes[victim].peer_id.clone();
    let others: Vec<(usize, String)> = state
        .nodes
        .iter()
        .filter(|x| x.index != victim)
        .map(|x| (x.index, x.api.clone()))
        .collect();
    let output = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                match crate::http::get(&victim_api, "/v1/status", STATUS_TIMEOUT) {
                    Ok(r) if r.status == 200 => status_ms
                        .lock()
                        .expect("lock")
                        .push(t.elapsed().as_secs_f64() * 1000.0),
                    _ => *failures.lock().expect("lock") += 1,
                }
                std::thread::sleep(STATUS_EVERY.saturating_sub(t.elapsed()));
            }
        });
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                for (i, api) in &others {
                    if let Some(states) = scenario::member_states(api)
                        && let Some(st) = states.get(&victim_id)
                        && (st == "suspect" || st == "dead")
                    {
                        suspicions
                            .lock()
                            .expect("lock")
                            .push(format!("node {i} saw the victim {st}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        let output = child.wait_with_output();
        done.store(true, Ordering::Relaxed);
        output
    });
    watch
        .status_ms
        .extend(status_ms.into_inner().expect("lock"));
    watch.status_failures += failures.into_inner().expect("lock");
    watch
        .suspicions
        .extend(suspicions.into_inner().expect("lock"));
    let Ok(output) = output else {
        return "flood: the hostile peer could not be waited for".to_string();
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let stats: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
    if let Some(map) = stats["stats"].as_object() {
        for (k, v) in map {
            let sum = totals
                .get(k)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
                + v.as_u64().unwrap_or(0);
            totals.insert(k.clone(), sum.into());
        }
    }
    if !output.status.success() {
        return format!(
            "flood of node {victim} FAILED ({}; see {})",
            output.status,
            log.display()
        );
    }
    format!(
        "flood of node {victim}: {} streams for {:.0} s: {}",
        FLOOD_STREAMS,
        lasts.as_secs_f64(),
        stats["stats"]
    )
}

fn human(r: &Report) -> String {
    let mut out = format!(
        "soak: {} nodes, {} s, seed {}, consistency {}, victim node {}, warm-up {:.0} s\n",
        r.nodes, r.duration_s, r.seed, r.consistency, r.victim, r.warm_up_s
    );
    for e in &r.episodes {
        out += &format!("  {e}\n");
    }
    let kb = |s: Option<Sample>, f: fn(Sample) -> String| s.map_or_else(|| "-".into(), f);
    let rows: Vec<Vec<String>> = r
        .per_node
        .iter()
        .map(|x| {
            vec![
                x.node.to_string(),
                kb(x.start, |s| (s.rss_kb / 1024).to_string()),
                kb(x.end, |s| (s.rss_kb / 1024).to_string()),
                (x.rss_max_kb / 1024).to_string(),
                x.rss_growth_pct
                    .map_or_else(|| "restarted".into(), |g| format!("{g:+.1}%")),
                kb(x.start, |s| s.fds.to_string()),
                kb(x.end, |s| s.fds.to_string()),
            ]
        })
        .collect();
    out += &cluster::table(
        &[
            "node",
            "RSS start MiB",
            "RSS end MiB",
            "RSS max MiB",
            "growth",
            "fds start",
            "fds end",
        ],
        &rows,
    );
    out += &format!(
        "\nfloods: {} of {} streams, {}\n\
         victim /v1/status during floods: {} polls, {} failed, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n\
         victim suspected: {}{}\n\
         memory: max growth {:.1}% after warm-up (limit {MAX_GROWTH_PCT}%): {}\n\
         availability {:.1}% ({} of {} kv ops ok); checker: {} acknowledged writes, {} reads: \
         lost writes {}, phantom reads {}; converged {}\n",
        r.floods,
        r.flood_streams,
        r.flood_stats,
        r.status_polls,
        r.status_failures,
        r.status_ms_p50,
        r.status_ms_p99,
        r.status_ms_max,
        r.victim_suspected,
        if r.suspicions.is_empty() {
            String::new()
        } else {
            format!(" ({:?})", r.suspicions)
        },
        r.max_rss_growth_pct,
        if r.memory_flat { "flat" } else { "NOT flat" },
        r.availability,
        r.ops_ok,
        r.ops_attempted,
        r.acknowledged_writes,
        r.reads_checked,
        r.lost_writes,
        r.phantom_reads,
        r.converged,
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

    #[test]
    fn the_plan_runs_every_kind_never_faults_the_victim_and_fits_the_time() {
        for seed in 0..20 {
            let total = Duration::from_secs(450);
            let p = plan(5, 1, total, &mut ChaCha8Rng::seed_from_u64(seed));
            let used: Duration = p.iter().map(|e| e.lasts + e.settle).sum();
            assert!(used <= total);
            for kind in [
                Episode::Kill,
                Episode::Pause,
                Episode::Partition,
                Episode::Flood,
            ] {
                assert!(
                    p.iter().any(|e| e.episode == kind),
                    "{kind:?} missing, seed {seed}"
                );
            }
            for e in &p {
                match e.episode {
                    Episode::Kill | Episode::Pause => assert_ne!(e.nodes, [1], "seed {seed}"),
                    Episode::Flood => assert_eq!(e.nodes, [1]),
                    Episode::Partition => assert_eq!(e.nodes.len(), 2),
                }
            }
        }
        let a = plan(
            5,
            1,
            Duration::from_secs(300),
            &mut ChaCha8Rng::seed_from_u64(3),
        );
        let b = plan(
            5,
            1,
            Duration::from_secs(300),
            &mut ChaCha8Rng::seed_from_u64(3),
        );
        assert_eq!(a, b, "a seed replays");
        assert!(
            plan(
                5,
                1,
                Duration::from_secs(10),
                &mut ChaCha8Rng::seed_from_u64(3)
            )
            .is_empty()
        );
    }

    #[test]
    fn rss_is_read_from_proc_status_and_growth_is_relative() {
        let status = "Name:\tbavard\nVmPeak:\t  99999 kB\nVmRSS:\t   41234 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(41_234));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert!((growth_pct(100, 110) - 10.0).abs() < 1e-9);
        assert!(growth_pct(100, 90) < 0.0);
        assert_eq!(growth_pct(0, 5), 0.0);
        let me = sample(std::process::id()).expect("this process has a /proc entry");
        assert!(me.rss_kb > 0 && me.fds >= 3, "{me:?}");
    }

    #[test]
    fn a_run_passes_only_flat_correct_converged_and_unsuspected() {
        let base = Report {
            scenario: "soak",
            nodes: 5,
            duration_s: 600,
            seed: 1,
            consistency: "quorum".into(),
            victim: 1,
            warm_up_s: 60.0,
            episodes: vec![],
            floods: 3,
            flood_streams: 32,
            flood_stats: serde_json::Value::Null,
            status_polls: 600,
            status_failures: 0,
            status_ms_p50: 2.0,
            status_ms_p99: 20.0,
            status_ms_max: 40.0,
            victim_suspected: false,
            suspicions: vec![],
            per_node: vec![],
            max_rss_growth_pct: 3.0,
            memory_flat: true,
            ops_attempted: 10,
            ops_ok: 10,
            availability: 100.0,
            acknowledged_writes: 5,
            reads_checked: 5,
            lost_writes: 0,
            phantom_reads: 0,
            problems: vec![],
            converged: true,
            history: "h".into(),
        };
        assert!(base.passed());
        let v = serde_json::to_value(&base).unwrap();
        for key in [
            "status_ms_max",
            "status_ms_p99",
            "victim_suspected",
            "per_node",
            "max_rss_growth_pct",
            "lost_writes",
            "phantom_reads",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for broken in [
            Report {
                lost_writes: 1,
                ..base.clone()
            },
            Report {
                phantom_reads: 1,
                ..base.clone()
            },
            Report {
                memory_flat: false,
                ..base.clone()
            },
            Report {
                victim_suspected: true,
                ..base.clone()
            },
            Report {
                converged: false,
                ..base.clone()
            },
            Report {
                floods: 0,
                ..base.clone()
            },
        ] {
            assert!(!broken.passed());
        }
    }
}
