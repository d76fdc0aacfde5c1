//! Fuzz target (stable Rust, proptest; see `bavard_tests::fuzz`) for the HTTP API's parsing:
//! arbitrary and structure-aware methods, paths (percent-encoded bytes, dot segments, long
//! keys), query strings (`consistency`, `ttl`, conditions, signed-record parameters, unknown and
//! repeated ones), headers (`Host`, `Authorization`, `Range`, content types) and bodies (up to
//! past the size limit), sent through the axum router in memory (`tower::ServiceExt::oneshot`)
//! of a running single node. Asserts: no panic; every 4xx and 5xx has a JSON
//! `{"error": …, "code": …}` body whose code is an `ErrorCode` that goes with the status; every
//! request is answered within a bound (the node's request deadline is 1 s here).
//!
//! `BAVARD_FUZZ_CASES=100000 cargo test --release -p bavard-node --test fuzz_http`

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, Uri, header};
use bavard_node::Node;
use bavard_node::http::ErrorCode;
use bavard_tests::fuzz;
use proptest::prelude::*;
use tower::ServiceExt as _;

const TOKEN: &str = "fuzz-token-0123456789abcdef";
/// Far above the node's 1 s request deadline: only a hang reaches it.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

struct Fixture {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _node: Node,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = common::test_config(dir.path(), true);
        config.http.request_timeout_secs = 1.0;
        config.http.max_body_size = 4096;
        config.kad.request_timeout_secs = 0.5;
        config.kad.lookup_timeout_secs = 1.0;
        let node = rt.block_on(Node::start(config)).unwrap();
        let router = bavard_node::http::router(
            node.clone(),
            bavard_node::http::Access::with_token(TOKEN, false),
        );
        Fixture {
            rt,
            router,
            _node: node,
            _dir: dir,
        }
    })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        4 => Just(Method::GET),
        3 => Just(Method::PUT),
        2 => Just(Method::POST),
        2 => Just(Method::DELETE),
        1 => Just(Method::HEAD),
        1 => Just(Method::PATCH),
        1 => Just(Method::OPTIONS),
        1 => "[A-Z]{1,8}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

const ROUTES: &[&str] = &[
    "/v1/kv/",
    "/v1/providers/",
    "/v1/dht/",
    "/v1/signed/",
    "/v1/signed/0000000000000000000000000000000000000000000000000000000000000000/",
    "/v1/members",
    "/v1/topics/",
    "/v1/status",
    "/v1/peers",
    "/v1/routing",
    "/metrics",
    "/v1/admin/blocked/",
    "/v1/admin/cluster/token",
    "/v1/admin/cluster/revoke/",
    "/v1/blobs/",
    "/v1/openapi.json",
    "/ui",
    "/",
    "",
];

