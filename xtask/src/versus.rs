//! `cargo xtask bench kv --wrk` and `--vs etcd`: one workload, one load generator (`wrk`) and one
//! shape against a local bavard cluster and, with `--vs etcd`, a local etcd cluster of the same
//! size, one system after the other (never both at once: they would share the CPU).
//!
//! For each system: start it (bavard: `cluster up` with fsync on; etcd: members as child
//! processes, see [`crate::etcd`]), optionally preload `--preload N` keys and check they are all
//! there, then a put phase (distinct keys, `--duration` seconds) and a get phase (keys that exist,
//! uniformly at random, the same duration), each with one `wrk` per node (see [`crate::wrk`]);
//! then tear it down. With `--profile`, every bavard node's `/metrics` is scraped before and
//! after each phase, and the `*_seconds` histograms counted during the phase are printed as
//! p50/p99 per label set, summed over the nodes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::cluster::{self, ClusterState, UpArgs};
use crate::interrupt::OnInterrupt;
use crate::prom::{self, Histogram};
use crate::wrk::{self, Api, KeySet, Op, Phase, Proc, RunSpec, Script};
use crate::{etcd, http};

/// How to run the comparison.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Nodes of each system.
    pub(crate) nodes: usize,
    /// wrk threads in all (each process gets `max(1, threads / nodes)`).
    pub(crate) threads: u64,
    /// wrk connections in all.
    pub(crate) connections: u64,
    /// Length of each measured phase.
    pub(crate) duration: Duration,
    /// wrk's `--timeout`: a slower answer counts as a timeout error.
    pub(crate) timeout: Duration,
    /// Keys to load before measuring (0: none).
    pub(crate) preload: u64,
    /// Value size in bytes.
    pub(crate) value_size: usize,
    /// bavard's consistency level.
    pub(crate) consistency: String,
    /// bavard without fsync (etcd keeps its fsync: the comparison is then unequal, and says so).
    pub(crate) no_fsync: bool,
    /// Compare with etcd.
    pub(crate) vs_etcd: bool,
    /// Print bavard's per-stage histograms.
    pub(crate) profile: bool,
    /// A bavard binary instead of a release build.
    pub(crate) bin: Option<PathBuf>,
    /// An etcd binary instead of the one on the `PATH`.
    pub(crate) etcd_bin: Option<PathBuf>,
    /// A wrk binary instead of the one on the `PATH`.
    pub(crate) wrk_bin: Option<PathBuf>,
    /// Seeds the key names and the reads.
    pub(crate) seed: Option<u64>,
    /// Print one JSON object.
    pub(crate) json: bool,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    /// The shape of the load.
    pub(crate) load: Load,
    /// bavard, then etcd when it ran.
    pub(crate) systems: Vec<SystemReport>,
    /// What the consistency levels mean, and how the figures are taken.
    pub(crate) notes: Vec<String>,
}

/// The load, as it was applied to every system.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Load {
    pub(crate) nodes: usize,
    pub(crate) wrk_processes: usize,
    pub(crate) wrk_threads: u64,
    pub(crate) connections: u64,
    pub(crate) connections_per_node: Vec<u64>,
    pub(crate) duration_s: u64,
    pub(crate) timeout_s: u64,
    pub(crate) value_size: usize,
    pub(crate) preload: u64,
    pub(crate) seed: u64,
}

/// One system's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SystemReport {
    /// `bavard` or `etcd`.
    pub(crate) system: String,
    /// Its version.
    pub(crate) version: String,
    /// Durability of an acknowledged write.
    pub(crate) durability: String,
    /// The consistency of its puts and gets.
    pub(crate) consistency: String,
    /// The preload, when one ran.
    pub(crate) preload: Option<Preload>,
    /// The put phase.
    pub(crate) put: Phase,
    /// The get phase.
    pub(crate) get: Phase,
    /// Histograms counted during each phase (bavard with `--profile`).
    pub(crate) profile: Option<Profile>,
}

