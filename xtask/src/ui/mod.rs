//! `cargo xtask cluster ui`: a page on 127.0.0.1 that draws the local cluster and drives it.
//!
//! The server serves one embedded page (`page/`: HTML, plain JS and CSS, no external resource)
//! and four kinds of request:
//!
//! - `GET /api/state?topic=T`: one poll of every node (`/v1/status`, `/v1/members`,
//!   `/v1/topics`) folded into the [`view::View`] the page draws; the page asks about once a
//!   second, each time after the previous answer.
//! - `GET /api/deliveries?topic=T`: one Server-Sent Events stream that merges every node's
//!   `/v1/topics/T/events` (`event: delivery`, `data: {"node":I,"data":PAYLOAD}`). The page could
//!   open each node's stream through the proxy, but a browser keeps at most six HTTP/1.1
//!   connections to one host: five streams of a five-node cluster would leave one connection for
//!   the polls, the publishes and the buttons, and a sixth node none at all.
//! - `POST /api/action` with `{"action":"kill","nodes":"2"}` (also `pause`, `resume`, `restart`,
//!   `partition` with `a` and `b`, `isolate` with `node`, `heal`): runs the function the
//!   `cargo xtask cluster` subcommand of that name runs, one action at a time, and answers
//!   `{"ok":true,"lines":[…]}` or `{"ok":false,"error":"…"}`.
//! - `/node/I/PATH`: a reverse proxy to node I's API, which adds the node's token when one is
//!   known and streams the answer as it comes (SSE works through it). Admin endpoints are not
//!   forwarded: faults go through `/api/action`.
//!
//! The server only binds 127.0.0.1. Since any web page the browser shows may send requests to
//! it, it answers only requests whose `Host` is its own address (no DNS rebinding) and, for
//! anything but `GET`, whose `Origin` (when the browser sends one) is its own (no cross-site
//! form posts killing nodes).
//!
//! Why axum and tokio rather than a small synchronous server such as `tiny_http`: the workspace
//! already pins and builds them for the node, so the xtask adds no new crate to `Cargo.lock`, and
//! their streaming bodies pass a node's Server-Sent Events on as they come, where `tiny_http`
//! buffers a chunked response body (its users report SSE stalling behind it).

mod view;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cluster::{self, NodeEntry, ProcState};
use crate::{faults, http, workload};

/// Arguments of `cargo xtask cluster ui`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The port on 127.0.0.1 [default: a free one].
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The topic the page shows first.
    #[arg(long, default_value = "ui-demo")]
    topic: String,
}

/// The page.
const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// How long one poll waits for each answer of a node.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// What every handler shares.
struct App {
    /// The cluster directory.
    dir: PathBuf,
    /// The port the server listens on, for the `Host` and `Origin` checks.
    port: u16,
    /// The topic the page starts with.
    topic: String,
    /// Held while an action runs: two restarts at once would both rewrite `cluster.json`.
    actions: Mutex<()>,
}

/// Runs the server until Ctrl-C. The cluster keeps running afterwards.
pub(crate) fn run(dir: &Path, args: &Args) -> anyhow::Result<()> {
    // Fail now, with `cluster up` in the message, rather than in every poll of the page.
    cluster::load(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    rt.block_on(serve(dir, args))
}

async fn serve(dir: &Path, args: &Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let port = listener.local_addr()?.port();
    let app = Arc::new(App {
        dir: dir.to_path_buf(),
        port,
        topic: args.topic.clone(),
        actions: Mutex::new(()),
    });
    let router = Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/state", get(state))
        .route("/api/deliveries", get(deliveries))
        .route("/api/action", post(action))
        .route("/node/{*rest}", any(proxy))
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app);
    println!(
        "testbed page for the cluster in {}: http://127.0.0.1:{port}/\n\
         (Ctrl-C stops the page; the cluster keeps running)",
        dir.display()
    );
    axum::serve(listener, router)
        .await
        .context("the page's server failed")
}

