//! `cargo xtask image`: the container image of deploy/Containerfile, built offline.
//!
//! No base image can be pulled, so the image is `FROM scratch` with a statically linked `bavard`:
//! built for the host's musl target when it is installed, else for the host's glibc target with
//! `-C target-feature=+crt-static` (a static glibc binary). The binary and an empty `data`
//! directory (the volume's mount point) make the build context, and `podman build` (or
//! `buildah build`) builds deploy/Containerfile on it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};

/// Options of `cargo xtask image`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The image's name and tag.
    #[arg(long, default_value = "localhost/bavard:latest")]
    tag: String,
    /// The Rust target to build for [default: the host's musl target when installed, else its
    /// gnu target, linked statically].
    #[arg(long)]
    target: Option<String>,
    /// Use the binary already built for the target instead of running cargo.
    #[arg(long)]
    no_build: bool,
    /// Container tool: podman or buildah [default: the first one installed].
    #[arg(long, value_parser = ["podman", "buildah"])]
    engine: Option<String>,
}

/// Builds the binary and the image.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    // Look for the tool first: a missing one should not cost a release build.
    let engine = match &args.engine {
        Some(e) => e.clone(),
        None => find_engine(|tool| which(tool).is_some())?,
    };
    let installed = installed_targets();
    let target = match &args.target {
        Some(t) => t.clone(),
        None => default_target(std::env::consts::ARCH, &installed),
    };
    let static_flags = static_rustflags(&target);
    if !args.no_build {
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.current_dir(&root).args([
            "build",
            "--release",
            "--locked",
            "--target",
            &target,
            "-p",
            "bavard-node",
            "--bin",
            "bavard",
        ]);
        if let Some(flags) = static_flags {
            let mut all = std::env::var("RUSTFLAGS").unwrap_or_default();
            if !all.is_empty() {
                all.push(' ');
            }
            all.push_str(flags);
            cargo.env("RUSTFLAGS", all);
        }
        eprintln!("building the static binary for {target} …");
        let status = cargo.status().context("cannot run cargo")?;
        ensure!(status.success(), "cargo build failed ({status})");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target_dir.join(&target).join("release").join("bavard");
    let bytes = std::fs::read(&binary).with_context(|| {
        format!(
            "cannot read {} (build it, or drop --no-build)",
            binary.display()
        )
    })?;
    ensure!(
        is_static_elf(&bytes)?,
        "{} is dynamically linked (it has an ELF interpreter): an image FROM scratch has no \
         libc; build for a musl target or with RUSTFLAGS='-C target-feature=+crt-static'",
        binary.display()
    );

    let context = target_dir.join("image-context");
    if context.exists() {
        std::fs::remove_dir_all(&context)
            .with_context(|| format!("cannot clear {}", context.display()))?;
    }
    std::fs::create_dir_all(context.join("data"))?;
    std::fs::copy(&binary, context.join("bavard"))
        .with_context(|| format!("cannot copy {} into the context", binary.display()))?;
    let containerfile = root.join("deploy/Containerfile");
    eprintln!(
        "{engine} build -f {} -t {} {}",
        containerfile.display(),
        args.tag,
        context.display()
    );
    let status = Command::new(&engine)
        .arg(if engine == "buildah" { "bud" } else { "build" })
        .arg("-f")
        .arg(&containerfile)
        .arg("-t")
        .arg(&args.tag)
        .arg(&context)
        .status()
        .with_context(|| format!("cannot run {engine}"))?;
    ensure!(status.success(), "{engine} build failed ({status})");
    eprintln!(
        "built {} ({} MiB binary, {target})",
        args.tag,
        bytes.len() / (1024 * 1024)
    );
    Ok(())
}

/// The first container tool installed, or an error that says how to get one.
fn find_engine(installed: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    for tool in ["podman", "buildah"] {
        if installed(tool) {
            return Ok(tool.to_string());
        }
    }
    bail!(
        "neither podman nor buildah is installed: `cargo xtask image` builds the image with one \
         of them (Debian: apt-get install podman)"
    )
}

/// The host's musl target when rustup has it, else its gnu target.
fn default_target(arch: &str, installed: &[String]) -> String {
    let musl = format!("{arch}-unknown-linux-musl");
    if installed.contains(&musl) {
        musl
    } else {
        format!("{arch}-unknown-linux-gnu")
    }
}

/// The flags that link `target` statically (musl targets do by default).
fn static_rustflags(target: &str) -> Option<&'static str> {
    (!target.contains("musl")).then_some("-C target-feature=+crt-static")
}

/// The targets rustup has installed (none known without rustup).
fn installed_targets() -> Vec<String> {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The path of `tool` on PATH.
fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether a 64-bit little-endian ELF file has no program interpreter (`PT_INTERP`): it runs
/// without a dynamic loader or shared libraries (static, or static-pie).
fn is_static_elf(bytes: &[u8]) -> anyhow::Result<bool> {
    const PT_INTERP: u32 = 3;
    ensure!(
        bytes.len() >= 64 && bytes[..4] == *b"\x7fELF",
        "not an ELF file"
    );
    ensure!(
        bytes[4] == 2 && bytes[5] == 1,
        "not a 64-bit little-endian ELF file"
    );
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let header = bytes
            .get(at..at + 4)
            .context("program header past the end of the file")?;
        if u32::from_le_bytes(header.try_into()?) == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with program headers of the given types.
    fn elf(types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for t in types {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            b.extend(ph);
        }
        b
    }

    #[test]
    fn an_interpreter_means_dynamic() {
        assert!(
            is_static_elf(&elf(&[1, 2, 1])).unwrap(),
            "static-pie has PT_DYNAMIC only"
        );
        assert!(!is_static_elf(&elf(&[6, 3, 1, 2])).unwrap());
        assert!(is_static_elf(b"#!/bin/sh\n").is_err());
        let mut truncated = elf(&[1, 1]);
        truncated.truncate(100);
        assert!(is_static_elf(&truncated).is_err());
    }

    #[test]
    fn the_test_binary_itself_is_read() {
        // This test binary is an ELF file of the host; whatever its linking, it parses.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        is_static_elf(&me).unwrap();
    }

    #[test]
    fn musl_when_installed_else_static_glibc() {
        let none: Vec<String> = vec!["x86_64-unknown-linux-gnu".into()];
        assert_eq!(default_target("x86_64", &none), "x86_64-unknown-linux-gnu");
        let musl = vec!["x86_64-unknown-linux-musl".to_string()];
        assert_eq!(default_target("x86_64", &musl), "x86_64-unknown-linux-musl");
        assert_eq!(static_rustflags("x86_64-unknown-linux-musl"), None);
        assert_eq!(
            static_rustflags("x86_64-unknown-linux-gnu"),
            Some("-C target-feature=+crt-static")
        );
    }

    #[test]
    fn a_missing_container_tool_says_how_to_install_one() {
        let err = find_engine(|_| false).unwrap_err().to_string();
        assert!(err.contains("apt-get install podman"), "{err}");
        assert_eq!(find_engine(|t| t == "buildah").unwrap(), "buildah");
        assert_eq!(find_engine(|_| true).unwrap(), "podman");
    }
}
