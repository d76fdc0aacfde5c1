//! `cargo xtask scenario outage`: a replica misses a large volume of writes and must catch up.
//!
//! 1. Starts a cluster (the scenario node settings), writes the probe keys and measures the
//!    probe load's latency for 10 s (the baseline).
//! 2. `kill -9` one node (`--kill-node`, default the last), then writes `--keys` values of
//!    `--value-size` bytes at quorum through node 0 with `--clients` concurrent writers.
//! 3. Restarts the node and waits until it stores every key of its share (the keys for which it
//!    is one of the 3 closest nodes by XOR distance, computed from the peer ids as the nodes
//!    do) and no node has a hint queued, while the probe load keeps running.
//! 4. Measures the probe load for 10 s more once the node caught up (the same cluster, warm,
//!    with nothing to catch up).
//! 5. Reports `catch_up_s` (restart to done), `keys_missing` and `hints_left` (at the end or at
//!    the timeout), the catch-up rate, and the probe latency before, during and after the
//!    catch-up. The run fails on any write error, key missing, hint left or probe error (a probe
//!    read that does not find its key is an acknowledged write that cannot be read). The scenario reads every node's `/v1/status` once a second during all three
//!    windows, so the windows differ only in the outage and the catch-up.
//!
//! The node held no record before it was killed except the probe keys of its share, and writes
//! during the catch-up only overwrite probe keys, so its `records_stored` counts exactly the
//! keys of its share it holds.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::bench::Snapshot;
use crate::cluster::{self, ClusterState};
use crate::http;
use crate::runs::quantile_ms as ms;
use crate::versus::{ProfileRow, profile_rows, profile_table};

/// The settings of one outage run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) nodes: usize,
    pub(crate) keys: usize,
    pub(crate) value_size: usize,
    pub(crate) clients: usize,
    pub(crate) kill_node: usize,
    pub(crate) catch_up_timeout: Duration,
    pub(crate) netns: bool,
    pub(crate) json: bool,
    /// Also report the nodes' `*_seconds` histograms counted in each window.
    pub(crate) profile: bool,
    pub(crate) bin: Option<std::path::PathBuf>,
    pub(crate) dir: std::path::PathBuf,
}

/// Probe keys written before the outage and overwritten by the probe load.
const PROBE_KEYS: usize = 64;
/// How long the probe load's latency is measured before the outage and after the catch-up.
const BASELINE: Duration = Duration::from_secs(10);
/// The replication factor the nodes run with (the default).
const N: usize = 3;

/// What an outage run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    scenario: &'static str,
    nodes: usize,
    killed: usize,
    keys: usize,
    value_size: usize,
    write_errors: usize,
    write_s: f64,
    write_ops_s: f64,
    /// Keys the restarted node replicates (probe keys included).
    share: usize,
    /// Seconds from the restart until the node held its whole share and no hint was queued.
    catch_up_s: Option<f64>,
    keys_missing: usize,
    hints_left: usize,
    /// Bytes of values the node received per second of catch-up.
    catch_up_bytes_per_s: Option<f64>,
    probe_baseline_p50_ms: f64,
    probe_baseline_p99_ms: f64,
    probe_catch_up_p50_ms: f64,
    probe_catch_up_p99_ms: f64,
    probe_catch_up_ops: usize,
    /// The catch-up window's p99 in successive 5 s slices from the restart.
    probe_catch_up_p99_ms_per_5s: Vec<f64>,
    /// The catch-up window's p99 on the probe keys the returning node replicates, and on the
    /// others (where the coordinator never waits for it).
    probe_catch_up_p99_ms_its_keys: f64,
    probe_catch_up_p99_ms_other_keys: f64,
    /// The same load for 10 s once the node caught up.
    probe_after_p50_ms: f64,
    probe_after_p99_ms: f64,
    /// Probe operations that failed during and after the catch-up: a quorum write through a
    /// live majority that was refused, or a quorum read of a probe key that did not answer 200
    /// (every probe key was written before the outage, so a 404 is an acknowledged write that
    /// cannot be read). Any fails the run.
    probe_errors: usize,
    /// `records_stored` of the restarted node, one sample per second after the restart.
    progress: Vec<usize>,
    /// With `--profile`: the nodes' `*_seconds` histograms counted in each window.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<WindowProfiles>,
}

