//! `cargo xtask bench dht` and `bench kv`: put/get throughput and latency against a local cluster
//! (`bench blobs` is in [`crate::bench_blobs`]).
//!
//! Starts a cluster with the `cluster` code (or reuses a running one with `--reuse`), waits until
//! it has joined, then writes K keys through random nodes' HTTP APIs with C client threads, then
//! reads every key back through a different random node, checking the value. Prints throughput
//! and p50/p99 latency per operation, and the errors; tears the cluster down unless reused.
//!
//! Two comparisons build on it: `bench dht --vs-stock` runs the same puts and gets on stock
//! rust-libp2p Kademlia nodes ([`crate::stock`]), and `bench kv --wrk` / `--vs etcd` loads the
//! store with `wrk` instead, against bavard and a local etcd cluster ([`crate::versus`]).
//! `--profile` prints the nodes' `*_seconds` histograms counted during the run.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cluster::{self, ClusterState, UpArgs};
use crate::http;
use crate::runs::{Teardown, quantile_ms as quantile};

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Put/get throughput and latency through the HTTP API of a local cluster; with
    /// `--vs-stock`, the same on stock rust-libp2p Kademlia nodes, side by side.
    Dht(DhtArgs),
    /// The replicated store: quorum writes and reads on a 5-node cluster (issue 5's targets),
    /// with fsync on every commit (default) or off (`--no-fsync`) to show what durability costs;
    /// with `--wrk` or `--vs etcd`, timed wrk phases against 3 nodes (and a 3-member etcd).
    Kv(KvArgs),
    /// Content-addressed blobs: the fetch rate from one provider, two and three, next to the
    /// raw rate of one libp2p stream between the same nodes (issue 15).
    Blobs(crate::bench_blobs::Args),
    /// Anti-entropy: the CPU of an idle round on a converged store of 1,000,000 keys, and a
    /// catch-up of 100,000 keys of 1 KiB (in-process, on the real store).
    Antientropy(crate::antientropy::AntiEntropyArgs),
}

#[derive(Debug, clap::Args)]
struct KvArgs {
    /// Number of nodes [default: 5; 3 with --wrk or --vs, for each system].
    #[arg(long)]
    nodes: Option<usize>,
    /// Number of keys to put, then get (without --wrk).
    #[arg(long, default_value_t = 2000)]
    keys: usize,
    /// Concurrent clients (without --wrk).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Consistency level of puts and gets (one, quorum, all).
    #[arg(long, default_value = "quorum")]
    consistency: String,
    /// Commit without fsync (benchmark only: a crash may lose acknowledged writes).
    #[arg(long)]
    no_fsync: bool,
    /// Run the same wrk workload against another system too, one after the other, and print
    /// both side by side.
    #[arg(long, value_enum)]
    vs: Option<Versus>,
    /// Load with wrk (one process per node, timed phases) instead of the built-in clients.
    #[arg(long)]
    wrk: bool,
    /// After the run, print the `*_seconds` histograms of every node's /metrics (p50/p99 per
    /// label set, counted during each phase).
    #[arg(long)]
    profile: bool,
    /// wrk threads in all (each wrk process gets max(1, threads / nodes)).
    #[arg(long, default_value_t = 2)]
    threads: u64,
    /// wrk connections in all, split over the nodes.
    #[arg(long, default_value_t = 32)]
    connections: u64,
    /// Seconds of each wrk phase (put, then get).
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Seconds after which wrk counts a request as a timeout (and leaves it out of latencies).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Keys to load into each system before measuring (with --wrk or --vs); gets then read them.
    #[arg(long, default_value_t = 0)]
    preload: u64,
    /// Use this bavard binary instead of building one.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Use this etcd binary instead of the one on the PATH.
    #[arg(long)]
    etcd_bin: Option<PathBuf>,
    /// Use this wrk binary instead of the one on the PATH.
    #[arg(long)]
    wrk_bin: Option<PathBuf>,
    /// Seed of the choice of nodes and keys [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Systems `bench kv --vs` compares bavard with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Versus {
    /// A local etcd cluster of the same size (etcd 3.4 from Debian's `etcd-server`).
    Etcd,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DhtArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 20)]
    pub(crate) nodes: usize,
    /// Number of keys to put, then get.
    #[arg(long, default_value_t = 200)]
    pub(crate) keys: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) value_size: usize,
    /// Consistency level of puts and gets (one, quorum, all).
    #[arg(long, default_value = "quorum")]
    pub(crate) consistency: String,
    /// Use the cluster already running in --dir instead of starting one.
    #[arg(long)]
    reuse: bool,
    /// Cluster directory [default: target/cluster with --reuse, else target/bench-cluster].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Use this bavard binary instead of building one.
    #[arg(long)]
    pub(crate) bin: Option<PathBuf>,
    /// Seed of the choice of nodes [default: from the clock].
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Then run the same puts and gets on a network of stock rust-libp2p Kademlia nodes of the
    /// same size (TCP loopback, one process) and print both side by side.
    #[arg(long)]
    pub(crate) vs_stock: bool,
    /// Use this bavard-stock binary instead of building one.
    #[arg(long)]
    pub(crate) stock_bin: Option<PathBuf>,
    /// When a stock get answers: at the first record from another peer (`first`), or when the
    /// Kademlia query ends by itself (`last`).
    #[arg(long, default_value = "first", value_parser = ["first", "last"])]
    pub(crate) stock_get_until: String,
}

