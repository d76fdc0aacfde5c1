//! Testbed hosts: one Linux network namespace per node, joined by a bridge.
//!
//! `cluster up --netns` gives node `I` its own namespace `bavard-I` with the address
//! `10.77.0.(10+I)/24` on a veth pair whose other end is a port of the bridge `bavard-br0` in the
//! host namespace (address `10.77.0.1/24`). Nodes therefore talk over a real IP network, and the
//! host reaches every node's API through the bridge. Faults are nftables rules in an
//! `inet bavard` table inside each namespace (removed with the namespace).
//!
//! Everything the tool creates is written to `DIR/netns.json` *before* it is created, so that
//! `cluster down` removes it even after the tool crashed half-way; removal ignores what is
//! already gone. The tool only ever touches names starting with `bavard-`/`bvh`/`bvn` and the
//! 10.77.0.0/24 addresses it assigns itself. Root is required (`id -u` must be 0).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// The bridge in the host namespace.
const BRIDGE: &str = "bavard-br0";
/// The host's address on the bridge.
const HOST_ADDR: &str = "10.77.0.1";
/// Namespaces get 10.77.0.(10+I), so at most this many nodes.
pub(crate) const MAX_NODES: usize = 240;

/// What the tool created for a cluster: `DIR/netns.json`, and the `netns` field of
/// `cluster.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Netns {
    /// The bridge joining the namespaces.
    pub(crate) bridge: String,
    /// Namespace names, by node index.
    pub(crate) namespaces: Vec<String>,
    /// Host ends of the veth pairs, by node index.
    pub(crate) veths: Vec<String>,
}

/// The namespace of node `i`.
pub(crate) fn ns_name(i: usize) -> String {
    format!("bavard-{i}")
}

/// The address of node `i`.
pub(crate) fn addr(i: usize) -> String {
    format!("10.77.0.{}", 10 + i)
}

fn record_path(dir: &Path) -> PathBuf {
    dir.join("netns.json")
}

/// Fails with a clear message unless the tool runs as root.
pub(crate) fn ensure_root() -> anyhow::Result<()> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("cannot run `id -u`")?;
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        bail!(
            "--netns needs root (it creates network namespaces, a bridge and nftables rules); \
             run as root (e.g. `sudo -E cargo xtask …`) or leave out --netns to run on loopback"
        );
    }
    Ok(())
}

/// The programs `--netns` runs: `ip` (iproute2) and `nft` (nftables).
const TOOLS: [(&str, &str); 2] = [("ip", "iproute2"), ("nft", "nftables")];

/// Whether `program` is an executable file in a `PATH` directory.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file()
                && std::fs::metadata(&candidate).is_ok_and(|m| {
                    std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
        })
    })
}

/// The message for the tools `found` says are missing, or `None` if all are there.
fn missing_tools_message(found: impl Fn(&str) -> bool) -> Option<String> {
    let missing: Vec<(&str, &str)> = TOOLS.into_iter().filter(|(p, _)| !found(p)).collect();
    if missing.is_empty() {
        return None;
    }
    let programs: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    let packages: Vec<&str> = missing.iter().map(|(_, pkg)| *pkg).collect();
    Some(format!(
        "--netns needs {} but it is not installed; nothing was created. Install it with \
         `apt-get install {}` (Debian, Ubuntu; `dnf install {}` on Fedora), or leave out \
         --netns to run on loopback",
        programs
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(" and "),
        packages.join(" "),
        packages
            .iter()
            .map(|p| if *p == "iproute2" { "iproute" } else { p })
            .collect::<Vec<_>>()
            .join(" "),
    ))
}

/// Fails, before anything is created, unless `ip` and `nft` are installed.
pub(crate) fn ensure_tools() -> anyhow::Result<()> {
    match missing_tools_message(on_path) {
        Some(message) => bail!(message),
        None => Ok(()),
    }
}

