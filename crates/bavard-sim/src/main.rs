//! `bavard-sim`: runs simulator experiments and prints their figures.
//!
//! ```text
//! bavard-sim lookup --nodes 10000 --lookups 1000 --seed 7 --baseline [--json]
//! bavard-sim gossip --nodes 1000 --messages 100 --seed 7 [--loss P] [--kill F] [--baseline] [--json]
//! bavard-sim membership --nodes 1000 --kill 10 --loss 0.1 --seed 7 [--json]
//! bavard-sim kv --nodes 1000 --clients 50 --ops 100000 --partitions 3 --kill 20 --skew-ms 200 --seed 7 [--json]
//! bavard-sim kv --cas --nodes 100 --seed 7 [--json]
//! bavard-sim blobs --nodes 1000 --seeders 1 --leechers 200 --size-mib 256 --seed 1 [--baseline] [--json]
//! ```
//!
//! `kv` exits with 1 when the checker finds a lost write, a phantom or stale read, or the
//! replicas do not converge (with `--cas`: a history that is not linearizable, a lost or
//! invented increment); every subcommand exits with 2 on bad parameters.
//!
//! Also reachable as `cargo xtask sim ARGS…`. One subcommand per experiment.

use std::process::ExitCode;
use std::time::Duration;

use bavard_sim::{
    Attack, BlobsReport, BlobsSimConfig, GossipReport, GossipSimConfig, KvReport, KvSimConfig,
    LookupSimConfig, MembershipReport, MembershipSimConfig, Start, StrategyReport, run_blobs_sim,
    run_gossip_sim, run_kv_sim, run_lookup_sim, run_membership_sim,
};
use clap::{Parser, Subcommand};

/// Deterministic discrete-event simulations of bavard's protocol cores.
#[derive(Debug, Parser)]
#[command(name = "bavard-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Kademlia lookups: bavard's termination against libp2p's classic rule.
    Lookup(LookupArgs),
    /// Topic broadcast: HyParView + Plumtree against a gossipsub-like mesh.
    Gossip(GossipArgs),
    /// SWIM + Lifeguard membership: failure detection time, false positives, cost.
    Membership(MembershipArgs),
    /// The replicated store under faults, every operation checked (lost writes, phantom and
    /// stale reads, convergence).
    Kv(KvArgs),
    /// Swarm downloads of one blob over links of limited bandwidth: completion times and how
    /// evenly upload is spread, against one provider at a time.
    Blobs(BlobsArgs),
}

