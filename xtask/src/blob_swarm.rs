//! `cargo xtask scenario blobs`: issue 15's swarm run with real processes, a killed provider,
//! a corrupting provider and an interrupted fetch.
//!
//! On a loopback cluster of 6 nodes (numbered 1 to 6 below, as the issue does; indices 0 to 5
//! in `cluster.json`), providers serving `--serve-mib-s` per peer so that each fetch lasts long
//! enough for a fault to land in the middle of it:
//!
//! 1. node 1 adds a random blob of `--size-mib` (`POST /v1/blobs`, streamed);
//! 2. nodes 2 and 3 read it (`GET /v1/blobs/{hash}`, which fetches it), one after the other;
//! 3. node 4 reads it and must get bytes from at least 3 providers;
//! 4. node 6 starts reading it and is `kill -9`ed a quarter of the way in; restarted, it must
//!    resume with the blocks it had verified and download only the others;
//! 5. node 6 restarts once more with `[fault_injection] corrupt_blob_blocks` (it serves every
//!    block with a bit flipped), and node 5 reads the blob while node 2, one of its providers,
//!    is `kill -9`ed once it has delivered some bytes and an eighth of the blob is verified:
//!    the fetch must complete, with node 6 dropped for bad data at its first bad block (one
//!    verification failure on node 5).
//!
//! Every read is hashed as it streams (SHA-256) and compared with the file added. The report
//! gives each fetch's time, rate and the bytes from each provider; the run exits non-zero if
//! any check fails.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand::{RngCore as _, SeedableRng as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::bench_blobs::{download, upload};
use crate::cluster::{self, ClusterState, UpArgs};
use crate::http;
use crate::runs::Teardown;

/// The settings of one run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) size_mib: u64,
    pub(crate) serve_mib_s: u64,
    pub(crate) seed: u64,
    pub(crate) json: bool,
    pub(crate) bin: Option<PathBuf>,
    pub(crate) dir: PathBuf,
}

/// The cluster's size: the six nodes.
const NODES: usize = 6;
/// Time allowed for one fetch and for each wait on a status.
const TIMEOUT: Duration = Duration::from_secs(600);

/// One fetch, as the fetching node's status tells it after the read.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct FetchReport {
    /// The node that read (1-based).
    node: usize,
    /// Seconds from the request to the last byte.
    secs: f64,
    /// MiB per second over that time.
    mib_s: f64,
    /// Whether the bytes read match the file added (size and SHA-256).
    sha256_ok: bool,
    /// New verified bytes from each provider that delivered some, by node (1-based).
    provider_bytes: Vec<(usize, u64)>,
    /// Providers the fetch stopped using, by node, with the reason.
    dropped: Vec<(usize, String)>,
    /// Bytes the fetch found verified here when it started.
    resumed_bytes: u64,
    /// Verified bytes received, duplicates included.
    fetched_bytes: u64,
}

/// What a run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Report {
    scenario: &'static str,
    size_bytes: u64,
    serve_mib_s_per_peer: u64,
    add_secs: f64,
    /// Nodes 2, 3 and 4, then node 6's resumed fetch, then node 5's.
    fetches: Vec<FetchReport>,
    /// Bytes node 6 had verified when it was killed (its status just before).
    interrupted_at_bytes: u64,
    /// Bytes node 5 had verified when node 2 was killed.
    provider_killed_at_bytes: u64,
    /// Verification failures node 5 counted during its fetch.
    verification_failures: f64,
    /// The checks that failed (empty: the run passed).
    failures: Vec<String>,
}

/// Runs `cargo xtask scenario blobs`.
pub(crate) fn run(s: &Settings) -> anyhow::Result<()> {
    if s.size_mib < 4 {
        bail!("--size-mib must be at least 4 (the faults must land in the middle of a fetch)");
    }
    if s.serve_mib_s == 0 {
        bail!("--serve-mib-s must be at least 1");
    }
    cluster::ensure_not_running(&s.dir)?;
    std::fs::create_dir_all(&s.dir)?;
    let config = s.dir.join("blobs.toml");
    std::fs::write(&config, node_config(s.serve_mib_s, false))?;
    let corrupt_config = s.dir.join("blobs-corrupt.toml");
    std::fs::write(&corrupt_config, node_config(s.serve_mib_s, true))?;
    let up = UpArgs {
        nodes: NODES,
        quic: false,
        timeout: 180,
        bin: s.bin.clone(),
        config: Some(config),
    };
    let _teardown = Teardown(s.dir.clone());
    let mut state = cluster::up(&s.dir, &up)?;
    let report = measure(&mut state, s, &corrupt_config)?;
    if s.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", human(&report));
    }
    if !report.failures.is_empty() {
        bail!("{} check(s) failed", report.failures.len());
    }
    Ok(())
}

