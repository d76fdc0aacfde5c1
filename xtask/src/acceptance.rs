//! `cargo xtask acceptance gossip`: the gossip acceptance check as a new user would run it, on
//! real `bavard node` processes (loopback, default settings).
//!
//! 1. Starts `--nodes` nodes (12) and waits until every node lists every node alive.
//! 2. Opens one Server-Sent Events subscription to the topic on every node but node 0, waits
//!    until a warm-up message reaches all of them (the topic overlay formed), then publishes
//!    `--messages` messages (25) alternately through nodes 0 and 1, 200 ms apart.
//! 3. Waits until every subscriber has every message, and checks each arrived exactly once.
//! 4. Kills one node with SIGKILL and measures until every other node lists it dead.
//!
//! Prints the figures (or one JSON object with `--json`), stops the cluster, and exits non-zero
//! unless every node saw all alive, every subscriber got every message exactly once, and the
//! killed node was declared dead everywhere within `--dead-within` seconds (30).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;

use crate::cluster::{self, ClusterState, UpArgs};
use crate::runs::Teardown;
use crate::scenario::member_states;
use crate::workload::{self, Call};

/// Arguments of `cargo xtask acceptance`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Which check (only `gossip` so far).
    #[arg(value_enum)]
    name: Check,
    /// Number of nodes.
    #[arg(long, default_value_t = 12)]
    nodes: usize,
    /// Measured messages.
    #[arg(long, default_value_t = 25)]
    messages: usize,
    /// The killed node must be declared dead by every other node within this many seconds.
    #[arg(long, default_value_t = 30)]
    dead_within: u64,
    /// Use this bavard binary instead of building a release one.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Cluster directory [default: target/acceptance].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The acceptance checks.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Check {
    /// Membership, topic pub/sub over SSE, failure detection (issue 4).
    Gossip,
}

const TOPIC: &str = "acceptance";

/// What the run measured.
#[derive(Debug, Serialize)]
struct Report {
    nodes: usize,
    /// Seconds until every node listed every node alive (from the end of `cluster up`).
    all_alive_s: Option<f64>,
    subscribers: usize,
    messages: usize,
    /// Per subscriber node: distinct measured messages received.
    received: BTreeMap<usize, usize>,
    /// Measured messages received more than once, over all subscribers.
    duplicates: usize,
    /// Seconds from the last publish until every subscriber had every message.
    delivered_s: Option<f64>,
    killed: usize,
    /// Seconds from the SIGKILL until every other node listed the killed node dead.
    dead_everywhere_s: Option<f64>,
    passed: bool,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let Check::Gossip = args.name;
    if args.nodes < 3 || args.messages == 0 {
        bail!("--nodes must be at least 3 and --messages at least 1");
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| crate::workspace_root().join("target").join("acceptance"));
    cluster::ensure_not_running(&dir)?;
    std::fs::create_dir_all(&dir)?;
    let up = UpArgs {
        nodes: args.nodes,
        quic: false,
        timeout: 120,
        bin: args.bin.clone(),
        config: None,
    };
    let _teardown = Teardown(dir.clone());
    let state = cluster::up(&dir, &up)?;
    let report = gossip(args, &state)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", human(&report, args));
    }
    if !report.passed {
        bail!("acceptance gossip failed");
    }
    Ok(())
}