/// A path segment: plain text, percent-encoded arbitrary bytes (invalid UTF-8 included), dot
/// segments, or a long key.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9._~-]{0,12}",
        2 => prop::collection::vec(any::<u8>(), 0..24)
            .prop_map(|b| b.iter().map(|x| format!("%{x:02X}")).collect()),
        1 => Just("..".to_string()),
        1 => Just("%2F..%2F".to_string()),
        1 => (1usize..3000).prop_map(|n| "k".repeat(n)),
        1 => Just("12D3KooWGzhCfY7ArVbwamqAwe3wzFkSX1TdmsmbcN7xFSyWuZ7F".to_string()),
        1 => "[0-9a-f]{64}",
        1 => Just("events".to_string()),
    ]
}

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("one".to_string()),
        Just("quorum".to_string()),
        Just("all".to_string()),
        Just("most".to_string()),
        Just("utf8".to_string()),
        Just("hex".to_string()),
        Just("base64url".to_string()),
        Just("cid".to_string()),
        Just(String::new()),
        Just("true".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("%FF%FE".to_string()),
        Just("%".to_string()),
        "[0-9]{1,20}",
        "[0-9a-f]{0,130}",
        "[ -~]{0,12}".prop_map(|s| s.replace(['#', ' '], "")),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("consistency"),
        Just("ttl"),
        Just("if_version"),
        Just("if_absent"),
        Just("seq"),
        Just("sig"),
        Just("cas"),
        Just("colour"),
        Just("key_encoding"),
        Just(""),
    ];
    prop::collection::vec((name, query_value(), any::<bool>()), 0..4).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(k, v, bare)| {
                if *bare {
                    k.to_string()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// A path and query: structured, or a valid encoding mutated.
fn path_and_query() -> impl Strategy<Value = String> {
    let structured = (
        prop::sample::select(ROUTES),
        prop::collection::vec(segment(), 0..3),
        prop::option::of(query()),
    )
        .prop_map(|(route, segments, query)| {
            let mut p = format!("{route}{}", segments.join("/"));
            if let Some(q) = query {
                p.push('?');
                p.push_str(&q);
            }
            p
        })
        .boxed();
    prop_oneof![
        3 => structured.clone(),
        1 => fuzz::mutants(structured.prop_map(String::into_bytes))
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    method: Method,
    path: String,
    host: Option<String>,
    auth: Option<String>,
    extra: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn case() -> impl Strategy<Value = Case> {
    let host = prop::option::of(prop_oneof![
        Just("localhost".to_string()),
        Just("127.0.0.1:5001".to_string()),
        Just("[::1]:5001".to_string()),
        Just("evil.example".to_string()),
        Just("[garbage".to_string()),
        "[a-z0-9.:]{0,20}",
    ]);
    let auth = prop::option::of(prop_oneof![
        Just(format!("Bearer {TOKEN}")),
        Just("Bearer wrong-token-0123456789abc".to_string()),
        Just("Bearer".to_string()),
        "[ -~]{0,40}",
    ]);
    let extra = prop::collection::vec(
        (
            prop::sample::select(&["range", "content-type", "if-match", "x-bavard-version"][..]),
            prop_oneof![
                Just("bytes=0-10".to_string()),
                Just("bytes=-5".to_string()),
                Just("bytes=99999999999999999999-".to_string()),
                Just("application/json".to_string()),
                "[ -~]{0,20}",
            ],
        ),
        0..2,
    );
    let body = prop_oneof![
        4 => fuzz::noise(64),
        1 => (4000usize..4200).prop_map(|n| vec![b'v'; n]),
    ];
    (method(), path_and_query(), host, auth, extra, body).prop_map(
        |(method, path, host, auth, extra, body)| Case {
            method,
            path,
            host,
            auth,
            extra,
            body,
        },
    )
}

/// Sends `case` through the router; `None` when it is not even a valid HTTP request (hyper
/// would refuse it before the router sees it).
async fn send(router: axum::Router, case: &Case) -> Option<(StatusCode, Option<String>, Vec<u8>)> {
    let uri: Uri = if case.path.starts_with('/') {
        case.path.parse().ok()?
    } else {
        format!("/{}", case.path).parse().ok()?
    };
    let mut req = Request::builder().method(case.method.clone()).uri(uri);
    if let Some(h) = &case.host {
        req = req.header(header::HOST, h);
    }
    if let Some(a) = &case.auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    for (name, value) in &case.extra {
        req = req.header(*name, value);
    }
    let req = req.body(Body::from(case.body.clone())).ok()?;
    let resp = tokio::time::timeout(ANSWER_WITHIN, router.oneshot(req))
        .await
        .expect("the API answers every request within its deadline")
        .expect("the router is infallible");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if content_type.as_deref() == Some("text/event-stream") {
        return Some((status, content_type, Vec::new()));
    }
    let body = tokio::time::timeout(
        ANSWER_WITHIN,
        axum::body::to_bytes(resp.into_body(), 1 << 24),
    )
    .await
    .expect("the body arrives within the deadline")
    .unwrap_or_default()
    .to_vec();
    Some((status, content_type, body))
}

proptest! {
    #![proptest_config(fuzz::config(1.0))]

    #[test]
    fn fuzz_http_requests_are_answered_in_time_with_a_json_error_for_every_failure(c in case()) {
        let f = fixture();
        let Some((status, content_type, body)) = f.rt.block_on(send(f.router.clone(), &c)) else {
            return Ok(());
        };
        if (status.is_client_error() || status.is_server_error()) && c.method != Method::HEAD {
            let json: Result<serde_json::Value, _> = serde_json::from_slice(&body);
            let error = json.as_ref().ok().and_then(|v| v["error"].as_str());
            prop_assert!(
                error.is_some_and(|e| !e.is_empty()),
                "{} {} -> {status} with a non-JSON error body ({content_type:?}): {:?}",
                c.method, c.path, String::from_utf8_lossy(&body)
            );
            prop_assert!(content_type.is_some_and(|t| t.starts_with("application/json")));
            let code = json.as_ref().ok().map(|v| v["code"].clone());
            let code: Option<ErrorCode> = code.and_then(|c| serde_json::from_value(c).ok());
            prop_assert!(
                code.is_some_and(|code| code_fits_status(code, status)),
                "{} {} -> {status} with code {code:?}", c.method, c.path
            );
        }
    }
}

/// Whether `code` goes with `status` (most codes have one status; a few statuses have two).
fn code_fits_status(code: ErrorCode, status: StatusCode) -> bool {
    match code {
        ErrorCode::NoSuchEndpoint => status == StatusCode::NOT_FOUND,
        ErrorCode::ShuttingDown => status == StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::StorageError => status == StatusCode::INTERNAL_SERVER_ERROR,
        code => ErrorCode::for_status(status) == code,
    }
}

#[test]
fn fuzz_known_plain_text_rejections_are_json_errors_with_typed_codes() {
    // Regressions: axum's own rejections (a path segment that is not UTF-8, a body over the
    // limit, a method a route does not take) used to answer in plain text or with no body.
    let f = fixture();
    let cases = [
        (
            Method::GET,
            "/v1/kv/%FF",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        // (A KV value is streamed and bounded by [store] max_large_value_size instead: a DHT
        // record's body is one that [http] max_body_size bounds.)
        (
            Method::PUT,
            "/v1/dht/a",
            vec![b'v'; 5000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            Method::PATCH,
            "/v1/kv/a",
            Vec::new(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/v1/nothing-here",
            Vec::new(),
            StatusCode::NOT_FOUND,
            "no_such_endpoint",
        ),
        (
            Method::GET,
            "/v1/kv/absent-key?consistency=one",
            Vec::new(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/v1/kv/a?colour=red",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (method, path, body, expected, code) in cases {
        let c = Case {
            method,
            path: path.to_string(),
            host: None,
            auth: None,
            extra: Vec::new(),
            body,
        };
        let (status, _, body) = f.rt.block_on(send(f.router.clone(), &c)).unwrap();
        assert_eq!(status, expected, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{path}: {e}: {:?}", String::from_utf8_lossy(&body)));
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
        assert_eq!(v["code"], code, "{path}: {v}");
    }
    // The host check and the token check answer before any handler.
    let mut c = Case {
        method: Method::GET,
        path: "/v1/status".to_string(),
        host: Some("evil.example".to_string()),
        auth: None,
        extra: Vec::new(),
        body: Vec::new(),
    };
    let (status, _, body) = f.rt.block_on(send(f.router.clone(), &c)).unwrap();
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "host_not_allowed", "{v}");
    c.host = None;
    c.path = "/v1/admin/cluster/token".to_string();
    c.method = Method::POST;
    let (status, _, body) = f.rt.block_on(send(f.router.clone(), &c)).unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "unauthorized", "{v}");
}
