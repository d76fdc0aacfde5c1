//! `cargo xtask codegen [--check]`: protobuf code generation.
//!
//! Compiles every `proto/*.proto` with [protox] (a pure-Rust `.proto` compiler, so no
//! `protoc` is needed) and generates Rust types with [prost_build], formatted by
//! prettyplease (prost-build's `format` feature). The output is one file per protobuf
//! package in `crates/bavard-proto/src/generated/`, named after the `.proto` file that
//! declares the package (`proto/kad.proto`, package `dht.pb` → `kad.rs`), or after the
//! package itself (`a.b` → `a_b.rs`) when several files share it. Each file starts with
//! a "generated, do not edit" preamble naming its sources.
//!
//! The generated files are checked in, so building bavard-proto needs neither protox nor
//! a build script. `--check` regenerates in memory and fails, naming each stale, missing
//! or orphaned file, when the checked-in code differs; the unit test
//! `generated_code_is_fresh` runs the same check under `cargo test`.
//!
//! Packages are generated as independent, flat modules: a `.proto` that imports a type
//! from another package would need the modules nested to match the package path.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Where the `.proto` files live, relative to the workspace root.
const PROTO_DIR: &str = "proto";
/// Where the generated Rust files go, relative to the workspace root.
const OUT_DIR: &str = "crates/bavard-proto/src/generated";

/// Arguments of `cargo xtask codegen`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Do not write anything: regenerate in memory and fail if the checked-in files differ.
    #[arg(long)]
    check: bool,
}

/// Runs the subcommand.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let generated = generate(&root)?;
    let out_dir = root.join(OUT_DIR);
    if args.check {
        let problems = check(&out_dir, &generated)?;
        if problems.is_empty() {
            println!("codegen: {} generated file(s) up to date", generated.len());
            return Ok(());
        }
        for problem in &problems {
            eprintln!("codegen: {problem}");
        }
        // A plain message and exit code: this is an expected outcome, not a crash.
        eprintln!(
            "codegen: {} generated file(s) out of date; run `cargo xtask codegen`",
            problems.len()
        );
        std::process::exit(1);
    }
    write(&out_dir, &generated)
}

/// A checked-in generated file that does not match what codegen would produce now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The file should exist but does not.
    Missing(PathBuf),
    /// The file exists with different contents.
    Stale(PathBuf),
    /// The file exists but no `.proto` produces it any more.
    Orphaned(PathBuf),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing(p) => write!(f, "missing: {}", p.display()),
            Problem::Stale(p) => write!(f, "stale: {}", p.display()),
            Problem::Orphaned(p) => write!(f, "orphaned (no .proto produces it): {}", p.display()),
        }
    }
}

