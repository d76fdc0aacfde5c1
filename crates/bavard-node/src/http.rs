//! The HTTP API (axum). Every request has a deadline; every error is
//! `{"error": "…", "code": "…"}` with a fitting status and a stable [`ErrorCode`] (see
//! `crate::http_errors`). See DESIGN.md for the contract.
//!
//! **Access** ([`Access`]). On a loopback address the API is open to local clients; bound to any
//! other address, every request needs the node's bearer token (`Authorization: Bearer TOKEN`,
//! 401 without it). Admin endpoints (`/v1/admin/…`) always need it. The token lives in
//! `DATA_DIR/api.token` (created at first start, mode 0600). A request whose `Host` is a name
//! other than `localhost` or one of `[http] allowed_hosts` gets 421: a web page cannot reach the
//! API through DNS rebinding (its requests carry the attacker's domain as `Host`).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Node;
use crate::api::{Consistency, GetOptions, NodeError, PutOptions};
use crate::keys::{ApiKey, KeyEncoding, KeyRoute, decode_segment};
use crate::metrics::Stage;
use crate::replica::Condition;

/// The header carrying a value's version on reads.
pub const VERSION_HEADER: &str = "x-bavard-version";
/// The header naming the blob a large KV value is stored in, on reads.
pub const BLOB_HEADER: &str = "x-bavard-blob";
/// The header carrying a signed record's sequence number on reads.
pub const SEQ_HEADER: &str = "x-bavard-seq";
/// The header carrying a signed record's signature (hex) on reads.
pub const SIGNATURE_HEADER: &str = "x-bavard-signature";

pub use crate::http_errors::ErrorCode;

/// An API error: a status, a code and a message naming what was wrong (and, for
/// compare-and-set, what the client may assume: `outcome`, `current_version`).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// An error with the code of its status ([`ErrorCode::for_status`]).
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self::with_code(status, ErrorCode::for_status(status), message)
    }
    fn with_code(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: serde_json::Map::new(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let (status, code) = match &e {
            NodeError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            NodeError::Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            }
            NodeError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ShuttingDown),
            NodeError::Conflict { .. } => (StatusCode::CONFLICT, ErrorCode::Conflict),
            NodeError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, ErrorCode::Timeout),
            NodeError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::StorageError),
            NodeError::Limit(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::LimitExceeded),
            NodeError::StorageFailed(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, ErrorCode::StorageFailed)
            }
            NodeError::Undecided { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            }
            NodeError::ValueTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
            }
            NodeError::LargeValueCondition { .. } => {
                (StatusCode::BAD_REQUEST, ErrorCode::BadRequest)
            }
            NodeError::LargeValue(b) => (b.status(), ErrorCode::for_status(b.status())),
        };
        let mut err = Self::with_code(status, code, e.to_string());
        match &e {
            // A failed condition wrote nothing; the client learns the version to compare with.
            NodeError::Conflict { current } => {
                err.extra
                    .insert("outcome".into(), "condition_failed".into());
                let current = (current != "none").then(|| current.clone());
                err.extra.insert("current_version".into(), current.into());
            }
            NodeError::Undecided { outcome, .. } => {
                err.extra.insert("outcome".into(), outcome.as_str().into());
            }
            _ => {}
        }
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.extra;
        body.insert("error".into(), self.message.into());
        body.insert("code".into(), self.code.as_str().into());
        (self.status, Json(serde_json::Value::Object(body))).into_response()
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    node: Node,
    timeout: Duration,
}

/// Who may use the API (see the module docs).
#[derive(Clone, Debug)]
pub struct Access {
    token: String,
    /// Every request needs the token (the API is bound to a non-loopback address).
    token_everywhere: bool,
    allowed_hosts: Vec<String>,
}

/// The file of the API token in a data directory.
pub const TOKEN_FILE: &str = "api.token";

