//! The `wrk` load generator: Lua scripts for bavard's and etcd's HTTP APIs, one `wrk` per node,
//! and the merge of their results.
//!
//! `wrk` connects to one host only, so a run against an N-node system starts N `wrk` processes
//! at once, one per node, and splits the connections (and threads) between them ([`plan`]). Each
//! process gets its own generated script; each of its threads has a global id `gid` (0 up to the
//! total thread count `stride`), and writes the keys `PREFIX{gid + stride·k}` for k = 0, 1, …, so
//! that no two threads of any process write the same key.
//!
//! The script's `done()` prints one line, `xtask-wrk-json {…}`, with the request count, the
//! duration, wrk's socket errors, the non-2xx answers and the wrong bodies counted by the
//! `response()` hook, wrk's own p50/p99/p999 for this process, what each thread wrote, and the
//! whole latency histogram (wrk keeps one count per microsecond), so that the processes' results
//! merge into exact percentiles ([`merge`]).
//!
//! A preload writes exactly the keys `PREFIX0` … `PREFIX{n−1}`: a thread whose next index is past
//! the end sends nothing more on that connection (an empty request), and once every answer is in
//! prints `xtask-wrk-drained`; when all threads of a process have, the xtask interrupts it with
//! SIGINT, upon which wrk prints its results at once (its main thread otherwise sleeps for the
//! whole `-d`).
//!
//! Two wrk details the scripts handle: wrk calls `request()` once on its first thread before the
//! run to check the script, and throws the result away (so that call must not consume a key);
//! and wrk counts a latency above `--timeout` as a timeout and leaves it out of the histogram (so
//! the xtask passes a long `--timeout`, and reports timeouts as errors).

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::interrupt::OnInterrupt;

/// The marker of the result line a script's `done()` prints.
const JSON_MARKER: &str = "xtask-wrk-json ";
/// The marker a preloading thread prints once it has written its share.
const DRAINED_MARKER: &str = "xtask-wrk-drained";

/// The HTTP API a script talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Api {
    /// bavard: `PUT`/`GET /v1/kv/{key}?consistency=…`, the raw value as body.
    Bavard {
        /// `one`, `quorum` or `all`.
        consistency: String,
    },
    /// etcd's grpc-gateway: `POST /v3/kv/put` and `/v3/kv/range` with base64 keys and values.
    Etcd,
}

/// What a phase does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Write distinct keys `prefix{index}`, for the duration or (`limit`) up to an index.
    Put {
        /// The key prefix.
        prefix: String,
        /// Stop at this key index (a preload); `None`: run for the duration.
        limit: Option<u64>,
    },
    /// Read keys that exist, uniformly at random.
    Get(KeySet),
}

/// Keys known to exist: `prefix{gid + stride·k}` for `k < bound` of each `(gid, bound)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeySet {
    /// The key prefix.
    pub(crate) prefix: String,
    /// The stride of the run that wrote them.
    pub(crate) stride: u64,
    /// `(gid, bound)` per writing thread.
    pub(crate) bounds: Vec<(u64, u64)>,
}

impl KeySet {
    /// `prefix0` … `prefix{n−1}`.
    pub(crate) fn range(prefix: &str, n: u64) -> Self {
        Self {
            prefix: prefix.to_string(),
            stride: 1,
            bounds: vec![(0, n)],
        }
    }

    /// The keys a put phase certainly wrote: each thread's keys but its last `connections`
    /// (answers that may not have come back when the run stopped).
    pub(crate) fn written(prefix: &str, outputs: &[(Output, u64)], stride: u64) -> Self {
        let bounds = outputs
            .iter()
            .flat_map(|(o, conns_per_thread)| {
                o.threads
                    .iter()
                    .map(move |t| (t.gid, t.issued.saturating_sub(*conns_per_thread)))
            })
            .filter(|&(_, b)| b > 0)
            .collect();
        Self {
            prefix: prefix.to_string(),
            stride,
            bounds,
        }
    }

    /// How many keys.
    pub(crate) fn len(&self) -> u64 {
        self.bounds.iter().map(|b| b.1).sum()
    }
}

/// One script: what one `wrk` process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Script {
    pub(crate) api: Api,
    pub(crate) op: Op,
    /// The value written (and expected back).
    pub(crate) value: Vec<u8>,
    /// The global id of this process's first thread.
    pub(crate) gbase: u64,
    /// The number of threads over all processes.
    pub(crate) stride: u64,
    /// Seeds the choice of keys to read.
    pub(crate) seed: u64,
}

