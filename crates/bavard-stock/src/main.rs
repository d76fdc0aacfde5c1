//! `bavard-stock`: N stock rust-libp2p Kademlia nodes on TCP loopback in one process, and the
//! workload of `cargo xtask bench dht` run on them, for `cargo xtask bench dht --vs-stock`.
//!
//! 1. Starts N nodes ([`node`]); each adds node 0's address and bootstraps, and every node below
//!    a full routing table (N − 1 peers) bootstraps again each second until all are full or
//!    `--bootstrap-timeout` passes (the run goes on, and reports the table sizes).
//! 2. Puts K keys of `--value-size` bytes, `--concurrency` at a time, each through a node chosen
//!    at random (`put_record`, `Quorum::One`: done when the lookup of the 20 closest peers has
//!    finished and the first of them has acknowledged the PUT_VALUE).
//! 3. Gets every key through another node (`get_record`, done at the first record another peer
//!    returns; the query is then finished, as an application that needs one value would do).
//!    With N ≤ k = 20 every node stores every record, so the querying node holds a copy too; a
//!    local hit would measure nothing of the DHT path, so it is not counted as the answer.
//!
//! With `--get-until last`, a get answers only when the query ends by itself (the 20 closest
//! peers have answered), as `get_record` does for an application that waits for its last step.
//!
//! Latency is measured in-process around the API call (a command to the node's task and its
//! answer), with no HTTP in between: that favours the stock network slightly against bavard's
//! figures, which go through its HTTP API with a new TCP connection per request.
//!
//! Prints a short table, or with `--json` one object with the same fields as `bench dht`'s.

mod node;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use serde::Serialize;

use crate::node::{GetUntil, Node};

/// Runs the `bench dht` workload on stock rust-libp2p Kademlia nodes.
#[derive(Debug, Parser)]
#[command(name = "bavard-stock")]
struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Number of keys to put, then get.
    #[arg(long, default_value_t = 200)]
    keys: usize,
    /// Operations in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Seed of the choice of nodes and of the key names [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds to wait for the routing tables to fill.
    #[arg(long, default_value_t = 60)]
    bootstrap_timeout: u64,
    /// Seconds after which one put or get counts as an error.
    #[arg(long, default_value_t = 30)]
    op_timeout: u64,
    /// When a get answers: at the first record from another peer, or when the query ends.
    #[arg(long, value_enum, default_value = "first")]
    get_until: GetUntil,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The figures of a run (the fields of `bench dht`'s report, and the network's).
#[derive(Debug, Clone, Serialize)]
struct Report {
    put_ops_s: f64,
    put_p50_ms: f64,
    put_p99_ms: f64,
    get_ops_s: f64,
    get_p50_ms: f64,
    get_p99_ms: f64,
    /// Kademlia requests a put's query sent, on average (its lookup and its PUT_VALUEs).
    put_messages_per_op: f64,
    /// Kademlia requests a get's query had sent when it answered, on average.
    get_messages_per_op: f64,
    errors: usize,
    put_errors: usize,
    get_errors: usize,
    nodes: usize,
    keys: usize,
    concurrency: usize,
    value_size: usize,
    /// `first` or `last` (see `--get-until`).
    get_until: String,
    /// Seconds from the first start to full routing tables (or the timeout).
    bootstrap_s: f64,
    /// The smallest and the mean routing table when the workload started.
    routing_min: usize,
    routing_mean: f64,
    /// The first few error messages.
    error_samples: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.nodes < 2 || args.keys == 0 || args.concurrency == 0 {
        bail!("--nodes must be at least 2, --keys and --concurrency at least 1");
    }
    let report = run(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<Report> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    // Every node may hold every record (N ≤ k): room for all of them, and more.
    let max_records = (args.keys * 2).max(1024);
    let started = Instant::now();
    let mut nodes = Vec::with_capacity(args.nodes);
    for _ in 0..args.nodes {
        nodes.push(Node::start(max_records).await?);
    }
    let boot = nodes[0].p2p_addr();
    for n in &nodes[1..] {
        n.add_address(&boot).map_err(anyhow::Error::msg)?;
        n.bootstrap().map_err(anyhow::Error::msg)?;
    }
    let full = args.nodes - 1;
    let deadline = started + Duration::from_secs(args.bootstrap_timeout);
    let sizes = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut sizes = Vec::with_capacity(nodes.len());
        for n in &nodes {
            sizes.push(n.routing_table_size().await.map_err(anyhow::Error::msg)?);
        }
        if sizes.iter().all(|&s| s >= full) || Instant::now() > deadline {
            break sizes;
        }
        for (n, &s) in nodes.iter().zip(&sizes) {
            if s < full {
                n.bootstrap().map_err(anyhow::Error::msg)?;
            }
        }
    };
    let bootstrap_s = started.elapsed().as_secs_f64();
    let routing_min = sizes.iter().copied().min().unwrap_or(0);
    if routing_min < full {
        eprintln!(
            "warning: after {bootstrap_s:.0} s the smallest routing table holds {routing_min} of {full} peers"
        );
    }