/// A preload's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Preload {
    /// Keys written.
    pub(crate) keys: u64,
    /// Wall time, s.
    pub(crate) seconds: f64,
    /// Keys per second.
    pub(crate) keys_s: f64,
    /// Errors while loading.
    pub(crate) errors: u64,
    /// What the check after the load found.
    pub(crate) check: String,
}

/// Per-stage histograms by phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Profile {
    pub(crate) put: Vec<ProfileRow>,
    pub(crate) get: Vec<ProfileRow>,
}

/// One histogram series counted during a phase, summed over the nodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ProfileRow {
    pub(crate) metric: String,
    pub(crate) labels: String,
    pub(crate) count: u64,
    /// Formatted milliseconds (`>250` when the quantile is beyond the highest bucket).
    pub(crate) p50_ms: String,
    pub(crate) p99_ms: String,
    pub(crate) mean_ms: f64,
}

/// Runs the comparison and prints it.
pub(crate) fn run(s: &Settings) -> anyhow::Result<()> {
    if s.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if s.duration.is_zero() {
        bail!("--duration must be at least 1 s");
    }
    let wrk_bin = wrk::find(s.wrk_bin.as_deref())?;
    let etcd_bin = if s.vs_etcd {
        match etcd::find(s.etcd_bin.as_deref()) {
            Ok(b) => Some(b),
            Err(advice) => {
                eprintln!("{advice}; running bavard alone");
                None
            }
        }
    } else {
        None
    };
    let procs = wrk::plan(s.nodes, s.threads, s.connections)?;
    let seed = s.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let target = crate::workspace_root().join("target");
    let work = target.join("bench-kv-wrk");
    std::fs::create_dir_all(&work)?;
    let load = Load {
        nodes: s.nodes,
        wrk_processes: procs.len(),
        wrk_threads: procs.iter().map(|p| p.threads).sum(),
        connections: procs.iter().map(|p| p.connections).sum(),
        connections_per_node: procs.iter().map(|p| p.connections).collect(),
        duration_s: s.duration.as_secs(),
        timeout_s: s.timeout.as_secs(),
        value_size: s.value_size,
        preload: s.preload,
        seed,
    };
    let ctx = Ctx {
        s,
        wrk: &wrk_bin,
        work: &work,
        procs: &procs,
        run_id: format!("{:x}", seed & 0xff_ffff),
        seed,
    };
    let mut systems = vec![bavard(&ctx, &target.join("bench-kv-cluster"))?];
    if let Some(bin) = &etcd_bin {
        systems.push(etcd(&ctx, bin, &target.join("bench-kv-etcd"))?);
    }
    let report = Report {
        load,
        notes: notes(s, etcd_bin.is_some()),
        systems,
    };
    if s.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(())
}

/// What every system's run shares.
struct Ctx<'a> {
    s: &'a Settings,
    wrk: &'a Path,
    work: &'a Path,
    procs: &'a [Proc],
    run_id: String,
    seed: u64,
}

/// A moment between phases, when `--profile` scrapes the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    BeforePut,
    AfterPut,
    AfterGet,
}

/// The preload, the put phase and the get phase against one system.
struct Measured {
    preload: Option<Preload>,
    put: Phase,
    get: Phase,
}

