//! `cargo xtask bench blobs`: the fetch rate of a content-addressed blob from one provider,
//! two and three, next to the raw rate of one libp2p stream between the same nodes (issue
//! 15's figure: the transport's ceiling on this machine).
//!
//! Starts a 4-node loopback cluster with `[blobs] stream_probe = true`, adds a random blob of
//! `--size-mib` on node 0 (`POST /v1/blobs`, streamed), then:
//!
//! 1. **raw**: node 1 asks node 0 for as many zero bytes over one `/bavard/stream-probe/1`
//!    stream (`POST /v1/admin/stream-probe/{peer}`): Noise, yamux and the socket, no disk, no
//!    hashing;
//! 2. **1 provider**: node 1 reads the blob (`GET /v1/blobs/{hash}`), which it fetches from
//!    node 0 as the response streams;
//! 3. **2 providers**, **3 providers**: nodes 2 and 3 read it in turn, each from every node
//!    that already holds it.
//!
//! Each read is timed from the request to the last byte and checked (size and SHA-256 against
//! the file added); each fetch's status tells which providers delivered how much. Everything
//! runs on one machine: the providers and the fetcher share its cores and its disk.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand::{RngCore as _, SeedableRng as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::cluster::{self, ClusterState, UpArgs};
use crate::http;
use crate::runs::Teardown;

/// Arguments of `cargo xtask bench blobs`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Size of the blob in MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Cluster directory [default: target/bench-blobs-cluster].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Use this bavard binary instead of building one.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Seed of the blob's content.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The node settings of the run: the probe on, no quota, no pacing.
const CONFIG: &str = "\
[blobs]
stream_probe = true
quota_bytes = 0
max_upload_bytes = 17179869184
";

/// The cluster: node 0 adds, nodes 1, 2 and 3 fetch one after the other.
const NODES: usize = 4;

/// One timed transfer.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Rate {
    /// Bytes moved.
    bytes: u64,
    /// Seconds from the request to the last byte.
    secs: f64,
    /// MiB per second.
    mib_s: f64,
    /// Providers that delivered bytes (0 for the raw stream).
    providers: usize,
    /// Bytes each provider delivered, largest first.
    provider_bytes: Vec<u64>,
}

/// The figures a run produces.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Report {
    size_bytes: u64,
    /// Seconds to upload and hash the blob on node 0.
    add_secs: f64,
    raw_stream: Rate,
    /// Fetches from 1, 2 and 3 providers, in that order.
    fetches: Vec<Rate>,
    /// The 1-provider fetch rate over the raw stream rate.
    one_provider_over_raw: f64,
}

/// Runs `cargo xtask bench blobs`.
pub(crate) fn run(a: &Args) -> anyhow::Result<()> {
    if a.size_mib == 0 {
        bail!("--size-mib must be at least 1");
    }
    let dir = a.dir.clone().unwrap_or_else(|| {
        crate::workspace_root()
            .join("target")
            .join("bench-blobs-cluster")
    });
    cluster::ensure_not_running(&dir)?;
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("bench-blobs.toml");
    std::fs::write(&config, CONFIG)?;
    let up = UpArgs {
        nodes: NODES,
        quic: false,
        timeout: 180,
        bin: a.bin.clone(),
        config: Some(config),
    };
    let _teardown = Teardown(dir.clone());
    let state = cluster::up(&dir, &up)?;
    let report = measure(&state, a)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(())
}

