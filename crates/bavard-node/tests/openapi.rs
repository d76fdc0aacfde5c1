//! `GET /v1/openapi.json`: the document is valid OpenAPI 3.1 (checked against the OpenAPI
//! Initiative's JSON Schema for 3.1 documents, vendored in `tests/data/` from the
//! OAI/OpenAPI-Specification repository, branch v3.1-dev, `src/schemas/validation/schema.yaml`),
//! and it describes exactly the routes the router serves: every documented operation reaches
//! its handler, other methods on a documented path get 405, and undocumented paths get
//! `no_such_endpoint`.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bavard_node::Node;
use serde_json::Value;
use tower::ServiceExt as _;

const TOKEN: &str = "openapi-token-0123456789abcdef";

async fn fixture() -> (Node, axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::test_config(dir.path(), true);
    config.http.request_timeout_secs = 1.0;
    config.kad.request_timeout_secs = 0.5;
    config.kad.lookup_timeout_secs = 1.0;
    let node = Node::start(config).await.unwrap();
    let router = bavard_node::http::router(
        node.clone(),
        bavard_node::http::Access::with_token(TOKEN, false),
    );
    (node, router, dir)
}

async fn send(router: &axum::Router, method: Method, path: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from("x"))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), router.clone().oneshot(req))
        .await
        .unwrap_or_else(|_| panic!("{method} {path} did not answer"))
        .unwrap();
    let status = resp.status();
    let is_json = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("application/json"));
    // Streams (SSE, blobs) are not read: only the head matters here.
    let body = if is_json {
        let bytes = tokio::time::timeout(
            Duration::from_secs(20),
            axum::body::to_bytes(resp.into_body(), 1 << 20),
        )
        .await
        .expect("body")
        .unwrap();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    (status, body)
}

/// The served document.
async fn served_document(router: &axum::Router) -> Value {
    let (status, doc) = send(router, Method::GET, "/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    doc
}

/// A concrete path for a template: each `{param}` replaced by a value its handler accepts.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{key}" | "{topic}" | "{salt}" => "openapi-probe".to_string(),
            "{hash}" => "ab".repeat(32),
            "{public_key}" => "00".repeat(32),
            "{peer}" => "12D3KooWGzhCfY7ArVbwamqAwe3wzFkSX1TdmsmbcN7xFSyWuZ7F".to_string(),
            s if s.starts_with('{') => panic!("no sample value for {s} in {template}"),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_openapi_3_1() {
    let (_node, router, _dir) = fixture().await;
    let doc = served_document(&router).await;
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3.1."),
        "openapi version: {}",
        doc["openapi"]
    );
    let schema: Value = serde_json::from_str(include_str!("data/openapi-3.1-schema.json")).unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("the OAS 3.1 schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "invalid OpenAPI 3.1: {errors:#?}");
    // The validator does reject what is not OpenAPI 3.1.
    let mut broken = doc.clone();
    broken["openapi"] = "3.0.3".into();
    broken["paths"]["/v1/status"]["get"]["responses"] = Value::from(7);
    assert!(validator.iter_errors(&broken).count() >= 2);

    // What the JSON Schema cannot check: every reference resolves, and every path parameter
    // of a template is declared, required, on each of its operations.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"").skip(1) {
        let target = piece.split('"').next().unwrap();
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {target}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "reference {target} does not resolve"
        );
    }
    for (template, item) in doc["paths"].as_object().unwrap() {
        let wanted: Vec<&str> = template
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            for name in &wanted {
                let declared = op["parameters"].as_array().into_iter().flatten().any(|p| {
                    p["name"] == *name && p["in"] == "path" && p["required"] == Value::Bool(true)
                });
                assert!(declared, "{method} {template} does not declare {{{name}}}");
            }
            assert!(
                op["responses"].get("200").is_some(),
                "{method} {template} documents no success answer"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let (_node, router, _dir) = fixture().await;
    let doc = served_document(&router).await;
    let paths = doc["paths"].as_object().unwrap().clone();
    // The API's public surface, as DESIGN.md and the README describe it.
    for expected in [
        "/v1/kv/{key}",
        "/v1/dht/{key}",
        "/v1/providers/{key}",
        "/v1/signed/{public_key}",
        "/v1/signed/{public_key}/{salt}",
        "/v1/members",
        "/v1/topics",
        "/v1/topics/{topic}",
        "/v1/topics/{topic}/events",
        "/v1/status",
        "/v1/peers",
        "/v1/routing",
        "/metrics",
        "/v1/openapi.json",
        "/v1/blobs",
        "/v1/blobs/{hash}",
        "/v1/blobs/{hash}/status",
        "/v1/blobs/{hash}/pin",
        "/v1/admin/blocked/{peer}",
        "/v1/admin/cluster/token",
        "/v1/admin/cluster/revoke/{peer}",
        "/v1/admin/stream-probe/{peer}",
        "/ui",
        "/ui/app.js",
        "/ui/style.css",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    let mut operations = 0;
    for (template, item) in &paths {
        let path = concrete(template);
        for method in METHODS {
            let documented = item.get(method).is_some();
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let (status, body) = send(&router, m, &path).await;
            if documented {
                operations += 1;
                // Reached its handler: whatever it answered, it was not the router's refusal.
                assert_ne!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {template} is documented but not routed"
                );
                assert_ne!(
                    body["code"], "no_such_endpoint",
                    "{method} {template} is documented but not routed"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {template} is served but not documented ({status}, {body})"
                );
            }
        }
    }
    assert!(operations >= 30, "only {operations} operations documented");
    // Paths outside the document are not served.
    for path in ["/v1/nothing", "/v1/kv", "/v2/status", "/v1/blobs/x/y/z"] {
        let (status, body) = send(&router, Method::GET, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["code"], "no_such_endpoint", "{path}");
    }
}

/// Every route goes through `utoipa_axum::routes!`, which registers the route and its
/// description from one annotation: a plain `.route(` in a router module would serve a path
/// the document does not know.
#[test]
fn routers_register_routes_only_with_their_description() {
    for (file, text) in [
        ("src/http.rs", include_str!("../src/http.rs")),
        ("src/blobs/http.rs", include_str!("../src/blobs/http.rs")),
        ("src/ui.rs", include_str!("../src/ui.rs")),
    ] {
        assert!(
            !text.contains(".route("),
            "{file} registers a route without its OpenAPI description (use routes!)"
        );
    }
}