/// The `*_seconds` histograms counted in each probe window (`--profile`).
#[derive(Debug, Clone, PartialEq, Serialize)]
struct WindowProfiles {
    /// The nodes that stay up, summed, in the baseline window.
    before: Vec<ProfileRow>,
    /// The nodes that stay up, summed, from the restart until the catch-up ended.
    catch_up: Vec<ProfileRow>,
    /// The returning node, from its restart until the catch-up ended.
    catch_up_returning: Vec<ProfileRow>,
    /// The nodes that stay up, summed, in the window after the catch-up.
    after: Vec<ProfileRow>,
}

/// Scrapes `apis` when profiling; a failed scrape only loses the profile.
fn scrape(on: bool, apis: &[String]) -> Option<Snapshot> {
    if !on {
        return None;
    }
    let apis: Vec<&str> = apis.iter().map(String::as_str).collect();
    Snapshot::scrape_apis(&apis)
        .inspect_err(|e| eprintln!("profile: {e:#}"))
        .ok()
}

/// The histograms counted between two scrapes.
fn counted(before: &Option<Snapshot>, after: &Option<Snapshot>) -> Vec<ProfileRow> {
    match (before, after) {
        (Some(b), Some(a)) => profile_rows(&crate::prom::delta(&a.hists, &b.hists)),
        _ => Vec::new(),
    }
}

impl Report {
    fn passed(&self) -> bool {
        self.write_errors == 0
            && self.keys_missing == 0
            && self.hints_left == 0
            && self.probe_errors == 0
    }
}

fn bulk_key(i: usize) -> String {
    format!("outage-{i}")
}

fn probe_key(i: usize) -> String {
    format!("probe-{i}")
}

/// SHA-256 of the peer id's bytes (decoded from base58), as the nodes place keys.
fn peer_point(peer_id: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = bs58::decode(peer_id)
        .into_vec()
        .with_context(|| format!("peer id {peer_id} is not base58"))?;
    Ok(Sha256::digest(&bytes).into())
}

fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut d = [0u8; 32];
    for (i, byte) in d.iter_mut().enumerate() {
        *byte = a[i] ^ b[i];
    }
    d
}

/// Whether node `me` is one of the `N` nodes closest to `key`.
fn replicates(points: &[[u8; 32]], me: usize, key: &str) -> bool {
    let target: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    let mine = xor(&points[me], &target);
    points.iter().filter(|p| xor(p, &target) < mine).count() < N
}

/// Status figures of one node: records stored, hints queued.
fn node_figures(api: &str) -> Option<(usize, usize)> {
    let r = http::get(api, "/v1/status", Duration::from_secs(3)).ok()?;
    if r.status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    Some((
        v["records_stored"].as_u64()? as usize,
        v["replication"]["hints_queued"].as_u64().unwrap_or(0) as usize,
    ))
}

