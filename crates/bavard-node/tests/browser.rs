//! The web console (`GET /ui`) in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, with `fantoccini`) against node 0 of an in-process three-node cluster whose API
//! needs its token everywhere. The console must show the three members alive, show a killed one
//! dead, and deliver a message published from its form to its own subscribed feed. Screenshots
//! of the three moments go to `target/screenshots/`.
//!
//! Needs `chromedriver` on PATH and Chromium (Debian: `apt-get install chromium
//! chromium-driver`). Without them the test says it is skipped and passes, unless
//! `BAVARD_REQUIRE_BROWSER` is set (CI), where it fails.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bavard_node::Node;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const TOKEN: &str = "console-test-token-0123456789abcdef";
const TOPIC: &str = "console-news";
const INSTALL: &str = "apt-get install chromium chromium-driver";

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The chromedriver and Chromium binaries, or `None` (after saying so) when the test is skipped.
fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let driver = on_path("chromedriver");
    let chromium = std::env::var_os("BAVARD_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file()))
        .or_else(|| on_path("chromium"))
        .or_else(|| on_path("chromium-browser"));
    match (driver, chromium) {
        (Some(d), Some(c)) => Some((d, c)),
        (d, _) => {
            let missing = if d.is_none() {
                "chromedriver is not on PATH"
            } else {
                "no Chromium binary (/usr/bin/chromium, or set BAVARD_CHROMIUM)"
            };
            if std::env::var_os("BAVARD_REQUIRE_BROWSER").is_some() {
                panic!("{missing}; install it with: {INSTALL}");
            }
            eprintln!(
                "SKIPPED: {missing} (install: {INSTALL}; set BAVARD_REQUIRE_BROWSER=1 to fail instead)"
            );
            None
        }
    }
}