fn measure(
    ctx: &Ctx<'_>,
    api: &Api,
    system: &str,
    urls: &[String],
    check: &dyn Fn(&str, u64) -> anyhow::Result<String>,
    at: &mut dyn FnMut(Moment),
) -> anyhow::Result<Measured> {
    let s = ctx.s;
    let stride: u64 = ctx.procs.iter().map(|p| p.threads).sum();
    let value = value(s.value_size);
    let scripts = |op: &Op| -> Vec<String> {
        ctx.procs
            .iter()
            .map(|p| {
                wrk::script(&Script {
                    api: api.clone(),
                    op: op.clone(),
                    value: value.clone(),
                    gbase: p.gbase,
                    stride,
                    seed: ctx.seed,
                })
            })
            .collect()
    };
    let run = |label: String, duration: Duration, op: &Op, drain: bool| {
        let spec = RunSpec {
            wrk: ctx.wrk,
            dir: ctx.work,
            label: &label,
            duration,
            timeout: s.timeout,
        };
        wrk::run(&spec, ctx.procs, &scripts(op), urls, drain)
    };

    let pre_prefix = format!("b{}-p-", ctx.run_id);
    let preload = if s.preload > 0 {
        eprintln!("{system}: preloading {} keys…", s.preload);
        // Bounded: no preload runs longer than this, whatever happens.
        let cap = Duration::from_secs((s.preload / 500).max(300));
        let op = Op::Put {
            prefix: pre_prefix.clone(),
            limit: Some(s.preload),
        };
        let started = Instant::now();
        let outs = run(format!("{system}-preload"), cap, &op, true)?;
        let seconds = started.elapsed().as_secs_f64();
        let merged = wrk::merge(&outs);
        let check = check(&pre_prefix, s.preload)
            .unwrap_or_else(|e| format!("could not check the preload: {e:#}"));
        eprintln!(
            "{system}: preloaded {} keys in {seconds:.1} s ({} errors); {check}",
            s.preload, merged.errors
        );
        Some(Preload {
            keys: s.preload,
            seconds,
            keys_s: s.preload as f64 / seconds.max(1e-9),
            errors: merged.errors,
            check,
        })
    } else {
        None
    };

    at(Moment::BeforePut);
    eprintln!("{system}: put phase, {} s…", s.duration.as_secs());
    let put_prefix = format!("b{}-w-", ctx.run_id);
    let put_op = Op::Put {
        prefix: put_prefix.clone(),
        limit: None,
    };
    let put_outs = run(format!("{system}-put"), s.duration, &put_op, false)?;
    let put = wrk::merge(&put_outs);
    at(Moment::AfterPut);

    let keys = if s.preload > 0 {
        KeySet::range(&pre_prefix, s.preload)
    } else {
        let with_conns: Vec<(wrk::Output, u64)> = put_outs
            .into_iter()
            .zip(ctx.procs)
            .map(|(o, p)| (o, p.connections / p.threads))
            .collect();
        KeySet::written(&put_prefix, &with_conns, stride)
    };
    if keys.len() == 0 {
        bail!("{system}: the put phase wrote no key to read back ({put:?})");
    }
    eprintln!(
        "{system}: get phase, {} s, over {} keys…",
        s.duration.as_secs(),
        keys.len()
    );
    let get_outs = run(format!("{system}-get"), s.duration, &Op::Get(keys), false)?;
    let get = wrk::merge(&get_outs);
    at(Moment::AfterGet);
    Ok(Measured { preload, put, get })
}