#[derive(Debug, clap::Args)]
struct BlobsArgs {
    /// Number of nodes in the network.
    #[arg(long, default_value_t = 1_000)]
    nodes: u32,
    /// Nodes holding the whole blob at time zero.
    #[arg(long, default_value_t = 1)]
    seeders: u32,
    /// Nodes that fetch it.
    #[arg(long, default_value_t = 200)]
    leechers: u32,
    /// Blob size in MiB (fractions allowed).
    #[arg(long, default_value_t = 256.0)]
    size_mib: f64,
    /// Seed of every random choice: a run replays exactly from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Upload capacity of every node, Mbit/s.
    #[arg(long, default_value_t = 100.0)]
    upload_mbps: f64,
    /// Download capacity of every node, Mbit/s.
    #[arg(long, default_value_t = 100.0)]
    download_mbps: f64,
    /// Heterogeneous capacities: each node's are multiplied by a seeded factor in [1-s, 1+s].
    #[arg(long, default_value_t = 0.0)]
    capacity_spread: f64,
    /// Leechers arrive uniformly over this many virtual milliseconds (0: all at once).
    #[arg(long, default_value_t = 0)]
    arrival_ms: u64,
    /// Seconds between a leecher's provider lookups (the node's provider_refresh_secs).
    #[arg(long, default_value_t = 10.0)]
    refresh_s: f64,
    /// Providers in one fetch at once (the node's max_providers_per_fetch).
    #[arg(long, default_value_t = 8)]
    max_providers: usize,
    /// Leechers announce themselves only once complete (the node before `[blobs]
    /// announce_partial`); by default they announce from their first verified block, as the
    /// node does.
    #[arg(long)]
    announce_complete: bool,
    /// Seeders that depart (crash) mid-run.
    #[arg(long, default_value_t = 0)]
    depart: u32,
    /// When they depart, virtual seconds.
    #[arg(long, default_value_t = 10.0)]
    depart_at_s: f64,
    /// Also run the baseline: the same scheduler given one provider at a time.
    #[arg(long)]
    baseline: bool,
    /// One JSON object per line and strategy instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct KvArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 1_000)]
    nodes: u32,
    /// Concurrent clients, each one operation at a time through a random live node
    /// [default: 50; with --cas: 10].
    #[arg(long)]
    clients: Option<u32>,
    /// Operations issued in all [default: 100000; with --cas: 6000].
    #[arg(long)]
    ops: Option<u64>,
    /// Distinct keys [default: 1000; with --cas: 5 hot keys].
    #[arg(long)]
    keys: Option<u32>,
    /// Network partitions into two random halves during the workload [default: 0; with
    /// --cas: 2].
    #[arg(long)]
    partitions: Option<u32>,
    /// Seconds each partition lasts.
    #[arg(long, default_value_t = 5.0)]
    partition_s: f64,
    /// Node crashes during the workload, each followed by a restart with the state kept
    /// [default: 0; with --cas: 3].
    #[arg(long)]
    kill: Option<u32>,
    /// Seconds a crashed node stays down.
    #[arg(long, default_value_t = 20.0)]
    down_s: f64,
    /// Largest clock offset of a node, either way, in milliseconds [default: 0; with --cas:
    /// 200].
    #[arg(long)]
    skew_ms: Option<u64>,
    /// Replicas per key.
    #[arg(long, default_value_t = 3)]
    replication: usize,
    /// Seed of every random choice: a run replays exactly from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Linearizable counters instead of the mixed workload: clients increment hot keys by
    /// serial read then compare-and-set (Paxos), and the linearizability checker judges the
    /// history.
    #[arg(long)]
    cas: bool,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct GossipArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 1_000)]
    nodes: u32,
    /// Number of measured messages.
    #[arg(long, default_value_t = 100)]
    messages: u32,
    /// Seed of every random choice: a run replays exactly from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Probability that a message is lost, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Share of the nodes killed at once after the warm-up, before the measured messages.
    #[arg(long, default_value_t = 0.0)]
    kill: f64,
    /// Virtual milliseconds between two publications.
    #[arg(long, default_value_t = 1_000)]
    interval_ms: u64,
    /// Unmeasured warm-up messages sent first, while the broadcast tree forms.
    #[arg(long, default_value_t = 5)]
    warmup: u32,
    /// Virtual seconds the overlay settles after the last join.
    #[arg(long, default_value_t = 60)]
    settle_s: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Also close the connections to killed active-view neighbours this many milliseconds after
    /// the kill (keepalive timeout); without it, dead peers are only found by sending to them.
    #[arg(long)]
    conn_close_ms: Option<u64>,
    /// HyParView active view size (default: the core's, 12).
    #[arg(long)]
    active_view: Option<usize>,
    /// Plumtree tree-optimisation threshold in hops (default: the core's, 2).
    #[arg(long)]
    optimization_threshold: Option<u16>,
    /// Also run a gossipsub-like mesh (D = 6, full payloads, no IHAVE) on the same network.
    #[arg(long)]
    baseline: bool,
    /// One JSON object per line and strategy instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct MembershipArgs {
    /// Number of members.
    #[arg(long, default_value_t = 1_000)]
    nodes: u32,
    /// Members crashed at once after the steady state.
    #[arg(long, default_value_t = 10)]
    kill: u32,
    /// Probability that a message is lost, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Seed of every random choice: a run replays exactly from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Virtual seconds of steady state measured between convergence and the crash.
    #[arg(long, default_value_t = 30)]
    steady_s: u64,
    /// Virtual milliseconds between two joins (with `--start join`).
    #[arg(long, default_value_t = 10)]
    join_interval_ms: u64,
    /// How the cluster is formed: `join` (node i joins via node 0 at i × join interval),
    /// `converged` (every member starts knowing every other as alive), or `auto`: join up to
    /// 1,000 members, converged above (at 100 joins/s larger clusters do not converge).
    #[arg(long, value_enum, default_value_t = StartArg::Auto)]
    start: StartArg,
    /// Probe a ring neighbour every this many protocol periods (0: pure SWIM round-robin;
    /// default: the core's, 2).
    #[arg(long)]
    ring_probe_every: Option<u32>,
    /// Members asked to probe a target indirectly (SWIM's k; default: the core's).
    #[arg(long)]
    indirect_checks: Option<usize>,
    /// No fallback direct ping with the indirect probes (memberlist's TCP fallback ping).
    #[arg(long)]
    no_fallback_ping: bool,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StartArg {
    Auto,
    Join,
    Converged,
}

