//! `cargo xtask cluster`: a local cluster of `bavard` nodes on 127.0.0.1.
//!
//! `up` builds `bavard` in release, starts N nodes (node 0 is the bootstrap of the others), each
//! with its own data directory `DIR/node-I` and log `DIR/node-I/node.log`, waits until every
//! node has joined, prints a table and leaves them running. Nodes bind port 0 and report their
//! real addresses in `node.json`, so there are no port races. The cluster is described by
//! `DIR/cluster.json` (binary, nodes, pids, directories, addresses); `status`, `kill`, `pause`,
//! `resume`, `restart` and `down` act on it. Signals are sent with the `kill` command, so the
//! xtask needs no libc binding. Unix only.
//!
//! `partition` and `isolate` record each cut in `DIR/partition.json` ([`faults::Cuts`]) and
//! `heal` removes it, so that `cluster ui` can draw which side each node is on. `up --monitor`
//! adds a Prometheus server ([`crate::monitor`]); `ui` serves a page that draws the network and
//! drives these same commands ([`crate::ui`]). Every command that acts on nodes is a function
//! here returning what it did, called alike by the subcommand and by the page's server.

use std::fs::OpenOptions;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::monitor::{self, Monitor};
use crate::netns::{self, Netns};
use crate::{faults, http, ui};

/// Arguments of `cargo xtask cluster`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The cluster directory [default: target/cluster].
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build bavard (release), start the nodes, wait until they have joined.
    Up {
        #[command(flatten)]
        up: UpArgs,
        /// Give each node its own network namespace and address on a bridge (root only).
        #[arg(long)]
        netns: bool,
        /// Also start Prometheus (`/usr/bin/prometheus`), scraping every node's /metrics with
        /// deploy/prometheus/rules.yml loaded; `down` stops it.
        #[arg(long)]
        monitor: bool,
    },
    /// Show every node: state, peers, routing-table size, records.
    Status {
        /// Print a JSON list instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Kill nodes with SIGKILL (`2`, `1,3`, `2-4` or `all`).
    Kill {
        /// Which nodes.
        nodes: String,
    },
    /// Freeze nodes with SIGSTOP.
    Pause {
        /// Which nodes.
        nodes: String,
    },
    /// Unfreeze nodes with SIGCONT.
    Resume {
        /// Which nodes.
        nodes: String,
    },
    /// Restart nodes with the same data directory and, if free, the same ports.
    Restart {
        /// Which nodes.
        nodes: String,
    },
    /// Cut every link between two node sets, both directions (`0-4 5-9`, `0,3 1,2,4`).
    Partition {
        /// The first set.
        a: String,
        /// The second set.
        b: String,
    },
    /// Cut every link of one node.
    Isolate {
        /// The node.
        node: usize,
    },
    /// Restore every link cut by `partition` or `isolate`.
    Heal,
    /// Stop every node (SIGTERM, then SIGKILL after a grace period) and remove the network
    /// namespaces, links and rules the tool created.
    Down,
    /// Serve a page on 127.0.0.1 that draws the cluster (member states, membership and topic-tree
    /// edges, partitions, message deliveries) and kills, restarts, partitions and heals nodes.
    Ui(ui::Args),
}

/// How to start a cluster.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    pub(crate) nodes: usize,
    /// Listen on QUIC too (`/ip4/127.0.0.1/udp/0/quic-v1`).
    #[arg(long)]
    pub(crate) quic: bool,
    /// Seconds to wait for the nodes to start and join.
    #[arg(long, default_value_t = 120)]
    pub(crate) timeout: u64,
    /// Use this bavard binary instead of building one.
    #[arg(long)]
    pub(crate) bin: Option<PathBuf>,
    /// A node config file passed to every node as `--config`.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
}

/// `DIR/cluster.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClusterState {
    /// The bavard binary the nodes run.
    pub(crate) binary: PathBuf,
    /// Whether the nodes listen on QUIC too.
    pub(crate) quic: bool,
    /// The `--config` file given to every node.
    pub(crate) config: Option<PathBuf>,
    /// The nodes, by index.
    pub(crate) nodes: Vec<NodeEntry>,
    /// The network namespaces, when the cluster runs with `--netns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) netns: Option<Netns>,
    /// The Prometheus server, when the cluster runs with `--monitor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) monitor: Option<Monitor>,
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NodeEntry {
    /// Its index.
    pub(crate) index: usize,
    /// Its data directory.
    pub(crate) dir: PathBuf,
    /// The pid of its last start.
    pub(crate) pid: u32,
    /// Its peer id.
    pub(crate) peer_id: String,
    /// Its listen addresses, without `/p2p/…`.
    pub(crate) listen_addrs: Vec<String>,
    /// Its API address, `HOST:PORT`.
    pub(crate) api: String,
}