/// One `wrk` process of a run: which node, how many threads and connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Proc {
    /// The node it loads.
    pub(crate) node: usize,
    /// Its threads.
    pub(crate) threads: u64,
    /// Its connections (a multiple of `threads`: wrk gives each thread `connections / threads`).
    pub(crate) connections: u64,
    /// The global id of its first thread.
    pub(crate) gbase: u64,
}

/// Splits `threads` and `connections` over one `wrk` per node: each process gets
/// `max(1, threads / nodes)` threads and an even share of the connections, rounded down to a
/// multiple of its threads (wrk would drop the rest).
pub(crate) fn plan(nodes: usize, threads: u64, connections: u64) -> anyhow::Result<Vec<Proc>> {
    if nodes == 0 {
        bail!("no node to load");
    }
    let n = nodes as u64;
    let per = (threads / n).max(1);
    if connections < n * per {
        bail!(
            "{connections} connections cannot be spread over {nodes} nodes with {per} thread(s) \
             each: use at least {} (--connections)",
            n * per
        );
    }
    let mut out = Vec::with_capacity(nodes);
    for node in 0..nodes {
        let share = connections / n + u64::from((node as u64) < connections % n);
        out.push(Proc {
            node,
            threads: per,
            connections: (share / per * per).max(per),
            gbase: node as u64 * per,
        });
    }
    Ok(out)
}

/// A Lua string literal holding `s` (bytes escaped as `\ddd`, so any byte is safe).
fn lua_str(s: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in s {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// Base64 (standard alphabet, padded), as etcd's JSON gateway wants keys and values.
pub(crate) fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The Lua template of every script: `@NAME@` marks what [`script`] fills in.
const LUA_TEMPLATE: &str = include_str!("wrk.lua");

/// The Lua script of one `wrk` process.
pub(crate) fn script(s: &Script) -> String {
    let (target, consistency) = match &s.api {
        Api::Bavard { consistency } => ("bavard", consistency.as_str()),
        Api::Etcd => ("etcd", ""),
    };
    let (op, prefix, limit, read) = match &s.op {
        Op::Put { prefix, limit } => ("put", prefix.as_str(), limit.map_or(-1, |l| l as i64), None),
        Op::Get(keys) => ("get", "", -1, Some(keys)),
    };
    let empty = KeySet::range("", 0);
    let read = read.unwrap_or(&empty);
    let bounds: Vec<String> = read
        .bounds
        .iter()
        .map(|(g, b)| format!("{{{g}, {b}}}"))
        .collect();
    let vars: [(&str, String); 16] = [
        ("@TARGET@", target.to_string()),
        ("@OP@", op.to_string()),
        ("@CONSISTENCY@", consistency.to_string()),
        ("@PREFIX@", lua_str(prefix.as_bytes())),
        ("@LIMIT@", limit.to_string()),
        ("@GBASE@", s.gbase.to_string()),
        ("@STRIDE@", s.stride.to_string()),
        ("@SEED@", (s.seed % (1 << 40)).to_string()),
        ("@VALUE@", lua_str(&s.value)),
        ("@VALUE_B64@", b64(&s.value)),
        ("@READ_PREFIX@", lua_str(read.prefix.as_bytes())),
        ("@READ_STRIDE@", read.stride.to_string()),
        ("@BOUNDS@", bounds.join(", ")),
        ("@READ_TOTAL@", read.len().to_string()),
        ("@DRAINED@", DRAINED_MARKER.to_string()),
        ("@MARKER@", JSON_MARKER.to_string()),
    ];
    let mut text = LUA_TEMPLATE.to_string();
    for (name, value) in &vars {
        text = text.replace(name, value);
    }
    text
}

/// What one `wrk` process's `done()` printed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Output {
    /// Answers received.
    pub(crate) requests: u64,
    /// The run's duration, in microseconds.
    pub(crate) duration_us: u64,
    /// wrk's own error counts.
    pub(crate) errors: WrkErrors,
    /// wrk's p50 for this process, µs.
    pub(crate) p50_us: u64,
    /// wrk's p99 for this process, µs.
    pub(crate) p99_us: u64,
    /// wrk's p99.9 for this process, µs.
    pub(crate) p999_us: u64,
    /// Per thread.
    pub(crate) threads: Vec<ThreadOutput>,
    /// `[latency µs, count]`, by increasing latency.
    pub(crate) latency_us: Vec<(u64, u64)>,
    /// Set by [`run`] for a preload: every thread wrote its share and the process was stopped
    /// for it (rather than by the time cap).
    #[serde(skip)]
    pub(crate) drained: bool,
}

/// wrk's socket errors (and its own count of answers ≥ 400, which `non2xx` includes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub(crate) struct WrkErrors {
    pub(crate) connect: u64,
    pub(crate) read: u64,
    pub(crate) write: u64,
    pub(crate) status: u64,
    pub(crate) timeout: u64,
}