impl Access {
    /// The access rules of an API bound to `bind`, with the token of `data_dir` (created, with
    /// mode 0600, when missing) and the configured host names.
    ///
    /// # Errors
    ///
    /// The token file cannot be read or created, or holds no token.
    pub fn load_or_create(
        data_dir: &std::path::Path,
        bind: std::net::SocketAddr,
        allowed_hosts: &[String],
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let path = data_dir.join(TOKEN_FILE);
        let token = match std::fs::read_to_string(&path) {
            Ok(t) => t.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir)
                    .with_context(|| format!("cannot create {}", data_dir.display()))?;
                let token = hex::encode(rand::random::<[u8; 32]>());
                crate::util::write_private(&path, token.as_bytes())?;
                token
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if token.len() < 16 {
            anyhow::bail!(
                "{} holds no usable API token (at least 16 characters); delete it to create one",
                path.display()
            );
        }
        Ok(Self {
            token,
            token_everywhere: !bind.ip().is_loopback(),
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        })
    }

    /// Rules with a given token (tests, embedding).
    pub fn with_token(token: impl Into<String>, token_everywhere: bool) -> Self {
        Self {
            token: token.into(),
            token_everywhere,
            allowed_hosts: Vec::new(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        // Strip the port: `name:port`, `[v6]:port`, `v4:port`.
        let name = if let Some(rest) = host.strip_prefix('[') {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        } else {
            host.rsplit_once(':').map_or(host, |(n, _)| n)
        };
        let name = name.to_ascii_lowercase();
        name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || self.allowed_hosts.contains(&name)
    }

    fn token_ok(&self, headers: &axum::http::HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        // Constant time in the token's length.
        given.len() == self.token.len()
            && given
                .bytes()
                .zip(self.token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Applies [`Access`] to every request.
async fn guard(
    State(access): State<std::sync::Arc<Access>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(host) = req.headers().get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !access.host_allowed(host) {
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this node does not answer for host {host:?} (add it to [http] allowed_hosts)"
                ),
            )
            .into_response();
        }
    }
    let admin = req.uri().path().starts_with("/v1/admin/");
    // The console's static assets carry no data; the page asks for the token itself.
    let asset = crate::ui::is_asset(req.uri().path());
    if (admin || access.token_everywhere) && !asset && !access.token_ok(req.headers()) {
        let what = if admin {
            "admin endpoints need the node's API token"
        } else {
            "this API is bound to a non-loopback address and needs the node's API token"
        };
        let mut resp = ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("{what} (Authorization: Bearer TOKEN; the token is in DATA_DIR/{TOKEN_FILE})"),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    next.run(req).await
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

/// Every route of the API (except the blob routes, [`crate::blobs::http::documented_routes`]),
/// each registered with its OpenAPI description.
pub(crate) fn documented_routes() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi as _;
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(kv_get, kv_put, kv_delete))
        .routes(routes!(providers_get, providers_post))
        .routes(routes!(dht_get, dht_put))
        .routes(routes!(signed_get, signed_put))
        .routes(routes!(signed_get_salted, signed_put_salted))
        .routes(routes!(members))
        .routes(routes!(topics))
        .routes(routes!(topic_publish))
        .routes(routes!(topic_events))
        .routes(routes!(status))
        .routes(routes!(peers))
        .routes(routes!(routing))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(block_peer, unblock_peer))
        .routes(routes!(cluster_token))
        .routes(routes!(cluster_revoke))
}

/// Builds the API router for `node`, guarded by `access`.
pub fn router(node: Node, access: Access) -> Router {
    let cfg = node.config();
    let state = AppState {
        timeout: crate::config::secs(cfg.http.request_timeout_secs),
        node,
    };
    let (api, _) = documented_routes().split_for_parts();
    api.fallback(not_found)
        .layer(DefaultBodyLimit::max(cfg.http.max_body_size))
        .with_state(state.clone())
        // Blob uploads are streamed and bounded by [blobs] max_upload_bytes instead.
        .merge(crate::blobs::http::router(
            state.node.blobs(),
            state.timeout,
        ))
        .merge(crate::ui::router())
        .layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::new(access),
            guard,
        ))
        .layer(axum::middleware::from_fn(crate::http_errors::json_errors))
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Node,
    access: Access,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(node, access))
        .with_graceful_shutdown(shutdown)
        .await
}