/// The value every put writes: `size` printable bytes.
fn value(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

fn bavard(ctx: &Ctx<'_>, dir: &Path) -> anyhow::Result<SystemReport> {
    let s = ctx.s;
    std::fs::create_dir_all(dir)?;
    let config = dir.join("bench-kv.toml");
    std::fs::write(&config, bavard_config(s))?;
    cluster::ensure_not_running(dir)?;
    let _teardown = cluster_teardown(dir.to_path_buf());
    let state = cluster::up(
        dir,
        &UpArgs {
            nodes: s.nodes,
            quic: false,
            timeout: 180,
            bin: s.bin.clone(),
            config: Some(config),
        },
    )?;
    crate::bench::wait_converged(&state, Duration::from_secs(60));
    let urls: Vec<String> = state
        .nodes
        .iter()
        .map(|n| format!("http://{}/", n.api))
        .collect();
    let version = status_version(&state).unwrap_or_else(|| "unknown".into());
    let mut scrapes: Vec<(Moment, Vec<Histogram>)> = Vec::new();
    let check = |prefix: &str, n: u64| bavard_check(&state, s, prefix, n);
    let m = measure(
        ctx,
        &Api::Bavard {
            consistency: s.consistency.clone(),
        },
        "bavard",
        &urls,
        &check,
        &mut |at| {
            if s.profile {
                match scrape(&state) {
                    Ok(h) => scrapes.push((at, h)),
                    Err(e) => eprintln!("profile: could not scrape /metrics: {e:#}"),
                }
            }
        },
    )?;
    let find = |at| scrapes.iter().find(|(m, _)| *m == at).map(|(_, h)| h);
    let profile = match (
        find(Moment::BeforePut),
        find(Moment::AfterPut),
        find(Moment::AfterGet),
    ) {
        (Some(a), Some(b), Some(c)) => Some(Profile {
            put: profile_rows(&prom::delta(b, a)),
            get: profile_rows(&prom::delta(c, b)),
        }),
        _ => None,
    };
    let durability = if s.no_fsync {
        "no fsync ([store] fsync = false): an acknowledged write may be lost in a crash".into()
    } else {
        "fsync on every commit before acknowledging ([store] fsync = true, the default)".into()
    };
    Ok(SystemReport {
        system: "bavard".into(),
        version,
        durability,
        consistency: bavard_consistency(&s.consistency),
        preload: m.preload,
        put: m.put,
        get: m.get,
        profile,
    })
}

/// The node settings of the bavard side.
fn bavard_config(s: &Settings) -> String {
    // The store refuses new keys past max_records (100,000 by default): make room for the
    // preload and for the put phase, so that the limit is not what gets measured.
    let max_records = (s.preload + 5_000_000).max(100_000);
    format!(
        "# Written by `cargo xtask bench kv --wrk/--vs`.\n[store]\nfsync = {}\nmax_records = {max_records}\n",
        !s.no_fsync
    )
}

fn bavard_consistency(level: &str) -> String {
    match level {
        "quorum" => "put and get at QUORUM: a write is acknowledged once W = 2 of the N = 3 \
                     replicas have committed it; a read asks R = 2 of 3 and returns the newest \
                     version (last-writer-wins on HLC timestamps), repairing stale replicas; \
                     R + W > N, but not linearizable"
            .into(),
        "one" => "put and get at ONE: one replica's acknowledgement or answer (N = 3); a read \
                  may miss the latest write"
            .into(),
        "all" => {
            "put and get at ALL: every one of the N = 3 replicas (LWW on HLC timestamps)".into()
        }
        other => format!("consistency {other}"),
    }
}

fn status_version(state: &ClusterState) -> Option<String> {
    let node = state.nodes.first()?;
    let r = http::get(&node.api, "/v1/status", Duration::from_secs(5)).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v["version"].as_str().map(str::to_string)
}

/// Reads back 100 preloaded keys spread over the range, each through a node in turn.
fn bavard_check(
    state: &ClusterState,
    s: &Settings,
    prefix: &str,
    n: u64,
) -> anyhow::Result<String> {
    let (consistency, expected) = (&s.consistency, value(s.value_size));
    let samples = n.min(100);
    let mut found = 0;
    for j in 0..samples {
        let i = j * n / samples;
        let node = &state.nodes[j as usize % state.nodes.len()];
        let path = format!("/v1/kv/{prefix}{i}?consistency={consistency}");
        let r = http::get(&node.api, &path, Duration::from_secs(10))?;
        if r.status == 200 && r.body == expected {
            found += 1;
        }
    }
    Ok(format!(
        "read back {found} of {samples} preloaded keys sampled over the range"
    ))
}

/// Stops the cluster in `dir` when dropped or on Ctrl-C (as `runs::Teardown`, which only drops).
fn cluster_teardown(dir: PathBuf) -> OnInterrupt {
    OnInterrupt::new(move || {
        if dir.join("cluster.json").exists() {
            match cluster::down(&dir) {
                Ok(summary) => eprintln!("{summary}"),
                Err(e) => eprintln!("could not stop the cluster in {}: {e:#}", dir.display()),
            }
        }
    })
}

/// Every node's histograms, summed.
pub(crate) fn scrape(state: &ClusterState) -> anyhow::Result<Vec<Histogram>> {
    let mut all = Vec::new();
    for n in &state.nodes {
        let r = http::get(&n.api, "/metrics", Duration::from_secs(10))?;
        if r.status != 200 {
            bail!("GET /metrics on node {}: HTTP {}", n.index, r.status);
        }
        let text = String::from_utf8_lossy(&r.body);
        all.extend(
            prom::parse_histograms(&text)
                .with_context(|| format!("node {}'s /metrics", n.index))?,
        );
    }
    Ok(prom::merge(all))
}

/// The `*_seconds` histograms (per-stage `*_stage_seconds` and every other) that counted
/// something, as rows.
pub(crate) fn profile_rows(hists: &[Histogram]) -> Vec<ProfileRow> {
    hists
        .iter()
        .filter(|h| h.name.ends_with("_seconds") && h.count > 0.0)
        .map(|h| {
            let q = |q| {
                h.quantile(q)
                    .map_or_else(|| "-".into(), |v| v.scaled(1000.0).to_string())
            };
            ProfileRow {
                metric: h.name.clone(),
                labels: h.label_text(),
                count: h.count as u64,
                p50_ms: q(0.5),
                p99_ms: q(0.99),
                mean_ms: h.sum / h.count * 1000.0,
            }
        })
        .collect()
}

/// The profile of one phase as a table.
pub(crate) fn profile_table(rows: &[ProfileRow]) -> String {
    if rows.is_empty() {
        return "  (no *_seconds histogram counted anything)\n".into();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.metric.clone(),
                if r.labels.is_empty() {
                    "-".into()
                } else {
                    r.labels.clone()
                },
                r.count.to_string(),
                r.p50_ms.clone(),
                r.p99_ms.clone(),
                prom::short(r.mean_ms),
            ]
        })
        .collect();
    let t = cluster::table(
        &[
            "histogram",
            "labels",
            "count",
            "p50 ms",
            "p99 ms",
            "mean ms",
        ],
        &cells,
    );
    t.lines().map(|l| format!("  {l}\n")).collect()
}