#[derive(Debug, clap::Args)]
struct LookupArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 1_000)]
    nodes: u32,
    /// Number of lookups measured per strategy.
    #[arg(long, default_value_t = 1_000)]
    lookups: u32,
    /// Seed of every random choice: a run replays exactly from it.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Lookup parallelism of our strategy (the baseline uses libp2p's 3).
    #[arg(long, default_value_t = 3)]
    alpha: usize,
    /// Bucket size and lookup result size.
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Probability that a message is lost, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Share of the nodes killed after the join, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Request timeout, in milliseconds of virtual time.
    #[arg(long, default_value_t = 1_000)]
    timeout_ms: u64,
    /// Also run libp2p's classic termination (α = 3, wait for the k closest) on the same network.
    #[arg(long)]
    baseline: bool,
    /// Fill routing tables from global knowledge instead of joining with lookups (for ≥ 50,000
    /// nodes).
    #[arg(long)]
    fast_join: bool,
    /// Seed each lookup with the k closest live nodes, as a converged gossip membership knows
    /// them (zero-hop routing; falls back to the walk when they fail).
    #[arg(long)]
    membership: bool,
    /// Share of the nodes that turn adversarial after the join, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    adversary: f64,
    /// What the adversaries do: drop requests, misroute (answer with each other only), or
    /// eclipse (answer with fabricated identities at dead addresses).
    #[arg(long, value_enum, default_value_t = AttackArg::Drop)]
    attack: AttackArg,
    /// Disjoint lookup paths (S/Kademlia). Default: 8 with --adversary, else 1.
    #[arg(long)]
    disjoint: Option<usize>,
    /// Requests per peer: a timed-out request is retried until this many were sent.
    #[arg(long, default_value_t = 2)]
    attempts: u32,
    /// Turn the defences off (one path, one attempt, no IP-group cap), for comparison.
    #[arg(long)]
    no_defences: bool,
    /// One JSON object per line and strategy instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum AttackArg {
    Drop,
    Misroute,
    Eclipse,
}

impl From<AttackArg> for Attack {
    fn from(a: AttackArg) -> Self {
        match a {
            AttackArg::Drop => Attack::Drop,
            AttackArg::Misroute => Attack::Misroute,
            AttackArg::Eclipse => Attack::Eclipse,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Lookup(args) => lookup(&args),
        Command::Gossip(args) => gossip(&args),
        Command::Membership(args) => membership(&args),
        Command::Kv(args) => kv(&args),
        Command::Blobs(args) => blobs(&args),
    }
}

fn blobs(args: &BlobsArgs) -> ExitCode {
    let mbps = |m: f64| m * 1e6 / 8.0;
    let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO);
    let config = BlobsSimConfig {
        nodes: args.nodes,
        seeders: args.seeders,
        leechers: args.leechers,
        size: (args.size_mib.max(0.0) * 1_048_576.0) as u64,
        seed: args.seed,
        upload: mbps(args.upload_mbps),
        download: mbps(args.download_mbps),
        capacity_spread: args.capacity_spread,
        arrival: Duration::from_millis(args.arrival_ms),
        refresh: secs(args.refresh_s).max(Duration::from_millis(1)),
        max_providers: args.max_providers.max(1),
        announce_partial: !args.announce_complete,
        baseline: args.baseline,
        depart: args.depart,
        depart_at: secs(args.depart_at_s),
        ..BlobsSimConfig::default()
    };
    let reports = match run_blobs_sim(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bavard-sim blobs: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        for r in &reports {
            println!("{}", serde_json::to_string(r).expect("a report serialises"));
        }
    } else {
        print_blobs_table(args, &reports);
    }
    ExitCode::SUCCESS
}