fn parse_peer(peer: &str) -> Result<libp2p::PeerId, ApiError> {
    peer.parse()
        .map_err(|_| ApiError::bad_request(format!("{peer:?} is not a peer id")))
}

/// `PUT /v1/admin/blocked/{peer}`: refuse every connection with `peer` (an operator ban; the
/// testbed uses it to cut links on loopback).
#[utoipa::path(put, path = "/v1/admin/blocked/{peer}", tag = "admin", summary = "Refuse every connection with a peer",
    params(("peer" = String, Path, description = "A peer id")), security(("api_token" = [])),
    responses((status = 200, description = "Blocked", body = crate::openapi::BlockReply), crate::openapi::ErrorResponses))]
async fn block_peer(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_peer(&peer)?;
    s.node.block_peer(id);
    Ok(Json(crate::openapi::BlockReply {
        blocked: Some(peer),
        unblocked: None,
    })
    .into_response())
}

/// `POST /v1/admin/cluster/token?ttl=SECONDS` (default 3600): a join token for one new node
/// (only on the node holding the cluster's authority).
#[utoipa::path(post, path = "/v1/admin/cluster/token", tag = "admin", summary = "A join token for one new node (on the node holding the cluster's authority)",
    params(("ttl" = Option<u64>, Query, description = "Lifetime in seconds (default 3600)")), security(("api_token" = [])),
    responses((status = 200, description = "The token", body = crate::openapi::JoinTokenReply), crate::openapi::ErrorResponses))]
async fn cluster_token(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    query_params(&q, &["ttl"])?;
    let ttl = match q.get("ttl") {
        None => 3600,
        Some(t) => match t.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "ttl must be a positive number of seconds, got {t:?}"
                )));
            }
        },
    };
    let token = s.node.join_token(Duration::from_secs(ttl))?;
    Ok(Json(crate::openapi::JoinTokenReply {
        token,
        cluster_id: s.node.cluster_id(),
        ttl,
    })
    .into_response())
}

/// `POST /v1/admin/cluster/revoke/{peer}`: revoke a member everywhere (only on the node holding
/// the cluster's authority).
#[utoipa::path(post, path = "/v1/admin/cluster/revoke/{peer}", tag = "admin", summary = "Revoke a member everywhere (on the node holding the cluster's authority)",
    params(("peer" = String, Path, description = "A peer id")), security(("api_token" = [])),
    responses((status = 200, description = "Revoked", body = crate::openapi::RevokeReply), crate::openapi::ErrorResponses))]
async fn cluster_revoke(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_peer(&peer)?;
    let version = s.call("revoke", s.node.revoke(id)).await?;
    Ok(Json(crate::openapi::RevokeReply {
        revoked: peer,
        revocations_version: version,
    })
    .into_response())
}

/// `DELETE /v1/admin/blocked/{peer}`: lift a block.
#[utoipa::path(delete, path = "/v1/admin/blocked/{peer}", tag = "admin", summary = "Lift a block",
    params(("peer" = String, Path, description = "A peer id")), security(("api_token" = [])),
    responses((status = 200, description = "Unblocked", body = crate::openapi::BlockReply), crate::openapi::ErrorResponses))]
async fn unblock_peer(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_peer(&peer)?;
    s.node.unblock_peer(id);
    Ok(Json(crate::openapi::BlockReply {
        blocked: None,
        unblocked: Some(peer),
    })
    .into_response())
}

async fn not_found() -> ApiError {
    ApiError::with_code(
        StatusCode::NOT_FOUND,
        ErrorCode::NoSuchEndpoint,
        "no such endpoint",
    )
}

/// The key of a KV route (`/v1/kv/{key}`), read from the raw path segment so binary keys
/// (`?key_encoding=hex|base64url`) and malformed ones get a JSON error, never axum's plain text.
struct KvKey(ApiKey);

/// The key of a content route (`/v1/providers/{key}`, `/v1/dht/{key}`): a CID names its
/// multihash (see [`crate::keys`]).
struct ContentKey(ApiKey);

