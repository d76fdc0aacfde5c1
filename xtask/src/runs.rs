//! Pieces every run on a local cluster shares (scenarios, the outage run, acceptance, benches):
//! the node settings with short repair intervals, the guard that tears a cluster down, the start
//! of a scenario's cluster, and nearest-rank quantiles.

use std::path::{Path, PathBuf};

use crate::cluster::{self, ClusterState, UpArgs};

/// The node settings of a scenario: short intervals, so that repair happens within seconds.
pub(crate) const NODE_CONFIG: &str = "\
[replication]
anti_entropy_interval_secs = 1.0
hint_delivery_interval_secs = 1.0

[kad]
request_timeout_secs = 2.0

[http]
request_timeout_secs = 5.0

[gossip]
push_pull_interval_secs = 5.0
";

/// Stops the cluster in this directory when dropped, even on error.
pub(crate) struct Teardown(pub(crate) PathBuf);

impl Drop for Teardown {
    fn drop(&mut self) {
        if self.0.join("cluster.json").exists() || self.0.join("netns.json").exists() {
            match cluster::down(&self.0) {
                Ok(summary) => eprintln!("{summary}"),
                Err(e) => eprintln!("could not stop the cluster in {}: {e:#}", self.0.display()),
            }
        }
    }
}

/// Starts a scenario's cluster of `nodes` in `dir` with the scenario settings
/// ([`NODE_CONFIG`], written to `DIR/scenario.toml`), over network namespaces with `netns`, and
/// waits until every node sees every member alive. The guard stops it when dropped, also when
/// the start itself fails half-way.
pub(crate) fn start_scenario_cluster(
    dir: &Path,
    nodes: usize,
    bin: Option<PathBuf>,
    netns: bool,
) -> anyhow::Result<(Teardown, ClusterState)> {
    cluster::ensure_not_running(dir)?;
    std::fs::create_dir_all(dir)?;
    let config = dir.join("scenario.toml");
    std::fs::write(&config, NODE_CONFIG)?;
    let up = UpArgs {
        nodes,
        quic: false,
        timeout: 120,
        bin,
        config: Some(config),
    };
    let teardown = Teardown(dir.to_path_buf());
    let state = cluster::up_with(dir, &up, netns)?;
    // `up` returns once every routing table holds a peer; a membership that does not know every
    // member yet places keys on the members it knows, so a key written then (the outage
    // scenario's probe keys, written once) can land on none of its replicas, and quorum reads
    // miss it until a rehoming pass moves it (`rehome_interval_secs` after the membership grew).
    crate::bench::wait_converged(&state, std::time::Duration::from_secs(60));
    Ok((teardown, state))
}

/// The `q`-quantile (0..=1) of sorted millisecond samples, nearest rank; 0 for none.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// [`quantile`] of sorted durations, in milliseconds.
pub(crate) fn quantile_ms(sorted: &[std::time::Duration], q: f64) -> f64 {
    let ms: Vec<f64> = sorted.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    quantile(&ms, q)
}