fn print_blobs_table(args: &BlobsArgs, reports: &[BlobsReport]) {
    let Some(first) = reports.first() else { return };
    println!(
        "blobs: {} nodes, {} seeders, {} leechers {}, {:.0} MiB = {} blocks, {}/{} Mbit/s up/down per node{}, \
         seed {}; discovery: {}{}",
        first.nodes,
        first.seeders,
        first.leechers,
        if args.arrival_ms == 0 {
            "all at t=0".to_owned()
        } else {
            format!("arriving over {} ms", args.arrival_ms)
        },
        first.size_bytes as f64 / 1_048_576.0,
        first.blocks,
        args.upload_mbps,
        args.download_mbps,
        if args.capacity_spread > 0.0 {
            format!(
                " (x[{:.2}, {:.2}])",
                1.0 - args.capacity_spread,
                1.0 + args.capacity_spread
            )
        } else {
            String::new()
        },
        first.seed,
        if first.announce_partial {
            "leechers announce from their first block (as the node does)"
        } else {
            "complete nodes only (--announce-complete)"
        },
        if first.departed > 0 {
            format!(
                "; {} seeders depart at {} s",
                first.departed, args.depart_at_s
            )
        } else {
            String::new()
        }
    );
    println!(
        "done = leechers complete; completion s = arrival to last block; ideal = blob x leechers / all upload \
         (or one download); up: among nodes that uploaded, max/mean, Gini, CV, seeders' share; \
         waste = bytes received twice / bytes needed; req/blk = blocks requested per block needed; \
         prov = providers that delivered to a leecher (mean/max)"
    );
    println!(
        "{:<9} {:>4} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5} {:>7} {:>5} {:>5} {:>6} {:>6} {:>7} {:>9} {:>7} {:>7}",
        "strategy",
        "prov",
        "done",
        "p50_s",
        "p90_s",
        "p99_s",
        "max_s",
        "ideal_s",
        "upldr",
        "max/mn",
        "gini",
        "cv",
        "seedsh",
        "waste",
        "req/blk",
        "prov_used",
        "rss_mb",
        "wall_s"
    );
    for r in reports {
        println!(
            "{:<9} {:>4} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>5} {:>7.2} {:>5.2} {:>5.2} {:>6.3} {:>6.4} {:>7.3} {:>5.1}/{:<3} {:>7} {:>7.1}",
            r.strategy,
            r.max_providers,
            format!("{}/{}", r.completed, r.leechers),
            r.completion_s_p50,
            r.completion_s_p90,
            r.completion_s_p99,
            r.completion_s_max,
            r.ideal_s,
            r.uploaders,
            r.upload_max_over_mean,
            r.upload_gini,
            r.upload_cv,
            r.seeder_share,
            r.wasted_share,
            r.blocks_requested_per_block,
            r.providers_used_mean,
            r.providers_used_max,
            r.peak_rss_mb,
            r.wall_s
        );
    }
    if let [ours, baseline, ..] = reports {
        println!(
            "ratio baseline/swarm: completion p50 {:.2}x, p90 {:.2}x, max {:.2}x; seeders' share {:.2}x",
            baseline.completion_s_p50 / ours.completion_s_p50,
            baseline.completion_s_p90 / ours.completion_s_p90,
            baseline.completion_s_max / ours.completion_s_max,
            baseline.seeder_share / ours.seeder_share
        );
    }
    if let Some(last) = reports.last() {
        println!(
            "memory: peak RSS {} MB = {} B per node; {} block messages in the last run",
            last.peak_rss_mb, last.bytes_per_node, last.messages
        );
    }
}