/// One thread of a `wrk` process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ThreadOutput {
    /// Its global id.
    pub(crate) gid: u64,
    /// Keys it sent a put for.
    pub(crate) issued: u64,
    /// Answers it received.
    pub(crate) responses: u64,
    /// Answers outside 2xx.
    pub(crate) non2xx: u64,
    /// 2xx reads whose body did not hold the value.
    pub(crate) misses: u64,
    /// Answers outside 2xx, by status code.
    #[serde(default)]
    pub(crate) codes: BTreeMap<String, u64>,
    /// The first bad answer: status and the start of its body.
    #[serde(default)]
    pub(crate) sample: String,
}

/// Finds and parses the `xtask-wrk-json` line in a `wrk` process's output.
pub(crate) fn parse_output(stdout: &str) -> anyhow::Result<Output> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(JSON_MARKER))
        .context("wrk printed no result line (did the script's done() run?)")?;
    serde_json::from_str(line).context("wrk's result line is not the expected JSON")
}

/// Errors of a phase, over every process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Errors {
    /// Connections that could not be made.
    pub(crate) connect: u64,
    /// Read errors (a connection closed or reset mid-request).
    pub(crate) read: u64,
    /// Write errors.
    pub(crate) write: u64,
    /// Requests that took longer than `--timeout` (wrk drops them from the latencies).
    pub(crate) timeout: u64,
    /// Answers outside 2xx.
    pub(crate) non2xx: u64,
    /// 2xx reads whose body did not hold the value written (etcd: no `kvs`).
    pub(crate) misses: u64,
}

impl Errors {
    /// All of them.
    pub(crate) fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.non2xx + self.misses
    }
}

/// A phase's figures, merged over its processes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Phase {
    /// Successful operations per second (2xx, right body).
    pub(crate) ops_s: f64,
    /// Median latency, ms (every answer, as wrk records them).
    pub(crate) p50_ms: f64,
    /// 99th percentile, ms.
    pub(crate) p99_ms: f64,
    /// 99.9th percentile, ms.
    pub(crate) p999_ms: f64,
    /// Answers received.
    pub(crate) requests: u64,
    /// Successful operations.
    pub(crate) ok: u64,
    /// All errors.
    pub(crate) errors: u64,
    /// The errors by kind.
    pub(crate) error_kinds: Errors,
    /// The longest process's duration, s.
    pub(crate) duration_s: f64,
    /// Answers outside 2xx, by status code.
    pub(crate) statuses: BTreeMap<String, u64>,
    /// The first bad answers (up to 3 different ones): status and the start of the body.
    pub(crate) samples: Vec<String>,
}