fn etcd(ctx: &Ctx<'_>, bin: &Path, dir: &Path) -> anyhow::Result<SystemReport> {
    eprintln!("etcd: starting {} members…", ctx.s.nodes);
    let cluster = etcd::start(bin, dir, ctx.s.nodes, Duration::from_secs(60))?;
    let urls: Vec<String> = cluster
        .members
        .iter()
        .map(|m| format!("http://{}/", m.client_addr()))
        .collect();
    let addr = cluster.members[0].client_addr();
    let check = |prefix: &str, n: u64| -> anyhow::Result<String> {
        let count = etcd::count_prefix(&addr, prefix)?;
        Ok(format!("etcd counts {count} of {n} preloaded keys"))
    };
    let m = measure(ctx, &Api::Etcd, "etcd", &urls, &check, &mut |_| {})?;
    Ok(SystemReport {
        system: "etcd".into(),
        version: cluster.version.clone(),
        durability: "fsync of the Raft WAL on every commit (etcd's default; no --unsafe-no-fsync)"
            .into(),
        consistency: "put committed through Raft (a majority, 2 of 3 members, has the entry in \
                      its fsynced WAL); range linearizable (etcd's default, serializable = \
                      false: the member confirms with the leader, ReadIndex, before answering; \
                      a serializable read would be weaker and cheaper)"
            .into(),
        preload: m.preload,
        put: m.put,
        get: m.get,
        profile: None,
    })
}