impl NodeEntry {
    /// Its first listen address with `/p2p/PEER_ID`: what others bootstrap from.
    pub(crate) fn p2p(&self) -> String {
        let addr = self.listen_addrs.first().map_or("", String::as_str);
        format!("{addr}/p2p/{}", self.peer_id)
    }
}

/// `DIR/node-I/node.json`, written by a node once it has started.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct NodeJson {
    peer_id: String,
    listen_addrs: Vec<String>,
    api: Option<String>,
    pid: u32,
}

/// The parts of `GET /v1/status` the xtask reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct NodeStatus {
    /// Entries in its routing table.
    #[serde(default)]
    pub(crate) routing_table_size: usize,
    /// Members it sees alive.
    #[serde(default)]
    pub(crate) members_alive: usize,
    /// Records in its store.
    #[serde(default)]
    pub(crate) records_stored: usize,
    /// Peers it is connected to.
    #[serde(default)]
    pub(crate) connected_peers: usize,
}

/// What the operating system says about a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcState {
    /// Running (or sleeping).
    Running,
    /// Stopped by SIGSTOP.
    Stopped,
    /// Gone (or a zombie, or a recycled pid).
    Gone,
}

/// Runs `cargo xtask cluster …`.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let dir = args.dir.clone().unwrap_or_else(default_dir);
    match &args.command {
        Cmd::Up {
            up: up_args,
            netns,
            monitor,
        } => {
            // Before a node starts: a missing Prometheus is a message, not a half-started run.
            let prometheus = monitor.then(monitor::find_prometheus).transpose()?;
            let mut state = up_with(&dir, up_args, *netns)?;
            println!("{}", up_table(&state));
            if let Some(exe) = prometheus {
                let deadline = Instant::now() + Duration::from_secs(up_args.timeout);
                let m = monitor::start(&dir, &state, &exe)?;
                state.monitor = Some(m.clone());
                save(&dir, &state)?;
                let report = monitor::wait_ready(&dir, &m, state.nodes.len(), deadline)?;
                println!("Prometheus {} (pid {})\n{report}", m.url, m.pid);
            }
            println!(
                "cluster of {} nodes running in {}; logs in node-*/node.log; stop it with `cargo xtask cluster down`",
                state.nodes.len(),
                dir.display()
            );
            Ok(())
        }
        Cmd::Status { json } => status(&dir, *json),
        Cmd::Kill { nodes } => print_lines(&kill(&dir, nodes)?),
        Cmd::Pause { nodes } => print_lines(&pause(&dir, nodes)?),
        Cmd::Resume { nodes } => print_lines(&resume(&dir, nodes)?),
        Cmd::Restart { nodes } => print_lines(&restart_nodes(&dir, nodes)?),
        Cmd::Partition { a, b } => print_lines(&partition(&dir, a, b)?),
        Cmd::Isolate { node } => print_lines(&isolate(&dir, *node)?),
        Cmd::Heal => print_lines(&heal(&dir)?),
        Cmd::Down => {
            println!("{}", down(&dir)?);
            Ok(())
        }
        Cmd::Ui(ui_args) => ui::run(&dir, ui_args),
    }
}

fn print_lines(lines: &[String]) -> anyhow::Result<()> {
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// `cluster kill NODES`: SIGKILL. Returns a line per node.
pub(crate) fn kill(dir: &Path, nodes: &str) -> anyhow::Result<Vec<String>> {
    each_node(dir, nodes, "killed", |n| signal(n.pid, "KILL"))
}

/// `cluster pause NODES`: SIGSTOP. Returns a line per node.
pub(crate) fn pause(dir: &Path, nodes: &str) -> anyhow::Result<Vec<String>> {
    each_node(dir, nodes, "paused", |n| signal(n.pid, "STOP"))
}

/// `cluster resume NODES`: SIGCONT. Returns a line per node.
pub(crate) fn resume(dir: &Path, nodes: &str) -> anyhow::Result<Vec<String>> {
    each_node(dir, nodes, "resumed", |n| signal(n.pid, "CONT"))
}

/// `cluster restart NODES`. Returns a line per node.
pub(crate) fn restart_nodes(dir: &Path, nodes: &str) -> anyhow::Result<Vec<String>> {
    let mut state = load(dir)?;
    let mut out = Vec::new();
    for i in parse_indices(nodes, state.nodes.len())? {
        restart(dir, &mut state, i)?;
        let n = &state.nodes[i];
        out.push(format!(
            "restarted node {i} (pid {}): {} api http://{}",
            n.pid,
            n.p2p(),
            n.api
        ));
    }
    if let Some(m) = &state.monitor {
        monitor::reconfigure(dir, &state, m)?;
    }
    Ok(out)
}

/// `cluster partition A B`: cuts every link between the two sets and records the cut.
pub(crate) fn partition(dir: &Path, a: &str, b: &str) -> anyhow::Result<Vec<String>> {
    let state = load(dir)?;
    let (a, b) = faults::parse_sides(a, b, state.nodes.len())?;
    // Recorded first: a cut that fails half-way still shows, and `heal` lifts it.
    faults::record_cut(dir, &a, &b)?;
    faults::partition(&state, &a, &b)?;
    Ok(vec![format!(
        "cut every link between nodes {a:?} and {b:?}"
    )])
}

/// `cluster isolate NODE`: cuts every link of one node and records the cut.
pub(crate) fn isolate(dir: &Path, node: usize) -> anyhow::Result<Vec<String>> {
    let state = load(dir)?;
    parse_indices(&node.to_string(), state.nodes.len())?;
    let others: Vec<usize> = (0..state.nodes.len()).filter(|&j| j != node).collect();
    faults::record_cut(dir, &[node], &others)?;
    faults::isolate(&state, node)?;
    Ok(vec![format!("isolated node {node}")])
}

/// `cluster heal`: restores every link and forgets the recorded cuts, also when a node could not
/// be reached (the error says which): on loopback a down node comes back with no blocks.
pub(crate) fn heal(dir: &Path) -> anyhow::Result<Vec<String>> {
    let state = load(dir)?;
    faults::clear_cuts(dir)?;
    faults::heal(&state)?;
    Ok(vec!["restored every link".to_string()])
}

/// `target/cluster` in the workspace.
pub(crate) fn default_dir() -> PathBuf {
    crate::workspace_root().join("target").join("cluster")
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("cluster.json")
}

/// Reads `DIR/cluster.json`.
pub(crate) fn load(dir: &Path) -> anyhow::Result<ClusterState> {
    let path = state_path(dir);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no cluster in {} (cannot read {}); start one with `cargo xtask cluster up`",
            dir.display(),
            path.display()
        )
    })?;
    let state: ClusterState =
        serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    for node in &state.nodes {
        remember_token(node);
    }
    Ok(state)
}

