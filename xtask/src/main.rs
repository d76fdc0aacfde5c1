//! `cargo xtask`: project automation, in the style of rust-analyzer's xtask.
//!
//! One binary, one module per subcommand. To add a subcommand, add a module with an
//! `Args` struct (deriving [`clap::Args`]) and a `run(&Args) -> anyhow::Result<()>`
//! function, then a variant to [`Command`] and an arm to `main`.
//!
//! The xtask stays small: few dependencies and no logic that the product itself needs.

mod acceptance;
mod antientropy;
mod bench;
mod cluster;
mod codegen;
mod etcd;
mod faults;
mod http;
mod image;
mod interrupt;
mod netns;
mod outage;
mod prom;
mod runs;
mod scenario;
mod schedule;
mod sim;
mod stock;
mod versus;
mod workload;
mod wrk;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

/// Project automation for the bavard workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The tasks `cargo xtask` knows.
#[derive(Debug, Subcommand)]
enum Command {
    /// Regenerate the prost types in crates/bavard-proto/src/generated/ from proto/*.proto.
    Codegen(codegen::Args),
    /// Run a local cluster of bavard nodes: up, status, kill, pause, resume, restart,
    /// partition, isolate, heal, down.
    Cluster(cluster::Args),
    /// Benchmarks against a local cluster (`bench dht [--vs-stock]`, `bench kv [--vs etcd]`).
    Bench(bench::Args),
    /// Fault-injection scenarios with a correctness check: churn, partition, crash, pause.
    Scenario(scenario::Args),
    /// Run the bavard simulator (`bavard-sim`, release build), forwarding every argument.
    Sim(sim::Args),
    /// Acceptance checks on real processes, as a new user would try them: `gossip`.
    Acceptance(acceptance::Args),
    /// Build the container image of deploy/Containerfile (a static `bavard`, FROM scratch)
    /// with podman or buildah, offline.
    Image(image::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Codegen(args) => codegen::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Scenario(args) => scenario::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Acceptance(args) => acceptance::run(args),
        Command::Image(args) => image::run(args),
    };
    // An error caused by a Ctrl-C (a killed child) waits for the teardown to finish.
    interrupt::hold_if_interrupted();
    result
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}