/// The figures a run produces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    pub(crate) put_ops_s: f64,
    pub(crate) put_p50_ms: f64,
    pub(crate) put_p99_ms: f64,
    pub(crate) get_ops_s: f64,
    pub(crate) get_p50_ms: f64,
    pub(crate) get_p99_ms: f64,
    pub(crate) errors: usize,
    pub(crate) put_errors: usize,
    pub(crate) get_errors: usize,
    pub(crate) nodes: usize,
    pub(crate) keys: usize,
    /// The `*_seconds` histograms counted during the run (`--profile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) profile: Option<Vec<crate::versus::ProfileRow>>,
    /// What the put phase cost the network, from the nodes' /metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) put_path: Option<PathCost>,
    /// What the get phase cost the network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) get_path: Option<PathCost>,
}

/// The network cost of a phase per successful operation, from the difference of two scrapes of
/// every node's /metrics (so it includes what background work sent during the phase).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PathCost {
    /// Requests served by the nodes: Kademlia requests (`bavard_kad_requests_served`) plus
    /// replica-protocol requests (`bavard_stage_seconds{stage="replica_serve"}`).
    pub(crate) messages_per_op: f64,
    /// DHT lookups started (`bavard_lookup_hops` observations).
    pub(crate) lookups_per_op: f64,
    /// Mean hops of those lookups; `None` when there was none.
    pub(crate) hops_mean: Option<f64>,
}

/// One scrape of every node: histograms summed over the nodes, and the Kademlia requests served.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) hists: Vec<crate::prom::Histogram>,
    pub(crate) kad_served: f64,
}

impl Snapshot {
    /// Builds a snapshot from the /metrics text of each node.
    pub(crate) fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> anyhow::Result<Self> {
        let mut hists = Vec::new();
        let mut kad_served = 0.0;
        for t in texts {
            hists.extend(crate::prom::parse_histograms(t)?);
            kad_served += crate::prom::counter_sum(t, "bavard_kad_requests_served");
        }
        Ok(Self {
            hists: crate::prom::merge(hists),
            kad_served,
        })
    }

    /// Scrapes every node of `state`.
    fn scrape(state: &ClusterState) -> anyhow::Result<Self> {
        let apis: Vec<&str> = state.nodes.iter().map(|n| n.api.as_str()).collect();
        Self::scrape_apis(&apis)
    }

    /// Scrapes the nodes serving these HTTP APIs.
    pub(crate) fn scrape_apis(apis: &[&str]) -> anyhow::Result<Self> {
        let mut texts = Vec::new();
        for api in apis {
            let r = http::get(api, "/metrics", Duration::from_secs(10))?;
            if r.status != 200 {
                bail!("GET /metrics on {api}: HTTP {}", r.status);
            }
            texts.push(String::from_utf8_lossy(&r.body).into_owned());
        }
        Self::from_texts(texts.iter().map(String::as_str))
    }
}

