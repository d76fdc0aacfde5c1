//! The swarm experiment: one blob, a few seeders, many leechers fetching it at once with the real
//! swarm scheduler ([`bavard_blobs::swarm::Fetch`]) over links of limited bandwidth, against a
//! baseline that fetches from one provider at a time.
//!
//! # The model
//!
//! - **Network.** `nodes` nodes on the latency plane of [`crate::latency`] (one-way 5–150 ms),
//!   on the generic [`Harness`] with a connection transport (a request to a departed node is
//!   refused at once). `seeders` random nodes hold the blob at time zero; `leechers` other random
//!   nodes start fetching it, all at zero or spread uniformly over `arrival`. The rest of the
//!   network only counts in `bytes_per_node`.
//! - **Bandwidth** (`links.rs`): every node has an upload and a download capacity (bytes per
//!   second; optionally spread by a seeded factor), shared fairly among the transfers it takes
//!   part in: each block of a transfer takes `block / min(upload share of the sender, download
//!   share of the receiver)`, the shares read when the block starts, then the link's one-way
//!   latency. A transfer is one request (a contiguous range of blocks); its blocks go one after
//!   the other, one message per block of the protocol's [`BLOCK_SIZE`](bavard_blobs::BLOCK_SIZE)
//!   (16 KiB).
//! - **Fetch.** A leecher runs [`Fetch`](bavard_blobs::swarm::Fetch) with its default
//!   [`FetchConfig`] and the node's bound of 8 providers at once (`max_providers_per_fetch`):
//!   requests, cancels (endgame), stalls (10 s) and refused connections are the real core's.
//!   A leecher that completes keeps its uploads going and becomes a provider: it stays.
//! - **Provider discovery**, as the node's DHT lookups give it: at arrival, every
//!   `refresh` (the node's `provider_refresh_secs`, 10 s) and 500 ms after the fetch asks for
//!   providers (`NeedProviders`, the node's urgent lookup gap), a lookup returns up to 20 random
//!   providers among the nodes that announced the blob, and the leecher adds them (up to its
//!   bound) with their availability (a have query). As the node does (`[blobs]
//!   announce_partial`, its default), leechers announce themselves from their first verified
//!   block and serve the blocks they verified (what BitTorrent's trackers do); with
//!   `announce_partial` off (`--announce-complete`), only seeders and completed leechers are
//!   found, as the node announced before. Lookups take no time and cost no traffic here.
//! - **Baseline**: the same `Fetch`, given one provider at a time (the bound is 1): a download
//!   from one source, which moves to another only when that one stalls or departs.
//! - **Churn**: `depart` seeders crash at `depart_at`; transfers from them stop, the leechers'
//!   stall timeouts drop them and lookups stop returning them.
//!
//! Not modelled: lookup latency and traffic, the size query and hash-tree parents (64 bytes per
//! block are counted on the wire, not as time), TCP/QUIC slow start and backpressure (a share a
//! receiver cannot absorb is not handed to the sender's other flows), packet loss, per-peer
//! stream limits (`max_streams_per_peer`, `max_concurrent_serves`), disk speed, and leechers that
//! leave after completing.
//!
//! # Figures
//!
//! Completion time per leecher (arrival to its last block) as p50/p90/p99/max; how evenly upload
//! was spread among the nodes that uploaded (max/mean, Gini coefficient, coefficient of
//! variation) and the seeders' share of all upload; bytes received twice (endgame duplicates and
//! blocks already on the wire when cancelled); requests and blocks requested; providers that
//! delivered to each leecher. A run replays exactly from its seed but for `wall_s`,
//! `peak_rss_mb` and `bytes_per_node`.

mod links;
mod node;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bavard_blobs::BLOCK_SIZE;
use bavard_blobs::ranges::block_count;
use bavard_blobs::swarm::FetchConfig;
use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;

use self::links::Links;
use self::node::{BlobEvent, BlobNode};
use crate::engine::SimTime;
use crate::error::SimError;
use crate::harness::{Fault, Harness, Network, Step, Transport};
use crate::latency::{LatencyConfig, LatencyModel};
use crate::rng::{seeded, stream};
use crate::stats::Samples;
use crate::{NodeId, memory};