fn key_from_parts(
    parts: &axum::http::request::Parts,
    route: KeyRoute,
    max_len: usize,
) -> Result<ApiKey, ApiError> {
    let path = parts.uri.path();
    let raw = path.rsplit_once('/').map_or(path, |(_, last)| last);
    let encoding = parts
        .uri
        .query()
        .into_iter()
        .flat_map(url_pairs)
        .find(|(k, _)| k == "key_encoding")
        .map(|(_, v)| v.parse::<KeyEncoding>())
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    decode_segment(raw, encoding, route, max_len).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The `name=value` pairs of a query string, percent-decoded (lossy).
fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(k), decode(v))
    })
}

impl axum::extract::FromRequestParts<AppState> for KvKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &AppState,
    ) -> Result<Self, ApiError> {
        let max = s.node.config().store.max_key_size;
        key_from_parts(parts, KeyRoute::Kv, max).map(KvKey)
    }
}

impl axum::extract::FromRequestParts<AppState> for ContentKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &AppState,
    ) -> Result<Self, ApiError> {
        let max = s.node.config().store.max_key_size;
        key_from_parts(parts, KeyRoute::Content, max).map(ContentKey)
    }
}

/// A write's answer with the key as the request wrote it, how, and its bytes in hex.
fn keyed(mut reply: crate::api::PutReply, key: &ApiKey) -> crate::api::PutReply {
    reply.key = key.written.clone();
    reply.key_encoding = Some(key.encoding.name().to_string());
    reply.key_hex = Some(hex::encode(&key.bytes));
    reply
}

/// The answer of a write that counts acknowledgements, with the key's fields.
fn acks_reply(acks: usize, key: &ApiKey) -> crate::openapi::AcksReply {
    crate::openapi::AcksReply {
        acks,
        key: key.written.clone(),
        key_encoding: key.encoding.name().to_string(),
        key_hex: hex::encode(&key.bytes),
    }
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

#[utoipa::path(put, path = "/v1/kv/{key}", tag = "kv", summary = "Write a key (or compare-and-set it)",
    params(("key" = String, Path, description = "The key: UTF-8 text (percent-encoded), or hex / base64url bytes with `key_encoding`"),
        ("key_encoding" = Option<String>, Query, description = "`utf8` (default), `hex` or `base64url`"),
        ("consistency" = Option<String>, Query, description = "`one`, `quorum` (default), `all` or `serial`"),
        ("ttl" = Option<u64>, Query, description = "Lifetime in seconds (default: [store] default_ttl)"),
        ("if_version" = Option<u64>, Query, description = "Compare-and-set: apply only if the current version is this one"),
        ("if_absent" = Option<bool>, Query, description = "Compare-and-set: apply only if the key holds no value")),
    request_body(content = crate::openapi::Binary, content_type = "application/octet-stream", description = "The value: up to `[store] inline_value_limit` bytes it is kept in its record; larger (up to `[store] max_large_value_size`) it is streamed into a blob that every replica holds before it acknowledges"),
    responses(
        (status = 200, description = "Written and acknowledged by `acks` replicas", body = crate::api::PutReply),
        (status = 409, description = "The condition failed (nothing written)", body = crate::openapi::ErrorBody),
        (status = 413, description = "The value is over `[store] max_large_value_size` (nothing written)", body = crate::openapi::ErrorBody),
        crate::openapi::ErrorResponses))]
async fn kv_put(
    State(s): State<AppState>,
    KvKey(key): KvKey,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let result = kv_put_inner(&s, key, q, body).await;
    s.node.stages().since(Stage::http_put, started);
    result
}

async fn kv_put_inner(
    s: &AppState,
    key: ApiKey,
    q: HashMap<String, String>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    query_params(
        &q,
        &[
            "consistency",
            "ttl",
            "if_version",
            "if_absent",
            "key_encoding",
        ],
    )?;
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
    // A large value's body is streamed (`Node::put_stream`), so the request deadline grows with
    // its size: the upload and the replicas' fetch each get a second per MiB (the declared
    // length, or the largest value for a chunked body) beyond the request timeout. The upload
    // also fails after the request timeout without a byte.
    let declared = axum::body::HttpBody::size_hint(&body).exact();
    let max = s.node.config().store.max_large_value_size;
    if let Some(size) = declared
        && size > max
    {
        return Err(NodeError::ValueTooLarge { size, max }.into());
    }
    let deadline =
        s.timeout + 2 * crate::replica::large::transfer_allowance(declared.unwrap_or(max));
    let put = s
        .node
        .put_stream(key.bytes.clone(), body.into_data_stream(), opts);
    let reply = match tokio::time::timeout(deadline, put).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("put did not finish within {deadline:?}"),
            ));
        }
    };
    Ok(Json(keyed(reply, &key)).into_response())
}