    let plan = assign_nodes(args.keys, args.nodes, seed);
    let run_id = format!("{seed:x}");
    let key = |i: usize| format!("bench-{run_id}-{i}").into_bytes();
    let timeout = Duration::from_secs(args.op_timeout);
    let nodes = &nodes;
    let (put_lat, put_msgs, put_errs, put_wall) = phase(args.keys, args.concurrency, |i| {
        let (node, k, v) = (&nodes[plan[i].0], key(i), value(i, args.value_size));
        async move {
            match tokio::time::timeout(timeout, node.put(&k, &v)).await {
                Err(_) => Err(format!("put: no answer within {timeout:?}")),
                Ok(r) => r,
            }
        }
    })
    .await;
    let (get_lat, get_msgs, get_errs, get_wall) = phase(args.keys, args.concurrency, |i| {
        let (node, k, v) = (&nodes[plan[i].1], key(i), value(i, args.value_size));
        async move {
            match tokio::time::timeout(timeout, node.get(&k, args.get_until)).await {
                Err(_) => Err(format!("get: no answer within {timeout:?}")),
                Ok(Err(e)) => Err(e),
                Ok(Ok((found, _))) if found != v => Err("get: wrong value".to_string()),
                Ok(Ok((_, sent))) => Ok(sent),
            }
        }
    })
    .await;
    let rate = |ok: usize, wall: Duration| ok as f64 / wall.as_secs_f64().max(1e-9);
    let mut error_samples: Vec<String> = Vec::new();
    for e in put_errs.iter().chain(&get_errs) {
        if error_samples.len() < 5 && !error_samples.contains(e) {
            error_samples.push(e.clone());
        }
    }
    Ok(Report {
        put_ops_s: rate(put_lat.len(), put_wall),
        put_p50_ms: quantile_ms(&put_lat, 0.50),
        put_p99_ms: quantile_ms(&put_lat, 0.99),
        get_ops_s: rate(get_lat.len(), get_wall),
        get_p50_ms: quantile_ms(&get_lat, 0.50),
        get_p99_ms: quantile_ms(&get_lat, 0.99),
        put_messages_per_op: put_msgs as f64 / put_lat.len().max(1) as f64,
        get_messages_per_op: get_msgs as f64 / get_lat.len().max(1) as f64,
        errors: put_errs.len() + get_errs.len(),
        put_errors: put_errs.len(),
        get_errors: get_errs.len(),
        nodes: args.nodes,
        keys: args.keys,
        concurrency: args.concurrency,
        value_size: args.value_size,
        get_until: format!("{:?}", args.get_until).to_lowercase(),
        bootstrap_s,
        routing_min,
        routing_mean: sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64,
        error_samples,
    })
}