/// The parameters of a swarm run.
#[derive(Debug, Clone)]
pub struct BlobsSimConfig {
    /// Nodes in the network.
    pub nodes: u32,
    /// Nodes holding the blob at time zero.
    pub seeders: u32,
    /// Nodes that fetch it.
    pub leechers: u32,
    /// The blob's size in bytes.
    pub size: u64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Each node's upload capacity, bytes per second.
    pub upload: f64,
    /// Each node's download capacity, bytes per second.
    pub download: f64,
    /// Capacities are multiplied by a factor drawn uniformly in `[1 - s, 1 + s]` per node and
    /// direction (0: every node alike). In `[0, 1)`.
    pub capacity_spread: f64,
    /// Leechers arrive uniformly over this span (zero: all at once).
    pub arrival: Duration,
    /// Period of a leecher's provider lookups.
    pub refresh: Duration,
    /// Providers a lookup returns at most.
    pub lookup_results: usize,
    /// Providers in one fetch at once (the node's `max_providers_per_fetch`).
    pub max_providers: usize,
    /// Leechers announce themselves as (partial) providers from their first verified block.
    pub announce_partial: bool,
    /// Also run the baseline (one provider at a time) on the same network.
    pub baseline: bool,
    /// Seeders that depart (crash) at `depart_at`; fewer than `seeders`.
    pub depart: u32,
    /// When the departing seeders go.
    pub depart_at: Duration,
    /// The scheduler's settings.
    pub fetch: FetchConfig,
    /// Virtual time after which a run stops, complete or not.
    pub time_limit: Duration,
}

