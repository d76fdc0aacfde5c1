//! Small helpers shared by the node's modules.

use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

/// The peer id a multiaddr ends with (`…/p2p/PEER_ID`), if any.
pub fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// The addresses a `/dns/NAME/…`, `/dns4/NAME/…` or `/dns6/NAME/…` multiaddr names: its first
/// component replaced by each IP the system resolver (the hosts file, then DNS) gives for
/// `NAME`, IPv4 only for `dns4` and IPv6 only for `dns6`. Any other address is returned as it
/// is. A bootstrap address such as `/dns4/bavard-0.bavard/tcp/4001/p2p/PEER_ID` (a Kubernetes
/// pod's stable name) is resolved this way at start and again at every bootstrap, so a seed
/// that comes back with a new IP is found again.
///
/// # Errors
///
/// The name does not resolve (within `timeout`) to an address of the wanted family.
pub async fn resolve_dns(
    addr: &Multiaddr,
    timeout: std::time::Duration,
) -> anyhow::Result<Vec<Multiaddr>> {
    let mut parts = addr.iter();
    let (name, want_v4, want_v6) = match parts.next() {
        Some(Protocol::Dns(name)) => (name, true, true),
        Some(Protocol::Dns4(name)) => (name, true, false),
        Some(Protocol::Dns6(name)) => (name, false, true),
        _ => return Ok(vec![addr.clone()]),
    };
    let rest: Vec<Protocol<'_>> = parts.collect();
    let port = rest
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) | Protocol::Udp(port) => Some(*port),
            _ => None,
        })
        .unwrap_or(0);
    let found = tokio::time::timeout(timeout, lookup(&name, port))
        .await
        .map_err(|_| anyhow::anyhow!("resolving {name} took longer than {timeout:?}"))??;
    let mut out = Vec::new();
    for ip in found {
        let first = match ip {
            std::net::IpAddr::V4(v4) if want_v4 => Protocol::Ip4(v4),
            std::net::IpAddr::V6(v6) if want_v6 => Protocol::Ip6(v6),
            _ => continue,
        };
        let resolved: Multiaddr = std::iter::once(first).chain(rest.iter().cloned()).collect();
        if !out.contains(&resolved) {
            out.push(resolved);
        }
    }
    if out.is_empty() {
        anyhow::bail!("{name} has no address of the family {addr} asks for");
    }
    Ok(out)
}

/// The IPs of `name`: from the system's resolver configuration (`/etc/resolv.conf`, its search
/// domains, `/etc/hosts`) read by a pure-Rust resolver, which works in a `FROM scratch` image
/// with a static binary; else, when that configuration cannot be read or gives nothing, from
/// the C library's `getaddrinfo`.
async fn lookup(name: &str, port: u16) -> anyhow::Result<Vec<std::net::IpAddr>> {
    let native = match hickory_resolver::Resolver::builder_tokio().map(|b| b.build()) {
        Ok(Ok(resolver)) => match resolver.lookup_ip(name).await {
            Ok(found) => Ok(found.iter().collect::<Vec<_>>()),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        },
        Ok(Err(e)) => Err(anyhow::anyhow!("{e}")),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    };
    match native {
        Ok(ips) if !ips.is_empty() => Ok(ips),
        native => match tokio::net::lookup_host((name, port)).await {
            Ok(found) => Ok(found.map(|sa| sa.ip()).collect()),
            Err(e) => Err(anyhow::anyhow!(
                "cannot resolve {name}: {e} (resolver: {})",
                native.map_or_else(|e| e.to_string(), |_| "no address".to_string())
            )),
        },
    }
}

/// The address without its trailing `/p2p/PEER_ID`.
pub fn without_peer_id(addr: &Multiaddr) -> Multiaddr {
    let mut addr = addr.clone();
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

/// Milliseconds since the Unix epoch, read from the wall clock (for record expiry and HLCs).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes a file so that readers see either the old or the new content, never a torn one, and
/// the new content is on disk when this returns.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes a secret file readable by its owner only (mode 0600 from its creation), atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Makes a write to a closed pipe (`… | head`) end the process quietly, as Unix tools do
/// (status 141, 128 + SIGPIPE), instead of panicking in `println!`. Rust ignores SIGPIPE, so
/// the write fails with `BrokenPipe` and `print!` panics with that message; other panics keep
/// the default report.
pub fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("Broken pipe") || message.contains("os error 32") {
            std::process::exit(141);
        }
        default(info);
    }));
}