/// Runs `op(i)` for every i in 0..n, `concurrency` at a time; returns the sorted latencies of
/// the successes, the sum of the message counts they returned, the errors and the wall time.
async fn phase<F, Fut>(
    n: usize,
    concurrency: usize,
    op: F,
) -> (Vec<Duration>, u64, Vec<String>, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<u32, String>>,
{
    let next = AtomicUsize::new(0);
    let messages = AtomicU64::new(0);
    let lat = Mutex::new(Vec::with_capacity(n));
    let errs = Mutex::new(Vec::new());
    let start = Instant::now();
    let workers = (0..concurrency.min(n)).map(|_| async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            let t = Instant::now();
            match op(i).await {
                Ok(sent) => {
                    lat.lock().expect("lock").push(t.elapsed());
                    messages.fetch_add(u64::from(sent), Ordering::Relaxed);
                }
                Err(e) => errs.lock().expect("lock").push(e),
            }
        }
    });
    futures::future::join_all(workers).await;
    let wall = start.elapsed();
    let mut lat = lat.into_inner().expect("lock");
    lat.sort_unstable();
    (
        lat,
        messages.into_inner(),
        errs.into_inner().expect("lock"),
        wall,
    )
}

/// A small xorshift generator, as `cargo xtask bench` uses to spread requests over nodes.
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

/// For each key, the node it is put through and a different node it is read from (the plan of
/// `cargo xtask bench dht`).
fn assign_nodes(keys: usize, nodes: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = XorShift::new(seed);
    (0..keys)
        .map(|_| {
            let put = rng.below(nodes);
            let get = (put + 1 + rng.below(nodes - 1)) % nodes;
            (put, get)
        })
        .collect()
}

/// The value written under key `i` (as `cargo xtask bench dht` writes it).
fn value(i: usize, size: usize) -> Vec<u8> {
    let tag = format!("{i}:");
    tag.bytes().cycle().take(size).collect()
}

/// The `q`-quantile of sorted durations in milliseconds, nearest rank; 0 for none.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

fn human(r: &Report) -> String {
    let mut out = format!(
        "stock rust-libp2p kad: {} nodes (routing tables: min {}, mean {:.1}, after {:.1} s), {} keys, {} in flight, {}-byte values\n\
         put  {:>8.1} ops/s  p50 {:>8.2} ms  p99 {:>8.2} ms  {:>5.1} requests/op  errors {}\n\
         get  {:>8.1} ops/s  p50 {:>8.2} ms  p99 {:>8.2} ms  {:>5.1} requests/op  errors {}\n",
        r.nodes,
        r.routing_min,
        r.routing_mean,
        r.bootstrap_s,
        r.keys,
        r.concurrency,
        r.value_size,
        r.put_ops_s,
        r.put_p50_ms,
        r.put_p99_ms,
        r.put_messages_per_op,
        r.put_errors,
        r.get_ops_s,
        r.get_p50_ms,
        r.get_p99_ms,
        r.get_messages_per_op,
        r.get_errors,
    );
    for e in &r.error_samples {
        out.push_str(&format!("error: {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_read_through_another_node_than_it_was_put_through() {
        let plan = assign_nodes(300, 20, 5);
        assert!(plan.iter().all(|&(p, g)| p < 20 && g < 20 && p != g));
        assert_eq!(plan, assign_nodes(300, 20, 5));
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let ms: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&ms, 0.5), 50.0);
        assert_eq!(quantile_ms(&ms, 0.99), 99.0);
        assert_eq!(quantile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn values_have_the_requested_size_and_differ_per_key() {
        assert_eq!(value(7, 100).len(), 100);
        assert_ne!(value(1, 10), value(2, 10));
    }

    #[tokio::test]
    async fn three_nodes_on_loopback_put_and_get_a_record() {
        let args = Args {
            nodes: 3,
            keys: 4,
            concurrency: 2,
            value_size: 100,
            seed: Some(1),
            bootstrap_timeout: 20,
            op_timeout: 20,
            get_until: GetUntil::Last,
            json: true,
        };
        let r = run(&args).await.unwrap();
        assert_eq!(r.errors, 0, "{:?}", r.error_samples);
        assert_eq!(r.routing_min, 2);
        // A query sends at least one request to another node.
        assert!(r.put_messages_per_op >= 1.0, "{}", r.put_messages_per_op);
        assert!(r.get_messages_per_op >= 1.0, "{}", r.get_messages_per_op);
        let v = serde_json::to_value(&r).unwrap();
        for f in [
            "put_ops_s",
            "put_p50_ms",
            "get_p99_ms",
            "errors",
            "nodes",
            "keys",
        ] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
    }
}