/// What happened between `before` and `after`, per one of `ops` operations.
pub(crate) fn path_cost(before: &Snapshot, after: &Snapshot, ops: usize) -> PathCost {
    let d = crate::prom::delta(&after.hists, &before.hists);
    let find = |name: &str, stage: Option<&str>| {
        d.iter().find(|h| {
            h.name == name
                && stage.is_none_or(|st| h.labels.iter().any(|(k, v)| k == "stage" && v == st))
        })
    };
    let replica = find("bavard_stage_seconds", Some("replica_serve")).map_or(0.0, |h| h.count);
    let (lookups, hops_sum) =
        find("bavard_lookup_hops", None).map_or((0.0, 0.0), |h| (h.count, h.sum));
    let kad = (after.kad_served - before.kad_served).max(0.0);
    let ops = ops.max(1) as f64;
    PathCost {
        messages_per_op: (kad + replica) / ops,
        lookups_per_op: lookups / ops,
        hops_mean: (lookups > 0.0).then(|| hops_sum / lookups),
    }
}

/// Runs `cargo xtask bench …`.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Bench::Blobs(b) => crate::bench_blobs::run(b),
        Bench::Dht(a) if a.vs_stock => crate::stock::run(a),
        Bench::Dht(a) => {
            let report = dht_report(a, None, false)?;
            print_report(&report, a, "dht")
        }
        Bench::Kv(k) if k.wrk || k.vs.is_some() => crate::versus::run(&crate::versus::Settings {
            nodes: k.nodes.unwrap_or(3),
            threads: k.threads,
            connections: k.connections,
            duration: Duration::from_secs(k.duration),
            timeout: Duration::from_secs(k.timeout),
            preload: k.preload,
            value_size: k.value_size,
            consistency: k.consistency.clone(),
            no_fsync: k.no_fsync,
            vs_etcd: k.vs == Some(Versus::Etcd),
            profile: k.profile,
            bin: k.bin.clone(),
            etcd_bin: k.etcd_bin.clone(),
            wrk_bin: k.wrk_bin.clone(),
            seed: k.seed,
            json: k.json,
        }),
        Bench::Antientropy(a) => crate::antientropy::run(a),
        Bench::Kv(k) => {
            if k.preload > 0 {
                bail!("--preload needs --wrk or --vs");
            }
            let dir = crate::workspace_root()
                .join("target")
                .join("bench-kv-cluster");
            std::fs::create_dir_all(&dir)?;
            let config = dir.join("bench-kv.toml");
            std::fs::write(&config, format!("[store]\nfsync = {}\n", !k.no_fsync))?;
            let a = DhtArgs {
                nodes: k.nodes.unwrap_or(5),
                keys: k.keys,
                concurrency: k.concurrency,
                value_size: k.value_size,
                consistency: k.consistency.clone(),
                reuse: false,
                dir: Some(dir),
                bin: k.bin.clone(),
                seed: k.seed,
                json: k.json,
                vs_stock: false,
                stock_bin: None,
                stock_get_until: "first".into(),
            };
            let report = dht_report(&a, Some(config), k.profile)?;
            print_report(&report, &a, "kv")
        }
    }
}

fn print_report(report: &Report, a: &DhtArgs, label: &str) -> anyhow::Result<()> {
    if a.json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", human(report, a, label));
        if let Some(rows) = &report.profile {
            print!(
                "\nprofile ({label} run, /metrics summed over the nodes, counted during the run):\n{}",
                crate::versus::profile_table(rows)
            );
        }
    }
    Ok(())
}

/// Runs `bench dht` (or `bench kv` with its `config`) on a cluster it starts (and stops
/// before returning) or reuses, and returns the figures.
pub(crate) fn dht_report(
    a: &DhtArgs,
    config: Option<PathBuf>,
    profile: bool,
) -> anyhow::Result<Report> {
    if a.keys == 0 || a.concurrency == 0 {
        bail!("--keys and --concurrency must be at least 1");
    }
    let dir = a.dir.clone().unwrap_or_else(|| {
        if a.reuse {
            cluster::default_dir()
        } else {
            crate::workspace_root().join("target").join("bench-cluster")
        }
    });
    let (state, _teardown) = if a.reuse {
        let state = cluster::load(&dir)?;
        cluster::wait_joined(&state, Instant::now() + Duration::from_secs(60))?;
        (state, None)
    } else {
        let up = UpArgs {
            nodes: a.nodes,
            quic: false,
            timeout: 180,
            bin: a.bin.clone(),
            config,
        };
        // Never tear down a cluster that is not ours; arm the teardown before starting, so
        // that a failed start is cleaned up too.
        cluster::ensure_not_running(&dir)?;
        let guard = Teardown(dir.clone());
        (cluster::up(&dir, &up)?, Some(guard))
    };
    wait_converged(&state, Duration::from_secs(60));
    // Scrapes before the put phase, between the phases and after the get phase.
    let mut snaps: Vec<Option<Snapshot>> = Vec::new();
    let mut report = measure(&state, a, &dir, &mut || {
        snaps.push(
            Snapshot::scrape(&state)
                .map_err(|e| eprintln!("could not scrape /metrics: {e:#}"))
                .ok(),
        );
    })?;
    if let [Some(s0), Some(s1), Some(s2)] = &snaps[..] {
        let put_ok = report.keys.saturating_sub(report.put_errors);
        let get_ok = report.keys.saturating_sub(report.get_errors);
        report.put_path = Some(path_cost(s0, s1, put_ok));
        report.get_path = Some(path_cost(s1, s2, get_ok));
        if profile {
            report.profile = Some(crate::versus::profile_rows(&crate::prom::delta(
                &s2.hists, &s0.hists,
            )));
        }
    }
    Ok(report)
}