fn kv(args: &KvArgs) -> ExitCode {
    // The compare-and-set run has its own defaults: few clients on a few hot keys (every
    // operation contends), with partitions, crashes and skew.
    let pick = |given: Option<u64>, plain: u64, cas: u64| {
        given.unwrap_or(if args.cas { cas } else { plain })
    };
    let pick32 = |given: Option<u32>, plain: u32, cas: u32| {
        given.unwrap_or(if args.cas { cas } else { plain })
    };
    let config = KvSimConfig {
        nodes: args.nodes,
        clients: pick32(args.clients, 50, 10),
        ops: pick(args.ops, 100_000, 6_000),
        keys: pick32(args.keys, 1_000, 5),
        partitions: pick32(args.partitions, 0, 2),
        partition_for: Duration::from_secs_f64(args.partition_s.max(0.0)),
        kills: pick32(args.kill, 0, 3),
        down_for: Duration::from_secs_f64(args.down_s.max(0.0)),
        skew: Duration::from_millis(pick(args.skew_ms, 0, 200)),
        replication: args.replication,
        seed: args.seed,
        cas: args.cas,
        ..KvSimConfig::default()
    };
    let report = match run_kv_sim(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bavard-sim kv: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("a report serialises")
        );
    } else {
        print_kv_table(&config, &report);
    }
    if report.is_valid() {
        ExitCode::SUCCESS
    } else if let Some(cas) = &report.cas {
        eprintln!(
            "bavard-sim kv --cas: linearizable {:?}, lost increments {}, phantom increments {}, \
             finals unread {}, converged {}",
            cas.linearizable,
            cas.lost_increments,
            cas.phantom_increments,
            cas.finals_unread,
            report.converged
        );
        ExitCode::from(1)
    } else {
        eprintln!(
            "bavard-sim kv: the history checker found problems (lost {}, phantom {}, stale {}, converged {})",
            report.lost_writes, report.phantom_reads, report.stale_reads, report.converged
        );
        ExitCode::from(1)
    }
}

fn print_kv_table(config: &KvSimConfig, r: &KvReport) {
    println!(
        "kv: {} nodes, N = {}, {} clients, {} ops over {} keys, seed {}; faults: {} partitions of {:.0} s, \
         {} crashes of {:.0} s ({} not run), clock skew up to {} ms",
        r.nodes,
        config.replication,
        r.clients,
        r.ops,
        config.keys,
        r.seed,
        r.partitions_run,
        config.partition_for.as_secs_f64(),
        r.kills_run,
        config.down_for.as_secs_f64(),
        r.faults_skipped,
        config.skew.as_millis()
    );
    println!(
        "ops: {} ok, {} fail, {} unknown; ok puts one/quorum/all {}/{}/{}, deletes {}/{}/{}, gets {}/{}/{}",
        r.ops_ok,
        r.ops_fail,
        r.ops_unknown,
        r.puts_ok.one,
        r.puts_ok.quorum,
        r.puts_ok.all,
        r.deletes_ok.one,
        r.deletes_ok.quorum,
        r.deletes_ok.all,
        r.gets_ok.one,
        r.gets_ok.quorum,
        r.gets_ok.all
    );
    println!(
        "{:>10} {:>8} {:>8} {:>9} {:>13} {:>8} {:>11} {:>11} {:>9} {:>10} {:>8} {:>7}",
        "lost_write",
        "phantom",
        "stale",
        "converged",
        "convergence_s",
        "msgs/op",
        "hints_given",
        "hints_deliv",
        "ae_rounds",
        "ae_keys",
        "rss_mb",
        "wall_s"
    );
    println!(
        "{:>10} {:>8} {:>8} {:>9} {:>13.1} {:>8.2} {:>11} {:>11} {:>9} {:>10} {:>8} {:>7.1}",
        r.lost_writes,
        r.phantom_reads,
        r.stale_reads,
        r.converged,
        r.convergence_s,
        r.msgs_per_op,
        r.hints_handed,
        r.hints_delivered,
        r.ae_rounds,
        r.ae_keys_moved,
        r.peak_rss_mb,
        r.wall_s
    );
    if let Some(c) = &r.cas {
        println!(
            "cas: linearizable {:?}; ok {}, failed {} ({} condition), unknown {}; serial reads ok {}, \
             failed {}; round trips per CAS p50 {} p99 {}, per serial read p50 {}; contention \
             retries {}; counters {} for {} acknowledged increments (lost {}, phantom {})",
            c.linearizable,
            c.cas_ok,
            c.cas_failed,
            c.cas_condition_failed,
            c.cas_unknown,
            c.serial_reads_ok,
            c.serial_reads_failed,
            c.round_trips_per_cas_p50,
            c.round_trips_per_cas_p99,
            c.round_trips_per_serial_read_p50,
            c.contention_retries,
            c.final_counter,
            c.acknowledged_increments,
            c.lost_increments,
            c.phantom_increments
        );
    }
    for e in &r.examples {
        println!("  {e}");
    }
    if r.rejected > 0 {
        println!("warning: cores rejected {} messages", r.rejected);
    }
}

