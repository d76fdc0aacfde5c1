//! The HTTP API (axum). Every request has a deadline; every error is `{"error": "…"}` with a
//! fitting status. See DESIGN.md for the contract.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::Node;
use crate::api::{Consistency, GetOptions, NodeError, PutOptions};

/// The header carrying a value's version on reads.
pub const VERSION_HEADER: &str = "x-bavard-version";

/// An API error: a status and a message naming what was wrong.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let status = match &e {
            NodeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            NodeError::Unavailable { .. } | NodeError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            NodeError::Conflict { .. } => StatusCode::CONFLICT,
            NodeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            NodeError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

#[derive(Clone)]
struct AppState {
    node: Node,
    timeout: Duration,
}

impl AppState {
    /// Runs a node call under the request deadline.
    async fn call<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, NodeError>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(ApiError::from),
            Err(_) => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("{what} did not finish within {:?}", self.timeout),
            )),
        }
    }
}

/// Builds the API router for `node`.
pub fn router(node: Node) -> Router {
    let cfg = node.config();
    let state = AppState {
        timeout: crate::config::secs(cfg.http.request_timeout_secs),
        node,
    };
    Router::new()
        .route("/v1/kv/{key}", get(kv_get).put(kv_put).delete(kv_delete))
        .route(
            "/v1/providers/{key}",
            get(providers_get).post(providers_post),
        )
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/routing", get(routing))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(cfg.http.max_body_size))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Node,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(node))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

/// Parses the query string, rejecting parameters the endpoint does not take.
fn query_params(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    for k in q.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {k:?} (allowed: {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn consistency(q: &HashMap<String, String>) -> Result<Consistency, ApiError> {
    q.get("consistency")
        .map(|s| s.parse().map_err(ApiError::bad_request))
        .transpose()
        .map(Option::unwrap_or_default)
}

async fn kv_put(
    State(s): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    query_params(&q, &["consistency", "ttl"])?;
    let ttl_secs = q
        .get("ttl")
        .map(|t| match t.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "ttl must be a positive number of seconds, got {t:?}"
            ))),
        })
        .transpose()?;
    let opts = PutOptions {
        consistency: consistency(&q)?,
        ttl_secs,
    };
    let reply = s
        .call("put", s.node.put(key.into_bytes(), body.to_vec(), opts))
        .await?;
    Ok(Json(reply).into_response())
}

async fn kv_get(
    State(s): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    query_params(&q, &["consistency"])?;
    let opts = GetOptions {
        consistency: consistency(&q)?,
    };
    match s.call("get", s.node.get(key.as_bytes(), opts)).await? {
        Some(reply) => {
            let mut resp = reply.value.into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) = HeaderValue::from_str(&reply.version) {
                resp.headers_mut().insert(VERSION_HEADER, v);
            }
            Ok(resp)
        }
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not found")),
    }
}

async fn kv_delete(
    State(s): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    query_params(&q, &["consistency"])?;
    let opts = PutOptions {
        consistency: consistency(&q)?,
        ttl_secs: None,
    };
    let reply = s
        .call("delete", s.node.delete(key.into_bytes(), opts))
        .await?;
    Ok(Json(reply).into_response())
}

async fn providers_post(
    State(s): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let acks = s
        .call("provide", s.node.provide(key.clone().into_bytes()))
        .await?;
    Ok(Json(json!({ "key": key, "acks": acks })).into_response())
}

async fn providers_get(
    State(s): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let providers = s
        .call("providers", s.node.providers(key.into_bytes()))
        .await?;
    Ok(Json(providers).into_response())
}

async fn status(State(s): State<AppState>) -> Response {
    Json(s.node.status()).into_response()
}

async fn peers(State(s): State<AppState>) -> Response {
    Json(s.node.peers()).into_response()
}

async fn routing(State(s): State<AppState>) -> Response {
    Json(s.node.routing()).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.node.metrics_text(),
    )
        .into_response()
}