#[utoipa::path(get, path = "/v1/kv/{key}", tag = "kv", summary = "Read a key",
    params(("key" = String, Path, description = "The key: UTF-8 text (percent-encoded), or hex / base64url bytes with `key_encoding`"),
        ("key_encoding" = Option<String>, Query, description = "`utf8` (default), `hex` or `base64url`"),
        ("consistency" = Option<String>, Query, description = "`one`, `quorum` (default), `all` or `serial`")),
    responses(
        (status = 200, description = "The value (a large one streamed from its blob, fetched from the replicas when not here)", content_type = "application/octet-stream", body = crate::openapi::Binary,
            headers(("x-bavard-version" = String, description = "The value's version"),
                ("x-bavard-blob" = Option<String>, description = "For a value stored as a blob: the blob's hash"))),
        (status = 404, description = "No value", body = crate::openapi::ErrorBody),
        crate::openapi::ErrorResponses))]
async fn kv_get(
    State(s): State<AppState>,
    KvKey(key): KvKey,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let result = kv_get_inner(&s, key, q).await;
    s.node.stages().since(Stage::http_get, started);
    result
}

async fn kv_get_inner(
    s: &AppState,
    key: ApiKey,
    q: HashMap<String, String>,
) -> Result<Response, ApiError> {
    query_params(&q, &["consistency", "key_encoding"])?;
    let opts = GetOptions {
        consistency: consistency(&q)?,
    };
    let Some(read) = s.call("get", s.node.get_value(&key.bytes, opts)).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not found"));
    };
    let mut resp = match &read.value {
        crate::api::KvValue::Inline(value) => value.clone().into_response(),
        crate::api::KvValue::Blob { hash, size } => {
            // Streamed as it is read (and verified, when fetched): never whole in memory.
            let blob = s
                .call("opening the value's blob", async {
                    s.node
                        .open_value(&read)
                        .await
                        .map_err(NodeError::LargeValue)
                })
                .await?;
            let mut resp = Response::new(axum::body::Body::from_stream(blob.into_stream(0..*size)));
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(*size));
            if let Ok(v) = HeaderValue::from_str(&hash.to_hex()) {
                resp.headers_mut().insert(BLOB_HEADER, v);
            }
            resp
        }
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&read.version) {
        resp.headers_mut().insert(VERSION_HEADER, v);
    }
    Ok(resp)
}

#[utoipa::path(delete, path = "/v1/kv/{key}", tag = "kv", summary = "Delete a key (a tombstone write)",
    params(("key" = String, Path, description = "The key: UTF-8 text (percent-encoded), or hex / base64url bytes with `key_encoding`"),
        ("key_encoding" = Option<String>, Query, description = "`utf8` (default), `hex` or `base64url`"),
        ("consistency" = Option<String>, Query, description = "`one`, `quorum` (default), `all` or `serial`"),
        ("if_version" = Option<u64>, Query, description = "Compare-and-set: apply only if the current version is this one"),
        ("if_absent" = Option<bool>, Query, description = "Compare-and-set: apply only if the key holds no value")),
    responses(
        (status = 200, description = "Deleted", body = crate::api::PutReply),
        (status = 409, description = "The condition failed (nothing deleted)", body = crate::openapi::ErrorBody),
        crate::openapi::ErrorResponses))]
async fn kv_delete(
    State(s): State<AppState>,
    KvKey(key): KvKey,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    query_params(
        &q,
        &["consistency", "if_version", "if_absent", "key_encoding"],
    )?;
    let opts = PutOptions {
        consistency: consistency(&q)?,
        ttl_secs: None,
        condition: condition(&q)?,
    };
    let reply = s
        .call("delete", s.node.delete(key.bytes.clone(), opts))
        .await?;
    Ok(Json(keyed(reply, &key)).into_response())
}