/// The nodes' settings: no quota, uploads up to 16 GiB, providers paced, short stalls.
fn node_config(serve_mib_s: u64, corrupt: bool) -> String {
    let mut c = format!(
        "[blobs]\n\
         quota_bytes = 0\n\
         max_upload_bytes = 17179869184\n\
         serve_bytes_per_sec_per_peer = {}\n\
         stall_timeout_secs = 5.0\n\
         provider_refresh_secs = 2.0\n",
        serve_mib_s << 20
    );
    if corrupt {
        c.push_str("\n[fault_injection]\nenabled = true\ncorrupt_blob_blocks = true\n");
    }
    c
}

fn measure(
    state: &mut ClusterState,
    s: &Settings,
    corrupt_config: &std::path::Path,
) -> anyhow::Result<Report> {
    let size = s.size_mib << 20;
    let mut data = vec![0u8; size as usize];
    rand_chacha::ChaCha8Rng::seed_from_u64(s.seed).fill_bytes(&mut data);
    let digest: [u8; 32] = Sha256::digest(&data).into();
    let mut failures = Vec::new();

    eprintln!("node 1 adds {} MiB…", s.size_mib);
    let started = Instant::now();
    let added = upload(&state.nodes[0].api, &data, Duration::from_secs(120))?;
    let add_secs = started.elapsed().as_secs_f64();
    drop(data);
    let hash = added["hash"]
        .as_str()
        .context("the add answer has no hash")?
        .to_string();
    if added["size"] != size {
        bail!("node 1 added {} bytes, not {size}", added["size"]);
    }

    let mut fetches = Vec::new();
    for i in [1, 2, 3] {
        eprintln!("node {} reads it…", i + 1);
        let f = read(state, i, &hash, size, &digest)?;
        if !f.sha256_ok {
            failures.push(format!("node {}'s copy does not match", i + 1));
        }
        if i == 3 && f.provider_bytes.len() < 3 {
            failures.push(format!(
                "node 4 got bytes from {} providers, not 3 or more",
                f.provider_bytes.len()
            ));
        }
        fetches.push(f);
    }

    // Node 6: killed a quarter of the way in, restarted, resumes.
    eprintln!("node 6 reads it and is killed a quarter of the way in…");
    let reader = spawn_read(state, 5, &hash);
    let interrupted_at_bytes = wait_verified(state, 5, &hash, size / 4, None)?;
    cluster::signal(state.nodes[5].pid, "KILL")?;
    let _ = reader.join();
    cluster::restart(&s.dir, state, 5)?;
    let before = status(state, 5, &hash)?;
    let verified_after_restart = before["verified_bytes"].as_u64().unwrap_or(0);
    eprintln!(
        "node 6 restarted with {verified_after_restart} bytes verified; it reads the blob again…"
    );
    let f = read(state, 5, &hash, size, &digest)?;
    if !f.sha256_ok {
        failures.push("node 6's resumed copy does not match".into());
    }
    let new_bytes: u64 = f.provider_bytes.iter().map(|(_, b)| b).sum();
    if f.resumed_bytes == 0 {
        failures.push("node 6's fetch did not resume: it started from nothing".into());
    }
    if new_bytes + f.resumed_bytes != size {
        failures.push(format!(
            "node 6 got {new_bytes} new bytes on top of {} resumed, not the {size} of the blob",
            f.resumed_bytes
        ));
    }
    fetches.push(f);

    // Node 6 turns into a corrupting provider; node 5 reads while node 2 is killed.
    eprintln!("node 6 restarts serving corrupt blocks; node 5 reads while node 2 is killed…");
    let normal = state.config.replace(std::fs::canonicalize(corrupt_config)?);
    cluster::restart(&s.dir, state, 5)?;
    state.config = normal;
    cluster::save(&s.dir, state)?;
    let failures_before = metric(
        &state.nodes[4].api,
        "bavard_blobs_verification_failures_total",
    )?;
    let reader = spawn_read(state, 4, &hash);
    let victim = state.nodes[1].peer_id.clone();
    let provider_killed_at_bytes = wait_verified(state, 4, &hash, size / 8, Some(&victim))?;
    cluster::signal(state.nodes[1].pid, "KILL")?;
    let (secs, read) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("node 5's reader panicked"))?;
    let read = read.context("node 5's read")?;
    let mut f = fetch_report(state, 4, &hash, secs, read.0 == size && read.1 == digest)?;
    if provider_killed_at_bytes >= size {
        failures.push("node 2 was killed only after node 5 had the whole blob".into());
    }
    if !f.sha256_ok {
        failures.push("node 5's copy does not match".into());
    }
    let verification_failures = metric(
        &state.nodes[4].api,
        "bavard_blobs_verification_failures_total",
    )? - failures_before;
    match f.dropped.iter().find(|(node, _)| *node == 6) {
        Some((_, why)) if why == "bad_data" => {}
        Some((_, why)) => failures.push(format!("node 6 was dropped for {why}, not bad_data")),
        None => failures.push("node 5 did not drop the corrupting node 6".into()),
    }
    if f.provider_bytes.iter().any(|(node, _)| *node == 6) {
        failures.push("node 5 kept bytes from the corrupting node 6".into());
    }
    if verification_failures != 1.0 {
        failures.push(format!(
            "node 5 counted {verification_failures} verification failures, not 1 (dropped at \
             the first bad block)"
        ));
    }
    f.node = 5;
    fetches.push(f);

    Ok(Report {
        scenario: "blobs",
        size_bytes: size,
        serve_mib_s_per_peer: s.serve_mib_s,
        add_secs,
        fetches,
        interrupted_at_bytes,
        provider_killed_at_bytes,
        verification_failures,
        failures,
    })
}