/// Waits until every node sees every member alive and has the other nodes in its routing table
/// (at most k = 20 of them), up to `limit`: before that, nodes may place a key on different
/// replicas, and a read through one node may miss a write through another. Going on anyway
/// after `limit`, with a warning.
pub(crate) fn wait_converged(state: &ClusterState, limit: Duration) {
    let n = state.nodes.len();
    let started = Instant::now();
    loop {
        let behind: Vec<usize> = state
            .nodes
            .iter()
            .filter(|node| {
                cluster::fetch_status(&node.api, Duration::from_secs(2))
                    .map_or(true, |s| !converged(&s, n))
            })
            .map(|node| node.index)
            .collect();
        if behind.is_empty() {
            eprintln!(
                "membership converged ({n} members alive everywhere) after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        if started.elapsed() > limit {
            eprintln!(
                "warning: after {limit:?}, nodes {behind:?} do not see every member alive yet; measuring anyway"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Whether a node of an `n`-node cluster sees every member alive and knows its peers.
fn converged(s: &cluster::NodeStatus, n: usize) -> bool {
    s.members_alive >= n && s.routing_table_size >= (n - 1).min(20)
}

/// A small xorshift generator: enough to spread requests over nodes, no dependency.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// For each key, the node it is put through and a different node it is read from (the same
/// one only in a one-node cluster).
fn assign_nodes(keys: usize, nodes: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = XorShift::new(seed);
    (0..keys)
        .map(|_| {
            let put = rng.below(nodes);
            let get = if nodes > 1 {
                (put + 1 + rng.below(nodes - 1)) % nodes
            } else {
                put
            };
            (put, get)
        })
        .collect()
}

/// The value written under key `i`: `size` bytes depending on `i`.
fn value(i: usize, size: usize) -> Vec<u8> {
    let tag = format!("{i}:");
    tag.bytes().cycle().take(size).collect()
}

/// Runs `op(i)` for every i in 0..n on `threads` threads; returns the latencies of the
/// successes, the number of failures and the wall time. Each thread runs `warm` first (opening
/// its connections), and the clock starts once every thread has.
fn phase(
    n: usize,
    threads: usize,
    label: &'static str,
    warm: &(dyn Fn() + Sync),
    op: impl Fn(usize) -> anyhow::Result<()> + Sync,
) -> (Vec<Duration>, usize, Duration, Vec<String>) {
    let threads = threads.min(n).max(1);
    let ready = std::sync::Barrier::new(threads + 1);
    let next = AtomicUsize::new(0);
    let lat = Mutex::new(Vec::with_capacity(n));
    let errs = Mutex::new(Vec::new());
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:<5} [{bar:30}] {pos}/{len} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(label);
    let mut start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                warm();
                ready.wait();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    match op(i) {
                        Ok(()) => lat.lock().expect("lock").push(t.elapsed()),
                        Err(e) => errs.lock().expect("lock").push(format!("{e:#}")),
                    }
                    bar.inc(1);
                }
            });
        }
        ready.wait();
        start = Instant::now();
    });
    let wall = start.elapsed();
    bar.finish_and_clear();
    let errs = errs.into_inner().expect("lock");
    let mut lat = lat.into_inner().expect("lock");
    lat.sort_unstable();
    (lat, errs.len(), wall, errs)
}