fn raw_bytes(value: Vec<u8>) -> Response {
    let mut resp = value.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

#[utoipa::path(put, path = "/v1/dht/{key}", tag = "dht", summary = "Store a value in the DHT (the k closest nodes)",
    params(("key" = String, Path, description = "The content key: text, a CID (names its multihash), or hex / base64url bytes with `key_encoding`"),
        ("key_encoding" = Option<String>, Query, description = "`utf8` (default), `hex` or `base64url`")),
    request_body(content = crate::openapi::Binary, content_type = "application/octet-stream", description = "The value"),
    responses((status = 200, description = "Stored", body = crate::openapi::AcksReply), crate::openapi::ErrorResponses))]
async fn dht_put(
    State(s): State<AppState>,
    ContentKey(key): ContentKey,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    query_params(&q, &["key_encoding"])?;
    let acks = s
        .call("dht put", s.node.dht_put(key.bytes.clone(), body.to_vec()))
        .await?;
    Ok(Json(acks_reply(acks, &key)).into_response())
}

#[utoipa::path(get, path = "/v1/dht/{key}", tag = "dht", summary = "Look a value up in the DHT",
    params(("key" = String, Path, description = "The content key: text, a CID (names its multihash), or hex / base64url bytes with `key_encoding`"),
        ("key_encoding" = Option<String>, Query, description = "`utf8` (default), `hex` or `base64url`")),
    responses(
        (status = 200, description = "The value", content_type = "application/octet-stream", body = crate::openapi::Binary),
        (status = 404, description = "No value found", body = crate::openapi::ErrorBody),
        crate::openapi::ErrorResponses))]
async fn dht_get(
    State(s): State<AppState>,
    ContentKey(key): ContentKey,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    query_params(&q, &["key_encoding"])?;
    match s.call("dht get", s.node.dht_get(&key.bytes)).await? {
        Some(value) => Ok(raw_bytes(value)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not found")),
    }
}

fn public_key(hex_key: &str) -> Result<[u8; 32], ApiError> {
    hex::decode(hex_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{hex_key:?} is not an ed25519 public key (64 hex digits)"
            ))
        })
}

#[utoipa::path(get, path = "/v1/signed/{public_key}", tag = "dht", summary = "Look a signed record up",
    params(("public_key" = String, Path, description = "The record's ed25519 public key, 64 hex digits")),
    responses(
        (status = 200, description = "The record's value", content_type = "application/octet-stream", body = crate::openapi::Binary,
            headers(("x-bavard-seq" = u64, description = "Its sequence number"), ("x-bavard-signature" = String, description = "Its signature, hex"))),
        (status = 404, description = "No record found", body = crate::openapi::ErrorBody),
        crate::openapi::ErrorResponses))]
async fn signed_get(
    State(s): State<AppState>,
    Path(pk): Path<String>,
) -> Result<Response, ApiError> {
    signed_get_inner(s, pk, String::new()).await
}

#[utoipa::path(get, path = "/v1/signed/{public_key}/{salt}", tag = "dht", summary = "Look a salted signed record up",
    params(("public_key" = String, Path, description = "The record's ed25519 public key, 64 hex digits"), ("salt" = String, Path, description = "The record's salt")),
    responses(
        (status = 200, description = "The record's value", content_type = "application/octet-stream", body = crate::openapi::Binary,
            headers(("x-bavard-seq" = u64, description = "Its sequence number"), ("x-bavard-signature" = String, description = "Its signature, hex"))),
        (status = 404, description = "No record found", body = crate::openapi::ErrorBody),
        crate::openapi::ErrorResponses))]