fn measure(state: &ClusterState, a: &Args) -> anyhow::Result<Report> {
    let size = a.size_mib << 20;
    let mut data = vec![0u8; size as usize];
    rand_chacha::ChaCha8Rng::seed_from_u64(a.seed).fill_bytes(&mut data);
    let digest: [u8; 32] = Sha256::digest(&data).into();
    let timeout = Duration::from_secs(60);

    eprintln!("adding {} MiB on node 0…", a.size_mib);
    let started = Instant::now();
    let added = upload(&state.nodes[0].api, &data, timeout)?;
    let add_secs = started.elapsed().as_secs_f64();
    let hash = added["hash"]
        .as_str()
        .context("the add answer has no hash")?
        .to_string();
    if added["size"] != size {
        bail!("node 0 added {} bytes, not {size}", added["size"]);
    }
    drop(data);

    eprintln!("raw stream: node 0 → node 1…");
    let path = format!(
        "/v1/admin/stream-probe/{}?bytes={size}",
        state.nodes[0].peer_id
    );
    let r = http::request(&state.nodes[1].api, "POST", &path, &[], timeout * 10)?;
    if r.status != 200 {
        bail!(
            "stream probe: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let probe: serde_json::Value = serde_json::from_slice(&r.body)?;
    let secs = probe["secs"].as_f64().context("no secs in the probe")?;
    let raw_stream = Rate {
        bytes: size,
        secs,
        mib_s: mib_s(size, secs),
        providers: 0,
        provider_bytes: Vec::new(),
    };

    let mut fetches = Vec::new();
    for i in 1..NODES {
        eprintln!("fetch on node {i} from {i} provider(s)…");
        let node = &state.nodes[i];
        let started = Instant::now();
        let (bytes, sha) = download(&node.api, &format!("/v1/blobs/{hash}"), timeout)?;
        let secs = started.elapsed().as_secs_f64();
        if bytes != size || sha != digest {
            bail!("node {i} read back {bytes} bytes that do not match the blob added");
        }
        let r = http::get(&node.api, &format!("/v1/blobs/{hash}/status"), timeout)?;
        let status: serde_json::Value =
            serde_json::from_slice(&r.body).with_context(|| format!("bad status from node {i}"))?;
        let mut provider_bytes: Vec<u64> = status["providers"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["bytes"].as_u64()).collect())
            .unwrap_or_default();
        provider_bytes.retain(|&b| b > 0);
        provider_bytes.sort_unstable_by(|a, b| b.cmp(a));
        fetches.push(Rate {
            bytes,
            secs,
            mib_s: mib_s(bytes, secs),
            providers: provider_bytes.len(),
            provider_bytes,
        });
    }
    Ok(Report {
        size_bytes: size,
        add_secs,
        one_provider_over_raw: fetches[0].mib_s / raw_stream.mib_s.max(1e-9),
        raw_stream,
        fetches,
    })
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
}

/// A connection to `api` with every step bounded by `timeout`.
fn connect(api: &str, timeout: Duration) -> anyhow::Result<TcpStream> {
    let sock = api
        .to_socket_addrs()
        .with_context(|| format!("bad API address {api:?}"))?
        .next()
        .with_context(|| format!("API address {api:?} resolves to nothing"))?;
    let stream = TcpStream::connect_timeout(&sock, timeout)
        .with_context(|| format!("cannot connect to {api}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// `POST /v1/blobs` with `data`, written straight from the slice (the generic client copies
/// the body into the request).
pub(crate) fn upload(
    api: &str,
    data: &[u8],
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let mut stream = connect(api, timeout)?;
    let extra = format!("Content-Length: {}\r\nConnection: close\r\n", data.len());
    stream.write_all(http::head("POST", "/v1/blobs", api, &extra).as_bytes())?;
    stream
        .write_all(data)
        .with_context(|| format!("cannot upload to {api}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let r = http::parse_response(&raw)?;
    if r.status != 200 {
        bail!(
            "POST /v1/blobs on {api}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    Ok(serde_json::from_slice(&r.body)?)
}

/// `GET path` whose body is hashed as it arrives, not kept: its length and SHA-256. Only a
/// `Content-Length` body (what the node sends for a blob).
pub(crate) fn download(
    api: &str,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<(u64, [u8; 32])> {
    let mut stream = connect(api, timeout)?;
    stream.write_all(http::head("GET", path, api, "Connection: close\r\n").as_bytes())?;
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    let body_start = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("GET {path} on {api}: the connection closed before the headers ended");
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > 64 * 1024 {
            bail!("GET {path} on {api}: headers over 64 KiB");
        }
    };
    let status_line = String::from_utf8_lossy(&head[..head.len().min(32)]).into_owned();
    if !status_line.starts_with("HTTP/1.1 200") {
        let r = http::parse_response(&head).unwrap_or(http::Response {
            status: 0,
            body: head.clone(),
        });
        bail!(
            "GET {path} on {api}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let mut sha = Sha256::new();
    sha.update(&head[body_start..]);
    let mut bytes = (head.len() - body_start) as u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, sha.finalize().into()))
}

fn human(r: &Report) -> String {
    let mut rows = vec![vec![
        "raw stream (node 0 → 1)".to_string(),
        format!("{:.1}", r.raw_stream.mib_s),
        format!("{:.2}", r.raw_stream.secs),
        "-".to_string(),
    ]];
    for (i, f) in r.fetches.iter().enumerate() {
        let mib: Vec<String> = f
            .provider_bytes
            .iter()
            .map(|b| format!("{:.0}", *b as f64 / (1 << 20) as f64))
            .collect();
        rows.push(vec![
            format!(
                "fetch on node {}, {} provider{}",
                i + 1,
                i + 1,
                if i == 0 { "" } else { "s" }
            ),
            format!("{:.1}", f.mib_s),
            format!("{:.2}", f.secs),
            format!("{} ({} MiB)", f.providers, mib.join(" + ")),
        ]);
    }
    format!(
        "bench blobs: {} MiB blob, {NODES} nodes on loopback (added in {:.2} s)\n{}\n\
         1 provider / raw stream: {:.0}%\n",
        r.size_bytes >> 20,
        r.add_secs,
        cluster::table(&["transfer", "MiB/s", "secs", "providers used"], &rows),
        r.one_provider_over_raw * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_in_mib_per_second() {
        assert_eq!(mib_s(3 << 20, 2.0), 1.5);
        assert!(mib_s(1, 0.0).is_finite());
    }

    #[test]
    fn the_table_shows_each_fetch_with_its_providers() {
        let rate = |mib_s: f64, provider_bytes: Vec<u64>| Rate {
            bytes: 4 << 20,
            secs: 1.0,
            mib_s,
            providers: provider_bytes.len(),
            provider_bytes,
        };
        let r = Report {
            size_bytes: 4 << 20,
            add_secs: 0.5,
            raw_stream: rate(100.0, vec![]),
            fetches: vec![
                rate(60.0, vec![4 << 20]),
                rate(70.0, vec![3 << 20, 1 << 20]),
            ],
            one_provider_over_raw: 0.6,
        };
        let text = human(&r);
        assert!(text.contains("fetch on node 2, 2 providers"), "{text}");
        assert!(text.contains("2 (3 + 1 MiB)"), "{text}");
        assert!(text.contains("1 provider / raw stream: 60%"), "{text}");
        let v = serde_json::to_value(&r).unwrap();
        for f in [
            "size_bytes",
            "raw_stream",
            "fetches",
            "one_provider_over_raw",
        ] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
    }
}