/// Makes every later request to `node`'s API carry its token (from `DIR/api.token`).
fn remember_token(node: &NodeEntry) {
    if let Ok(token) = std::fs::read_to_string(node.dir.join("api.token")) {
        http::remember_token(&node.api, token.trim().to_string());
    }
}

pub(crate) fn save(dir: &Path, state: &ClusterState) -> anyhow::Result<()> {
    let path = state_path(dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(state)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// Parses a node selection: `all`, `I`, `A-B` (inclusive) or a comma-separated list of those,
/// each index below `n`. Returns sorted, distinct indices.
pub(crate) fn parse_indices(spec: &str, n: usize) -> anyhow::Result<Vec<usize>> {
    let spec = spec.trim();
    if spec == "all" {
        return Ok((0..n).collect());
    }
    let parse = |s: &str| -> anyhow::Result<usize> {
        let i: usize = s
            .trim()
            .parse()
            .with_context(|| format!("bad node index {s:?} (expected e.g. 2, 1,3, 2-4 or all)"))?;
        if i >= n {
            bail!(
                "no node {i}: the cluster has nodes 0 to {}",
                n.saturating_sub(1)
            );
        }
        Ok(i)
    };
    let mut out = Vec::new();
    for part in spec.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                if a > b {
                    bail!("empty node range {part:?}");
                }
                out.extend(a..=b);
            }
            None => out.push(parse(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Formats rows under headers as left-aligned columns separated by two spaces.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

fn up_table(state: &ClusterState) -> String {
    let rows: Vec<Vec<String>> = state
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.index.to_string(),
                n.peer_id.clone(),
                n.p2p(),
                format!("http://{}", n.api),
            ]
        })
        .collect();
    table(&["index", "peer id", "p2p address", "API"], &rows)
}

/// Builds `bavard` in release and returns the binary's path.
pub(crate) fn build_bavard() -> anyhow::Result<PathBuf> {
    build_release("bavard-node", "bavard")
}

/// Builds the binary `bin` of `package` in release and returns its path.
pub(crate) fn build_release(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building {bin} (release)…");
    let mut child = Command::new(cargo)
        .current_dir(crate::workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            package,
            "--bin",
            bin,
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo build")?;
    let stdout = child.stdout.take().context("no cargo stdout")?;
    let mut exe = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(path) = artifact_executable(&line, bin) {
            exe = Some(path);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo build of {bin} failed ({status})");
    }
    exe.with_context(|| format!("cargo build did not report the {bin} executable"))
}

/// The executable named `name` in a line of cargo's `--message-format=json` output.
fn artifact_executable(line: &str, name: &str) -> Option<PathBuf> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["reason"] != "compiler-artifact" || v["target"]["name"] != name {
        return None;
    }
    v["executable"].as_str().map(PathBuf::from)
}

/// The state of `pid`: from `/proc` where there is one (a recycled pid that is not a bavard
/// process counts as gone), else from `kill -0`.
pub(crate) fn proc_state(pid: u32) -> ProcState {
    proc_state_named(pid, "bavard")
}

/// The state of `pid`, a process whose command line names `name` (a recycled pid whose command
/// line does not counts as gone).
pub(crate) fn proc_state_named(pid: u32, name: &str) -> ProcState {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if Path::new("/proc/self").exists() {
        let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
            return ProcState::Gone;
        };
        let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        // Just after exec the new command line can read empty for a moment: not a recycled pid.
        if !cmdline.is_empty() && !String::from_utf8_lossy(&cmdline).contains(name) {
            return ProcState::Gone;
        }
        return parse_proc_stat(&stat);
    }
    let ok = Command::new("kill")
        .args(["-s", "0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        ProcState::Running
    } else {
        ProcState::Gone
    }
}

/// Reads the state letter of a `/proc/PID/stat` line (after the parenthesised command name).
fn parse_proc_stat(stat: &str) -> ProcState {
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    match state {
        Some("T" | "t") => ProcState::Stopped,
        Some("Z" | "X" | "x") | None => ProcState::Gone,
        Some(_) => ProcState::Running,
    }
}

/// Sends `sig` (e.g. `TERM`, `KILL`, `STOP`) to `pid` with the `kill` command.
pub(crate) fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -s {sig} {pid} failed: no such process?");
    }
    Ok(())
}

