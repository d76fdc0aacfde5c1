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
use crate::replica::Condition;

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
        .route("/v1/members", get(members))
        .route("/v1/topics/{topic}", axum::routing::post(topic_publish))
        .route("/v1/topics/{topic}/events", get(topic_events))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/routing", get(routing))
        .route("/metrics", get(metrics))
        .route(
            "/v1/admin/blocked/{peer}",
            axum::routing::put(block_peer).delete(unblock_peer),
        )
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

fn parse_peer(peer: &str) -> Result<libp2p::PeerId, ApiError> {
    peer.parse()
        .map_err(|_| ApiError::bad_request(format!("{peer:?} is not a peer id")))
}

/// `PUT /v1/admin/blocked/{peer}`: refuse every connection with `peer` (an operator ban; the
/// testbed uses it to cut links on loopback).
async fn block_peer(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_peer(&peer)?;
    s.node.block_peer(id);
    Ok(Json(json!({ "blocked": peer })).into_response())
}

/// `DELETE /v1/admin/blocked/{peer}`: lift a block.
async fn unblock_peer(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_peer(&peer)?;
    s.node.unblock_peer(id);
    Ok(Json(json!({ "unblocked": peer })).into_response())
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

/// `if_version=V` (a version as returned by a write or in `x-bavard-version`) or `if_absent`.
fn condition(q: &HashMap<String, String>) -> Result<Option<Condition>, ApiError> {
    match (q.get("if_version"), q.get("if_absent")) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "if_version and if_absent cannot be combined",
        )),
        (Some(v), None) => v
            .parse::<u64>()
            .map(|v| Some(Condition::Version(v)))
            .map_err(|_| {
                ApiError::bad_request(format!("if_version must be a version number, got {v:?}"))
            }),
        (None, Some(flag)) if flag.is_empty() || flag == "true" || flag == "1" => {
            Ok(Some(Condition::Absent))
        }
        (None, Some(flag)) => Err(ApiError::bad_request(format!(
            "if_absent takes no value (or true), got {flag:?}"
        ))),
        (None, None) => Ok(None),
    }
}

async fn kv_put(
    State(s): State<AppState>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    query_params(&q, &["consistency", "ttl", "if_version", "if_absent"])?;
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
        condition: condition(&q)?,
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
    query_params(&q, &["consistency", "if_version", "if_absent"])?;
    let opts = PutOptions {
        consistency: consistency(&q)?,
        ttl_secs: None,
        condition: condition(&q)?,
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

async fn members(State(s): State<AppState>) -> Response {
    Json(s.node.members()).into_response()
}

async fn topic_publish(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let message_id = s
        .call("publish", s.node.publish(&topic, body.to_vec()))
        .await?;
    Ok(Json(crate::api::PublishReply { message_id }).into_response())
}

/// One topic message as a Server-Sent Event: event type `message` with the payload as text when
/// it is UTF-8, `binary` with the payload in base64 otherwise; the id is the message id.
pub fn topic_sse_event(ev: &crate::api::TopicEvent) -> axum::response::sse::Event {
    use axum::response::sse::Event;
    use base64::Engine as _;
    let event = match std::str::from_utf8(&ev.payload) {
        Ok(text) => Event::default().event("message").data(text),
        Err(_) => Event::default()
            .event("binary")
            .data(base64::engine::general_purpose::STANDARD.encode(&ev.payload)),
    };
    event.id(ev.message_id.clone())
}

async fn topic_events(
    State(s): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let rx = s.node.subscribe(&topic)?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(ev) => topic_sse_event(&ev),
            // A slow client missed messages: say so in a comment and carry on.
            Err(RecvError::Lagged(n)) => Event::default().comment(format!("missed {n} messages")),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<Event, std::convert::Infallible>(event), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
