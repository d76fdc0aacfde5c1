//! Every error of the HTTP API is `{"error": "…"}` (DESIGN.md), including the ones the handlers
//! never see: axum's own rejections (a path segment that is not UTF-8, a body over
//! `[http] max_body_size`, a method a route does not take) answer in plain text or with no body.
//! This layer, the outermost of the router, rewrites any 4xx or 5xx that is not JSON into the
//! JSON form, keeping its status and headers and using the text as the message.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;

/// The longest plain-text error body carried over into the JSON message.
const MAX_MESSAGE: usize = 4096;

/// Rewrites non-JSON error responses as `{"error": …}` (see the module docs).
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json || method == Method::HEAD
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if !text.is_empty() {
        text
    } else if let Some(allowed) = parts.headers.get(header::ALLOW) {
        format!(
            "{path} does not take {method} (allowed: {})",
            allowed.to_str().unwrap_or("?")
        )
    } else {
        format!(
            "{method} {path}: {}",
            status.canonical_reason().unwrap_or("error")
        )
    };
    let body = serde_json::json!({ "error": message }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}
