//! `cargo xtask bench antientropy ARGS…`: what an anti-entropy round costs on the real store.
//!
//! Runs `cargo run --release -p bavard-replica --example antientropy -- ARGS…` (see that
//! example for the arguments: `--keys`, `--catch-up`, `--value-size`, `--rounds`, `--dir`,
//! `--json`); the stores are built once under `target/bench-antientropy` and reused.

use std::ffi::OsString;
use std::process::Command;

use anyhow::Context as _;

/// Arguments of `cargo xtask bench antientropy`: forwarded to the example.
#[derive(Debug, clap::Args)]
pub(crate) struct AntiEntropyArgs {
    /// Arguments for the benchmark (`--keys N`, `--catch-up N`, `--value-size B`, `--rounds R`,
    /// `--dir DIR`, `--json`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// Runs the benchmark and exits with its exit code.
pub(crate) fn run(args: &AntiEntropyArgs) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(crate::workspace_root())
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "bavard-replica",
            "--example",
            "antientropy",
            "--",
        ])
        .args(&args.args)
        .status()
        .context("could not start `cargo run -p bavard-replica --example antientropy`")?;
    if status.success() {
        return Ok(());
    }
    std::process::exit(status.code().unwrap_or(1));
}