fn asset(text: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

fn json_error(status: StatusCode, error: impl Into<String>) -> Response {
    let error: String = error.into();
    (status, axum::Json(json!({ "ok": false, "error": error }))).into_response()
}

/// Whether `host` (a `Host` header) names this server: `127.0.0.1:PORT` or `localhost:PORT`.
pub(crate) fn host_ok(host: Option<&str>, port: u16) -> bool {
    host.is_some_and(|h| h == format!("127.0.0.1:{port}") || h == format!("localhost:{port}"))
}

/// Whether a request that changes something may come from `origin` (its `Origin` header):
/// none (curl, or a browser's same-origin GET) or this server's own.
pub(crate) fn origin_ok(origin: Option<&str>, port: u16) -> bool {
    origin.is_none_or(|o| {
        o.strip_prefix("http://")
            .is_some_and(|h| host_ok(Some(h), port))
    })
}

/// Refuses requests meant for another host or, unless `GET`, sent by another site's page.
async fn guard(
    State(app): State<Arc<App>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    // Decided before the await: a borrow of the request (its body is not `Sync`) held across
    // it would make this future not `Send`.
    let refusal = {
        let text = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        if !host_ok(text(header::HOST), app.port) {
            Some((
                StatusCode::MISDIRECTED_REQUEST,
                format!("this server answers for 127.0.0.1:{} only", app.port),
            ))
        } else if req.method() != axum::http::Method::GET
            && !origin_ok(text(header::ORIGIN), app.port)
        {
            Some((
                StatusCode::FORBIDDEN,
                "requests that change something must come from the testbed page itself".into(),
            ))
        } else {
            None
        }
    };
    match refusal {
        Some((status, message)) => json_error(status, message),
        None => next.run(req).await,
    }
}

/// `?topic=T`.
#[derive(Debug, Deserialize)]
struct TopicQuery {
    topic: Option<String>,
}

impl TopicQuery {
    fn topic(self, app: &App) -> String {
        self.topic
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| app.topic.clone())
    }
}

/// `GET /api/state`: the view and what the page shows around it.
#[derive(Debug, Serialize)]
struct PageState {
    #[serde(flatten)]
    view: view::View,
    /// The cluster directory.
    dir: String,
    /// The Prometheus URL, with `--monitor`.
    prometheus: Option<String>,
}

