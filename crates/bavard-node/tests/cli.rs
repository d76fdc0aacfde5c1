//! The `bavard` binary against real processes on loopback: `node`, `put`, `get`, and the errors
//! a user sees.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bavard");

/// A `bavard node` process, killed when dropped.
struct Proc {
    child: Child,
    api: String,
    p2p: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `node.json` to appear and returns it.
fn wait_node_json(dir: &Path) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("node.json"))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "node.json did not appear in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(dir: PathBuf, bootstrap: Option<&str>) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "node",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(&dir)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let child = cmd.spawn().expect("bavard starts");
    let info = wait_node_json(&dir);
    let peer = info["peer_id"].as_str().unwrap().to_string();
    let addr = info["listen_addrs"][0].as_str().unwrap().to_string();
    Proc {
        child,
        api: format!("http://{}", info["api"].as_str().unwrap()),
        p2p: format!("{addr}/p2p/{peer}"),
    }
}

fn bavard(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("bavard runs")
}

/// Runs a client command until it succeeds (the cluster may still be joining).
fn until_ok(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = bavard(args);
        if out.status.success() {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} kept failing: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn put_on_one_node_get_on_another_and_a_missing_key_says_not_found() {
    let root = tempfile::tempdir().unwrap();
    let first = start(root.path().join("n0"), None);
    let others: Vec<Proc> = (1..3)
        .map(|i| start(root.path().join(format!("n{i}")), Some(&first.p2p)))
        .collect();

    // Wait until the last node sees both others alive.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = bavard(&["status", "--api", &others[1].api]);
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        if status["members_alive"].as_u64() >= Some(3) {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster did not form");
        std::thread::sleep(Duration::from_millis(200));
    }

    let put = until_ok(&["put", "greeting", "hello world", "--api", &first.api]);
    let reply: serde_json::Value = serde_json::from_slice(&put.stdout).unwrap();
    assert_eq!(reply["key"], "greeting");
    assert!(reply["acks"].as_u64().unwrap() >= 2);

    let get = until_ok(&["get", "greeting", "--api", &others[1].api]);
    assert_eq!(get.stdout, b"hello world");

    let missing = bavard(&["get", "nobody-wrote-this", "--api", &others[0].api]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&missing.stderr).trim(), "not found");
    assert!(missing.stdout.is_empty());

    let bad = bavard(&[
        "put",
        "k",
        "v",
        "--consistency",
        "most",
        "--api",
        &first.api,
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("consistency"),
        "the error names the bad flag: {}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let unreachable = bavard(&["status", "--api", "http://127.0.0.1:9"]);
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"));
}

#[test]
fn a_node_restarted_on_its_data_dir_keeps_its_peer_id_and_records() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("solo");
    let node = start(dir.clone(), None);
    let id = wait_node_json(&dir)["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    until_ok(&[
        "put",
        "kept",
        "across restarts",
        "--consistency",
        "one",
        "--api",
        &node.api,
    ]);
    drop(node); // SIGKILL: the acknowledged write must already be on disk.
    std::fs::remove_file(dir.join("node.json")).unwrap();
    let node = start(dir.clone(), None);
    assert_eq!(wait_node_json(&dir)["peer_id"].as_str().unwrap(), id);
    let get = until_ok(&["get", "kept", "--consistency", "one", "--api", &node.api]);
    assert_eq!(get.stdout, b"across restarts");
}