/// Asks a node for its status.
pub(crate) fn fetch_status(api: &str, timeout: Duration) -> anyhow::Result<NodeStatus> {
    let r = http::get(api, "/v1/status", timeout)?;
    if r.status != 200 {
        bail!("GET /v1/status on {api}: HTTP {}", r.status);
    }
    serde_json::from_slice(&r.body).with_context(|| format!("bad status JSON from {api}"))
}

/// Starts one node and returns its pid. Its output is appended to `DIR/node.log`; it runs in its
/// own process group so that a Ctrl-C at the terminal does not reach it.
fn spawn_node(
    state: &ClusterState,
    index: usize,
    dir: &Path,
    listen: &[String],
    api: &str,
    bootstrap: Option<&str>,
    join: Option<&str>,
) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let node_json = dir.join("node.json");
    if node_json.exists() {
        std::fs::remove_file(&node_json)?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .with_context(|| format!("cannot open {}/node.log", dir.display()))?;
    let mut cmd = match &state.netns {
        Some(ns) => {
            let prefix = ns.exec_prefix(index);
            let mut c = Command::new(&prefix[0]);
            c.args(&prefix[1..]).arg(&state.binary);
            c
        }
        None => Command::new(&state.binary),
    };
    cmd.arg("node").arg("--data-dir").arg(dir);
    for l in listen {
        cmd.args(["--listen", l]);
    }
    cmd.args(["--api", api]);
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    if let Some(t) = join {
        cmd.args(["--join", t]);
    }
    if let Some(c) = &state.config {
        cmd.arg("--config").arg(c);
    }
    let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    cmd.env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", state.binary.display()))?;
    let pid = child.id();
    // Reap it if it dies while we run, so that it does not linger as a zombie that looks alive.
    std::thread::spawn(move || child.wait());
    Ok(pid)
}