async fn signed_get_salted(
    State(s): State<AppState>,
    Path((pk, salt)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    signed_get_inner(s, pk, salt).await
}

async fn signed_get_inner(s: AppState, pk: String, salt: String) -> Result<Response, ApiError> {
    let pk = public_key(&pk)?;
    match s
        .call("signed get", s.node.signed_get(&pk, salt.as_bytes()))
        .await?
    {
        Some(record) => {
            let mut resp = raw_bytes(record.value);
            resp.headers_mut()
                .insert(SEQ_HEADER, HeaderValue::from(record.seq));
            if let Ok(v) = HeaderValue::from_str(&hex::encode(&record.signature)) {
                resp.headers_mut().insert(SIGNATURE_HEADER, v);
            }
            Ok(resp)
        }
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not found")),
    }
}

#[utoipa::path(put, path = "/v1/signed/{public_key}", tag = "dht", summary = "Store a signed record (BEP 44 style)",
    params(("public_key" = String, Path, description = "The record's ed25519 public key, 64 hex digits"), ("seq" = u64, Query, description = "The record's sequence number (higher replaces lower)"),
        ("sig" = String, Query, description = "Hex ed25519 signature of the record's signing bytes"),
        ("cas" = Option<u64>, Query, description = "Apply only if the stored sequence number is this one")),
    request_body(content = crate::openapi::Binary, content_type = "application/octet-stream", description = "The value"),
    responses((status = 200, description = "Stored", body = crate::openapi::SignedPutReply), crate::openapi::ErrorResponses))]
async fn signed_put(
    State(s): State<AppState>,
    Path(pk): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    signed_put_inner(s, pk, String::new(), q, body).await
}

#[utoipa::path(put, path = "/v1/signed/{public_key}/{salt}", tag = "dht", summary = "Store a salted signed record",
    params(("public_key" = String, Path, description = "The record's ed25519 public key, 64 hex digits"), ("salt" = String, Path, description = "The record's salt"), ("seq" = u64, Query, description = "The record's sequence number (higher replaces lower)"),
        ("sig" = String, Query, description = "Hex ed25519 signature of the record's signing bytes"),
        ("cas" = Option<u64>, Query, description = "Apply only if the stored sequence number is this one")),
    request_body(content = crate::openapi::Binary, content_type = "application/octet-stream", description = "The value"),
    responses((status = 200, description = "Stored", body = crate::openapi::SignedPutReply), crate::openapi::ErrorResponses))]
async fn signed_put_salted(
    State(s): State<AppState>,
    Path((pk, salt)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    signed_put_inner(s, pk, salt, q, body).await
}

/// `PUT /v1/signed/{public_key}[/{salt}]?seq=N&sig=HEX[&cas=M]`, body = value: the client
/// signed `signing_bytes(salt, seq, value)` (see `bavard_node::kad::records`).
async fn signed_put_inner(
    s: AppState,
    pk: String,
    salt: String,
    q: HashMap<String, String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    query_params(&q, &["seq", "sig", "cas"])?;
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        q.get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("{name} must be a number, got {v:?}"))
                })
            })
            .transpose()
    };
    let seq = number("seq")?.ok_or_else(|| ApiError::bad_request("seq is required"))?;
    let cas = number("cas")?;
    let signature = q
        .get("sig")
        .map(|h| {
            hex::decode(h).map_err(|_| ApiError::bad_request(format!("sig must be hex, got {h:?}")))
        })
        .transpose()?
        .ok_or_else(|| ApiError::bad_request("sig is required (hex ed25519 signature)"))?;
    let record = crate::kad::records::SignedRecord {
        public_key: public_key(&pk)?,
        salt: salt.clone().into_bytes(),
        seq,
        value: body.to_vec(),
        signature,
    };
    let acks = s.call("signed put", s.node.signed_put(record, cas)).await?;
    Ok(Json(crate::openapi::SignedPutReply {
        public_key: pk,
        salt,
        seq,
        acks,
    })
    .into_response())
}

#[utoipa::path(post, path = "/v1/providers/{key}", tag = "dht", summary = "Announce this node as a provider of a key",
    params(("key" = String, Path, description = "The content key: text, a CID (names its multihash), or hex / base64url bytes with `key_encoding`"),
        ("key_encoding" = Option<String>, Query, description = "`utf8` (default), `hex` or `base64url`")),
    responses((status = 200, description = "Announced", body = crate::openapi::AcksReply), crate::openapi::ErrorResponses))]