fn gossip(args: &GossipArgs) -> ExitCode {
    let mut config = GossipSimConfig {
        nodes: args.nodes,
        messages: args.messages,
        seed: args.seed,
        loss: args.loss,
        kill: args.kill,
        baseline: args.baseline,
        interval: Duration::from_millis(args.interval_ms),
        warmup_messages: args.warmup,
        settle: Duration::from_secs(args.settle_s),
        payload_len: args.payload,
        conn_close_after: args.conn_close_ms.map(Duration::from_millis),
        ..GossipSimConfig::default()
    };
    if let Some(v) = args.active_view {
        config.broadcast.hyparview.active_view_capacity = v;
    }
    if let Some(v) = args.optimization_threshold {
        config.broadcast.plumtree.optimization_threshold = v;
    }
    let reports = match run_gossip_sim(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bavard-sim gossip: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        for r in &reports {
            println!("{}", serde_json::to_string(r).expect("a report serialises"));
        }
    } else {
        print_gossip_table(&config, &reports);
    }
    ExitCode::SUCCESS
}

fn print_gossip_table(config: &GossipSimConfig, reports: &[GossipReport]) {
    let Some(first) = reports.first() else { return };
    println!(
        "gossip: {} nodes ({} live, {} killed after the warm-up), {} measured messages {} ms apart, \
         {}-byte payloads, seed {}, loss {}",
        first.nodes,
        first.live_nodes,
        first.killed,
        first.messages,
        first.interval_ms,
        config.payload_len,
        config.seed,
        first.loss
    );
    if first.killed > 0 {
        println!(
            "dead peers found by: send failures{}",
            first.conn_close_ms.map_or(String::new(), |ms| format!(
                " + connections closed {ms} ms after the kill"
            ))
        );
    }
    if let (Some(d), Some(r)) = (first.warmup_delivery_ratio, first.warmup_rmr) {
        println!(
            "ours: {} warm-up messages excluded from the figures (tree forming): delivery {:.4}, rmr {:.2}",
            first.warmup_messages, d, r
        );
    }
    println!(
        "delivery = deliveries / (messages x (live-1)); complete = share of messages reaching every live node; \
         rmr = payload copies / receivers - 1; ldh = last delivery hop; msgs/bytes per live node per message"
    );
    println!(
        "{:<9} {:>9} {:>8} {:>8} {:>6} {:>7} {:>8} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "strategy",
        "delivery",
        "complete",
        "min_msg",
        "rmr",
        "ldh_max",
        "ldh_mean",
        "lat_p50ms",
        "lat_p99ms",
        "msgs/node",
        "bytes/node",
        "wall_s"
    );
    for r in reports {
        println!(
            "{:<9} {:>9.4} {:>8.4} {:>8.4} {:>6.2} {:>7} {:>8.2} {:>9.1} {:>9.1} {:>9.2} {:>10.0} {:>7.2}",
            r.strategy,
            r.delivery_ratio,
            r.complete_messages,
            r.min_message_delivery_ratio,
            r.rmr,
            r.ldh_max,
            r.ldh_mean,
            r.latency_ms_p50,
            r.latency_ms_p99,
            r.msgs_per_node_per_message,
            r.bytes_per_node_per_message,
            r.wall_s
        );
    }
    if let [ours, baseline, ..] = reports {
        println!(
            "ratio baseline/ours: bytes {:.2}x, latency_p50 {:.2}x, latency_p99 {:.2}x",
            baseline.bytes_per_node_per_message / ours.bytes_per_node_per_message,
            baseline.latency_ms_p50 / ours.latency_ms_p50,
            baseline.latency_ms_p99 / ours.latency_ms_p99
        );
    }
    if reports.iter().any(|r| r.rejected > 0) {
        println!(
            "warning: cores rejected {} messages",
            reports.iter().map(|r| r.rejected).sum::<u64>()
        );
    }
}