/// An error naming the node and the answer unless `r` is a 200.
fn expect_200(r: &http::Response, method: &str, node: usize) -> anyhow::Result<()> {
    if r.status != 200 {
        bail!(
            "{method} on node {node}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    Ok(())
}

/// The put phase, then the get phase; `between` runs before, between and after them.
fn measure(
    state: &ClusterState,
    a: &DhtArgs,
    dir: &Path,
    between: &mut dyn FnMut(),
) -> anyhow::Result<Report> {
    let n = state.nodes.len();
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let plan = assign_nodes(a.keys, n, seed);
    let run_id = format!("{seed:x}");
    let key = |i: usize| format!("bench-{run_id}-{i}");
    let timeout = Duration::from_secs(30);
    let q = &a.consistency;

    // Every load thread opens its connection to every node before the clock starts (as wrk
    // does): the phases time the operations, not TCP handshakes with the API.
    let warm = || {
        for node in &state.nodes {
            let _ = http::request_kept(&node.api, "GET", "/v1/status", &[], timeout);
        }
    };
    between();
    let (put_lat, put_errors, put_wall, put_msgs) =
        phase(a.keys, a.concurrency, "put", &warm, |i| {
            let node = &state.nodes[plan[i].0];
            let path = format!("/v1/kv/{}?consistency={q}", key(i));
            let r = http::request_kept(&node.api, "PUT", &path, &value(i, a.value_size), timeout)?;
            expect_200(&r, "PUT", node.index)
        });
    between();
    let (get_lat, get_errors, get_wall, get_msgs) =
        phase(a.keys, a.concurrency, "get", &warm, |i| {
            let node = &state.nodes[plan[i].1];
            let path = format!("/v1/kv/{}?consistency={q}", key(i));
            let r = http::request_kept(&node.api, "GET", &path, &[], timeout)?;
            expect_200(&r, "GET", node.index)?;
            if r.body != value(i, a.value_size) {
                bail!("GET on node {}: wrong value for {}", node.index, key(i));
            }
            Ok(())
        });
    between();
    for (what, msgs) in [("put", &put_msgs), ("get", &get_msgs)] {
        for m in msgs.iter().take(5) {
            eprintln!("{what} error: {m}");
        }
        if msgs.len() > 5 {
            eprintln!(
                "… and {} more {what} errors (node logs: {})",
                msgs.len() - 5,
                dir.display()
            );
        }
    }
    let rate = |ok: usize, wall: Duration| ok as f64 / wall.as_secs_f64().max(1e-9);
    Ok(Report {
        put_ops_s: rate(put_lat.len(), put_wall),
        put_p50_ms: quantile(&put_lat, 0.50),
        put_p99_ms: quantile(&put_lat, 0.99),
        get_ops_s: rate(get_lat.len(), get_wall),
        get_p50_ms: quantile(&get_lat, 0.50),
        get_p99_ms: quantile(&get_lat, 0.99),
        errors: put_errors + get_errors,
        put_errors,
        get_errors,
        nodes: n,
        keys: a.keys,
        profile: None,
        put_path: None,
        get_path: None,
    })
}

fn human(r: &Report, a: &DhtArgs, label: &str) -> String {
    let mut out = format!(
        "bench {label}: {} nodes, {} keys, {} clients, {}-byte values, consistency {}\n\
         put  {:>8.1} ops/s  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}\n\
         get  {:>8.1} ops/s  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}\n",
        r.nodes,
        r.keys,
        a.concurrency,
        a.value_size,
        a.consistency,
        r.put_ops_s,
        r.put_p50_ms,
        r.put_p99_ms,
        r.put_errors,
        r.get_ops_s,
        r.get_p50_ms,
        r.get_p99_ms,
        r.get_errors,
    );
    for (phase, cost) in [("put", &r.put_path), ("get", &r.get_path)] {
        if let Some(c) = cost {
            out.push_str(&format!("{phase}  network: {}\n", c.describe()));
        }
    }
    out
}

impl PathCost {
    /// `4.00 requests served/op, 0.01 lookups/op (2.0 hops)`.
    pub(crate) fn describe(&self) -> String {
        let mut s = format!(
            "{:.2} requests served/op (Kademlia + replica), {:.2} DHT lookups/op",
            self.messages_per_op, self.lookups_per_op
        );
        if let Some(h) = self.hops_mean {
            s.push_str(&format!(" of {h:.1} hops on average"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_read_from_a_node_other_than_the_one_it_was_put_through() {
        let plan = assign_nodes(500, 7, 42);
        assert!(plan.iter().all(|&(p, g)| p < 7 && g < 7 && p != g));
        // The choice spreads over every node.
        for node in 0..7 {
            assert!(plan.iter().any(|&(p, _)| p == node));
            assert!(plan.iter().any(|&(_, g)| g == node));
        }
        assert_eq!(plan, assign_nodes(500, 7, 42), "same seed, same plan");
    }

    #[test]
    fn a_node_has_converged_once_it_sees_every_member_and_knows_its_peers() {
        let status = |members_alive, routing_table_size| cluster::NodeStatus {
            routing_table_size,
            members_alive,
            records_stored: 0,
            connected_peers: 0,
        };
        assert!(converged(&status(3, 2), 3));
        assert!(!converged(&status(2, 2), 3));
        assert!(!converged(&status(3, 1), 3));
        // Past k = 20 peers, a full table is enough.
        assert!(converged(&status(30, 20), 30));
        assert!(converged(&status(1, 0), 1));
    }

    #[test]
    fn the_network_cost_of_a_phase_is_the_difference_of_two_scrapes_per_operation() {
        let scrape = |served: u32, serves: u32, lookups: u32, hops: u32| {
            format!(
                "bavard_kad_requests_served_total {served}\n\
                 bavard_stage_seconds_bucket{{stage=\"replica_serve\",le=\"0.001\"}} {serves}\n\
                 bavard_stage_seconds_bucket{{stage=\"replica_serve\",le=\"+Inf\"}} {serves}\n\
                 bavard_stage_seconds_count{{stage=\"replica_serve\"}} {serves}\n\
                 bavard_stage_seconds_bucket{{stage=\"commit\",le=\"+Inf\"}} 1000\n\
                 bavard_lookup_hops_bucket{{le=\"1.0\"}} {lookups}\n\
                 bavard_lookup_hops_bucket{{le=\"+Inf\"}} {lookups}\n\
                 bavard_lookup_hops_sum {hops}\n\
                 bavard_lookup_hops_count {lookups}\n"
            )
        };
        // Two nodes, scraped before and after 100 operations.
        let before =
            Snapshot::from_texts([scrape(10, 5, 1, 2).as_str(), &scrape(0, 5, 0, 0)]).unwrap();
        let after =
            Snapshot::from_texts([scrape(20, 205, 3, 6).as_str(), &scrape(10, 105, 0, 0)]).unwrap();
        assert_eq!(before.kad_served, 10.0);
        let c = path_cost(&before, &after, 100);
        assert_eq!(c.messages_per_op, (20.0 + 300.0) / 100.0);
        assert_eq!(c.lookups_per_op, 0.02);
        assert_eq!(c.hops_mean, Some(2.0));
        assert!(
            c.describe().contains("3.20 requests served/op"),
            "{}",
            c.describe()
        );
        // Without lookups there is no mean, and no operation does not divide by zero.
        let c = path_cost(&before, &before, 0);
        assert_eq!((c.messages_per_op, c.hops_mean), (0.0, None));
        assert!(!c.describe().contains("hops"));
    }

    #[test]
    fn a_one_node_cluster_reads_from_the_node_it_wrote_to() {
        assert_eq!(assign_nodes(3, 1, 9), [(0, 0), (0, 0), (0, 0)]);
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let samples: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(quantile(&samples, 0.5), 50.0);
        assert_eq!(quantile(&samples, 0.99), 99.0);
        assert_eq!(quantile(&[ms(7)], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn values_have_the_requested_size_and_differ_per_key() {
        assert_eq!(value(3, 100).len(), 100);
        assert_eq!(value(3, 0).len(), 0);
        assert_ne!(value(1, 10), value(2, 10));
    }

    #[test]
    fn the_json_report_has_the_documented_fields() {
        let r = Report {
            put_ops_s: 1.0,
            put_p50_ms: 2.0,
            put_p99_ms: 3.0,
            get_ops_s: 4.0,
            get_p50_ms: 5.0,
            get_p99_ms: 6.0,
            errors: 0,
            put_errors: 0,
            get_errors: 0,
            nodes: 20,
            keys: 200,
            profile: None,
            put_path: None,
            get_path: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        for f in [
            "put_ops_s",
            "put_p50_ms",
            "put_p99_ms",
            "get_ops_s",
            "get_p50_ms",
            "get_p99_ms",
            "errors",
            "nodes",
            "keys",
        ] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
    }
}