async fn providers_post(
    State(s): State<AppState>,
    ContentKey(key): ContentKey,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    query_params(&q, &["key_encoding"])?;
    let acks = s.call("provide", s.node.provide(key.bytes.clone())).await?;
    Ok(Json(acks_reply(acks, &key)).into_response())
}

#[utoipa::path(get, path = "/v1/providers/{key}", tag = "dht", summary = "Find a key's providers",
    params(("key" = String, Path, description = "The content key: text, a CID (names its multihash), or hex / base64url bytes with `key_encoding`"),
        ("key_encoding" = Option<String>, Query, description = "`utf8` (default), `hex` or `base64url`")),
    responses((status = 200, description = "The providers found", body = Vec<crate::api::PeerInfo>), crate::openapi::ErrorResponses))]
async fn providers_get(
    State(s): State<AppState>,
    ContentKey(key): ContentKey,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    query_params(&q, &["key_encoding"])?;
    let providers = s
        .call("providers", s.node.providers(key.bytes.clone()))
        .await?;
    Ok(Json(providers).into_response())
}

#[utoipa::path(get, path = "/v1/status", tag = "node", summary = "This node's status",
    responses((status = 200, description = "The status", body = crate::api::Status), crate::openapi::ErrorResponses))]
async fn status(State(s): State<AppState>) -> Response {
    Json(s.node.status()).into_response()
}

#[utoipa::path(get, path = "/v1/peers", tag = "node", summary = "Connected peers",
    responses((status = 200, description = "The peers", body = Vec<crate::api::PeerInfo>), crate::openapi::ErrorResponses))]
async fn peers(State(s): State<AppState>) -> Response {
    Json(s.node.peers()).into_response()
}

#[utoipa::path(get, path = "/v1/routing", tag = "node", summary = "The Kademlia routing table",
    responses((status = 200, description = "Its buckets", body = crate::api::RoutingInfo), crate::openapi::ErrorResponses))]
async fn routing(State(s): State<AppState>) -> Response {
    Json(s.node.routing()).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "node", summary = "Prometheus metrics (OpenMetrics text)",
    responses((status = 200, description = "The metrics", content_type = "application/openmetrics-text", body = String), crate::openapi::ErrorResponses))]
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

#[utoipa::path(get, path = "/v1/members", tag = "gossip", summary = "The membership as this node sees it",
    responses((status = 200, description = "Every member, sorted by peer id", body = Vec<crate::api::MemberInfo>), crate::openapi::ErrorResponses))]
async fn members(State(s): State<AppState>) -> Response {
    Json(s.node.members()).into_response()
}

#[utoipa::path(get, path = "/v1/topics", tag = "gossip", summary = "The topics this node takes part in, with its neighbours in each topic's tree",
    responses((status = 200, description = "The topics, sorted by name", body = Vec<crate::api::TopicInfo>), crate::openapi::ErrorResponses))]
async fn topics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let list = s.call("listing the topics", s.node.topics()).await?;
    Ok(Json(list).into_response())
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "node", summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API", content_type = "application/json", body = Object), crate::openapi::ErrorResponses))]
async fn openapi_json() -> Response {
    Json(crate::openapi::document()).into_response()
}

#[utoipa::path(post, path = "/v1/topics/{topic}", tag = "gossip", summary = "Publish a message on a topic",
    params(("topic" = String, Path, description = "The topic's name (1 to 256 bytes)")),
    request_body(content = crate::openapi::Binary, content_type = "application/octet-stream", description = "The payload"),
    responses((status = 200, description = "Published", body = crate::api::PublishReply), crate::openapi::ErrorResponses))]
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

#[utoipa::path(get, path = "/v1/topics/{topic}/events", tag = "gossip", summary = "Subscribe: a Server-Sent Events stream of the topic's messages",
    description = "Event `message` carries a UTF-8 payload as text, `binary` a payload in base64; the event id is the message id. Comments keep the stream alive every 15 s and report messages a slow client missed.",
    params(("topic" = String, Path, description = "The topic's name (1 to 256 bytes)")),
    responses((status = 200, description = "The stream", content_type = "text/event-stream", body = String), crate::openapi::ErrorResponses))]
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