fn notes(s: &Settings, etcd: bool) -> Vec<String> {
    let mut n = vec![
        "wrk connects to one host, so each system gets one wrk process per node, started \
         together, with the connections split between them; each process has \
         max(1, threads / nodes) threads"
            .to_string(),
        "latencies are wrk's, per request, in a closed loop (a slow answer delays that \
         connection's next request; no coordinated-omission correction), merged exactly over the \
         wrk processes; ops/s counts successful requests (2xx with the right value) only"
            .to_string(),
        format!(
            "an answer slower than --timeout {} s counts as a timeout error and is left out of the \
             percentiles (wrk drops it)",
            s.timeout.as_secs()
        ),
        "gets read keys that exist: the preloaded ones, else those the put phase wrote (each \
         wrk thread's keys but the last request of each connection); a 404 or a wrong value is \
         an error"
            .to_string(),
    ];
    if etcd && s.no_fsync {
        n.push("UNEQUAL: bavard ran without fsync (--no-fsync), etcd with".into());
    }
    if etcd && s.consistency != "quorum" {
        n.push(format!(
            "UNEQUAL: bavard ran at consistency {}, etcd with Raft writes and linearizable reads",
            s.consistency
        ));
    }
    n
}

/// The side-by-side table and the notes.
pub(crate) fn human(r: &Report) -> String {
    let l = &r.load;
    let mut out = format!(
        "bench kv (wrk): {} nodes per system; {} wrk processes (one per node), {} threads, {} \
         connections ({}); {} s per phase; {}-byte values; preload {} keys\n\n",
        l.nodes,
        l.wrk_processes,
        l.wrk_threads,
        l.connections,
        l.connections_per_node
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("+"),
        l.duration_s,
        l.value_size,
        l.preload,
    );
    let mut headers = vec![String::new()];
    headers.extend(
        r.systems
            .iter()
            .map(|s| format!("{} {}", s.system, s.version)),
    );
    let row = |name: &str, f: &dyn Fn(&SystemReport) -> String| -> Vec<String> {
        let mut v = vec![name.to_string()];
        v.extend(r.systems.iter().map(f));
        v
    };
    let mut rows = Vec::new();
    if r.systems.iter().any(|s| s.preload.is_some()) {
        rows.push(row("preload", &|s| {
            s.preload.as_ref().map_or("-".into(), |p| {
                format!(
                    "{:.1} s ({:.0} keys/s, {} errors)",
                    p.seconds, p.keys_s, p.errors
                )
            })
        }));
    }
    for (phase, get) in [("put", false), ("get", true)] {
        let p = |s: &SystemReport| if get { s.get.clone() } else { s.put.clone() };
        rows.push(row(&format!("{phase} ops/s"), &|s| {
            format!("{:.0}", p(s).ops_s)
        }));
        rows.push(row(&format!("{phase} p50 ms"), &|s| {
            prom::short(p(s).p50_ms)
        }));
        rows.push(row(&format!("{phase} p99 ms"), &|s| {
            prom::short(p(s).p99_ms)
        }));
        rows.push(row(&format!("{phase} p999 ms"), &|s| {
            prom::short(p(s).p999_ms)
        }));
        rows.push(row(&format!("{phase} errors"), &|s| error_cell(&p(s))));
    }
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    out.push_str(&cluster::table(&headers, &rows));
    out.push('\n');
    for s in &r.systems {
        out.push_str(&format!(
            "\n{}: {}.\n  durability: {}.\n",
            s.system, s.consistency, s.durability
        ));
        if let Some(p) = &s.preload {
            out.push_str(&format!("  preload check: {}.\n", p.check));
        }
        for (phase, p) in [("put", &s.put), ("get", &s.get)] {
            for sample in &p.samples {
                out.push_str(&format!("  a {phase} error: {sample}\n"));
            }
        }
    }
    for n in &r.notes {
        out.push_str(&format!("\nnote: {n}."));
    }
    out.push('\n');
    for s in &r.systems {
        if let Some(p) = &s.profile {
            out.push_str(&format!(
                "\nprofile, put phase ({} /metrics, summed over the nodes, counted during the phase):\n{}",
                s.system,
                profile_table(&p.put)
            ));
            out.push_str(&format!("profile, get phase:\n{}", profile_table(&p.get)));
        }
    }
    out
}

