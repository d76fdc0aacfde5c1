//! `cargo xtask bench dht --vs-stock`: today's `bench dht` on a bavard cluster, then the same
//! puts and gets (same node count, keys, value size and concurrency) on a network of stock
//! rust-libp2p Kademlia nodes (`crates/bavard-stock`, built in release), one after the other,
//! printed side by side.
//!
//! The two sides are measured differently, and the table says so: bavard through its HTTP API
//! (one kept-alive connection per load thread and node, opened before the clock starts; the KV
//! store at `--consistency`), the stock network in
//! process at the API call (`put_record` with `Quorum::One`, `get_record` until the first record
//! from another peer), which favours the stock side slightly.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::bench::{self, DhtArgs};
use crate::cluster;

/// What `bavard-stock --json` prints.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub(crate) struct StockReport {
    pub(crate) put_ops_s: f64,
    pub(crate) put_p50_ms: f64,
    pub(crate) put_p99_ms: f64,
    pub(crate) get_ops_s: f64,
    pub(crate) get_p50_ms: f64,
    pub(crate) get_p99_ms: f64,
    /// Kademlia requests a put's query sent, on average.
    #[serde(default)]
    pub(crate) put_messages_per_op: f64,
    /// Kademlia requests a get's query had sent when it answered, on average.
    #[serde(default)]
    pub(crate) get_messages_per_op: f64,
    pub(crate) put_errors: usize,
    pub(crate) get_errors: usize,
    pub(crate) nodes: usize,
    pub(crate) keys: usize,
    pub(crate) bootstrap_s: f64,
    pub(crate) routing_min: usize,
    pub(crate) routing_mean: f64,
    /// When its gets answered: `first` or `last`.
    #[serde(default)]
    pub(crate) get_until: String,
    #[serde(default)]
    pub(crate) error_samples: Vec<String>,
}

/// Both sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Both {
    bavard: bench::Report,
    stock: StockReport,
    notes: Vec<String>,
}

/// Runs `bench dht --vs-stock`.
pub(crate) fn run(a: &DhtArgs) -> anyhow::Result<()> {
    if a.nodes < 2 {
        bail!("--vs-stock needs at least 2 nodes");
    }
    // Build first, so that a build error does not come after a long bavard run.
    let stock_bin = match &a.stock_bin {
        Some(b) => b.clone(),
        None => cluster::build_release("bavard-stock", "bavard-stock")?,
    };
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("bavard: {} nodes…", a.nodes);
    // The bavard cluster is down again when this returns: the two never share the CPU.
    let bavard = bench::dht_report(a, None, false)?;
    eprintln!("stock rust-libp2p: {} nodes…", a.nodes);
    let stock = run_stock(&stock_bin, &stock_args(a, seed))?;
    let both = Both {
        bavard,
        stock,
        notes: notes(a),
    };
    if a.json {
        println!("{}", serde_json::to_string(&both)?);
    } else {
        print!("{}", human(&both, a));
    }
    Ok(())
}

/// The command line of `bavard-stock` for the same workload.
fn stock_args(a: &DhtArgs, seed: u64) -> Vec<String> {
    vec![
        "--nodes".into(),
        a.nodes.to_string(),
        "--keys".into(),
        a.keys.to_string(),
        "--concurrency".into(),
        a.concurrency.to_string(),
        "--value-size".into(),
        a.value_size.to_string(),
        "--seed".into(),
        seed.to_string(),
        "--get-until".into(),
        a.stock_get_until.clone(),
        "--json".into(),
    ]
}

fn run_stock(bin: &PathBuf, args: &[String]) -> anyhow::Result<StockReport> {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", bin.display(), out.status);
    }
    parse_stock(&String::from_utf8_lossy(&out.stdout))
}

/// The JSON line of `bavard-stock --json`.
fn parse_stock(stdout: &str) -> anyhow::Result<StockReport> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("bavard-stock printed no JSON report")?;
    serde_json::from_str(line).context("bavard-stock's report is not the expected JSON")
}

fn notes(a: &DhtArgs) -> Vec<String> {
    vec![
        format!(
            "bavard: through its HTTP API (each load thread keeps a connection to each node, opened \
             before the clock starts) into the KV store at \
             {}: its N = 3 replicas placed from the converged membership (no lookup, see \
             lookups/op), then written or read over the replica protocol",
            a.consistency
        ),
        format!(
            "stock: in process at the API call, no HTTP (favours stock slightly); put_record with \
             Quorum::One finishes after the lookup of the 20 closest peers and the first \
             PUT_VALUE acknowledgement; get_record answers {} (with N <= k = 20 every node \
             stores every record, so the querying node's own copy is ignored)",
            if a.stock_get_until == "last" {
                "when the query ends by itself (--stock-get-until last), with the first record \
                 another peer returned"
            } else {
                "with the first record another peer returns, then the query is finished \
                 (--stock-get-until last waits for the query's end)"
            }
        ),
        "messages/op: bavard, the requests its nodes served during the phase (Kademlia and \
         replica protocol, background work included) per operation; stock, the Kademlia \
         requests each query had sent when it answered (QueryStats), averaged"
            .into(),
        "lookups/op (hops): bavard, DHT lookups started per operation and their mean hops \
         (bavard_lookup_hops; a converged cluster places keys from its membership, without a \
         lookup); stock, every operation is one Kademlia query, whose hops libp2p-kad does \
         not report"
            .into(),
        "the two networks run one after the other on the same machine, never at once".into(),
    ]
}

