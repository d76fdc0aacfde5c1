//! `cargo xtask sim ARGS…`: runs the deterministic simulator.
//!
//! Every argument after `sim` is passed unchanged to
//! `cargo run --release --quiet -p bavard-sim --bin bavard-sim -- ARGS…`, and the
//! simulator's exit code becomes ours, so `cargo xtask sim lookup --nodes 10` behaves
//! exactly like the `bavard-sim` binary.

use std::ffi::OsString;
use std::process::Command;

use anyhow::Context;

/// Arguments of `cargo xtask sim`: everything is forwarded to `bavard-sim`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Arguments for the bavard-sim binary. `cargo xtask sim --help` shows this help;
    /// `cargo xtask sim -- --help` shows the simulator's.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// Builds the `cargo run` command that runs the simulator with `args`.
fn command(args: &[OsString]) -> Command {
    // Use the cargo that runs us, so a pinned toolchain is honoured.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate::workspace_root())
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "bavard-sim",
            "--bin",
            "bavard-sim",
            "--",
        ])
        .args(args);
    cmd
}

/// Runs the simulator and exits with its exit code.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let status = command(&args.args)
        .status()
        .context("could not start `cargo run -p bavard-sim`")?;
    if status.success() {
        return Ok(());
    }
    // A simulator killed by a signal has no code; report it as a plain failure.
    std::process::exit(status.code().unwrap_or(1));
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::{Cli, Command};

    #[test]
    fn sim_forwards_every_trailing_argument_including_flags() {
        let cli = Cli::parse_from(["cargo xtask", "sim", "lookup", "--nodes", "10", "--json"]);
        let Command::Sim(args) = cli.command else {
            panic!("`sim` parsed as another subcommand: {cli:?}");
        };
        let cmd = super::command(&args.args);
        let argv: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            argv,
            [
                "run",
                "--release",
                "--quiet",
                "-p",
                "bavard-sim",
                "--bin",
                "bavard-sim",
                "--",
                "lookup",
                "--nodes",
                "10",
                "--json"
            ]
        );
    }

    #[test]
    fn sim_passes_help_through_after_a_double_dash() {
        let cli = Cli::parse_from(["cargo xtask", "sim", "--", "--help"]);
        let Command::Sim(args) = cli.command else {
            panic!("`sim` parsed as another subcommand: {cli:?}");
        };
        assert_eq!(args.args, ["--help"]);
    }
}