async fn state(State(app): State<Arc<App>>, Query(q): Query<TopicQuery>) -> Response {
    let topic = q.topic(&app);
    let dir = app.dir.clone();
    match tokio::task::spawn_blocking(move || poll(&dir, &topic)).await {
        Ok(Ok(s)) => axum::Json(s).into_response(),
        Ok(Err(e)) => json_error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Asks every node at once and folds the answers.
fn poll(dir: &Path, topic: &str) -> anyhow::Result<PageState> {
    let state = cluster::load(dir)?;
    let cuts = faults::load_cuts(dir)?.unwrap_or_default();
    let probes: Vec<view::Probe> = std::thread::scope(|s| {
        let handles: Vec<_> = state
            .nodes
            .iter()
            .map(|n| s.spawn(move || probe(n)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a probe thread panicked"))
            .collect()
    });
    Ok(PageState {
        view: view::build(&probes, topic, &cuts),
        dir: dir.display().to_string(),
        prometheus: state.monitor.map(|m| m.url),
    })
}

/// One node's answers; a node that does not run is not asked.
fn probe(n: &NodeEntry) -> view::Probe {
    let process = cluster::proc_state(n.pid);
    let status = (process == ProcState::Running)
        .then(|| cluster::fetch_status(&n.api, PROBE_TIMEOUT).ok())
        .flatten();
    let get = |path: &str| {
        status
            .as_ref()
            .and_then(|_| http::get(&n.api, path, PROBE_TIMEOUT).ok())
    };
    let members = get("/v1/members")
        .filter(|r| r.status == 200)
        .and_then(|r| serde_json::from_slice(&r.body).ok());
    let topics = match get("/v1/topics") {
        Some(r) if r.status == 404 => view::Topics::Unsupported,
        Some(r) if r.status == 200 => {
            serde_json::from_slice(&r.body).map_or(view::Topics::Unknown, view::Topics::List)
        }
        _ => view::Topics::Unknown,
    };
    view::Probe {
        index: n.index,
        peer_id: n.peer_id.clone(),
        api: n.api.clone(),
        process,
        status,
        members,
        topics,
    }
}

/// `GET /api/deliveries`: every node's topic stream, merged (see the module docs for why).
/// A thread per node follows its stream, reconnecting (to the node's current address, which a
/// restart may change) until the page closes the stream.
async fn deliveries(State(app): State<Arc<App>>, Query(q): Query<TopicQuery>) -> Response {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let topic = q.topic(&app);
    let nodes = match cluster::load(&app.dir) {
        Ok(s) => s.nodes.len(),
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    };
    let path = format!(
        "/v1/topics/{}/events",
        utf8_percent_encode(&topic, NON_ALPHANUMERIC)
    );
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for i in 0..nodes {
        let (tx, dir, path) = (tx.clone(), app.dir.clone(), path.clone());
        std::thread::spawn(move || {
            let api = || {
                cluster::load(&dir)
                    .ok()
                    .and_then(|s| s.nodes.get(i).map(|n| n.api.clone()))
                    .unwrap_or_default()
            };
            workload::follow_sse(
                api,
                &path,
                || tx.is_closed(),
                |got| {
                    for data in got {
                        let _ = tx.send(json!({ "node": i, "data": data }).to_string());
                    }
                },
            );
        });
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((
            Ok::<_, std::convert::Infallible>(Event::default().event("delivery").data(data)),
            rx,
        ))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// What the page's buttons ask for: the `cargo xtask cluster` subcommands that act on nodes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Action {
    /// `cluster kill NODES`.
    Kill {
        /// Which nodes (`2`, `1,3`, `2-4`, `all`).
        nodes: String,
    },
    /// `cluster pause NODES`.
    Pause {
        /// Which nodes.
        nodes: String,
    },
    /// `cluster resume NODES`.
    Resume {
        /// Which nodes.
        nodes: String,
    },
    /// `cluster restart NODES`.
    Restart {
        /// Which nodes.
        nodes: String,
    },
    /// `cluster partition A B`.
    Partition {
        /// The first set.
        a: String,
        /// The second set.
        b: String,
    },
    /// `cluster isolate NODE`.
    Isolate {
        /// The node.
        node: usize,
    },
    /// `cluster heal`. A struct variant: serde checks a unit variant's extra fields not at all.
    Heal {},
}

/// Reads an action from a request body, with a message that says what was expected.
pub(crate) fn parse_action(body: &[u8]) -> Result<Action, String> {
    serde_json::from_slice(body).map_err(|e| {
        format!(
            "bad action ({e}); expected e.g. {{\"action\":\"kill\",\"nodes\":\"2\"}}, \
             {{\"action\":\"partition\",\"a\":\"0,1\",\"b\":\"2-4\"}} or {{\"action\":\"heal\"}}"
        )
    })
}

/// Runs `action` on the cluster in `dir` with the functions the subcommands use.
fn perform(dir: &Path, action: &Action) -> anyhow::Result<Vec<String>> {
    match action {
        Action::Kill { nodes } => cluster::kill(dir, nodes),
        Action::Pause { nodes } => cluster::pause(dir, nodes),
        Action::Resume { nodes } => cluster::resume(dir, nodes),
        Action::Restart { nodes } => cluster::restart_nodes(dir, nodes),
        Action::Partition { a, b } => cluster::partition(dir, a, b),
        Action::Isolate { node } => cluster::isolate(dir, *node),
        Action::Heal {} => cluster::heal(dir),
    }
}

async fn action(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let action = match parse_action(&body) {
        Ok(a) => a,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let done = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = app.actions.lock().unwrap_or_else(|e| e.into_inner());
        perform(&app.dir, &action)
    })
    .await;
    match done {
        Ok(Ok(lines)) => axum::Json(json!({ "ok": true, "lines": lines })).into_response(),
        Ok(Err(e)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Splits `/node/I/PATH?QUERY` into I (below `n`) and `/PATH?QUERY`. Refuses admin endpoints
/// and dot segments, also percent-encoded, with 403; anything else malformed is 404.
pub(crate) fn parse_proxy_path(
    path_and_query: &str,
    n: usize,
) -> Result<(usize, String), (StatusCode, String)> {
    let not_found = |m: String| Err((StatusCode::NOT_FOUND, m));
    let Some(rest) = path_and_query.strip_prefix("/node/") else {
        return not_found(format!("{path_and_query:?} is not /node/I/PATH"));
    };
    let Some((index, upstream)) = rest.split_once('/') else {
        return not_found(format!("{path_and_query:?} is not /node/I/PATH"));
    };
    let Ok(i) = index.parse::<usize>() else {
        return not_found(format!("bad node index {index:?} in {path_and_query:?}"));
    };
    if i >= n {
        return not_found(format!(
            "no node {i}: the cluster has nodes 0 to {}",
            n.saturating_sub(1)
        ));
    }
    let upstream = format!("/{upstream}");
    let path = upstream.split('?').next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    if decoded.starts_with("/v1/admin") {
        return Err((
            StatusCode::FORBIDDEN,
            "the page's proxy does not forward admin endpoints: kill, restart, partition and \
             heal go through POST /api/action"
                .to_string(),
        ));
    }
    if decoded.split('/').any(|seg| seg == "..") {
        return Err((StatusCode::FORBIDDEN, format!("no dot segments: {path:?}")));
    }
    Ok((i, upstream))
}

/// `/node/I/PATH`: forwards the request to node I and streams its answer back.
async fn proxy(State(app): State<Arc<App>>, req: Request) -> Response {
    match forward(&app, req).await {
        Ok(r) => r,
        Err((status, message)) => json_error(status, message),
    }
}

async fn forward(app: &App, req: Request) -> Result<Response, (StatusCode, String)> {
    let gateway =
        |what: &str, e: &dyn std::fmt::Display| (StatusCode::BAD_GATEWAY, format!("{what}: {e}"));
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let state =
        cluster::load(&app.dir).map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")))?;
    let (i, upstream) = parse_proxy_path(&path_and_query, state.nodes.len())?;
    let api = state.nodes[i].api.clone();
    let what = format!("node {i} ({api})");
    let tcp = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&api))
        .await
        .map_err(|_| {
            (
                StatusCode::GATEWAY_TIMEOUT,
                format!("{what} does not accept connections"),
            )
        })?
        .map_err(|e| gateway(&format!("{what} does not answer"), &e))?;
    let io = hyper_util::rt::TokioIo::new(tcp);
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Body>(io)
        .await
        .map_err(|e| gateway(&what, &e))?;
    // Drives the connection until the answer's body is read or dropped.
    tokio::spawn(conn);
    let (parts, body) = req.into_parts();
    let mut up = axum::http::Request::builder()
        .method(parts.method)
        .uri(upstream)
        .header(header::HOST, &api);
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::CACHE_CONTROL] {
        if let Some(v) = parts.headers.get(&name) {
            up = up.header(name, v);
        }
    }
    if let Some(t) = http::token(&api) {
        up = up.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let up = up
        .body(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    // The head only: a stream's body then flows for as long as the page keeps it open.
    let answer = tokio::time::timeout(Duration::from_secs(15), sender.send_request(up))
        .await
        .map_err(|_| {
            (
                StatusCode::GATEWAY_TIMEOUT,
                format!("{what} did not answer in 15 s"),
            )
        })?
        .map_err(|e| gateway(&what, &e))?;
    let (mut parts, body) = answer.into_parts();
    // Hop-by-hop: our own connection to the browser has its own framing.
    for name in [header::CONNECTION, header::TRANSFER_ENCODING] {
        parts.headers.remove(name);
    }
    parts.headers.remove("keep-alive");
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_name_a_node_and_the_path_to_forward() {
        assert_eq!(
            parse_proxy_path("/node/3/v1/status", 5).unwrap(),
            (3, "/v1/status".to_string())
        );
        assert_eq!(
            parse_proxy_path("/node/0/v1/topics/ui%20demo/events?x=1", 1).unwrap(),
            (0, "/v1/topics/ui%20demo/events?x=1".to_string())
        );
        assert_eq!(
            parse_proxy_path("/node/1/", 2).unwrap(),
            (1, "/".to_string())
        );
    }

    #[test]
    fn proxy_paths_outside_the_cluster_or_malformed_are_not_found() {
        let status = |p: &str| parse_proxy_path(p, 5).unwrap_err().0;
        assert_eq!(status("/node/5/v1/status"), StatusCode::NOT_FOUND);
        assert_eq!(status("/node/x/v1/status"), StatusCode::NOT_FOUND);
        assert_eq!(status("/node/-1/v1/status"), StatusCode::NOT_FOUND);
        assert_eq!(status("/node/3"), StatusCode::NOT_FOUND);
        assert_eq!(status("/nodes/3/v1/status"), StatusCode::NOT_FOUND);
        let (_, msg) = parse_proxy_path("/node/9/metrics", 5).unwrap_err();
        assert!(msg.contains("nodes 0 to 4"), "{msg}");
    }

    #[test]
    fn the_proxy_never_forwards_admin_endpoints_or_dot_segments() {
        let status = |p: &str| parse_proxy_path(p, 5).unwrap_err().0;
        assert_eq!(status("/node/0/v1/admin/blocked/p"), StatusCode::FORBIDDEN);
        assert_eq!(
            status("/node/0/V1/Admin/cluster/token"),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status("/node/0/v1/%61dmin/blocked/p"),
            StatusCode::FORBIDDEN
        );
        assert_eq!(status("/node/0/v1/kv/../admin/x"), StatusCode::FORBIDDEN);
        assert_eq!(status("/node/0/v1/kv/%2e%2e/x"), StatusCode::FORBIDDEN);
        // An admin-looking key or query is just a key.
        assert!(parse_proxy_path("/node/0/v1/kv/admin?v1/admin", 5).is_ok());
    }

    #[test]
    fn actions_are_read_from_json_with_their_arguments() {
        assert_eq!(
            parse_action(br#"{"action":"kill","nodes":"2"}"#).unwrap(),
            Action::Kill { nodes: "2".into() }
        );
        assert_eq!(
            parse_action(br#"{"action":"restart","nodes":"1,3"}"#).unwrap(),
            Action::Restart {
                nodes: "1,3".into()
            }
        );
        assert_eq!(
            parse_action(br#"{"action":"partition","a":"0,1","b":"2-4"}"#).unwrap(),
            Action::Partition {
                a: "0,1".into(),
                b: "2-4".into()
            }
        );
        assert_eq!(
            parse_action(br#"{"action":"isolate","node":2}"#).unwrap(),
            Action::Isolate { node: 2 }
        );
        assert_eq!(
            parse_action(br#"{"action":"heal"}"#).unwrap(),
            Action::Heal {}
        );
    }

    #[test]
    fn unknown_incomplete_or_misspelt_actions_are_refused_with_an_example() {
        for bad in [
            &br#"{"action":"explode"}"#[..],
            br#"{"action":"kill"}"#,
            br#"{"action":"partition","a":"0"}"#,
            br#"{"action":"kill","node":"2"}"#,
            br#"{"action":"heal","nodes":"all"}"#,
            br#"{"action":"isolate","node":"two"}"#,
            b"kill 2",
            b"",
        ] {
            let err = parse_action(bad).unwrap_err();
            assert!(err.contains("expected e.g."), "{err}");
        }
    }

    #[test]
    fn only_requests_for_this_server_from_its_own_page_get_through() {
        assert!(host_ok(Some("127.0.0.1:8080"), 8080));
        assert!(host_ok(Some("localhost:8080"), 8080));
        assert!(!host_ok(Some("127.0.0.1:8081"), 8080));
        assert!(!host_ok(Some("evil.example:8080"), 8080));
        assert!(!host_ok(None, 8080));
        assert!(origin_ok(None, 8080));
        assert!(origin_ok(Some("http://127.0.0.1:8080"), 8080));
        assert!(origin_ok(Some("http://localhost:8080"), 8080));
        assert!(!origin_ok(Some("https://evil.example"), 8080));
        assert!(!origin_ok(Some("http://127.0.0.1:9999"), 8080));
        assert!(!origin_ok(Some("null"), 8080));
    }
}