fn gossip(args: &Args, state: &ClusterState) -> anyhow::Result<Report> {
    let n = state.nodes.len();
    let t = Instant::now();
    let all_alive_s = wait_for(Duration::from_secs(60), || {
        state.nodes.iter().all(|node| {
            member_states(&node.api)
                .is_some_and(|s| s.values().all(|v| v == "alive") && s.len() == n)
        })
    })
    .then(|| t.elapsed().as_secs_f64());

    let stop = Arc::new(AtomicBool::new(false));
    let subscribers: Vec<usize> = (1..n).collect();
    let inboxes: Vec<Arc<Mutex<Vec<String>>>> = subscribers
        .iter()
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();
    let threads: Vec<_> = subscribers
        .iter()
        .zip(&inboxes)
        .map(|(&i, inbox)| {
            let (api, inbox, stop) = (state.nodes[i].api.clone(), inbox.clone(), stop.clone());
            std::thread::spawn(move || subscribe(&api, &inbox, &stop))
        })
        .collect();

    // Warm-up: publish until one warm-up message reached every subscriber (overlay formed).
    let mut k = 0;
    let warmed = wait_for(Duration::from_secs(60), || {
        k += 1;
        publish(&state.nodes[k % 2].api, &format!("warm-up-{k}"));
        std::thread::sleep(Duration::from_millis(500));
        inboxes.iter().all(|inbox| {
            inbox
                .lock()
                .expect("inbox lock")
                .iter()
                .any(|m| m.starts_with("warm-up-"))
        })
    });
    let payloads: Vec<String> = (0..args.messages).map(|m| format!("msg-{m}")).collect();
    if warmed {
        for (m, payload) in payloads.iter().enumerate() {
            publish(&state.nodes[m % 2].api, payload);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let t = Instant::now();
    let count = |inbox: &Mutex<Vec<String>>| {
        let inbox = inbox.lock().expect("inbox lock");
        payloads
            .iter()
            .map(|p| inbox.iter().filter(|m| *m == p).count())
            .collect::<Vec<usize>>()
    };
    let delivered = warmed
        && wait_for(Duration::from_secs(30), || {
            inboxes
                .iter()
                .all(|inbox| count(inbox).iter().all(|&c| c >= 1))
        });
    let delivered_s = delivered.then(|| t.elapsed().as_secs_f64());
    // Late duplicates would arrive within a few hundred ms.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    let mut received = BTreeMap::new();
    let mut duplicates = 0;
    for (&node, inbox) in subscribers.iter().zip(&inboxes) {
        let counts = count(inbox);
        received.insert(node, counts.iter().filter(|&&c| c >= 1).count());
        duplicates += counts.iter().map(|&c| c.saturating_sub(1)).sum::<usize>();
    }

    // Failure detection: the middle node dies.
    let killed = n / 2;
    let victim = state.nodes[killed].peer_id.clone();
    cluster::signal(state.nodes[killed].pid, "KILL")?;
    let t = Instant::now();
    let others: Vec<_> = state.nodes.iter().filter(|x| x.index != killed).collect();
    let dead_everywhere = wait_for(Duration::from_secs(args.dead_within.max(60)), || {
        others.iter().all(|node| {
            member_states(&node.api).is_some_and(|s| s.get(&victim).is_none_or(|v| v == "dead"))
        })
    });
    let dead_everywhere_s = dead_everywhere.then(|| t.elapsed().as_secs_f64());

    let passed = all_alive_s.is_some()
        && delivered_s.is_some()
        && duplicates == 0
        && dead_everywhere_s.is_some_and(|s| s <= args.dead_within as f64);
    Ok(Report {
        nodes: n,
        all_alive_s,
        subscribers: subscribers.len(),
        messages: args.messages,
        received,
        duplicates,
        delivered_s,
        killed,
        dead_everywhere_s,
        passed,
    })
}

/// Polls `cond` every 200 ms until it holds (true) or `limit` passed (false).
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn publish(api: &str, payload: &str) {
    let path = format!("/v1/topics/{TOPIC}");
    if !matches!(
        workload::call(
            api,
            "POST",
            &path,
            payload.as_bytes(),
            Duration::from_secs(5)
        ),
        Call::Reply(200, ..)
    ) {
        eprintln!("publish of {payload} through {api} failed");
    }
}

/// Follows the topic's event stream on `api` and records every `data:` payload, duplicates
/// included, until `stop`.
fn subscribe(api: &str, inbox: &Mutex<Vec<String>>, stop: &AtomicBool) {
    let path = format!("/v1/topics/{TOPIC}/events");
    workload::follow_sse(
        || api.to_string(),
        &path,
        || stop.load(Ordering::Relaxed),
        |got| inbox.lock().expect("inbox lock").extend(got),
    );
}

fn human(r: &Report, args: &Args) -> String {
    let secs = |s: Option<f64>| s.map_or_else(|| "never".to_string(), |s| format!("{s:.1} s"));
    let complete = r.received.values().filter(|&&c| c == r.messages).count();
    format!(
        "acceptance gossip: {} nodes (default settings, loopback)\n\
         every node lists {} alive: {}\n\
         {} SSE subscribers (nodes 1-{}), {} messages published through nodes 0 and 1: {} of {} \
         subscribers got all of them, {} duplicates, complete {} after the last publish\n\
         node {} killed (SIGKILL): dead on every other node after {} (limit {} s)\n\
         {}\n",
        r.nodes,
        r.nodes,
        secs(r.all_alive_s),
        r.subscribers,
        r.nodes - 1,
        r.messages,
        complete,
        r.subscribers,
        r.duplicates,
        secs(r.delivered_s),
        r.killed,
        secs(r.dead_everywhere_s),
        args.dead_within,
        if r.passed { "PASS" } else { "FAIL" }
    )
}