fn put(api: &str, key: &str, value: &[u8]) -> anyhow::Result<()> {
    let path = format!("/v1/kv/{key}?consistency=quorum");
    let r = http::request(api, "PUT", &path, value, Duration::from_secs(30))?;
    if r.status != 200 {
        bail!(
            "PUT {key}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    Ok(())
}

/// Runs the probe load (quorum puts and gets of the probe keys through every node but the
/// killed one) until `stop`; returns the latencies of the successes (sorted) and the error
/// count.
fn probe(apis: &[String], stop: &AtomicBool) -> (Vec<Duration>, usize) {
    let (mut timed, errors) = probe_timed(apis, stop);
    let mut lat: Vec<Duration> = timed.drain(..).map(|(_, l, _)| l).collect();
    lat.sort_unstable();
    (lat, errors)
}

/// [`probe`], with each success's start and probe key: `(start, latency, key index)` in start
/// order.
fn probe_timed(apis: &[String], stop: &AtomicBool) -> (Vec<(Instant, Duration, usize)>, usize) {
    let lat = Mutex::new(Vec::new());
    let errors = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..2usize {
            let (lat, errors) = (&lat, &errors);
            s.spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let api = &apis[i % apis.len()];
                    let key = probe_key(i % PROBE_KEYS);
                    let start = Instant::now();
                    let ok = if i % 2 == 0 {
                        put(api, &key, format!("p{i}").as_bytes()).is_ok()
                    } else {
                        let path = format!("/v1/kv/{key}?consistency=quorum");
                        http::request(api, "GET", &path, &[], Duration::from_secs(30))
                            .is_ok_and(|r| r.status == 200)
                    };
                    if ok {
                        lat.lock()
                            .expect("lock")
                            .push((start, start.elapsed(), i % PROBE_KEYS));
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 2;
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
    });
    let mut lat = lat.into_inner().expect("lock");
    lat.sort_unstable_by_key(|(start, _, _)| *start);
    (lat, errors.into_inner())
}

/// The p99 of each `width` of `timed` from `from` on, in ms.
fn p99_per_window(
    timed: &[(Instant, Duration, usize)],
    from: Instant,
    width: Duration,
) -> Vec<f64> {
    let mut windows: Vec<Vec<Duration>> = Vec::new();
    for (start, lat, _) in timed {
        let i =
            (start.saturating_duration_since(from).as_secs_f64() / width.as_secs_f64()) as usize;
        if windows.len() <= i {
            windows.resize(i + 1, Vec::new());
        }
        windows[i].push(*lat);
    }
    windows
        .into_iter()
        .map(|mut w| {
            w.sort_unstable();
            (ms(&w, 0.99) * 10.0).round() / 10.0
        })
        .collect()
}

/// Runs `cargo xtask scenario outage`.
pub(crate) fn run(s: &Settings) -> anyhow::Result<()> {
    if s.nodes < N + 1 {
        bail!("--nodes must be at least {} for an outage run", N + 1);
    }
    if s.kill_node == 0 || s.kill_node >= s.nodes {
        bail!(
            "--kill-node must be between 1 and {} (node 0 takes the writes)",
            s.nodes - 1
        );
    }
    let (_teardown, mut state) =
        crate::runs::start_scenario_cluster(&s.dir, s.nodes, s.bin.clone(), s.netns)?;
    let report = drive(s, &s.dir, &mut state)?;
    if s.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", human(&report));
    }
    if !report.passed() {
        bail!(
            "outage: {} write errors, {} keys missing, {} hints left after {} s, {} probe errors",
            report.write_errors,
            report.keys_missing,
            report.hints_left,
            s.catch_up_timeout.as_secs(),
            report.probe_errors
        );
    }
    Ok(())
}

fn drive(s: &Settings, dir: &Path, state: &mut ClusterState) -> anyhow::Result<Report> {
    let points: Vec<[u8; 32]> = state
        .nodes
        .iter()
        .map(|n| peer_point(&n.peer_id))
        .collect::<anyhow::Result<_>>()?;
    let k = s.kill_node;
    let via = state.nodes[0].api.clone();
    let others: Vec<String> = state
        .nodes
        .iter()
        .filter(|n| n.index != k)
        .map(|n| n.api.clone())
        .collect();
    for i in 0..PROBE_KEYS {
        put(&via, &probe_key(i), b"p").context("writing the probe keys")?;
    }
    let apis: Vec<String> = state.nodes.iter().map(|n| n.api.clone()).collect();
    let scraped_before = scrape(s.profile, &others);
    let (baseline, _) = probe_window(&others, &apis);
    let scraped_baseline = scrape(s.profile, &others);

    cluster::signal(state.nodes[k].pid, "KILL")?;
    if !s.json {
        eprintln!("killed node {k}; writing {} keys through node 0", s.keys);
    }
    let value = vec![b'v'; s.value_size];
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let bar = ProgressBar::new(s.keys as u64);
    bar.set_style(
        ProgressStyle::with_template("write [{bar:30}] {pos}/{len} ({elapsed}, {per_sec})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let started = Instant::now();
    std::thread::scope(|sc| {
        for _ in 0..s.clients.max(1) {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= s.keys {
                        break;
                    }
                    if let Err(e) = put(&via, &bulk_key(i), &value) {
                        errors.lock().expect("lock").push(format!("{e:#}"));
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let write_s = started.elapsed().as_secs_f64();
    let errors = errors.into_inner().expect("lock");
    for e in errors.iter().take(5) {
        eprintln!("write error: {e}");
    }
    let share = (0..s.keys)
        .map(bulk_key)
        .chain((0..PROBE_KEYS).map(probe_key))
        .filter(|key| replicates(&points, k, key))
        .count();

    let scraped_restart = scrape(s.profile, &others);
    cluster::restart(dir, state, k)?;
    let restarted = Instant::now();
    if !s.json {
        eprintln!("restarted node {k}; waiting until it holds its {share} keys");
    }
    let stop = AtomicBool::new(false);
    let mut progress = Vec::new();
    let mut catch_up_s = None;
    let mut last = (0usize, usize::MAX);
    let deadline = restarted + s.catch_up_timeout;
    let (timed, probe_errors) = std::thread::scope(|sc| {
        let h = sc.spawn(|| probe_timed(&others, &stop));
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            let stored = node_figures(&apis[k]).map_or(0, |(r, _)| r);
            let hints: usize = apis
                .iter()
                .map(|a| node_figures(a).map_or(usize::MAX / 8, |(_, h)| h))
                .sum();
            progress.push(stored);
            last = (stored, hints);
            if stored >= share && hints == 0 {
                catch_up_s = Some(restarted.elapsed().as_secs_f64());
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        h.join().expect("probe thread")
    });
    let (stored, hints_left) = last;
    let scraped_caught_up = scrape(s.profile, &others);
    let returning = scrape(s.profile, std::slice::from_ref(&apis[k]));
    let mut during: Vec<Duration> = timed.iter().map(|(_, l, _)| *l).collect();
    during.sort_unstable();
    // Split by whether the returning node replicates the probe key.
    let (mut theirs, mut rest): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for (_, l, key) in &timed {
        if replicates(&points, k, &probe_key(*key)) {
            theirs.push(*l);
        } else {
            rest.push(*l);
        }
    }
    theirs.sort_unstable();
    rest.sort_unstable();
    let (after, after_errors) = if catch_up_s.is_some() {
        probe_window(&others, &apis)
    } else {
        (Vec::new(), 0)
    };
    let scraped_after = scrape(s.profile, &others);
    let profile = s.profile.then(|| WindowProfiles {
        before: counted(&scraped_before, &scraped_baseline),
        catch_up: counted(&scraped_restart, &scraped_caught_up),
        catch_up_returning: returning
            .map(|r| profile_rows(&r.hists))
            .unwrap_or_default(),
        after: if catch_up_s.is_some() {
            counted(&scraped_caught_up, &scraped_after)
        } else {
            Vec::new()
        },
    });
    let keys_missing = share.saturating_sub(stored);
    Ok(Report {
        scenario: "outage",
        nodes: s.nodes,
        killed: k,
        keys: s.keys,
        value_size: s.value_size,
        write_errors: errors.len(),
        write_s,
        write_ops_s: (s.keys - errors.len()) as f64 / write_s.max(1e-9),
        share,
        catch_up_s,
        keys_missing,
        hints_left,
        catch_up_bytes_per_s: catch_up_s.map(|t| (share * s.value_size) as f64 / t.max(1e-9)),
        probe_baseline_p50_ms: ms(&baseline, 0.50),
        probe_baseline_p99_ms: ms(&baseline, 0.99),
        probe_catch_up_p50_ms: ms(&during, 0.50),
        probe_catch_up_p99_ms: ms(&during, 0.99),
        probe_catch_up_ops: during.len(),
        probe_catch_up_p99_ms_per_5s: p99_per_window(&timed, restarted, Duration::from_secs(5)),
        probe_catch_up_p99_ms_its_keys: ms(&theirs, 0.99),
        probe_catch_up_p99_ms_other_keys: ms(&rest, 0.99),
        probe_after_p50_ms: ms(&after, 0.50),
        probe_after_p99_ms: ms(&after, 0.99),
        probe_errors: probe_errors + after_errors,
        progress,
        profile,
    })
}

/// Runs the probe load for [`BASELINE`] while reading every node's figures once a second, as
/// the catch-up window does.
fn probe_window(probed: &[String], apis: &[String]) -> (Vec<Duration>, usize) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let h = sc.spawn(|| probe(probed, &stop));
        let end = Instant::now() + BASELINE;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_secs(1));
            for api in apis {
                let _ = node_figures(api);
            }
        }
        stop.store(true, Ordering::Relaxed);
        h.join().expect("probe thread")
    })
}

fn human(r: &Report) -> String {
    let caught = r
        .catch_up_s
        .map_or("not within the timeout".to_string(), |t| {
            format!("{t:.1} s")
        });
    format!(
        "scenario outage: {} nodes, node {} down while {} keys of {} bytes were written \
         ({:.0} puts/s, {} errors)\n\
         share of node {}: {} keys; caught up: {}; keys missing {}; hints left {}\n\
         catch-up rate: {}\n\
         probe latency p50/p99: before {:.1}/{:.1} ms, during catch-up {:.1}/{:.1} ms \
         ({} ops), after {:.1}/{:.1} ms ({} errors)\n",
        r.nodes,
        r.killed,
        r.keys,
        r.value_size,
        r.write_ops_s,
        r.write_errors,
        r.killed,
        r.share,
        caught,
        r.keys_missing,
        r.hints_left,
        r.catch_up_bytes_per_s
            .map_or("-".into(), |b| format!("{:.1} MB/s", b / 1e6)),
        r.probe_baseline_p50_ms,
        r.probe_baseline_p99_ms,
        r.probe_catch_up_p50_ms,
        r.probe_catch_up_p99_ms,
        r.probe_catch_up_ops,
        r.probe_after_p50_ms,
        r.probe_after_p99_ms,
        r.probe_errors,
    ) + &r.profile.as_ref().map_or(String::new(), |p| {
        format!(
            "\nprofile before (the nodes that stay up, summed):\n{}\
             \nprofile during catch-up (the nodes that stay up, summed):\n{}\
             \nprofile during catch-up (the returning node):\n{}\
             \nprofile after:\n{}",
            profile_table(&p.before),
            profile_table(&p.catch_up),
            profile_table(&p.catch_up_returning),
            profile_table(&p.after),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_error_fails_the_run_like_a_missing_key() {
        let report = Report {
            scenario: "outage",
            nodes: 5,
            killed: 4,
            keys: 10,
            value_size: 1,
            write_errors: 0,
            write_s: 1.0,
            write_ops_s: 10.0,
            share: 6,
            catch_up_s: Some(1.0),
            keys_missing: 0,
            hints_left: 0,
            catch_up_bytes_per_s: Some(6.0),
            probe_baseline_p50_ms: 1.0,
            probe_baseline_p99_ms: 2.0,
            probe_catch_up_p50_ms: 1.0,
            probe_catch_up_p99_ms: 2.0,
            probe_catch_up_ops: 10,
            probe_catch_up_p99_ms_per_5s: vec![2.0],
            probe_catch_up_p99_ms_its_keys: 2.0,
            probe_catch_up_p99_ms_other_keys: 2.0,
            probe_after_p50_ms: 1.0,
            probe_after_p99_ms: 2.0,
            probe_errors: 0,
            progress: vec![6],
            profile: None,
        };
        assert!(report.passed());
        for broken in [
            Report {
                probe_errors: 1,
                ..report.clone()
            },
            Report {
                keys_missing: 1,
                ..report.clone()
            },
            Report {
                hints_left: 1,
                ..report.clone()
            },
            Report {
                write_errors: 1,
                ..report.clone()
            },
        ] {
            assert!(!broken.passed(), "{broken:?}");
        }
    }

    #[test]
    fn the_profile_counts_each_window_between_its_scrapes() {
        let scrape = |count: u64| {
            let text = format!(
                "# TYPE bavard_stage_seconds histogram\n\
                 bavard_stage_seconds_bucket{{stage=\"commit\",le=\"0.001\"}} {count}\n\
                 bavard_stage_seconds_bucket{{stage=\"commit\",le=\"+Inf\"}} {count}\n\
                 bavard_stage_seconds_sum{{stage=\"commit\"}} {}\n\
                 bavard_stage_seconds_count{{stage=\"commit\"}} {count}\n",
                count as f64 * 0.0005
            );
            Some(Snapshot::from_texts([text.as_str()]).unwrap())
        };
        let rows = counted(&scrape(10), &scrape(35));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].labels, "stage=\"commit\"");
        assert_eq!(rows[0].count, 25, "only what the window counted");
        // A window whose scrape failed has no rows rather than wrong ones.
        assert!(counted(&None, &scrape(35)).is_empty());
        assert!(counted(&scrape(10), &None).is_empty());
    }

    #[test]
    fn a_key_has_exactly_three_replicas_among_five_nodes() {
        let points: Vec<[u8; 32]> = (0..5u8).map(|i| Sha256::digest([i]).into()).collect();
        for i in 0..200 {
            let key = bulk_key(i);
            let count = (0..5).filter(|&n| replicates(&points, n, &key)).count();
            assert_eq!(count, N, "{key}");
        }
    }

    #[test]
    fn peer_ids_are_decoded_from_base58() {
        // The base58 of bytes [0, 1, 2].
        let p = peer_point("15T").unwrap();
        assert_eq!(p, <[u8; 32]>::from(Sha256::digest([0u8, 1, 2])));
        assert!(peer_point("0OIl").is_err());
    }
}
