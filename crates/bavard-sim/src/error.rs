//! Errors of the simulator: bad parameters, refused before anything runs.

use bavard_routing::ConfigError;
use thiserror::Error;

/// A simulation parameter that cannot work. Returned before the run starts; nothing was built.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SimError {
    /// A lookup needs someone to ask: at least 2 nodes.
    #[error("--nodes must be at least 2 (got {0})")]
    TooFewNodes(u32),
    /// At least one lookup must be measured.
    #[error("--lookups must be at least 1 (got 0)")]
    NoLookups,
    /// The loss probability must be in `[0, 1)`.
    #[error("--loss must be in [0, 1) (got {0})")]
    LossOutOfRange(f64),
    /// The churn fraction must be in `[0, 1)` and leave at least one live node.
    #[error("--churn must be in [0, 1) and leave at least one live node (got {0})")]
    ChurnOutOfRange(f64),
    /// The adversary fraction must be in `[0, 1)` and leave at least one honest live node.
    #[error("--adversary must be in [0, 1) and leave at least one honest live node (got {0})")]
    AdversaryOutOfRange(f64),
    /// At least one message must be measured.
    #[error("--messages must be at least 1 (got 0)")]
    NoMessages,
    /// The share of nodes killed must be in `[0, 1)` and leave at least two live nodes.
    #[error("--kill must be in [0, 1) and leave at least two live nodes (got {0})")]
    KillOutOfRange(f64),
    /// A broadcast overlay needs at least one active-view neighbour.
    #[error("--active-view must be at least 1 (got 0)")]
    EmptyActiveView,
    /// More nodes killed than the run can afford: at least two must stay alive.
    #[error("--kill {killed} must leave at least two of the {nodes} nodes alive")]
    TooManyKilled {
        /// Nodes asked to be killed.
        killed: u32,
        /// Nodes in the run.
        nodes: u32,
    },
    /// The store experiment needs at least one client.
    #[error("--clients must be at least 1 (got 0)")]
    NoClients,
    /// Replicas per key must be between 1 and the number of nodes.
    #[error("--replication must be between 1 and the {nodes} nodes (got {n})")]
    BadReplication {
        /// Replicas asked for.
        n: usize,
        /// Nodes in the run.
        nodes: u32,
    },
    /// A clock offset beyond what the harness supports.
    #[error("--skew-ms must be at most one day (got {0:?})")]
    SkewTooLarge(std::time::Duration),
    /// A swarm needs a seeder and a leecher, and both fit in the network.
    #[error(
        "--seeders {seeders} and --leechers {leechers} must each be at least 1 and together at most --nodes {nodes}"
    )]
    BadSwarm {
        /// Seeders asked for.
        seeders: u32,
        /// Leechers asked for.
        leechers: u32,
        /// Nodes in the run.
        nodes: u32,
    },
    /// A blob of zero bytes has nothing to fetch.
    #[error("--size-mib must be more than 0")]
    EmptyBlob,
    /// Capacities must be positive and their spread in `[0, 1)`.
    #[error(
        "--upload-mbps ({upload} B/s) and --download-mbps ({download} B/s) must be positive and --capacity-spread ({spread}) in [0, 1)"
    )]
    BadCapacity {
        /// Upload, bytes per second.
        upload: f64,
        /// Download, bytes per second.
        download: f64,
        /// Spread factor.
        spread: f64,
    },
    /// At least one seeder must stay.
    #[error("--depart {depart} must leave at least one of the {seeders} seeders")]
    TooManyDeparting {
        /// Seeders asked to depart.
        depart: u32,
        /// Seeders in the run.
        seeders: u32,
    },
    /// The routing core refused the table or lookup parameters (k, α…).
    #[error("invalid routing parameters: {0}")]
    Routing(#[from] ConfigError),
}
