//! `bavard-sim`: runs simulator experiments and prints their figures.
//!
//! ```text
//! bavard-sim lookup --nodes 10000 --lookups 1000 --seed 7 --baseline [--json]
//! ```
//!
//! Also reachable as `cargo xtask sim ARGS…`. One subcommand per experiment; `gossip` and
//! `membership` will join `lookup`.

use std::process::ExitCode;
use std::time::Duration;

use bavard_sim::{LookupSimConfig, StrategyReport, run_lookup_sim};
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
    /// One JSON object per line and strategy instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Lookup(args) => lookup(&args),
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
        churn: args.churn,
        request_timeout: Duration::from_millis(args.timeout_ms),
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
}