/// The `q`-quantile (0..=1) of a histogram of `(value, count)` sorted by value, nearest rank.
pub(crate) fn hist_quantile(hist: &[(u64, u64)], q: f64) -> u64 {
    let total: u64 = hist.iter().map(|h| h.1).sum();
    if total == 0 {
        return 0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for &(v, c) in hist {
        seen += c;
        if seen >= rank {
            return v;
        }
    }
    hist.last().map_or(0, |h| h.0)
}

/// Merges the processes of one phase: sums, exact percentiles over the summed histograms, and
/// throughput over the longest duration (the processes run at the same time).
pub(crate) fn merge(outputs: &[Output]) -> Phase {
    let mut hist: Vec<(u64, u64)> = outputs
        .iter()
        .flat_map(|o| o.latency_us.iter().copied())
        .collect();
    hist.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(hist.len());
    for (v, c) in hist {
        match merged.last_mut() {
            Some(last) if last.0 == v => last.1 += c,
            _ => merged.push((v, c)),
        }
    }
    let mut e = Errors::default();
    for o in outputs {
        e.connect += o.errors.connect;
        e.read += o.errors.read;
        e.write += o.errors.write;
        e.timeout += o.errors.timeout;
        e.non2xx += o.threads.iter().map(|t| t.non2xx).sum::<u64>();
        e.misses += o.threads.iter().map(|t| t.misses).sum::<u64>();
    }
    let mut statuses = BTreeMap::new();
    let mut samples: Vec<String> = Vec::new();
    for t in outputs.iter().flat_map(|o| &o.threads) {
        for (code, n) in &t.codes {
            *statuses.entry(code.clone()).or_insert(0) += n;
        }
        if !t.sample.is_empty() && samples.len() < 3 && !samples.contains(&t.sample) {
            samples.push(t.sample.clone());
        }
    }
    let requests: u64 = outputs.iter().map(|o| o.requests).sum();
    let ok = requests.saturating_sub(e.non2xx + e.misses);
    let duration_s = outputs.iter().map(|o| o.duration_us).max().unwrap_or(0) as f64 / 1e6;
    let ms = |q| hist_quantile(&merged, q) as f64 / 1000.0;
    Phase {
        ops_s: if duration_s > 0.0 {
            ok as f64 / duration_s
        } else {
            0.0
        },
        p50_ms: ms(0.50),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        requests,
        ok,
        errors: e.total(),
        error_kinds: e,
        duration_s,
        statuses,
        samples,
    }
}

/// How to run one phase.
#[derive(Debug, Clone)]
pub(crate) struct RunSpec<'a> {
    /// The `wrk` binary.
    pub(crate) wrk: &'a Path,
    /// Where to write the scripts.
    pub(crate) dir: &'a Path,
    /// A name for the scripts and logs (`bavard-put`, …).
    pub(crate) label: &'a str,
    /// Run for this long (a preload: at most this long).
    pub(crate) duration: Duration,
    /// wrk's `--timeout`.
    pub(crate) timeout: Duration,
}

/// The command line of one `wrk` process.
pub(crate) fn command_line(spec: &RunSpec<'_>, p: &Proc, script: &Path, url: &str) -> Vec<String> {
    vec![
        "-t".into(),
        p.threads.to_string(),
        "-c".into(),
        p.connections.to_string(),
        "-d".into(),
        format!("{}s", spec.duration.as_secs().max(1)),
        "--timeout".into(),
        format!("{}s", spec.timeout.as_secs().max(1)),
        "-s".into(),
        script.display().to_string(),
        url.to_string(),
    ]
}

/// Runs one `wrk` per process of `procs` at once, process `i` against `urls[procs[i].node]`
/// with `scripts[i]`; for a preload (`drain`), interrupts each process once all its threads have
/// written their share. Returns each process's output, in order.
pub(crate) fn run(
    spec: &RunSpec<'_>,
    procs: &[Proc],
    scripts: &[String],
    urls: &[String],
    drain: bool,
) -> anyhow::Result<Vec<Output>> {
    let mut children = Vec::new();
    for (i, (p, text)) in procs.iter().zip(scripts).enumerate() {
        let path = spec.dir.join(format!("{}-{i}.lua", spec.label));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        let args = command_line(spec, p, &path, &urls[p.node]);
        let child = Command::new(spec.wrk)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", spec.wrk.display()))?;
        children.push((child, p.threads));
    }
    // Stop the wrk processes if we are interrupted; on the normal path they have exited.
    let pids: Vec<u32> = children.iter().map(|(c, _)| c.id()).collect();
    let finished = Arc::new(AtomicBool::new(false));
    let _guard = {
        let finished = finished.clone();
        OnInterrupt::new(move || {
            if !finished.load(Ordering::SeqCst) {
                for pid in pids {
                    let _ = crate::cluster::signal(pid, "KILL");
                }
            }
        })
    };
    let results: Vec<anyhow::Result<(String, String, bool)>> = std::thread::scope(|s| {
        let handles: Vec<_> = children
            .into_iter()
            .map(|(mut child, threads)| {
                s.spawn(move || -> anyhow::Result<(String, String, bool)> {
                    let stdout = child.stdout.take().context("no wrk stdout")?;
                    let mut stderr = child.stderr.take().context("no wrk stderr")?;
                    let err_reader = std::thread::spawn(move || {
                        let mut text = String::new();
                        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
                        text
                    });
                    let mut out = String::new();
                    let mut drained = 0;
                    for line in std::io::BufReader::new(stdout).lines() {
                        let line = line?;
                        if drain && line.starts_with(DRAINED_MARKER) {
                            drained += 1;
                            if drained == threads {
                                crate::cluster::signal(child.id(), "INT")?;
                            }
                        }
                        out.push_str(&line);
                        out.push('\n');
                    }
                    let status = child.wait()?;
                    let err = err_reader.join().unwrap_or_default();
                    if !status.success() {
                        bail!("wrk exited with {status}: {}", err.trim());
                    }
                    Ok((out, err, drain && drained == threads))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("wrk reader panicked")))
            })
            .collect()
    });
    finished.store(true, Ordering::SeqCst);
    let mut outputs = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let (out, err, drained) = r?;
        let log = spec.dir.join(format!("{}-{i}.out", spec.label));
        let _ = std::fs::write(&log, format!("{out}\n--- stderr\n{err}"));
        let parsed = parse_output(&out).with_context(|| {
            format!(
                "wrk {} against node {} (output in {}); stderr: {}",
                spec.label,
                procs[i].node,
                log.display(),
                err.trim()
            )
        })?;
        outputs.push(Output { drained, ..parsed });
    }
    if drain && outputs.iter().any(|o| !o.drained) {
        eprintln!(
            "warning: the {} preload hit its time cap ({:?}) before every thread had written its share",
            spec.label, spec.duration
        );
    }
    Ok(outputs)
}