/// `0`, or the total and its kinds: `12 (503: 10, timeout: 2)`.
fn error_cell(p: &Phase) -> String {
    if p.errors == 0 {
        return "0".into();
    }
    let e = &p.error_kinds;
    let mut kinds: Vec<String> = p
        .statuses
        .iter()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    for (name, n) in [
        ("connect", e.connect),
        ("read", e.read),
        ("write", e.write),
        ("timeout", e.timeout),
        ("wrong value", e.misses),
    ] {
        if n > 0 {
            kinds.push(format!("{name}: {n}"));
        }
    }
    format!("{} ({})", p.errors, kinds.join(", "))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::wrk::Errors;

    fn phase(ops: f64, p50: f64, p99: f64) -> Phase {
        Phase {
            ops_s: ops,
            p50_ms: p50,
            p99_ms: p99,
            p999_ms: p99 * 2.0,
            requests: 100,
            ok: 100,
            errors: 0,
            error_kinds: Errors::default(),
            duration_s: 15.0,
            statuses: BTreeMap::new(),
            samples: vec![],
        }
    }

    fn report() -> Report {
        let mut bavard_get = phase(13450.0, 1.51, 242.7);
        bavard_get.errors = 3;
        bavard_get.error_kinds.non2xx = 2;
        bavard_get.error_kinds.timeout = 1;
        bavard_get.statuses.insert("503".into(), 2);
        bavard_get.samples.push("503 {\"error\":\"busy\"}".into());
        Report {
            load: Load {
                nodes: 3,
                wrk_processes: 3,
                wrk_threads: 3,
                connections: 32,
                connections_per_node: vec![11, 11, 10],
                duration_s: 15,
                timeout_s: 30,
                value_size: 100,
                preload: 0,
                seed: 1,
            },
            systems: vec![
                SystemReport {
                    system: "bavard".into(),
                    version: "0.1.0".into(),
                    durability: "fsync".into(),
                    consistency: "quorum".into(),
                    preload: None,
                    put: phase(9172.0, 2.45, 116.6),
                    get: bavard_get,
                    profile: Some(Profile {
                        put: vec![ProfileRow {
                            metric: "bavard_lookup_duration_seconds".into(),
                            labels: String::new(),
                            count: 5,
                            p50_ms: "2.50".into(),
                            p99_ms: ">250".into(),
                            mean_ms: 3.0,
                        }],
                        get: vec![],
                    }),
                },
                SystemReport {
                    system: "etcd".into(),
                    version: "3.4.23".into(),
                    durability: "fsync".into(),
                    consistency: "raft".into(),
                    preload: None,
                    put: phase(5699.0, 4.89, 12.3),
                    get: phase(11142.0, 2.49, 8.6),
                    profile: None,
                },
            ],
            notes: vec!["a note".into()],
        }
    }

    #[test]
    fn the_table_puts_the_systems_side_by_side_with_every_figure() {
        let text = human(&report());
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().find(|l| l.contains("bavard 0.1.0")).unwrap();
        assert!(header.contains("etcd 3.4.23"), "{text}");
        for (name, bavard, etcd) in [
            ("put ops/s", "9172", "5699"),
            ("put p50 ms", "2.45", "4.89"),
            ("put p99 ms", "117", "12.3"),
            ("put p999 ms", "233", "24.6"),
            ("get ops/s", "13450", "11142"),
            ("get p99 ms", "243", "8.60"),
            ("put errors", "0", "0"),
        ] {
            let line = lines
                .iter()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} row in\n{text}"));
            let cells: Vec<&str> = line[name.len()..].split_whitespace().collect();
            assert_eq!(cells, [bavard, etcd], "{name}: {line}");
        }
        assert!(
            text.lines()
                .any(|l| l.starts_with("get errors") && l.contains("3 (503: 2, timeout: 1)")),
            "{text}"
        );
        assert!(
            text.contains("a get error: 503 {\"error\":\"busy\"}"),
            "{text}"
        );
        assert!(text.contains("11+11+10"));
        assert!(text.contains("note: a note."));
        assert!(text.contains("bavard_lookup_duration_seconds"));
        assert!(text.contains(">250"));
    }

    #[test]
    fn the_json_report_holds_both_systems_and_the_load() {
        let v = serde_json::to_value(report()).unwrap();
        assert_eq!(v["systems"][1]["system"], "etcd");
        assert_eq!(v["systems"][0]["put"]["p99_ms"], 116.6);
        assert_eq!(v["systems"][0]["get"]["error_kinds"]["non2xx"], 2);
        assert_eq!(v["load"]["connections"], 32);
        assert!(v["systems"][1]["profile"].is_null());
    }

    #[test]
    fn profile_rows_keep_the_seconds_histograms_that_counted_something() {
        let text = "\
a_stage_seconds_bucket{stage=\"commit\",le=\"0.001\"} 1
a_stage_seconds_bucket{stage=\"commit\",le=\"0.01\"} 3
a_stage_seconds_bucket{stage=\"commit\",le=\"+Inf\"} 4
a_stage_seconds_sum{stage=\"commit\"} 0.2
a_stage_seconds_count{stage=\"commit\"} 4
idle_seconds_bucket{le=\"1\"} 0
idle_seconds_bucket{le=\"+Inf\"} 0
hops_bucket{le=\"1\"} 5
hops_bucket{le=\"+Inf\"} 5
";
        let rows = profile_rows(&prom::parse_histograms(text).unwrap());
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].metric, "a_stage_seconds");
        assert_eq!(rows[0].labels, "stage=\"commit\"");
        assert_eq!(rows[0].count, 4);
        assert_eq!(rows[0].p50_ms, "5.50");
        assert_eq!(rows[0].p99_ms, ">10.0");
        assert_eq!(rows[0].mean_ms, 50.0);
        assert!(profile_table(&rows).contains("a_stage_seconds  stage=\"commit\"  4"));
        assert!(profile_table(&[]).contains("no *_seconds histogram"));
    }

    #[test]
    fn the_bavard_side_keeps_fsync_and_has_room_for_the_preload() {
        let mut s = Settings {
            nodes: 3,
            threads: 2,
            connections: 32,
            duration: Duration::from_secs(15),
            timeout: Duration::from_secs(30),
            preload: 1_000_000,
            value_size: 100,
            consistency: "quorum".into(),
            no_fsync: false,
            vs_etcd: true,
            profile: false,
            bin: None,
            etcd_bin: None,
            wrk_bin: None,
            seed: None,
            json: false,
        };
        let c = bavard_config(&s);
        assert!(c.contains("fsync = true"), "{c}");
        assert!(c.contains("max_records = 6000000"), "{c}");
        assert!(notes(&s, true).iter().all(|n| !n.starts_with("UNEQUAL")));
        s.no_fsync = true;
        s.consistency = "one".into();
        assert!(bavard_config(&s).contains("fsync = false"));
        assert_eq!(
            notes(&s, true)
                .iter()
                .filter(|n| n.starts_with("UNEQUAL"))
                .count(),
            2
        );
    }

    #[test]
    fn every_put_writes_the_same_printable_value_of_the_requested_size() {
        assert_eq!(value(100).len(), 100);
        assert!(value(100).iter().all(u8::is_ascii_lowercase));
        assert!(value(0).is_empty());
    }
}