/// A chromedriver process on a free loopback port, killed (with the browsers it started) on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    async fn start(binary: &Path, log: &Path) -> ChromeDriver {
        use std::os::unix::process::CommandExt as _;
        // A free port: bind, read it, release. Another process may take it in between, so a
        // driver that exits at once is retried on a new port.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let log_file = std::fs::File::create(log).expect("chromedriver log");
            let child = Command::new(binary)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log handle"))
                .stderr(log_file)
                // Its own process group, so that drop ends the browsers it started too.
                .process_group(0)
                .spawn()
                .expect("start chromedriver");
            let mut driver = ChromeDriver {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            if driver.wait_ready().await {
                return driver;
            }
        }
        panic!("chromedriver did not become ready (log: {})", log.display());
    }

    /// Polls `GET /status` until the driver is ready; false when it exited or never became so.
    async fn wait_ready(&mut self) -> bool {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let ready = http
                .get(format!("{}/status", self.url))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()
                .map(|r| r.json::<Value>());
            if let Some(body) = ready
                && body.await.ok().and_then(|v| v["value"]["ready"].as_bool()) == Some(true)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The whole group, by its id (the driver's pid): the driver and any browser left over
        // by a failed test.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every 100 ms until it yields a value, panicking after `timeout` with `what`.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `script` in the page; `None` on any WebDriver error (the caller polls again).
async fn eval(client: &Client, script: &str) -> Option<Value> {
    client.execute(script, vec![]).await.ok()
}

/// The members table as the page shows it: `(data-peer, data-state)` per row.
async fn member_rows(client: &Client) -> Vec<(String, String)> {
    let rows = eval(
        client,
        "return Array.from(document.querySelectorAll('#members-body tr'))
             .map(r => [r.dataset.peer, r.dataset.state]);",
    )
    .await
    .unwrap_or(Value::Null);
    serde_json::from_value(rows).unwrap_or_default()
}

async fn type_into(client: &Client, css: &str, text: &str) {
    let input = client.find(Locator::Css(css)).await.expect(css);
    input.clear().await.expect("clear");
    input.send_keys(text).await.expect("type");
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .expect(css)
        .click()
        .await
        .expect("click");
}

async fn screenshot(client: &Client, dir: &Path, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("write the screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// Serves node 0's API on loopback, but with the token required everywhere (as on a
/// non-loopback address), so that the page has to ask for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_members_alive_then_dead_and_delivers_a_published_message() {
    let Some((driver_bin, chromium)) = browser_binaries() else {
        return;
    };
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory");
    let shots = target.join("screenshots");
    std::fs::create_dir_all(&shots).expect("create target/screenshots");

    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let first = Node::start(fast_gossip_config(&dir.path().join("n0"), true))
        .await
        .unwrap();
    let boot = p2p_addr(&first);
    let mut nodes = vec![first];
    for i in 1..3 {
        let mut c = fast_gossip_config(&dir.path().join(format!("n{i}")), true);
        c.bootstrap = vec![boot.clone()];
        nodes.push(Node::start(c).await.unwrap());
    }
    let base = serve_api_with(
        &nodes[0],
        bavard_node::http::Access::with_token(TOKEN, true),
    )
    .await;

    // The assets need no token; the API does.
    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/ui")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let status = http.get(format!("{base}/v1/status")).send().await.unwrap();
    assert_eq!(status.status(), 401);

    let driver = ChromeDriver::start(&driver_bin, &target.join("tmp/chromedriver.log")).await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1100"],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session with headless Chromium");

    client.goto(&format!("{base}/ui")).await.expect("open /ui");

    // The first API call answers 401: the page shows the API's message and asks for the token.
    let refusal = wait_for(
        "the page to ask for the token",
        Duration::from_secs(20),
        || async {
            eval(
                &client,
                "const p = document.getElementById('token-panel');
             const e = document.getElementById('status-error');
             return p && !p.hidden && !e.hidden ? e.textContent : null;",
            )
            .await
            .and_then(|v| v.as_str().map(str::to_owned))
        },
    )
    .await;
    assert!(
        refusal.starts_with("401 unauthorized: ") && refusal.contains("needs the node's API token"),
        "{refusal}"
    );
    type_into(&client, "#token-input", TOKEN).await;
    click(&client, "#token-form button[type=submit]").await;

    // 1. Every member alive.
    let ids: Vec<String> = nodes.iter().map(|n| n.peer_id().to_string()).collect();
    wait_for(
        "three members alive in the table",
        Duration::from_secs(40),
        || async {
            let rows = member_rows(&client).await;
            ids.iter()
                .all(|id| rows.iter().any(|(p, s)| p == id && s == "alive"))
                .then_some(())
        },
    )
    .await;
    screenshot(&client, &shots, "console-1-alive.png").await;

    // 2. A killed node turns dead (maybe suspect first).
    let victim = nodes.pop().unwrap();
    let victim_id = victim.peer_id().to_string();
    victim.kill().await;
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    wait_for(
        "the killed member dead in the table",
        Duration::from_secs(40),
        || async {
            let state = member_rows(&client)
                .await
                .into_iter()
                .find(|(p, _)| *p == victim_id)
                .map(|(_, s)| s)?;
            let mut seen = seen.borrow_mut();
            if seen.last() != Some(&state) {
                seen.push(state.clone());
            }
            (state == "dead").then_some(())
        },
    )
    .await;
    eprintln!(
        "the killed member's states in the table: {:?}",
        seen.borrow()
    );
    screenshot(&client, &shots, "console-2-dead.png").await;

    // 3. Subscribe, publish from the form, see the message in the feed.
    type_into(&client, "#subscribe-topic", TOPIC).await;
    click(&client, "#subscribe-form button[type=submit]").await;
    let open = format!("#subscriptions li[data-subscription='{TOPIC}'][data-state='open']");
    wait_for(
        "the subscription to open",
        Duration::from_secs(20),
        || async { client.find(Locator::Css(&open)).await.ok().map(|_| ()) },
    )
    .await;
    let payload = "hello from the console";
    type_into(&client, "#publish-topic", TOPIC).await;
    type_into(&client, "#publish-payload", payload).await;
    click(&client, "#publish-button").await;
    let message_id = wait_for("the publish reply", Duration::from_secs(20), || async {
        let out = client.find(Locator::Css("#publish-result")).await.ok()?;
        out.attr("data-message-id").await.ok().flatten()
    })
    .await;
    let item = format!("#feed li[data-message-id='{message_id}'][data-topic='{TOPIC}']");
    let shown = wait_for(
        "the message in the feed",
        Duration::from_secs(20),
        || async {
            let li = client.find(Locator::Css(&item)).await.ok()?;
            li.find(Locator::Css(".payload"))
                .await
                .ok()?
                .text()
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(shown, payload);

    // The KV form: a put at quorum (two of three replicas are up) shows its version and acks,
    // and a get shows the value with that version.
    type_into(&client, "#kv-key", "greeting").await;
    type_into(&client, "#kv-value", "hello").await;
    click(&client, "#kv-put").await;
    let field = |name: &'static str| {
        let client = &client;
        move || async move {
            let css = format!("#kv-result[data-ok='true'] dd[data-field='{name}']");
            client
                .find(Locator::Css(&css))
                .await
                .ok()?
                .text()
                .await
                .ok()
        }
    };
    let acks = wait_for("the put's acks", Duration::from_secs(20), field("acks")).await;
    assert!(acks.parse::<usize>().unwrap() >= 2, "acks {acks}");
    let version = wait_for(
        "the put's version",
        Duration::from_secs(5),
        field("version"),
    )
    .await;
    click(&client, "#kv-get").await;
    let value = wait_for("the value read", Duration::from_secs(20), field("value")).await;
    assert_eq!(value, "hello");
    let read_version = wait_for(
        "the read's version",
        Duration::from_secs(5),
        field("version"),
    )
    .await;
    assert_eq!(read_version, version);
    // The overlay panel (GET /v1/topics, polled every 5 s) lists the topic this node joined
    // (no neighbours: no other node joined it).
    let overlay = format!("#overlay-body tr[data-topic='{TOPIC}']");
    let row = wait_for(
        "the topic in the overlay",
        Duration::from_secs(20),
        || async {
            let tr = client.find(Locator::Css(&overlay)).await.ok()?;
            tr.text().await.ok()
        },
    )
    .await;
    assert!(row.contains(TOPIC), "{row}");
    screenshot(&client, &shots, "console-3-feed.png").await;

    client.close().await.expect("end the browser session");
    drop(driver);
    for n in nodes {
        n.shutdown().await;
    }
}
