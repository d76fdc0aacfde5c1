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
mod bench_blobs;
mod blob_swarm;
mod cas;
mod cluster;
mod codegen;
mod etcd;
mod faults;
mod http;
mod image;
mod interrupt;
mod monitor;
mod netns;
mod outage;
mod prom;
mod runs;
mod scenario;
mod schedule;
mod sim;
mod soak;
mod stock;
mod ui;
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
    /// Run a local cluster of bavard nodes: up [--monitor], status, kill, pause, resume,
    /// restart, partition, isolate, heal, down, ui.
    Cluster(cluster::Args),
    /// Benchmarks against a local cluster (`bench dht [--vs-stock]`, `bench kv [--vs etcd]`,
    /// `bench blobs`).
    Bench(bench::Args),
    /// Fault-injection scenarios with a correctness check: churn, partition, crash, pause,
    /// outage, soak, cas, blobs.
    Scenario(scenario::Args),
    /// A long run of churn, partitions and a hostile peer's request flood under client load,
    /// reporting memory, descriptors and the victim's responsiveness (`scenario soak`, with a
    /// default of 600 s).
    Soak(soak::Args),
    /// Run the bavard simulator (`bavard-sim`, release build), forwarding every argument.
    Sim(sim::Args),
    /// Acceptance checks on real processes, as a new user would try them: `gossip`.
    Acceptance(acceptance::Args),
    /// Build the container image of deploy/Containerfile (a static `bavard`, FROM scratch)
    /// with podman or buildah, offline.
    Image(image::Args),
}

fn main() -> anyhow::Result<()> {
    quiet_broken_pipe();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Codegen(args) => codegen::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Scenario(args) => scenario::run(args),
        Command::Soak(args) => soak::run_args(args),
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

/// Makes a write to a closed pipe (`… | head`) end the process quietly, as Unix tools do
/// (status 141, 128 + SIGPIPE), instead of panicking in `println!`. Rust ignores SIGPIPE, so
/// the write fails with `BrokenPipe` and `print!` panics with that message; other panics keep
/// the default report.
fn quiet_broken_pipe() {
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