/// Generates the code for every `.proto` under `root/proto`, in memory.
///
/// Returns the generated files by name (e.g. `kad.rs`), each with its preamble.
pub(crate) fn generate(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let proto_dir = root.join(PROTO_DIR);
    let mut protos: Vec<PathBuf> = fs::read_dir(&proto_dir)
        .with_context(|| format!("reading {}", proto_dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", proto_dir.display()))?;
    protos.retain(|p| p.extension().is_some_and(|ext| ext == "proto"));
    protos.sort();
    if protos.is_empty() {
        bail!("no .proto files in {}", proto_dir.display());
    }
    // protox names each file by its path relative to the include directory.
    let ours: BTreeSet<String> = protos
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .collect();

    let fds = protox::compile(&protos, [&proto_dir])
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("compiling the .proto files")?;

    // Group our files (not imported well-known types) by package.
    let mut packages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut requests = Vec::new();
    for file in fds.file {
        let name = file.name().to_owned();
        if !ours.contains(&name) {
            continue;
        }
        let package = file.package().to_owned();
        packages.entry(package.clone()).or_default().push(name);
        requests.push((
            prost_build::Module::from_protobuf_package_name(&package),
            file,
        ));
    }

    let mut code = prost_build::Config::new()
        .generate(requests)
        .context("generating Rust code with prost-build")?;

    let mut out = BTreeMap::new();
    for (package, files) in &packages {
        let module = prost_build::Module::from_protobuf_package_name(package);
        // prost-build drops packages that generate nothing (e.g. a file of comments only).
        let Some(body) = code.remove(&module) else {
            continue;
        };
        let file_name = output_file_name(package, files)?;
        let sources: Vec<String> = files.iter().map(|f| format!("{PROTO_DIR}/{f}")).collect();
        let content = format!(
            "// @generated by cargo xtask codegen from {}. Do not edit.\n{body}",
            sources.join(", ")
        );
        if out.insert(file_name.clone(), content).is_some() {
            bail!("two protobuf packages would both generate {OUT_DIR}/{file_name}; rename one");
        }
    }
    Ok(out)
}

/// The output file name for `package`, declared by `files` (names relative to `proto/`).
fn output_file_name(package: &str, files: &[String]) -> anyhow::Result<String> {
    match files {
        [single] => {
            let stem = single.strip_suffix(".proto").unwrap_or(single);
            Ok(format!("{stem}.rs"))
        }
        _ if package.is_empty() => bail!(
            "{} declare no package; give each a `package` so each gets its own module",
            files.join(", ")
        ),
        _ => Ok(format!("{}.rs", package.replace('.', "_"))),
    }
}

/// Compares the generated files with the contents of `out_dir`.
pub(crate) fn check(
    out_dir: &Path,
    generated: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<Problem>> {
    let mut problems = Vec::new();
    for (name, content) in generated {
        let path = out_dir.join(name);
        match fs::read_to_string(&path) {
            Ok(existing) if existing == *content => {}
            Ok(_) => problems.push(Problem::Stale(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(Problem::Missing(path));
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    for path in existing_rs_files(out_dir)? {
        let known = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| generated.contains_key(n));
        if !known {
            problems.push(Problem::Orphaned(path));
        }
    }
    Ok(problems)
}

/// Writes the generated files into `out_dir` (only those that changed) and removes
/// orphaned `.rs` files: the directory belongs to codegen.
fn write(out_dir: &Path, generated: &BTreeMap<String, String>) -> anyhow::Result<()> {
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for problem in check(out_dir, generated)? {
        match &problem {
            Problem::Missing(path) | Problem::Stale(path) => {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                fs::write(path, &generated[name])
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Problem::Orphaned(path) => {
                fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        println!("codegen: fixed {problem}");
    }
    println!("codegen: {} generated file(s) up to date", generated.len());
    Ok(())
}

/// The `.rs` files directly in `dir` (none if `dir` does not exist).
fn existing_rs_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard rust-analyzer's xtask uses: `cargo test` fails when someone edits a
    /// `.proto` (or upgrades prost) without rerunning `cargo xtask codegen`.
    #[test]
    fn generated_code_is_fresh() {
        let root = crate::workspace_root();
        let generated = generate(&root).expect("codegen runs");
        let problems = check(&root.join(OUT_DIR), &generated).expect("check runs");
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            problems.is_empty(),
            "checked-in generated code is out of date, run `cargo xtask codegen`:\n{}",
            listed.join("\n")
        );
    }

    #[test]
    fn kad_proto_generates_kad_rs_with_preamble() {
        let generated = generate(&crate::workspace_root()).expect("codegen runs");
        let kad = generated.get("kad.rs").expect("kad.rs is generated");
        assert!(kad.starts_with(
            "// @generated by cargo xtask codegen from proto/kad.proto. Do not edit.\n"
        ));
        assert!(kad.contains("pub struct Message"));
    }

    #[test]
    fn check_names_missing_stale_and_orphaned_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("old.rs"), "// @generated\n").unwrap();
        fs::write(dir.path().join("b.rs"), "// edited by hand\n").unwrap();
        let generated = BTreeMap::from([
            ("a.rs".to_owned(), "// a\n".to_owned()),
            ("b.rs".to_owned(), "// b\n".to_owned()),
        ]);

        let problems = check(dir.path(), &generated).unwrap();

        assert_eq!(
            problems,
            [
                Problem::Missing(dir.path().join("a.rs")),
                Problem::Stale(dir.path().join("b.rs")),
                Problem::Orphaned(dir.path().join("old.rs")),
            ]
        );
    }

    #[test]
    fn write_fixes_every_problem_so_check_then_passes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("generated");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("old.rs"), "// @generated\n").unwrap();
        let generated = BTreeMap::from([("a.rs".to_owned(), "// a\n".to_owned())]);

        write(&out, &generated).unwrap();

        assert_eq!(check(&out, &generated).unwrap(), []);
        assert_eq!(fs::read_to_string(out.join("a.rs")).unwrap(), "// a\n");
        assert!(!out.join("old.rs").exists());
    }

    #[test]
    fn a_package_shared_by_several_files_is_named_after_the_package() {
        let files = ["a.proto".to_owned(), "b.proto".to_owned()];
        assert_eq!(
            output_file_name("bavard.gossip", &files).unwrap(),
            "bavard_gossip.rs"
        );
        assert_eq!(output_file_name("dht.pb", &files[..1]).unwrap(), "a.rs");
        assert!(output_file_name("", &files).is_err());
    }
}