fn membership(args: &MembershipArgs) -> ExitCode {
    let mut config = MembershipSimConfig {
        nodes: args.nodes,
        kill: args.kill,
        loss: args.loss,
        seed: args.seed,
        steady: Duration::from_secs(args.steady_s),
        join_interval: Duration::from_millis(args.join_interval_ms),
        start: match args.start {
            StartArg::Auto => Start::for_nodes(args.nodes),
            StartArg::Join => Start::Join,
            StartArg::Converged => Start::Converged,
        },
        ..MembershipSimConfig::default()
    };
    if let Some(every) = args.ring_probe_every {
        config.membership.ring_probe_every = every;
    }
    if let Some(k) = args.indirect_checks {
        config.membership.indirect_checks = k;
    }
    if args.no_fallback_ping {
        config.membership.fallback_ping = false;
    }
    let report = match run_membership_sim(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bavard-sim membership: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("a report serialises")
        );
    } else {
        print_membership_table(&config, &report);
    }
    ExitCode::SUCCESS
}

fn print_membership_table(config: &MembershipSimConfig, r: &MembershipReport) {
    println!(
        "membership (SWIM + Lifeguard, LAN profile): {} members {}, {}; \
         {:.0} s steady, then {} killed at once; seed {}, loss {}",
        r.nodes,
        match r.start {
            Start::Join => "joined via node 0",
            Start::Converged => "started converged",
        },
        if r.converged {
            format!("converged at {:.1} s", r.converge_s)
        } else {
            format!("NOT converged by {:.1} s", r.converge_s)
        },
        r.steady_s,
        r.killed,
        config.seed,
        r.loss
    );
    println!(
        "detect = until every live member declared a killed one dead (undetected count as the {} s cap); \
         false_pos = live members declared dead by anyone after convergence",
        config.detect_cap.as_secs()
    );
    println!(
        "{:>9} {:>9} {:>9} {:>11} {:>10} {:>9} {:>9} {:>10} {:>10} {:>12} {:>7}",
        "detect50s",
        "detect99s",
        "detectmax",
        "first50s",
        "undetected",
        "false_pos",
        "suspects",
        "suspicions",
        "msgs/mbr/s",
        "bytes/mbr/s",
        "wall_s"
    );
    println!(
        "{:>9.2} {:>9.2} {:>9.2} {:>11.2} {:>10} {:>9} {:>9} {:>10} {:>10.2} {:>12.0} {:>7.2}",
        r.detect_s_p50,
        r.detect_s_p99,
        r.detect_s_max,
        r.first_detect_s_p50,
        r.undetected,
        r.false_positives,
        r.suspected_live,
        r.suspicions,
        r.msgs_per_member_s,
        r.bytes_per_member_s,
        r.wall_s
    );
    if r.rejected > 0 {
        println!("warning: cores rejected {} messages", r.rejected);
    }
}