/// Runs a command, failing with its stderr.
fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `script` through `nft -f -` inside namespace `ns`.
fn nft(ns: &str, script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `ip netns exec … nft`")?;
    child
        .stdin
        .take()
        .context("no nft stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft in {ns} failed: {} (is nftables installed? `apt-get install nftables`)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The nftables script that makes a namespace drop all traffic from and to `peers`.
pub(crate) fn drop_script(peers: &[String]) -> String {
    let set = peers.join(", ");
    format!(
        "add table inet bavard\n\
         add chain inet bavard input {{ type filter hook input priority 0 ; policy accept ; }}\n\
         add chain inet bavard output {{ type filter hook output priority 0 ; policy accept ; }}\n\
         add rule inet bavard input ip saddr {{ {set} }} drop\n\
         add rule inet bavard output ip daddr {{ {set} }} drop\n"
    )
}

impl Netns {
    /// The plan for `n` nodes (nothing created yet).
    pub(crate) fn plan(n: usize) -> Self {
        Self {
            bridge: BRIDGE.to_string(),
            namespaces: (0..n).map(ns_name).collect(),
            veths: (0..n).map(|i| format!("bvh{i}")).collect(),
        }
    }

    /// Creates the bridge and one namespace per node, recording the plan in `DIR/netns.json`
    /// first. On error, removes what it made.
    pub(crate) fn create(dir: &Path, n: usize) -> anyhow::Result<Self> {
        ensure_root()?;
        ensure_tools()?;
        if n > MAX_NODES {
            bail!("--netns supports at most {MAX_NODES} nodes, not {n}");
        }
        if record_path(dir).exists() {
            bail!(
                "{} exists: namespaces of an earlier cluster may remain; run `cargo xtask cluster down` first",
                record_path(dir).display()
            );
        }
        let plan = Self::plan(n);
        // Every cluster uses the same names and addresses: another one running (in another
        // directory) must not be torn down by this one's cleanup.
        let taken = plan.in_use(Path::new("/sys/class/net"), Path::new("/run/netns"));
        if !taken.is_empty() {
            bail!(
                "{} already exist{}: another `--netns` cluster or scenario is running (stop it \
                 with `cargo xtask cluster down --dir DIR`), or one crashed without its record \
                 (remove them with `ip netns del NAME` and `ip link del {BRIDGE}`)",
                taken.join(", "),
                if taken.len() == 1 { "s" } else { "" }
            );
        }
        std::fs::create_dir_all(dir)?;
        std::fs::write(record_path(dir), serde_json::to_string_pretty(&plan)?)
            .context("cannot write netns.json")?;
        if let Err(e) = plan.build() {
            let _ = teardown(dir);
            return Err(e);
        }
        Ok(plan)
    }

    /// The bridge and namespaces of this plan that exist already (`links`: the directory of
    /// network interfaces, `/sys/class/net`; `namespaces`: that of named namespaces,
    /// `/run/netns`).
    fn in_use(&self, links: &Path, namespaces: &Path) -> Vec<String> {
        let bridge = links
            .join(&self.bridge)
            .exists()
            .then(|| format!("bridge {}", self.bridge));
        bridge
            .into_iter()
            .chain(
                self.namespaces
                    .iter()
                    .filter(|ns| namespaces.join(ns).exists())
                    .map(|ns| format!("namespace {ns}")),
            )
            .collect()
    }

    fn build(&self) -> anyhow::Result<()> {
        let host = format!("{HOST_ADDR}/24");
        run(&["ip", "link", "add", &self.bridge, "type", "bridge"])?;
        run(&["ip", "addr", "add", &host, "dev", &self.bridge])?;
        run(&["ip", "link", "set", &self.bridge, "up"])?;
        for (i, (ns, veth)) in self.namespaces.iter().zip(&self.veths).enumerate() {
            let inner = format!("bvn{i}");
            let a = format!("{}/24", addr(i));
            run(&["ip", "netns", "add", ns])?;
            run(&[
                "ip", "link", "add", veth, "type", "veth", "peer", "name", &inner,
            ])?;
            run(&["ip", "link", "set", &inner, "netns", ns])?;
            run(&["ip", "link", "set", veth, "master", &self.bridge])?;
            run(&["ip", "link", "set", veth, "up"])?;
            run(&["ip", "-n", ns, "addr", "add", &a, "dev", &inner])?;
            run(&["ip", "-n", ns, "link", "set", &inner, "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// The command prefix that runs a program in node `i`'s namespace.
    pub(crate) fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.namespaces[i].clone(),
        ]
    }

    /// Drops all traffic between the node sets `a` and `b`, both directions, in every namespace
    /// of both sets.
    pub(crate) fn partition(&self, a: &[usize], b: &[usize]) -> anyhow::Result<()> {
        for (side, other) in [(a, b), (b, a)] {
            let peers: Vec<String> = other.iter().map(|&j| addr(j)).collect();
            let script = drop_script(&peers);
            for &i in side {
                nft(&self.namespaces[i], &script)?;
            }
        }
        Ok(())
    }

    /// Removes every rule the tool added.
    pub(crate) fn heal(&self) -> anyhow::Result<()> {
        for ns in &self.namespaces {
            // `add` first so that `delete` succeeds when there is no table.
            nft(ns, "add table inet bavard\ndelete table inet bavard\n")?;
        }
        Ok(())
    }
}

/// Removes everything `DIR/netns.json` records (ignoring what is already gone), then the record.
/// Returns how many namespaces it removed; 0 when there is no record.
pub(crate) fn teardown(dir: &Path) -> anyhow::Result<usize> {
    let path = record_path(dir);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(0);
    };
    let rec: Netns =
        serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    ensure_root()?;
    let mut removed = 0;
    for (ns, veth) in rec.namespaces.iter().zip(&rec.veths) {
        // Deleting the namespace destroys its veth end, and with it the pair.
        if run(&["ip", "netns", "del", ns]).is_ok() {
            removed += 1;
        }
        let _ = run(&["ip", "link", "del", veth]);
    }
    let _ = run(&["ip", "link", "del", &rec.bridge]);
    std::fs::remove_file(&path)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bridge_or_namespace_that_exists_already_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (links, namespaces) = (dir.path().join("net"), dir.path().join("netns"));
        std::fs::create_dir_all(&links).unwrap();
        std::fs::create_dir_all(&namespaces).unwrap();
        let plan = Netns::plan(3);
        assert!(plan.in_use(&links, &namespaces).is_empty());
        std::fs::write(links.join(BRIDGE), "").unwrap();
        std::fs::write(namespaces.join(ns_name(2)), "").unwrap();
        assert_eq!(
            plan.in_use(&links, &namespaces),
            [
                format!("bridge {BRIDGE}"),
                format!("namespace {}", ns_name(2))
            ]
        );
    }

    #[test]
    fn missing_tools_are_named_with_the_command_that_installs_them() {
        assert_eq!(missing_tools_message(|_| true), None);
        let msg = missing_tools_message(|p| p == "ip").unwrap();
        assert!(msg.contains("`nft`") && !msg.contains("`ip`"), "{msg}");
        assert!(msg.contains("apt-get install nftables"), "{msg}");
        let both = missing_tools_message(|_| false).unwrap();
        assert!(both.contains("`ip` and `nft`"), "{both}");
        assert!(both.contains("apt-get install iproute2 nftables"), "{both}");
        assert!(both.contains("nothing was created"), "{both}");
        assert!(on_path("sh"), "sh is on every PATH");
        assert!(!on_path("surely-not-a-program-bavard"));
    }

    #[test]
    fn each_node_gets_its_own_namespace_address_and_veth() {
        let p = Netns::plan(3);
        assert_eq!(p.namespaces, ["bavard-0", "bavard-1", "bavard-2"]);
        assert_eq!(p.veths, ["bvh0", "bvh1", "bvh2"]);
        assert_eq!(addr(0), "10.77.0.10");
        assert_eq!(addr(MAX_NODES - 1), "10.77.0.249");
        assert_eq!(p.exec_prefix(1), ["ip", "netns", "exec", "bavard-1"]);
        // Linux caps interface names at 15 bytes.
        assert!(p.veths.iter().all(|v| v.len() <= 15) && BRIDGE.len() <= 15);
    }

    #[test]
    fn the_drop_script_drops_both_directions_for_every_peer() {
        let s = drop_script(&[addr(3), addr(4)]);
        assert!(
            s.contains("ip saddr { 10.77.0.13, 10.77.0.14 } drop"),
            "{s}"
        );
        assert!(
            s.contains("ip daddr { 10.77.0.13, 10.77.0.14 } drop"),
            "{s}"
        );
        assert!(s.starts_with("add table inet bavard\n"));
    }

    #[test]
    fn the_record_round_trips_and_a_missing_record_tears_down_nothing() {
        let p = Netns::plan(2);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Netns>(&text).unwrap(), p);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(teardown(dir.path()).unwrap(), 0);
    }
}
