//! A local etcd cluster for `cargo xtask bench kv --vs etcd`: N members as child processes on
//! free loopback ports, each with its data directory under one directory, started together
//! (static bootstrap, `--initial-cluster-state new`), ready once every member's `/health` says
//! `true` (which, in etcd 3.4, needs a Raft leader), and always torn down: on drop, on error and
//! on Ctrl-C (see [`crate::interrupt`]).
//!
//! Only defaults that matter for the comparison are left alone on purpose: etcd fsyncs its WAL
//! on every commit (there is no `--unsafe-no-fsync` here), and its JSON gateway (grpc-gateway) is
//! on by default in 3.4 at `/v3/…`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::http;
use crate::interrupt::OnInterrupt;

/// One member's name and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// `m0`, `m1`, …
    pub(crate) name: String,
    /// Its client port (the API and the JSON gateway).
    pub(crate) client_port: u16,
    /// Its peer (Raft) port.
    pub(crate) peer_port: u16,
}

impl Member {
    /// `127.0.0.1:PORT` of its client API.
    pub(crate) fn client_addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

/// The command-line arguments of member `i` of `members`, its data in `data_dir`.
pub(crate) fn member_args(
    members: &[Member],
    i: usize,
    data_dir: &Path,
    token: &str,
) -> Vec<String> {
    let m = &members[i];
    let client = format!("http://127.0.0.1:{}", m.client_port);
    let peer = format!("http://127.0.0.1:{}", m.peer_port);
    let initial: Vec<String> = members
        .iter()
        .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
        .collect();
    vec![
        "--name".into(),
        m.name.clone(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--listen-client-urls".into(),
        client.clone(),
        "--advertise-client-urls".into(),
        client,
        "--listen-peer-urls".into(),
        peer.clone(),
        "--initial-advertise-peer-urls".into(),
        peer,
        "--initial-cluster".into(),
        initial.join(","),
        "--initial-cluster-state".into(),
        "new".into(),
        "--initial-cluster-token".into(),
        token.to_string(),
    ]
}

/// `3.4.23` from the first line of `etcd --version` (`etcd Version: 3.4.23`).
pub(crate) fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The installed etcd's version, or `None` when it cannot be run.
pub(crate) fn version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// `etcd` (given, or on the `PATH`), with advice when it is missing.
pub(crate) fn find(explicit: Option<&Path>) -> Result<PathBuf, String> {
    match explicit {
        Some(p) if p.exists() => Ok(p.to_path_buf()),
        Some(p) => Err(format!("no etcd at {}", p.display())),
        None => crate::wrk::which("etcd").ok_or_else(|| {
            "etcd is not installed (Debian/Ubuntu: `apt-get install etcd-server`, which brings \
             etcd 3.4; or pass --etcd-bin)"
                .to_string()
        }),
    }
}

/// A running etcd cluster; stops its members and removes its directory when dropped.
pub(crate) struct Cluster {
    /// The members, by index.
    pub(crate) members: Vec<Member>,
    /// The version that runs.
    pub(crate) version: String,
    _guard: OnInterrupt,
}

/// Starts `n` members of `bin` with their data under `dir` (created, and removed at teardown),
/// and waits until all are healthy.
pub(crate) fn start(
    bin: &Path,
    dir: &Path,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Cluster> {
    if n == 0 {
        bail!("an etcd cluster needs at least one member");
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot remove the old {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let version = version(bin).unwrap_or_else(|| "unknown".into());
    let ports = free_ports(2 * n)?;
    let members: Vec<Member> = (0..n)
        .map(|i| Member {
            name: format!("m{i}"),
            client_port: ports[2 * i],
            peer_port: ports[2 * i + 1],
        })
        .collect();
    let children: Arc<Mutex<Vec<Child>>> = Arc::default();
    let guard = {
        let (children, dir) = (children.clone(), dir.to_path_buf());
        OnInterrupt::new(move || {
            let stopped = stop(&children);
            let removed = std::fs::remove_dir_all(&dir);
            eprintln!(
                "stopped {stopped} etcd members{}",
                match removed {
                    Ok(()) => format!(", removed {}", dir.display()),
                    Err(e) => format!(", could not remove {}: {e}", dir.display()),
                }
            );
        })
    };
    let token = format!("xtask-bench-{}", std::process::id());
    for i in 0..n {
        use std::os::unix::process::CommandExt as _;
        let log = std::fs::File::create(dir.join(format!("m{i}.log")))?;
        let mut cmd = Command::new(bin);
        cmd.args(member_args(&members, i, &dir.join(format!("m{i}")), &token));
        // Settings from the environment would change the experiment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C reaches the xtask, which stops it in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        children.lock().expect("etcd children lock").push(child);
    }
    wait_healthy(&members, &children, dir, Instant::now() + timeout)?;
    Ok(Cluster {
        members,
        version,
        _guard: guard,
    })
}

/// SIGTERM to every member, up to 10 s for them to exit, then SIGKILL. Returns how many ran.
fn stop(children: &Mutex<Vec<Child>>) -> usize {
    let mut children = children.lock().unwrap_or_else(|e| e.into_inner());
    let mut running = 0;
    for c in children.iter_mut() {
        if matches!(c.try_wait(), Ok(None)) {
            running += 1;
            let _ = crate::cluster::signal(c.id(), "TERM");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && children
            .iter_mut()
            .any(|c| matches!(c.try_wait(), Ok(None)))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in children.iter_mut() {
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    running
}

/// `n` distinct ports that were free a moment ago on 127.0.0.1.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("cannot find free loopback ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

fn wait_healthy(
    members: &[Member],
    children: &Mutex<Vec<Child>>,
    dir: &Path,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut healthy = vec![false; members.len()];
    loop {
        for (i, m) in members.iter().enumerate() {
            if !healthy[i]
                && let Ok(r) = http::get(&m.client_addr(), "/health", Duration::from_secs(2))
            {
                healthy[i] = r.status == 200 && is_healthy(&r.body);
            }
        }
        if healthy.iter().all(|h| *h) {
            return Ok(());
        }
        {
            let mut children = children.lock().expect("etcd children lock");
            for (i, c) in children.iter_mut().enumerate() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!(
                        "etcd member m{i} exited ({status}); end of {}:\n{}",
                        dir.join(format!("m{i}.log")).display(),
                        tail(&dir.join(format!("m{i}.log")), 15)
                    );
                }
            }
        }
        if Instant::now() > deadline {
            let sick: Vec<String> = healthy
                .iter()
                .enumerate()
                .filter(|(_, h)| !**h)
                .map(|(i, _)| format!("m{i}"))
                .collect();
            bail!(
                "etcd members {} were not healthy in time (logs in {})",
                sick.join(", "),
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a `/health` body says `"health":"true"` (3.4 answers a string, later versions too).
pub(crate) fn is_healthy(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v["health"] == "true" || v["health"] == true)
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Counts the keys that start with `prefix` (a `count_only` range), through the JSON gateway.
pub(crate) fn count_prefix(addr: &str, prefix: &str) -> anyhow::Result<u64> {
    let mut end = prefix.as_bytes().to_vec();
    // The range end of a prefix: the prefix with its last byte incremented.
    match end.last_mut() {
        Some(b) if *b < 0xff => *b += 1,
        _ => bail!("cannot count the keys under {prefix:?}"),
    }
    let body = format!(
        r#"{{"key":"{}","range_end":"{}","count_only":true}}"#,
        crate::wrk::b64(prefix.as_bytes()),
        crate::wrk::b64(&end)
    );
    let r = http::request(
        addr,
        "POST",
        "/v3/kv/range",
        body.as_bytes(),
        Duration::from_secs(60),
    )?;
    if r.status != 200 {
        bail!(
            "etcd range count: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    parse_count(&r.body)
}

/// The `count` of a range answer (a string in etcd's JSON: int64s are quoted; absent when 0).
pub(crate) fn parse_count(body: &[u8]) -> anyhow::Result<u64> {
    let v: serde_json::Value =
        serde_json::from_slice(body).context("etcd's range answer is not JSON")?;
    match &v["count"] {
        serde_json::Value::Null => Ok(0),
        serde_json::Value::String(s) => s.parse().context("bad count in etcd's answer"),
        serde_json::Value::Number(n) => n.as_u64().context("bad count in etcd's answer"),
        other => bail!("bad count in etcd's answer: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<Member> {
        (0..3)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: 2379 + 10 * i,
                peer_port: 2380 + 10 * i,
            })
            .collect()
    }

    #[test]
    fn each_member_listens_on_its_own_loopback_ports_and_knows_every_peer() {
        let args = member_args(&members(), 1, Path::new("/d/m1"), "tok");
        let joined = args.join(" ");
        assert_eq!(
            joined,
            "--name m1 --data-dir /d/m1 \
             --listen-client-urls http://127.0.0.1:2389 --advertise-client-urls http://127.0.0.1:2389 \
             --listen-peer-urls http://127.0.0.1:2390 --initial-advertise-peer-urls http://127.0.0.1:2390 \
             --initial-cluster m0=http://127.0.0.1:2380,m1=http://127.0.0.1:2390,m2=http://127.0.0.1:2400 \
             --initial-cluster-state new --initial-cluster-token tok"
        );
    }

    #[test]
    fn durability_is_left_at_etcds_default() {
        let joined = member_args(&members(), 0, Path::new("/d"), "t").join(" ");
        assert!(!joined.contains("fsync"), "{joined}");
    }

    #[test]
    fn the_version_is_read_from_etcd_version_output() {
        let text = "etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19.8\n";
        assert_eq!(parse_version(text).as_deref(), Some("3.4.23"));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn health_and_counts_are_read_from_etcds_json() {
        assert!(is_healthy(br#"{"health":"true"}"#));
        assert!(is_healthy(br#"{"health":"true","reason":""}"#));
        assert!(!is_healthy(br#"{"health":"false"}"#));
        assert!(!is_healthy(b"<html>"));
        assert_eq!(
            parse_count(br#"{"header":{},"count":"3000"}"#).unwrap(),
            3000
        );
        assert_eq!(parse_count(br#"{"header":{}}"#).unwrap(), 0);
        assert!(parse_count(br#"{"count":"x"}"#).is_err());
    }

    #[test]
    fn member_client_addresses_are_on_loopback() {
        assert_eq!(members()[2].client_addr(), "127.0.0.1:2399");
    }
}