/// A join token from `admin`, the node holding the cluster's authority.
pub(crate) fn join_token(admin: &NodeEntry) -> anyhow::Result<String> {
    let r = http::request(
        &admin.api,
        "POST",
        "/v1/admin/cluster/token",
        &[],
        Duration::from_secs(10),
    )
    .context("cannot ask node 0 for a join token")?;
    if r.status != 200 {
        bail!(
            "node 0 refused a join token: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    v["token"]
        .as_str()
        .map(str::to_string)
        .context("node 0's answer carries no token")
}

/// The last `n` lines of a node's log, for error messages.
fn log_tail(dir: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until the node started as `pid` has written its `node.json`.
fn wait_node_json(dir: &Path, pid: u32, deadline: Instant) -> anyhow::Result<NodeJson> {
    let path = dir.join("node.json");
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(info) = serde_json::from_str::<NodeJson>(&text)
            && info.pid == pid
        {
            return Ok(info);
        }
        // Look twice, a moment apart: a process that is exec'ing can look gone for an instant.
        if proc_state(pid) == ProcState::Gone && {
            std::thread::sleep(Duration::from_millis(200));
            proc_state(pid) == ProcState::Gone && !path.exists()
        } {
            bail!(
                "the node in {} (pid {pid}) exited before it started; end of its log:\n{}",
                dir.display(),
                log_tail(dir, 15)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the node in {} (pid {pid}) did not write node.json in time",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn entry(index: usize, dir: &Path, info: NodeJson) -> anyhow::Result<NodeEntry> {
    let api = info
        .api
        .with_context(|| format!("the node in {} runs no API", dir.display()))?;
    let node = NodeEntry {
        index,
        dir: dir.to_path_buf(),
        pid: info.pid,
        peer_id: info.peer_id,
        listen_addrs: info.listen_addrs,
        api,
    };
    remember_token(&node);
    Ok(node)
}

fn progress(len: u64, msg: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:<18} [{bar:30}] {pos}/{len} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(msg);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Nodes of the cluster whose process is still there.
fn live_nodes(state: &ClusterState) -> Vec<usize> {
    state
        .nodes
        .iter()
        .filter(|n| proc_state(n.pid) != ProcState::Gone)
        .map(|n| n.index)
        .collect()
}

/// Fails if a node of a cluster in `dir` still runs.
pub(crate) fn ensure_not_running(dir: &Path) -> anyhow::Result<()> {
    if let Ok(old) = load(dir) {
        let live = live_nodes(&old);
        if !live.is_empty() {
            bail!(
                "a cluster is already running in {} ({} nodes alive): stop it first with `cargo xtask cluster down`",
                dir.display(),
                live.len()
            );
        }
    }
    Ok(())
}

/// Starts a cluster in `dir` on loopback and waits until every node has joined. Fails if one
/// already runs there.
pub(crate) fn up(dir: &Path, args: &UpArgs) -> anyhow::Result<ClusterState> {
    up_with(dir, args, false)
}

/// The listen addresses and API address node `i` starts with: port 0 on loopback, or the fixed
/// ports 4001 (p2p) and 5001 (API) on its own address in a namespace.
fn node_addrs(state: &ClusterState, i: usize) -> (Vec<String>, String) {
    let ip = if state.netns.is_some() {
        netns::addr(i)
    } else {
        "127.0.0.1".to_string()
    };
    let port = |p: u16| if state.netns.is_some() { p } else { 0 };
    let mut listen = vec![format!("/ip4/{ip}/tcp/{}", port(4001))];
    if state.quic {
        listen.push(format!("/ip4/{ip}/udp/{}/quic-v1", port(4001)));
    }
    (listen, format!("{ip}:{}", port(5001)))
}

/// Starts a cluster in `dir`, each node in its own network namespace when `with_netns`, and
/// waits until every node has joined. Fails if one already runs there.
pub(crate) fn up_with(dir: &Path, args: &UpArgs, with_netns: bool) -> anyhow::Result<ClusterState> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if with_netns {
        // Before building or creating anything: root, `ip` and `nft`.
        netns::ensure_root()?;
        netns::ensure_tools()?;
    }
    ensure_not_running(dir)?;
    let binary = match &args.bin {
        Some(b) => b.clone(),
        None => build_bavard()?,
    };
    let binary = std::fs::canonicalize(&binary)
        .with_context(|| format!("no bavard binary at {}", binary.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // A fresh cluster: old identities and records would make it a different experiment.
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() && name.starts_with("node-") {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    let mut state = ClusterState {
        binary,
        quic: args.quic,
        config: args
            .config
            .as_ref()
            .map(std::fs::canonicalize)
            .transpose()
            .context("cannot find the --config file")?,
        nodes: Vec::new(),
        netns: None,
        monitor: None,
    };
    if with_netns {
        state.netns = Some(Netns::create(dir, args.nodes)?);
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);

    let bar = progress(args.nodes as u64, "starting nodes");
    // Every pid spawned so far, so that a failed start leaves no stray node behind.
    let mut spawned = Vec::new();
    let started = start_all(dir, &mut state, args.nodes, deadline, &bar, &mut spawned);
    if let Err(e) = started {
        bar.abandon_with_message("start failed");
        stop(&spawned, Duration::from_secs(5));
        let _ = std::fs::remove_file(state_path(dir));
        if let Err(t) = netns::teardown(dir) {
            eprintln!("could not remove the network namespaces: {t:#}");
        }
        return Err(e);
    }
    bar.finish_with_message("started");

    wait_joined(&state, deadline)?;
    Ok(state)
}

/// Starts node 0, then the others with node 0 as bootstrap, and waits for their `node.json`.
fn start_all(
    dir: &Path,
    state: &mut ClusterState,
    nodes: usize,
    deadline: Instant,
    bar: &ProgressBar,
    spawned: &mut Vec<u32>,
) -> anyhow::Result<()> {
    let dir0 = dir.join("node-0");
    let (listen, api) = node_addrs(state, 0);
    let pid0 = spawn_node(state, 0, &dir0, &listen, &api, None, None)?;
    spawned.push(pid0);
    let info0 = wait_node_json(&dir0, pid0, deadline)?;
    state.nodes.push(entry(0, &dir0, info0)?);
    save(dir, state)?;
    bar.inc(1);
    let bootstrap = state.nodes[0].p2p();
    let mut pending = Vec::new();
    for i in 1..nodes {
        let d = dir.join(format!("node-{i}"));
        let (listen, api) = node_addrs(state, i);
        // Node 0 created the cluster and holds its authority: each other node joins with a
        // token of its own.
        let token = join_token(&state.nodes[0])?;
        let pid = spawn_node(state, i, &d, &listen, &api, Some(&bootstrap), Some(&token))?;
        spawned.push(pid);
        pending.push((i, d, pid));
    }
    for (i, d, pid) in pending {
        let info = wait_node_json(&d, pid, deadline)?;
        state.nodes.push(entry(i, &d, info)?);
        save(dir, state)?;
        bar.inc(1);
    }
    Ok(())
}

/// The routing-table size at which a node of an `n`-node cluster counts as joined.
pub(crate) fn join_threshold(n: usize) -> usize {
    n.saturating_sub(1).min(1)
}

/// Waits until every node's routing table holds at least [`join_threshold`] peers.
pub(crate) fn wait_joined(state: &ClusterState, deadline: Instant) -> anyhow::Result<()> {
    let need = join_threshold(state.nodes.len());
    let bar = progress(state.nodes.len() as u64, "joining");
    let mut joined = vec![false; state.nodes.len()];
    loop {
        for (j, n) in joined.iter_mut().zip(&state.nodes) {
            if !*j && let Ok(s) = fetch_status(&n.api, Duration::from_secs(2)) {
                *j = s.routing_table_size >= need;
            }
        }
        let count = joined.iter().filter(|j| **j).count();
        bar.set_position(count as u64);
        if count == joined.len() {
            bar.finish_with_message("joined");
            return Ok(());
        }
        if Instant::now() > deadline {
            bar.abandon_with_message("join timed out");
            let missing: Vec<String> = joined
                .iter()
                .enumerate()
                .filter(|(_, j)| !**j)
                .map(|(i, _)| i.to_string())
                .collect();
            bail!(
                "nodes {} did not join in time (see their node.log; `cargo xtask cluster status`)",
                missing.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Applies `f` to the selected nodes that run; returns a line per node.
fn each_node(
    dir: &Path,
    spec: &str,
    what: &str,
    f: impl Fn(&NodeEntry) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<String>> {
    let state = load(dir)?;
    let mut out = Vec::new();
    for i in parse_indices(spec, state.nodes.len())? {
        let n = &state.nodes[i];
        if proc_state(n.pid) == ProcState::Gone {
            out.push(format!("node {i} (pid {}) is not running", n.pid));
            continue;
        }
        f(n)?;
        out.push(format!("{what} node {i} (pid {})", n.pid));
    }
    Ok(out)
}

/// Sends SIGTERM to `pids` (and SIGCONT, so that a paused node can act on it), waits up to
/// `grace`, then SIGKILLs what is left. Returns how many needed SIGKILL.
fn stop(pids: &[u32], grace: Duration) -> usize {
    stop_named(pids, grace, "bavard")
}

/// [`stop`] for processes whose command line names `name`.
fn stop_named(pids: &[u32], grace: Duration, name: &str) -> usize {
    for &pid in pids {
        let _ = signal(pid, "TERM");
        let _ = signal(pid, "CONT");
    }
    let gone = |p: u32| proc_state_named(p, name) == ProcState::Gone;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|&p| !gone(p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<u32> = pids.iter().copied().filter(|&p| !gone(p)).collect();
    for &pid in &left {
        let _ = signal(pid, "KILL");
    }
    left.len()
}

/// Restarts node `i` with its data directory, its old ports if they are free (else new ones),
/// and node 0 (or, for node 0, the first other live node) as bootstrap.
pub(crate) fn restart(dir: &Path, state: &mut ClusterState, i: usize) -> anyhow::Result<()> {
    let old = state.nodes[i].clone();
    if proc_state(old.pid) != ProcState::Gone {
        stop(&[old.pid], Duration::from_secs(10));
    }
    let bootstrap = state
        .nodes
        .iter()
        .filter(|n| n.index != i && proc_state(n.pid) != ProcState::Gone)
        .min_by_key(|n| n.index)
        .map(NodeEntry::p2p);
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = spawn_node(
        state,
        i,
        &old.dir,
        &old.listen_addrs,
        &old.api,
        bootstrap.as_deref(),
        None,
    )?;
    let info = match wait_node_json(&old.dir, pid, deadline) {
        Ok(info) => info,
        Err(e) => {
            eprintln!("node {i} could not start on its old ports ({e:#}); trying new ones");
            let (listen, api) = node_addrs(state, i);
            let pid = spawn_node(
                state,
                i,
                &old.dir,
                &listen,
                &api,
                bootstrap.as_deref(),
                None,
            )?;
            wait_node_json(&old.dir, pid, deadline)?
        }
    };
    state.nodes[i] = entry(i, &old.dir, info)?;
    save(dir, state)
}

/// Stops every node of the cluster in `dir`, removes `cluster.json` (data and logs stay) and the
/// network namespaces recorded in `netns.json`, also when `cluster.json` is gone (a crash of the
/// tool). Returns a one-line summary.
pub(crate) fn down(dir: &Path) -> anyhow::Result<String> {
    let state = match load(dir) {
        Ok(state) => state,
        Err(e) => {
            let removed = netns::teardown(dir)?;
            if removed > 0 {
                return Ok(format!(
                    "no cluster.json; removed {removed} network namespaces left in {}",
                    dir.display()
                ));
            }
            return Err(e);
        }
    };
    let pids: Vec<u32> = state
        .nodes
        .iter()
        .filter(|n| proc_state(n.pid) != ProcState::Gone)
        .map(|n| n.pid)
        .collect();
    let killed = stop(&pids, Duration::from_secs(15));
    let prometheus = match &state.monitor {
        Some(m) if proc_state_named(m.pid, "prometheus") != ProcState::Gone => {
            stop_named(&[m.pid], Duration::from_secs(10), "prometheus");
            format!(", stopped Prometheus (pid {})", m.pid)
        }
        _ => String::new(),
    };
    let namespaces = netns::teardown(dir)?;
    faults::clear_cuts(dir)?;
    std::fs::remove_file(state_path(dir))?;
    let ns = if namespaces > 0 {
        format!(", removed {namespaces} network namespaces and the bridge")
    } else {
        String::new()
    };
    Ok(format!(
        "stopped {} nodes ({killed} needed SIGKILL){prometheus}{ns}; data and logs remain in {}",
        pids.len(),
        dir.display()
    ))
}

/// One node as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct StatusRow {
    index: usize,
    peer_id: String,
    api: String,
    p2p: String,
    alive: bool,
    state: &'static str,
    pid: u32,
    connected_peers: Option<usize>,
    routing_table_size: Option<usize>,
    members_alive: Option<usize>,
    records_stored: Option<usize>,
}

fn status_row(n: &NodeEntry) -> StatusRow {
    let proc = proc_state(n.pid);
    let st = match proc {
        ProcState::Gone | ProcState::Stopped => None,
        ProcState::Running => fetch_status(&n.api, Duration::from_secs(2)).ok(),
    };
    let state = match (proc, &st) {
        (ProcState::Gone, _) => "down",
        (ProcState::Stopped, _) => "paused",
        (ProcState::Running, Some(_)) => "up",
        (ProcState::Running, None) => "no answer",
    };
    StatusRow {
        index: n.index,
        peer_id: n.peer_id.clone(),
        api: format!("http://{}", n.api),
        p2p: n.p2p(),
        alive: st.is_some(),
        state,
        pid: n.pid,
        connected_peers: st.as_ref().map(|s| s.connected_peers),
        routing_table_size: st.as_ref().map(|s| s.routing_table_size),
        members_alive: st.as_ref().map(|s| s.members_alive),
        records_stored: st.as_ref().map(|s| s.records_stored),
    }
}

fn status_table(rows: &[StatusRow]) -> String {
    let opt = |v: Option<usize>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.index.to_string(),
                r.state.to_string(),
                r.pid.to_string(),
                opt(r.connected_peers),
                opt(r.routing_table_size),
                opt(r.members_alive),
                opt(r.records_stored),
                r.api.clone(),
                r.peer_id.clone(),
            ]
        })
        .collect();
    table(
        &[
            "index", "state", "pid", "peers", "routing", "members", "records", "API", "peer id",
        ],
        &cells,
    )
}

fn status(dir: &Path, json: bool) -> anyhow::Result<()> {
    let state = load(dir)?;
    let rows: Vec<StatusRow> = state.nodes.iter().map(status_row).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{}", status_table(&rows));
        if let Some(m) = &state.monitor {
            let running = match proc_state_named(m.pid, "prometheus") {
                ProcState::Gone => "not running",
                ProcState::Stopped => "paused",
                ProcState::Running => "running",
            };
            println!("prometheus  {running}  pid {}  {}", m.pid, m.url);
        }
        if let Some(cuts) = faults::load_cuts(dir)? {
            println!("{}", cuts.describe());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_selections_accept_single_indices_lists_ranges_and_all() {
        assert_eq!(parse_indices("2", 5).unwrap(), [2]);
        assert_eq!(parse_indices("3,1", 5).unwrap(), [1, 3]);
        assert_eq!(parse_indices("1-3,2,4", 5).unwrap(), [1, 2, 3, 4]);
        assert_eq!(parse_indices("all", 3).unwrap(), [0, 1, 2]);
        assert_eq!(parse_indices(" 0 ", 1).unwrap(), [0]);
    }

    #[test]
    fn node_selections_outside_the_cluster_or_malformed_are_rejected() {
        let err = parse_indices("5", 5).unwrap_err().to_string();
        assert!(err.contains("0 to 4"), "{err}");
        assert!(parse_indices("3-1", 5).is_err());
        assert!(parse_indices("x", 5).is_err());
        assert!(parse_indices("", 5).is_err());
        assert!(parse_indices("-1", 5).is_err());
        assert!(parse_indices("1,,2", 5).is_err());
    }

    #[test]
    fn node_json_is_read_as_the_node_writes_it() {
        let text = r#"{
          "peer_id": "12D3KooWabc",
          "listen_addrs": ["/ip4/127.0.0.1/tcp/40001"],
          "api": "127.0.0.1:40002",
          "pid": 4242
        }"#;
        let info: NodeJson = serde_json::from_str(text).unwrap();
        let e = entry(3, Path::new("/c/node-3"), info).unwrap();
        assert_eq!(e.pid, 4242);
        assert_eq!(e.api, "127.0.0.1:40002");
        assert_eq!(e.p2p(), "/ip4/127.0.0.1/tcp/40001/p2p/12D3KooWabc");
        let no_api = r#"{"peer_id":"p","listen_addrs":[],"api":null,"pid":1}"#;
        let info: NodeJson = serde_json::from_str(no_api).unwrap();
        assert!(entry(0, Path::new("/c"), info).is_err());
    }

    #[test]
    fn node_status_ignores_fields_it_does_not_need() {
        let text = r#"{"peer_id":"p","listen_addrs":[],"routing_table_size":4,"members_alive":5,
            "records_stored":7,"connected_peers":4,"uptime_s":3,"version":"0.1.0"}"#;
        let s: NodeStatus = serde_json::from_str(text).unwrap();
        assert_eq!(
            s,
            NodeStatus {
                routing_table_size: 4,
                members_alive: 5,
                records_stored: 7,
                connected_peers: 4
            }
        );
    }

    #[test]
    fn tables_align_columns_to_the_widest_cell() {
        let t = table(
            &["index", "peer id"],
            &[
                vec!["0".into(), "12D3KooWxyz".into()],
                vec!["10".into(), "p".into()],
            ],
        );
        assert_eq!(t, "index  peer id\n0      12D3KooWxyz\n10     p");
    }

    #[test]
    fn a_node_joins_once_it_knows_one_peer_unless_it_is_alone() {
        assert_eq!(join_threshold(1), 0);
        assert_eq!(join_threshold(2), 1);
        assert_eq!(join_threshold(20), 1);
    }

    #[test]
    fn proc_stat_states_map_to_running_stopped_and_gone() {
        assert_eq!(parse_proc_stat("42 (bavard) S 1 42"), ProcState::Running);
        assert_eq!(parse_proc_stat("42 (a (b) c) R 1"), ProcState::Running);
        assert_eq!(parse_proc_stat("42 (bavard) T 1 42"), ProcState::Stopped);
        assert_eq!(parse_proc_stat("42 (bavard) Z 1 42"), ProcState::Gone);
        assert_eq!(parse_proc_stat("garbage"), ProcState::Gone);
    }

    #[test]
    fn cargo_artifact_lines_name_the_executable() {
        let line = r#"{"reason":"compiler-artifact","target":{"name":"bavard"},"executable":"/t/release/bavard"}"#;
        assert_eq!(
            artifact_executable(line, "bavard"),
            Some(PathBuf::from("/t/release/bavard"))
        );
        let lib =
            r#"{"reason":"compiler-artifact","target":{"name":"bavard_node"},"executable":null}"#;
        assert_eq!(artifact_executable(lib, "bavard"), None);
        assert_eq!(artifact_executable("not json", "bavard"), None);
    }

    #[test]
    fn cluster_state_round_trips_through_json() {
        let state = ClusterState {
            binary: "/t/release/bavard".into(),
            quic: true,
            config: None,
            nodes: vec![NodeEntry {
                index: 0,
                dir: "/c/node-0".into(),
                pid: 7,
                peer_id: "p".into(),
                listen_addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
                api: "127.0.0.1:2".into(),
            }],
            netns: None,
            monitor: None,
        };
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<ClusterState>(&text).unwrap(), state);
    }

    #[test]
    fn a_cluster_json_without_netns_field_is_a_loopback_cluster() {
        let text = r#"{"binary":"/b","quic":false,"config":null,"nodes":[]}"#;
        let state: ClusterState = serde_json::from_str(text).unwrap();
        assert_eq!(state.netns, None);
        assert!(!serde_json::to_string(&state).unwrap().contains("netns"));
    }

    #[test]
    fn nodes_bind_port_0_on_loopback_and_fixed_ports_on_their_own_address_in_a_namespace() {
        let mut state = ClusterState {
            binary: "/b".into(),
            quic: true,
            config: None,
            nodes: vec![],
            netns: None,
            monitor: None,
        };
        assert_eq!(
            node_addrs(&state, 3),
            (
                vec![
                    "/ip4/127.0.0.1/tcp/0".to_string(),
                    "/ip4/127.0.0.1/udp/0/quic-v1".to_string()
                ],
                "127.0.0.1:0".to_string()
            )
        );
        state.quic = false;
        state.netns = Some(Netns::plan(5));
        assert_eq!(
            node_addrs(&state, 3),
            (
                vec!["/ip4/10.77.0.13/tcp/4001".to_string()],
                "10.77.0.13:5001".to_string()
            )
        );
    }
}