impl Default for BlobsSimConfig {
    fn default() -> Self {
        Self {
            nodes: 1_000,
            seeders: 1,
            leechers: 200,
            size: 256 << 20,
            seed: 0,
            upload: 100e6 / 8.0,
            download: 100e6 / 8.0,
            capacity_spread: 0.0,
            arrival: Duration::ZERO,
            refresh: Duration::from_secs(10),
            lookup_results: 20,
            max_providers: 8,
            announce_partial: true,
            baseline: false,
            depart: 0,
            depart_at: Duration::from_secs(10),
            fetch: FetchConfig::default(),
            time_limit: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The figures of one strategy's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlobsReport {
    /// `swarm` (up to `max_providers` at once) or `baseline` (one at a time).
    pub strategy: String,
    /// Nodes in the network.
    pub nodes: u32,
    /// Seeders at time zero.
    pub seeders: u32,
    /// Leechers.
    pub leechers: u32,
    /// Blob size, bytes.
    pub size_bytes: u64,
    /// Blocks of the blob.
    pub blocks: u64,
    /// The seed.
    pub seed: u64,
    /// Providers in one fetch at once.
    pub max_providers: usize,
    /// Whether leechers announced themselves before completing.
    pub announce_partial: bool,
    /// Seeders that departed mid-run.
    pub departed: u32,
    /// Leechers that completed.
    pub completed: u32,
    /// Completion time (arrival to last block) percentiles, seconds.
    pub completion_s_p50: f64,
    /// 90th percentile.
    pub completion_s_p90: f64,
    /// 99th percentile.
    pub completion_s_p99: f64,
    /// The slowest.
    pub completion_s_max: f64,
    /// Virtual seconds until the last leecher completed (or the run stopped).
    pub sim_s: f64,
    /// A lower bound on the last completion, seconds: the longest of the blob over a leecher's
    /// download, the blob over the seeders' upload, and every copy over the upload of the
    /// seeders and leechers together.
    pub ideal_s: f64,
    /// Bytes sent by every node, duplicates included.
    pub uploaded_bytes: u64,
    /// Nodes that uploaded anything.
    pub uploaders: u32,
    /// Among them: the largest upload over the mean.
    pub upload_max_over_mean: f64,
    /// Gini coefficient of the uploads (0: all equal, → 1: one node did everything).
    pub upload_gini: f64,
    /// Coefficient of variation (standard deviation over mean) of the uploads.
    pub upload_cv: f64,
    /// The seeders' share of all upload.
    pub seeder_share: f64,
    /// Bytes received twice (endgame duplicates, blocks already sent when cancelled).
    pub wasted_bytes: u64,
    /// `wasted_bytes` over the bytes the leechers needed.
    pub wasted_share: f64,
    /// Requests sent by all leechers.
    pub requests: u64,
    /// Blocks those requests covered (a block asked twice counts twice).
    pub blocks_requested: u64,
    /// Blocks requested per block needed.
    pub blocks_requested_per_block: f64,
    /// Providers that delivered something to a leecher: mean over leechers.
    pub providers_used_mean: f64,
    /// The most providers one leecher used.
    pub providers_used_max: u32,
    /// Providers dropped (stalled, failed) over all leechers.
    pub providers_dropped: u64,
    /// Block messages delivered.
    pub messages: u64,
    /// Peak resident set of the process so far, MiB.
    pub peak_rss_mb: u64,
    /// That peak over the nodes, bytes.
    pub bytes_per_node: u64,
    /// Wall-clock seconds of this run.
    pub wall_s: f64,
}

/// Runs the swarm, then (with `baseline`) the same network and arrivals with one provider at a
/// time.
pub fn run_blobs_sim(config: &BlobsSimConfig) -> Result<Vec<BlobsReport>, SimError> {
    validate(config)?;
    let mut reports = vec![run_one(config, config.max_providers, "swarm")];
    if config.baseline {
        reports.push(run_one(config, 1, "baseline"));
    }
    Ok(reports)
}

fn validate(c: &BlobsSimConfig) -> Result<(), SimError> {
    if c.seeders == 0
        || c.leechers == 0
        || u64::from(c.seeders) + u64::from(c.leechers) > u64::from(c.nodes)
    {
        return Err(SimError::BadSwarm {
            seeders: c.seeders,
            leechers: c.leechers,
            nodes: c.nodes,
        });
    }
    if c.size == 0 {
        return Err(SimError::EmptyBlob);
    }
    let rate_ok = |r: f64| r.is_finite() && r > 0.0;
    if !rate_ok(c.upload) || !rate_ok(c.download) || !(0.0..1.0).contains(&c.capacity_spread) {
        return Err(SimError::BadCapacity {
            upload: c.upload,
            download: c.download,
            spread: c.capacity_spread,
        });
    }
    if c.depart >= c.seeders {
        return Err(SimError::TooManyDeparting {
            depart: c.depart,
            seeders: c.seeders,
        });
    }
    Ok(())
}

/// What the experiment schedules.
#[derive(Debug, Clone, Copy)]
enum Ev {
    /// A leecher arrives and starts fetching.
    Arrive(NodeId),
    /// A leecher's provider lookup.
    Lookup(NodeId),
    /// The departing seeders go.
    Depart,
}

fn run_one(config: &BlobsSimConfig, max_providers: usize, strategy: &str) -> BlobsReport {
    let wall = Instant::now();
    let n = config.nodes;
    // Roles, capacities and arrivals come from their own streams: both strategies see the same.
    let mut roles: Vec<NodeId> = (0..n).collect();
    roles.shuffle(&mut seeded(config.seed, stream::JOIN));
    let seeders: Vec<NodeId> = roles[..config.seeders as usize].to_vec();
    let leechers: Vec<NodeId> =
        roles[config.seeders as usize..(config.seeders + config.leechers) as usize].to_vec();
    let mut is_seeder = vec![false; n as usize];
    for &s in &seeders {
        is_seeder[s as usize] = true;
    }
    let mut cap_rng = seeded(config.seed, stream::SKEW);
    let mut factor = || {
        if config.capacity_spread > 0.0 {
            cap_rng.random_range(1.0 - config.capacity_spread..1.0 + config.capacity_spread)
        } else {
            1.0
        }
    };
    let up: Vec<f64> = (0..n).map(|_| config.upload * factor()).collect();
    let down: Vec<f64> = (0..n).map(|_| config.download * factor()).collect();
    let links = Rc::new(Links::new(up, down));
    let latency = LatencyModel::random(
        n,
        LatencyConfig::default(),
        &mut seeded(config.seed, stream::LATENCY),
    );
    let network = Network::new(n, latency).with_transport(Transport::Connection);
    let size = config.size;
    let node_links = Rc::clone(&links);
    let seeder_flags = is_seeder.clone();
    let mut h: Harness<BlobNode, Ev> = network.build(move |id, _| {
        BlobNode::new(id, size, Rc::clone(&node_links), seeder_flags[id as usize])
    });

    let mut arrival_rng = seeded(config.seed, stream::WORKLOAD);
    let mut arrived_at = vec![SimTime::ZERO; n as usize];
    for &l in &leechers {
        let at = if config.arrival.is_zero() {
            SimTime::ZERO
        } else {
            SimTime::ZERO.after(config.arrival.mul_f64(arrival_rng.random::<f64>()))
        };
        arrived_at[l as usize] = at;
        h.schedule(at, Ev::Arrive(l));
    }
    if config.depart > 0 {
        h.schedule(SimTime::ZERO.after(config.depart_at), Ev::Depart);
    }

    // The nodes a lookup can return: announced and up.
    let mut announced: Vec<NodeId> = seeders.clone();
    let mut is_announced = is_seeder.clone();
    let mut fetching: Vec<NodeId> = Vec::new();
    let mut lookup_rng = seeded(config.seed, stream::CHURN);
    let mut completion = Samples::new();
    let mut completed = 0u32;
    let mut departed = 0u32;
    let mut last = SimTime::ZERO;
    let end = SimTime::ZERO.after(config.time_limit);
    let urgent = Duration::from_millis(500);

    while let Some(step) = h.step_until(end) {
        match step {
            Step::External { at, event } => match event {
                Ev::Arrive(l) => {
                    let rng = seeded(config.seed, stream::NODES + u64::from(l));
                    let fetch_config = config.fetch.clone();
                    h.act(l, |node, _| {
                        node.start_fetch(fetch_config, max_providers, rng)
                    });
                    fetching.push(l);
                    h.schedule(at, Ev::Lookup(l));
                }
                Ev::Lookup(l) => {
                    if !h.is_up(l) || h.node(l).is_complete() {
                        continue;
                    }
                    if config.announce_partial {
                        for &f in &fetching {
                            if !is_announced[f as usize]
                                && h.node(f).fetch().is_some_and(|x| x.verified_bytes() > 0)
                            {
                                is_announced[f as usize] = true;
                                announced.push(f);
                            }
                        }
                    }
                    let mut candidates: Vec<NodeId> = announced
                        .iter()
                        .copied()
                        .filter(|&p| p != l && h.is_up(p))
                        .collect();
                    candidates.shuffle(&mut lookup_rng);
                    candidates.truncate(config.lookup_results);
                    let found: Vec<_> = candidates
                        .into_iter()
                        .filter_map(|p| Some((p, h.node(p).availability()?)))
                        .collect();
                    h.act(l, |node, now| node.add_providers(found, now));
                    h.schedule(at.after(config.refresh), Ev::Lookup(l));
                }
                Ev::Depart => {
                    for &s in &seeders[..config.depart as usize] {
                        h.inject(Fault::Crash(s));
                        departed += 1;
                    }
                    announced.retain(|p| h.is_up(*p));
                }
            },
            Step::Output { at, node, events } => {
                for event in events {
                    match event {
                        BlobEvent::Complete => {
                            completed += 1;
                            last = at;
                            let took = at.as_micros() - arrived_at[node as usize].as_micros();
                            completion.push(took as f64 / 1e6);
                            if !is_announced[node as usize] {
                                is_announced[node as usize] = true;
                                announced.push(node);
                            }
                        }
                        BlobEvent::NeedProviders => h.schedule(at.after(urgent), Ev::Lookup(node)),
                    }
                }
                if completed == config.leechers {
                    break;
                }
            }
        }
    }
    if completed < config.leechers {
        last = h.now();
    }

    // Upload spread among the nodes that uploaded.
    let uploads: Vec<u64> = (0..n).map(|i| h.node(i).uploaded).collect();
    let uploaded_bytes: u64 = uploads.iter().sum();
    let seeder_bytes: u64 = seeders.iter().map(|&s| uploads[s as usize]).sum();
    let mut nonzero: Vec<f64> = uploads
        .iter()
        .filter(|&&u| u > 0)
        .map(|&u| u as f64)
        .collect();
    let (max_over_mean, gini, cv) = spread(&mut nonzero);

    let mut wasted = 0u64;
    let mut requests = 0u64;
    let mut blocks_requested = 0u64;
    let mut dropped = 0u64;
    let mut used = Samples::new();
    let mut used_max = 0u32;
    for &l in &leechers {
        let node = h.node(l);
        requests += node.requests;
        blocks_requested += node.blocks_requested;
        dropped += node.dropped;
        if let Some(f) = node.fetch() {
            wasted += f.wasted_bytes();
            let k = f.providers().filter(|(_, s)| s.bytes > 0).count() as u32;
            used.push(f64::from(k));
            used_max = used_max.max(k);
        }
    }
    let blocks = block_count(config.size);
    let needed = blocks as f64 * f64::from(config.leechers);
    let seeder_up: f64 = seeders.iter().map(|&s| links.upload(s)).sum();
    let ideal_s = (config.size as f64 * f64::from(config.leechers)
        / (seeder_up + leechers.iter().map(|&l| links.upload(l)).sum::<f64>()))
    .max(config.size as f64 / config.download)
    .max(config.size as f64 / seeder_up);
    BlobsReport {
        strategy: strategy.to_owned(),
        nodes: n,
        seeders: config.seeders,
        leechers: config.leechers,
        size_bytes: config.size,
        blocks,
        seed: config.seed,
        max_providers,
        announce_partial: config.announce_partial,
        departed,
        completed,
        completion_s_p50: completion.percentile(50.0),
        completion_s_p90: completion.percentile(90.0),
        completion_s_p99: completion.percentile(99.0),
        completion_s_max: completion.percentile(100.0),
        sim_s: last.as_micros() as f64 / 1e6,
        ideal_s,
        uploaded_bytes,
        uploaders: nonzero.len() as u32,
        upload_max_over_mean: max_over_mean,
        upload_gini: gini,
        upload_cv: cv,
        seeder_share: if uploaded_bytes == 0 {
            0.0
        } else {
            seeder_bytes as f64 / uploaded_bytes as f64
        },
        wasted_bytes: wasted,
        wasted_share: wasted as f64 / (needed * BLOCK_SIZE as f64),
        requests,
        blocks_requested,
        blocks_requested_per_block: blocks_requested as f64 / needed,
        providers_used_mean: used.mean(),
        providers_used_max: used_max,
        providers_dropped: dropped,
        messages: h.traffic().delivered,
        peak_rss_mb: memory::peak_rss_mb(),
        bytes_per_node: memory::bytes_per_node(n),
        wall_s: wall.elapsed().as_secs_f64(),
    }
}

/// Max over mean, Gini coefficient and coefficient of variation of `values` (sorted in place);
/// zeros with no value.
fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    values.sort_by(f64::total_cmp);
    let n = values.len() as f64;
    let sum: f64 = values.iter().sum();
    let mean = sum / n;
    let max = values[values.len() - 1];
    // Gini = Σ (2i - n - 1) x_i / (n Σ x), i from 1, x sorted ascending.
    let weighted: f64 = values
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * (i as f64 + 1.0) - n - 1.0) * x)
        .sum();
    let gini = weighted / (n * sum);
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (max / mean, gini, var.sqrt() / mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_equal_uploads_is_zero_and_of_one_uploader_among_many_is_high() {
        let (m, g, cv) = spread(&mut [5.0, 5.0, 5.0, 5.0]);
        assert_eq!((m, g, cv), (1.0, 0.0, 0.0));
        let mut lopsided = vec![1.0; 99];
        lopsided.push(1_000.0);
        let (m, g, _) = spread(&mut lopsided);
        assert!(m > 9.0 && g > 0.8, "{m} {g}");
    }
}