type Read = (f64, anyhow::Result<(u64, [u8; 32])>);

/// Starts node `i`'s read of the blob on a thread: seconds taken, and length and SHA-256 read.
fn spawn_read(state: &ClusterState, i: usize, hash: &str) -> std::thread::JoinHandle<Read> {
    let api = state.nodes[i].api.clone();
    let path = format!("/v1/blobs/{hash}");
    std::thread::spawn(move || {
        let started = Instant::now();
        let r = download(&api, &path, TIMEOUT);
        (started.elapsed().as_secs_f64(), r)
    })
}

/// Node `i` reads the whole blob; its report.
fn read(
    state: &ClusterState,
    i: usize,
    hash: &str,
    size: u64,
    digest: &[u8; 32],
) -> anyhow::Result<FetchReport> {
    let (secs, r) = spawn_read(state, i, hash)
        .join()
        .map_err(|_| anyhow::anyhow!("node {}'s reader panicked", i + 1))?;
    let (bytes, sha) = r.with_context(|| format!("node {}'s read", i + 1))?;
    fetch_report(state, i, hash, secs, bytes == size && &sha == digest)
}

/// Node `i`'s status of the blob.
fn status(state: &ClusterState, i: usize, hash: &str) -> anyhow::Result<serde_json::Value> {
    let r = http::get(
        &state.nodes[i].api,
        &format!("/v1/blobs/{hash}/status"),
        Duration::from_secs(10),
    )?;
    if r.status != 200 {
        bail!(
            "node {}'s blob status: HTTP {}: {}",
            i + 1,
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    serde_json::from_slice(&r.body).with_context(|| format!("bad status from node {}", i + 1))
}

/// Waits until node `i` has verified `at_least` bytes of the blob (and, with `from`, until that
/// peer delivered some); returns the verified bytes then.
fn wait_verified(
    state: &ClusterState,
    i: usize,
    hash: &str,
    at_least: u64,
    from: Option<&str>,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        // 404 until the read has reached the fetch.
        if let Ok(s) = status(state, i, hash) {
            let verified = s["verified_bytes"].as_u64().unwrap_or(0);
            let delivered = from.is_none_or(|peer| {
                s["providers"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["peer_id"] == peer && p["bytes"].as_u64().unwrap_or(0) > 0)
                })
            });
            if verified >= at_least && delivered {
                return Ok(verified);
            }
            if s["complete"] == true {
                return Ok(verified);
            }
        }
        if Instant::now() > deadline {
            bail!("node {} did not reach {at_least} verified bytes", i + 1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The 1-based number of the node whose peer id is `peer` (0 when unknown).
fn node_of(state: &ClusterState, peer: &str) -> usize {
    state
        .nodes
        .iter()
        .position(|n| n.peer_id == peer)
        .map_or(0, |i| i + 1)
}

fn fetch_report(
    state: &ClusterState,
    i: usize,
    hash: &str,
    secs: f64,
    sha256_ok: bool,
) -> anyhow::Result<FetchReport> {
    let s = status(state, i, hash)?;
    let size = s["size"].as_u64().unwrap_or(0);
    let mut provider_bytes = Vec::new();
    let mut dropped = Vec::new();
    for p in s["providers"].as_array().into_iter().flatten() {
        let node = node_of(state, p["peer_id"].as_str().unwrap_or_default());
        let bytes = p["bytes"].as_u64().unwrap_or(0);
        if bytes > 0 {
            provider_bytes.push((node, bytes));
        }
        if let Some(why) = p["dropped"].as_str() {
            dropped.push((node, why.to_string()));
        }
    }
    provider_bytes.sort_unstable_by_key(|p| std::cmp::Reverse(p.1));
    Ok(FetchReport {
        node: i + 1,
        secs,
        mib_s: size as f64 / (1 << 20) as f64 / secs.max(1e-9),
        sha256_ok,
        provider_bytes,
        dropped,
        resumed_bytes: s["resumed_bytes"].as_u64().unwrap_or(0),
        fetched_bytes: s["fetched_bytes"].as_u64().unwrap_or(0),
    })
}

/// A counter's value in the node's `/metrics` (0 when absent).
fn metric(api: &str, name: &str) -> anyhow::Result<f64> {
    let r = http::get(api, "/metrics", Duration::from_secs(10))?;
    Ok(String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0))
}

fn human(r: &Report) -> String {
    let mut out = Vec::new();
    let _ = writeln!(
        out,
        "blob of {} MiB added on node 1 in {:.2} s; providers serve {} MiB/s per peer",
        r.size_bytes >> 20,
        r.add_secs,
        r.serve_mib_s_per_peer
    );
    let rows: Vec<Vec<String>> = r
        .fetches
        .iter()
        .map(|f| {
            let from: Vec<String> = f
                .provider_bytes
                .iter()
                .map(|(n, b)| format!("node {n}: {:.1} MiB", *b as f64 / (1 << 20) as f64))
                .collect();
            let dropped: Vec<String> = f
                .dropped
                .iter()
                .map(|(n, why)| format!("node {n} ({why})"))
                .collect();
            vec![
                format!("node {}", f.node),
                format!("{:.1}", f.secs),
                format!("{:.1}", f.mib_s),
                if f.sha256_ok { "ok" } else { "MISMATCH" }.to_string(),
                format!("{:.1}", f.resumed_bytes as f64 / (1 << 20) as f64),
                from.join(", "),
                if dropped.is_empty() {
                    "-".to_string()
                } else {
                    dropped.join(", ")
                },
            ]
        })
        .collect();
    out.extend_from_slice(
        cluster::table(
            &[
                "fetch",
                "secs",
                "MiB/s",
                "sha256",
                "resumed MiB",
                "bytes from",
                "dropped",
            ],
            &rows,
        )
        .as_bytes(),
    );
    out.push(b'\n');
    let _ = writeln!(
        out,
        "node 6 killed at {:.1} MiB verified; node 2 killed when node 5 had {:.1} MiB; node 5 \
         counted {} verification failure(s)",
        r.interrupted_at_bytes as f64 / (1 << 20) as f64,
        r.provider_killed_at_bytes as f64 / (1 << 20) as f64,
        r.verification_failures
    );
    if r.failures.is_empty() {
        let _ = writeln!(out, "PASS");
    } else {
        for f in &r.failures {
            let _ = writeln!(out, "FAIL: {f}");
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corrupt_config_turns_the_switch_on_and_the_normal_one_does_not() {
        let normal = node_config(8, false);
        let corrupt = node_config(8, true);
        assert!(normal.contains("serve_bytes_per_sec_per_peer = 8388608"));
        assert!(!normal.contains("corrupt_blob_blocks"));
        assert!(corrupt.contains("corrupt_blob_blocks = true"));
        assert!(corrupt.contains("[fault_injection]\nenabled = true"));
    }

    #[test]
    fn the_report_says_pass_or_lists_each_failure() {
        let mut r = Report {
            scenario: "blobs",
            size_bytes: 256 << 20,
            serve_mib_s_per_peer: 8,
            add_secs: 1.0,
            fetches: vec![FetchReport {
                node: 4,
                secs: 10.0,
                mib_s: 25.6,
                sha256_ok: true,
                provider_bytes: vec![(1, 100 << 20), (2, 80 << 20), (3, 76 << 20)],
                dropped: vec![(6, "bad_data".into())],
                resumed_bytes: 0,
                fetched_bytes: 256 << 20,
            }],
            interrupted_at_bytes: 64 << 20,
            provider_killed_at_bytes: 10 << 20,
            verification_failures: 1.0,
            failures: Vec::new(),
        };
        let text = human(&r);
        assert!(
            text.contains("node 1: 100.0 MiB, node 2: 80.0 MiB"),
            "{text}"
        );
        assert!(text.contains("node 6 (bad_data)"), "{text}");
        assert!(text.trim_end().ends_with("PASS"), "{text}");
        r.failures.push("node 5's copy does not match".into());
        assert!(human(&r).contains("FAIL: node 5's copy does not match"));
    }
}