fn human(b: &Both, a: &DhtArgs) -> String {
    let (x, s) = (&b.bavard, &b.stock);
    let f = |v: f64| crate::prom::short(v);
    let messages = |c: &Option<bench::PathCost>| {
        c.as_ref()
            .map_or_else(|| "-".into(), |c| format!("{:.1}", c.messages_per_op))
    };
    let lookups = |c: &Option<bench::PathCost>| {
        c.as_ref().map_or_else(
            || "-".into(),
            |c| match c.hops_mean {
                Some(h) => format!("{:.2} ({h:.1})", c.lookups_per_op),
                None => format!("{:.2} (-)", c.lookups_per_op),
            },
        )
    };
    let rows = vec![
        vec![
            "put ops/s".into(),
            format!("{:.0}", x.put_ops_s),
            format!("{:.0}", s.put_ops_s),
        ],
        vec!["put p50 ms".into(), f(x.put_p50_ms), f(s.put_p50_ms)],
        vec!["put p99 ms".into(), f(x.put_p99_ms), f(s.put_p99_ms)],
        vec![
            "put messages/op".into(),
            messages(&x.put_path),
            format!("{:.1}", s.put_messages_per_op),
        ],
        vec![
            "put lookups/op (hops)".into(),
            lookups(&x.put_path),
            "1 (-)".into(),
        ],
        vec![
            "put errors".into(),
            x.put_errors.to_string(),
            s.put_errors.to_string(),
        ],
        vec![
            "get ops/s".into(),
            format!("{:.0}", x.get_ops_s),
            format!("{:.0}", s.get_ops_s),
        ],
        vec!["get p50 ms".into(), f(x.get_p50_ms), f(s.get_p50_ms)],
        vec!["get p99 ms".into(), f(x.get_p99_ms), f(s.get_p99_ms)],
        vec![
            "get messages/op".into(),
            messages(&x.get_path),
            format!("{:.1}", s.get_messages_per_op),
        ],
        vec![
            "get lookups/op (hops)".into(),
            lookups(&x.get_path),
            "1 (-)".into(),
        ],
        vec![
            "get errors".into(),
            x.get_errors.to_string(),
            s.get_errors.to_string(),
        ],
    ];
    let mut out = format!(
        "bench dht --vs-stock: {} nodes each, {} keys, {} in flight, {}-byte values\n\n",
        a.nodes, a.keys, a.concurrency, a.value_size
    );
    out.push_str(&cluster::table(
        &["", "bavard (HTTP, KV)", "stock libp2p-kad (in process)"],
        &rows,
    ));
    out.push_str(&format!(
        "\n\nstock network: routing tables min {} / mean {:.1} of {} peers after {:.1} s of bootstrap\n",
        s.routing_min,
        s.routing_mean,
        s.nodes.saturating_sub(1),
        s.bootstrap_s
    ));
    for e in &s.error_samples {
        out.push_str(&format!("stock error: {e}\n"));
    }
    for n in &b.notes {
        out.push_str(&format!("note: {n}.\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock() -> StockReport {
        StockReport {
            put_ops_s: 300.0,
            put_p50_ms: 20.0,
            put_p99_ms: 80.0,
            get_ops_s: 2000.0,
            get_p50_ms: 3.0,
            get_p99_ms: 9.5,
            put_messages_per_op: 23.0,
            get_messages_per_op: 3.5,
            put_errors: 0,
            get_errors: 1,
            nodes: 20,
            keys: 200,
            bootstrap_s: 3.0,
            routing_min: 19,
            routing_mean: 19.0,
            get_until: "first".into(),
            error_samples: vec!["get: wrong value".into()],
        }
    }

    #[test]
    fn the_stock_report_is_read_from_the_last_json_line() {
        let line = serde_json::to_string(&stock()).unwrap();
        let text = format!("warning: something\n{line}\n");
        assert_eq!(parse_stock(&text).unwrap(), stock());
        assert!(parse_stock("no json\n").is_err());
    }

    fn args() -> DhtArgs {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: DhtArgs,
        }
        Cli::parse_from(["x", "--vs-stock", "--nodes", "20", "--keys", "200"]).a
    }

    #[test]
    fn the_stock_network_gets_the_same_workload() {
        assert_eq!(
            stock_args(&args(), 9).join(" "),
            "--nodes 20 --keys 200 --concurrency 16 --value-size 100 --seed 9 --get-until first --json"
        );
    }

    #[test]
    fn both_sides_are_printed_side_by_side_with_how_each_was_measured() {
        let bavard = bench::Report {
            put_ops_s: 528.0,
            put_p50_ms: 8.8,
            put_p99_ms: 351.0,
            get_ops_s: 2432.0,
            get_p50_ms: 4.3,
            get_p99_ms: 36.8,
            errors: 0,
            put_errors: 0,
            get_errors: 0,
            nodes: 20,
            keys: 200,
            profile: None,
            put_path: Some(bench::PathCost {
                messages_per_op: 4.0,
                lookups_per_op: 0.0,
                hops_mean: None,
            }),
            get_path: None,
        };
        let a = args();
        let b = Both {
            bavard,
            stock: stock(),
            notes: notes(&a),
        };
        let text = human(&b, &a);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .split_whitespace()
                .skip(name.split_whitespace().count())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(line("put p99 ms"), ["351", "80.0"]);
        assert_eq!(line("get p50 ms"), ["4.30", "3.00"]);
        assert_eq!(line("get errors"), ["0", "1"]);
        assert_eq!(line("put messages/op"), ["4.0", "23.0"]);
        assert_eq!(line("get messages/op"), ["-", "3.5"]);
        assert_eq!(line("put lookups/op (hops)"), ["0.00", "(-)", "1", "(-)"]);
        assert!(text.contains("in process"));
        assert!(text.contains("favours stock slightly"));
        assert!(text.contains("stock error: get: wrong value"));
    }
}
