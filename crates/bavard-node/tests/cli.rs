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
    dir: PathBuf,
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

/// Starts a node; with `first`, it joins `first`'s cluster with a token `first` issued.
fn start(dir: PathBuf, first: Option<&Proc>) -> Proc {
    start_with_api(dir, first, "127.0.0.1:0")
}

fn start_with_api(dir: PathBuf, first: Option<&Proc>, api: &str) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", api])
        .arg("--data-dir")
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(first) = first {
        let token = bavard(&[
            "cluster",
            "token",
            "--data-dir",
            first.dir.to_str().unwrap(),
        ]);
        assert!(
            token.status.success(),
            "{}",
            String::from_utf8_lossy(&token.stderr)
        );
        let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
        cmd.args(["--bootstrap", &first.p2p, "--join", &token]);
    }
    let child = cmd.spawn().expect("bavard starts");
    let info = wait_node_json(&dir);
    let peer = info["peer_id"].as_str().unwrap().to_string();
    let addr = info["listen_addrs"][0].as_str().unwrap().to_string();
    Proc {
        child,
        api: format!("http://{}", info["api"].as_str().unwrap()),
        p2p: format!("{addr}/p2p/{peer}"),
        dir,
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

/// A node whose log goes to a file (not a terminal) writes plain text: no colour escapes for
/// log files and journald.
#[test]
fn a_log_written_to_a_file_has_no_colour_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("node.log");
    let child = Command::new(BIN)
        .args([
            "node",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("bavard node starts");
    let node = Proc {
        child,
        api: String::new(),
        p2p: String::new(),
        dir: dir.path().to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("INFO") {
            break log;
        }
        assert!(Instant::now() < deadline, "no INFO line in the log: {log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(node);
    assert!(
        !log.contains('\u{1b}'),
        "colour escapes in a log file: {log:?}"
    );
}

#[test]
fn put_on_one_node_get_on_another_and_a_missing_key_says_not_found() {
    let root = tempfile::tempdir().unwrap();
    let first = start(root.path().join("n0"), None);
    let others: Vec<Proc> = (1..3)
        .map(|i| start(root.path().join(format!("n{i}")), Some(&first)))
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

    // Compare-and-set: a failed condition exits 1 naming the current version; the right
    // version swaps the value, which a serial read through another node sees.
    let version = reply["version"].as_str().unwrap().to_string();
    let taken = bavard(&[
        "put",
        "greeting",
        "again",
        "--if-absent",
        "--api",
        &first.api,
    ]);
    assert_eq!(taken.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains(&version),
        "the error names the current version: {}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let swapped = until_ok(&[
        "put",
        "greeting",
        "swapped",
        "--if-version",
        &version,
        "--api",
        &others[0].api,
    ]);
    let swapped: serde_json::Value = serde_json::from_slice(&swapped.stdout).unwrap();
    assert!(swapped["round_trips"].as_u64() >= Some(2), "{swapped}");
    let serial = until_ok(&[
        "get",
        "greeting",
        "--consistency",
        "serial",
        "--api",
        &others[1].api,
    ]);
    assert_eq!(serial.stdout, b"swapped");
    let stale = bavard(&[
        "delete",
        "greeting",
        "--if-version",
        &version,
        "--api",
        &first.api,
    ]);
    assert_eq!(
        stale.status.code(),
        Some(1),
        "the old version no longer matches"
    );
    // A binary key, written in hex on one node and in base64url on another.
    let put = until_ok(&[
        "put",
        "00ff10",
        "binary",
        "--key-encoding",
        "hex",
        "--api",
        &first.api,
    ]);
    let reply: serde_json::Value = serde_json::from_slice(&put.stdout).unwrap();
    assert_eq!(
        (&reply["key_encoding"], &reply["key_hex"]),
        (&serde_json::json!("hex"), &serde_json::json!("00ff10"))
    );
    let get = until_ok(&[
        "get",
        "AP8Q",
        "--key-encoding",
        "base64url",
        "--api",
        &others[0].api,
    ]);
    assert_eq!(get.stdout, b"binary");
    let bad = bavard(&["get", "xyz", "--key-encoding", "hex", "--api", &first.api]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not hex"));

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

#[test]
fn an_api_off_loopback_needs_the_token_and_a_foreign_host_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("open");
    // Bound to every interface: the token is required.
    let node = start_with_api(dir.clone(), None, "0.0.0.0:0");
    let port = node.api.rsplit(':').next().unwrap().to_string();
    let api = format!("http://127.0.0.1:{port}");
    let token_file = dir.join("api.token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the token is readable by its owner only"
        );
    }
    let put = ["put", "k", "v", "--consistency", "one", "--api", &api];
    let denied = bavard(&put);
    assert_eq!(denied.status.code(), Some(1));
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("401") && err.contains("token"), "{err}");
    // --data-dir gives the CLI both the address and the token.
    let data_dir = dir.to_str().unwrap();
    let ok = until_ok(&[
        "put",
        "k",
        "v",
        "--consistency",
        "one",
        "--data-dir",
        data_dir,
    ]);
    assert!(String::from_utf8_lossy(&ok.stdout).contains("\"acks\""));
    // So does --token (or BAVARD_TOKEN).
    let token = std::fs::read_to_string(&token_file).unwrap();
    let ok = bavard(&[
        "get",
        "k",
        "--consistency",
        "one",
        "--api",
        &api,
        "--token",
        token.trim(),
    ]);
    assert_eq!(ok.stdout, b"v", "{}", String::from_utf8_lossy(&ok.stderr));
    // A request naming another host is refused, token or not (DNS rebinding).
    let raw = raw_get(
        &format!("127.0.0.1:{port}"),
        "/v1/status",
        "evil.example",
        Some(token.trim()),
    );
    assert!(raw.starts_with("HTTP/1.1 421"), "{raw}");
}

#[test]
fn on_loopback_the_api_is_open_but_admin_calls_need_the_token() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("local");
    let node = start(dir.clone(), None);
    let addr = node.api.trim_start_matches("http://").to_string();
    let raw = raw_get(&addr, "/v1/status", "localhost", None);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let peer = "12D3KooWGRUVh6BqoKBYgGBoAXXGuoeFAqsvAaLwAQBQZxjcZUyT";
    let admin = raw_request(
        &addr,
        "PUT",
        &format!("/v1/admin/blocked/{peer}"),
        "127.0.0.1",
        None,
    );
    assert!(admin.starts_with("HTTP/1.1 401"), "{admin}");
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    let admin = raw_request(
        &addr,
        "PUT",
        &format!("/v1/admin/blocked/{peer}"),
        "127.0.0.1",
        Some(token.trim()),
    );
    assert!(admin.starts_with("HTTP/1.1 200"), "{admin}");
}

fn raw_get(addr: &str, path: &str, host: &str, token: Option<&str>) -> String {
    raw_request(addr, "GET", path, host, token)
}

/// One HTTP/1.1 request with a chosen `Host` header; the whole answer as text.
fn raw_request(addr: &str, method: &str, path: &str, host: &str, token: Option<&str>) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn dht_and_signed_records_from_the_command_line() {
    let root = tempfile::tempdir().unwrap();
    let node = start(root.path().join("n"), None);
    let api = node.api.as_str();
    until_ok(&["dht-put", "opaque-key", "opaque value", "--api", api]);
    let got = bavard(&["dht-get", "opaque-key", "--api", api]);
    assert_eq!(got.stdout, b"opaque value");
    // Never a KV value.
    let kv = bavard(&["get", "opaque-key", "--consistency", "one", "--api", api]);
    assert_eq!(kv.status.code(), Some(1));

    let key_file = root.path().join("signing.key");
    let keygen = bavard(&["keygen", "--key-file", key_file.to_str().unwrap()]);
    assert!(keygen.status.success());
    let public = String::from_utf8(keygen.stdout).unwrap().trim().to_string();
    assert_eq!(public.len(), 64);
    let again = bavard(&["keygen", "--key-file", key_file.to_str().unwrap()]);
    assert!(
        !again.status.success(),
        "an existing key is not overwritten"
    );
    let kf = key_file.to_str().unwrap();
    let first = bavard(&[
        "sign-put",
        "v1",
        "--key-file",
        kf,
        "--salt",
        "s",
        "--api",
        api,
    ]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = bavard(&[
        "sign-put",
        "v2",
        "--key-file",
        kf,
        "--salt",
        "s",
        "--api",
        api,
    ]);
    assert!(String::from_utf8_lossy(&second.stdout).contains("\"seq\": 2"));
    let got = bavard(&["signed-get", &public, "--salt", "s", "--api", api]);
    assert_eq!(got.stdout, b"v2");
    let stale = bavard(&[
        "sign-put",
        "old",
        "--key-file",
        kf,
        "--salt",
        "s",
        "--seq",
        "1",
        "--api",
        api,
    ]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("409"));
    let missing = bavard(&["signed-get", &public, "--salt", "nope", "--api", api]);
    assert_eq!(missing.status.code(), Some(1));
}