fn lookup(args: &LookupArgs) -> ExitCode {
    let config = LookupSimConfig {
        nodes: args.nodes,
        lookups: args.lookups,
        seed: args.seed,
        alpha: args.alpha,
        k: args.k,
        loss: args.loss,
        baseline: args.baseline,
        fast_join: args.fast_join,
        membership: args.membership,
        churn: args.churn,
        request_timeout: Duration::from_millis(args.timeout_ms),
        adversary: args.adversary,
        attack: args.attack.into(),
        disjoint: args
            .disjoint
            .unwrap_or(if args.adversary > 0.0 { 8 } else { 1 }),
        attempts: args.attempts,
        defences: !args.no_defences,
        ..LookupSimConfig::default()
    };
    let reports = match run_lookup_sim(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bavard-sim lookup: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        for r in &reports {
            println!("{}", serde_json::to_string(r).expect("a report serialises"));
        }
    } else {
        print_table(&config, &reports);
    }
    ExitCode::SUCCESS
}

fn print_table(config: &LookupSimConfig, reports: &[StrategyReport]) {
    let Some(first) = reports.first() else { return };
    println!(
        "lookup: {} nodes ({} live), {} lookups, seed {}, k {}, loss {}, join: {}",
        first.nodes, first.live_nodes, first.lookups, config.seed, first.k, first.loss, first.join
    );
    if let Some(attack) = first.attack {
        println!(
            "adversaries: {:.0}% of the nodes, attack {}; defences {} (disjoint paths {}, attempts {})",
            first.adversary_fraction * 100.0,
            attack.name(),
            if first.defences { "on" } else { "off" },
            first.disjoint_paths,
            first.attempts
        );
    }
    println!(
        "theoretical hops log2(N)/(1+log2 k) = {:.2}; rtt_ms = mean RTT of the links the requests used; \
         closest_ms = median time until the true closest answered",
        first.hops_theory
    );
    println!(
        "{:<9} {:>5} {:>8} {:>8} {:>6} {:>6} {:>7} {:>8} {:>9} {:>9} {:>10} {:>7} {:>7}",
        "strategy",
        "alpha",
        "success",
        "recall_k",
        "hops50",
        "hops99",
        "msgs",
        "timeouts",
        "lat_p50ms",
        "lat_p99ms",
        "closest_ms",
        "rtt_ms",
        "wall_s"
    );
    for r in reports {
        println!(
            "{:<9} {:>5} {:>8.4} {:>8.4} {:>6} {:>6} {:>7.1} {:>8.2} {:>9.1} {:>9.1} {:>10.1} {:>7.1} {:>7.2}",
            r.strategy,
            r.alpha,
            r.success_rate,
            r.recall_k_mean,
            r.hops_p50,
            r.hops_p99,
            r.messages_mean,
            r.timeouts_mean,
            r.latency_ms_p50,
            r.latency_ms_p99,
            r.closest_answered_ms_p50,
            r.link_rtt_ms_mean,
            r.wall_s
        );
    }
    if let [ours, baseline, ..] = reports {
        println!(
            "ratio baseline/ours: latency_p50 {:.2}x, latency_p99 {:.2}x, messages {:.2}x",
            baseline.latency_ms_p50 / ours.latency_ms_p50,
            baseline.latency_ms_p99 / ours.latency_ms_p99,
            baseline.messages_mean / ours.messages_mean
        );
    }
    if let Some(last) = reports.last() {
        println!(
            "memory: {:.1} table entries per node, state {} B per node; peak RSS {} MB = {} B per node",
            last.table_entries_mean,
            last.state_bytes_per_node,
            last.peak_rss_mb,
            last.bytes_per_node
        );
        println!(
            "join ({}): {:.1} messages per node, {:.1} s virtual, {:.1} s wall",
            last.join, last.join_messages_per_node, last.join_virtual_s, last.join_wall_s
        );
    }
}