/// `wrk` on the `PATH`, or the advice to install it.
pub(crate) fn find(explicit: Option<&Path>) -> anyhow::Result<std::path::PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    which("wrk").context(
        "wrk is not installed: `apt-get install wrk` (Debian/Ubuntu) or build it from \
         https://github.com/wg/wrk, or pass --wrk-bin",
    )
}

/// The first executable named `name` on the `PATH`.
pub(crate) fn which(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| {
                p.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_spread_over_one_wrk_per_node() {
        let p = plan(3, 2, 32).unwrap();
        assert_eq!(
            p.iter().map(|p| p.connections).collect::<Vec<_>>(),
            [11, 11, 10]
        );
        assert!(p.iter().all(|p| p.threads == 1));
        assert_eq!(p.iter().map(|p| p.gbase).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(p[2].node, 2);
        // With more threads, each process's connections are a multiple of its threads.
        let p = plan(3, 6, 32).unwrap();
        assert!(p.iter().all(|p| p.threads == 2 && p.connections % 2 == 0));
        assert_eq!(p.iter().map(|p| p.gbase).collect::<Vec<_>>(), [0, 2, 4]);
        assert_eq!(plan(1, 2, 32).unwrap()[0].connections, 32);
    }

    #[test]
    fn too_few_connections_or_no_node_is_an_error_that_says_what_to_change() {
        let err = plan(3, 2, 2).unwrap_err().to_string();
        assert!(err.contains("--connections"), "{err}");
        assert!(plan(0, 2, 32).is_err());
    }

    #[test]
    fn lua_strings_escape_quotes_backslashes_and_bytes() {
        assert_eq!(lua_str(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(lua_str(&[b'x', 10, 200]), r#""x\010\200""#);
    }

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(b"pre-3000"), "cHJlLTMwMDA=");
        assert_eq!(b64(b"x"), "eA==");
    }

    fn put_script(api: Api, limit: Option<u64>) -> String {
        script(&Script {
            api,
            op: Op::Put {
                prefix: "bench-1-w-".into(),
                limit,
            },
            value: vec![b'v'; 100],
            gbase: 1,
            stride: 3,
            seed: 7,
        })
    }

    #[test]
    fn put_scripts_name_the_api_the_prefix_and_the_thread_layout() {
        let s = put_script(
            Api::Bavard {
                consistency: "quorum".into(),
            },
            None,
        );
        assert!(s.contains(r#"local target = "bavard""#));
        assert!(s.contains(r#"local consistency = "quorum""#));
        assert!(s.contains(r#"local prefix = "bench-1-w-""#));
        assert!(s.contains("local limit = -1"));
        assert!(s.contains("local gbase = 1\nlocal stride = 3"));
        assert!(s.contains(r#""/v1/kv/" .. key .. "?consistency=""#));
        assert!(s.contains(&format!(r#"local value = "{}""#, "v".repeat(100))));
        let e = put_script(Api::Etcd, Some(1000));
        assert!(e.contains(r#"local target = "etcd""#));
        assert!(e.contains("local limit = 1000"));
        assert!(e.contains(r#""/v3/kv/put""#));
        assert!(e.contains(&format!(r#"local value_b64 = "{}""#, b64(&[b'v'; 100]))));
        for s in [&s, &e] {
            assert!(s.contains("function done(summary, latency, requests)"));
            assert!(s.contains(JSON_MARKER));
            assert!(s.contains("skip_check = first"));
        }
    }

    #[test]
    fn get_scripts_read_only_keys_that_were_written() {
        let keys = KeySet {
            prefix: "bench-1-w-".into(),
            stride: 3,
            bounds: vec![(0, 10), (2, 5)],
        };
        assert_eq!(keys.len(), 15);
        let s = script(&Script {
            api: Api::Etcd,
            op: Op::Get(keys),
            value: b"v".to_vec(),
            gbase: 0,
            stride: 3,
            seed: 1,
        });
        assert!(s.contains("local read_bounds = {{0, 10}, {2, 5}}"));
        assert!(s.contains("local read_total = 15"));
        assert!(s.contains("local read_stride = 3"));
        assert!(s.contains(r#""/v3/kv/range""#));
    }

    fn output(gid: u64, issued: u64, hist: Vec<(u64, u64)>) -> Output {
        Output {
            requests: hist.iter().map(|h| h.1).sum(),
            duration_us: 2_000_000,
            errors: WrkErrors {
                read: 1,
                ..WrkErrors::default()
            },
            p50_us: 0,
            p99_us: 0,
            p999_us: 0,
            threads: vec![ThreadOutput {
                gid,
                issued,
                responses: issued,
                non2xx: 2,
                misses: 1,
                codes: BTreeMap::from([("503".to_string(), 2)]),
                sample: format!("503 busy {gid}"),
            }],
            latency_us: hist,
            drained: false,
        }
    }

    #[test]
    fn the_keys_a_put_phase_surely_wrote_leave_out_the_last_request_of_each_connection() {
        let outs = vec![(output(0, 100, vec![]), 11), (output(1, 5, vec![]), 11)];
        let keys = KeySet::written("p-", &outs, 2);
        assert_eq!(keys.bounds, [(0, 89)]);
        assert_eq!(keys.stride, 2);
        assert_eq!(KeySet::range("x", 7).bounds, [(0, 7)]);
    }

    #[test]
    fn the_result_line_is_found_among_wrks_own_output() {
        let text = "Running 15s test @ http://127.0.0.1:1\n  1 threads and 11 connections\n\
            xtask-wrk-drained 0\n\
            xtask-wrk-json {\"requests\":3,\"duration_us\":1000,\"errors\":{\"connect\":0,\"read\":0,\"write\":0,\"status\":1,\"timeout\":0},\
            \"p50_us\":10,\"p99_us\":30,\"p999_us\":30,\"threads\":[{\"gid\":0,\"issued\":3,\"responses\":3,\"non2xx\":1,\"misses\":0,\"codes\":{\"503\":1},\"sample\":\"503 \\u0022busy\\u0022\"}],\
            \"latency_us\":[[10,2],[30,1]]}\nRequests/sec: 3000\n";
        let o = parse_output(text).unwrap();
        assert_eq!(o.requests, 3);
        assert_eq!(o.errors.status, 1);
        assert_eq!(o.threads[0].issued, 3);
        assert_eq!(o.threads[0].codes["503"], 1);
        assert_eq!(o.threads[0].sample, "503 \"busy\"");
        assert_eq!(o.latency_us, [(10, 2), (30, 1)]);
        assert!(parse_output("Running 15s test\n").is_err());
        assert!(parse_output("xtask-wrk-json {\"requests\":1}\n").is_err());
    }

    #[test]
    fn processes_merge_into_exact_percentiles_and_summed_errors() {
        // 900 answers at 1 ms in one process, 100 at 10 ms in the other.
        let a = output(0, 900, vec![(1000, 900)]);
        let b = output(1, 100, vec![(1000, 0), (10_000, 100)]);
        let m = merge(&[a, b]);
        assert_eq!(m.requests, 1000);
        assert_eq!(m.p50_ms, 1.0);
        assert_eq!(m.p99_ms, 10.0);
        assert_eq!(m.p999_ms, 10.0);
        assert_eq!(m.error_kinds.read, 2);
        assert_eq!(m.error_kinds.non2xx, 4);
        assert_eq!(m.error_kinds.misses, 2);
        assert_eq!(m.errors, 8);
        assert_eq!(m.ok, 1000 - 6);
        assert_eq!(m.duration_s, 2.0);
        assert_eq!(m.ops_s, 497.0);
        assert_eq!(m.statuses, BTreeMap::from([("503".to_string(), 4)]));
        assert_eq!(m.samples, ["503 busy 0", "503 busy 1"]);
    }

    #[test]
    fn histogram_quantiles_use_the_nearest_rank() {
        let h = [(1, 50), (2, 49), (3, 1)];
        assert_eq!(hist_quantile(&h, 0.5), 1);
        assert_eq!(hist_quantile(&h, 0.99), 2);
        assert_eq!(hist_quantile(&h, 0.999), 3);
        assert_eq!(hist_quantile(&[], 0.5), 0);
    }

    #[test]
    fn each_wrk_gets_its_threads_connections_a_long_timeout_and_its_script() {
        let spec = RunSpec {
            wrk: Path::new("/usr/bin/wrk"),
            dir: Path::new("/t"),
            label: "bavard-put",
            duration: Duration::from_secs(15),
            timeout: Duration::from_secs(30),
        };
        let p = plan(3, 2, 32).unwrap()[1];
        assert_eq!(
            command_line(&spec, &p, Path::new("/t/s.lua"), "http://127.0.0.1:5001/"),
            [
                "-t",
                "1",
                "-c",
                "11",
                "-d",
                "15s",
                "--timeout",
                "30s",
                "-s",
                "/t/s.lua",
                "http://127.0.0.1:5001/"
            ]
        );
    }

    /// End to end against a one-member etcd, when etcd and wrk are installed (skipped otherwise):
    /// the preload writes exactly the keys asked for and stops by itself, and the get phase
    /// finds every value it reads.
    #[test]
    fn wrk_preloads_exactly_the_keys_asked_for_and_reads_them_back_from_etcd() {
        let (Some(etcd_bin), Some(wrk_bin)) = (which("etcd"), which("wrk")) else {
            eprintln!("skipped: etcd or wrk is not installed");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let cluster = crate::etcd::start(
            &etcd_bin,
            &dir.path().join("etcd"),
            1,
            Duration::from_secs(60),
        )
        .unwrap();
        let urls = vec![format!("http://{}/", cluster.members[0].client_addr())];
        let procs = plan(1, 2, 6).unwrap();
        let scripts = |op: &Op| -> Vec<String> {
            procs
                .iter()
                .map(|p| {
                    script(&Script {
                        api: Api::Etcd,
                        op: op.clone(),
                        value: vec![b'v'; 100],
                        gbase: p.gbase,
                        stride: 2,
                        seed: 3,
                    })
                })
                .collect()
        };
        let spec = |label, duration| RunSpec {
            wrk: &wrk_bin,
            dir: dir.path(),
            label,
            duration,
            timeout: Duration::from_secs(10),
        };
        let op = Op::Put {
            prefix: "t-p-".into(),
            limit: Some(301),
        };
        let pre = run(
            &spec("pre", Duration::from_secs(120)),
            &procs,
            &scripts(&op),
            &urls,
            true,
        )
        .unwrap();
        assert!(
            pre.iter().all(|o| o.drained),
            "the preload was stopped by its time cap, not when every thread had written its share"
        );
        let pre = merge(&pre);
        assert_eq!(pre.errors, 0, "{pre:?}");
        assert_eq!(pre.requests, 301);
        let addr = cluster.members[0].client_addr();
        assert_eq!(crate::etcd::count_prefix(&addr, "t-p-").unwrap(), 301);

        let get = Op::Get(KeySet::range("t-p-", 301));
        let outs = run(
            &spec("get", Duration::from_secs(2)),
            &procs,
            &scripts(&get),
            &urls,
            false,
        )
        .unwrap();
        let got = merge(&outs);
        assert!(got.requests > 0);
        assert_eq!(got.errors, 0, "{got:?}");
        // A key that was never written is a miss, not a success.
        let absent = Op::Get(KeySet::range("t-absent-", 5));
        let outs = run(
            &spec("absent", Duration::from_secs(1)),
            &procs,
            &scripts(&absent),
            &urls,
            false,
        )
        .unwrap();
        let m = merge(&outs);
        assert_eq!(m.ok, 0);
        assert_eq!(m.error_kinds.misses, m.requests);
    }
}
