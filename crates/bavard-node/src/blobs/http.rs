//! The blob endpoints of the HTTP API, merged into [`crate::http::router`] (so the same
//! [`Access`](crate::http::Access) rules apply):
//!
//! | method and path | what |
//! |---|---|
//! | `POST /v1/blobs` body = content | 200 `{"hash","size","announced"}`; 413 past `[blobs] max_upload_bytes` |
//! | `GET /v1/blobs` | `[{"hash","size","verified_bytes","complete","pinned"}]` |
//! | `GET /v1/blobs/{hash}` | the content, fetched from providers when not here; `Range: bytes=…` gives 206 (416 when it does not fit) |
//! | `GET /v1/blobs/{hash}/status` | size, bytes verified, state, providers and the bytes from each |
//! | `PUT /v1/blobs/{hash}/pin`, `DELETE /v1/blobs/{hash}/pin` | pin, unpin |
//! | `POST /v1/admin/stream-probe/{peer}?bytes=N` | the raw rate of one stream from `peer` (admin; needs `[blobs] stream_probe` on `peer`) |
//!
//! `{hash}` is 64 hex digits or a base32 CIDv1 of raw content. Every request has a deadline:
//! the request timeout until the response starts (a GET of a blob not here waits for its
//! size, at most `[blobs] provider_wait_secs` for providers); then a content stream ends with
//! an error after `[blobs] stall_timeout_secs` without a new verified byte, and an upload
//! fails after the request timeout without a new byte.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{BlobError, Blobs, parse_hash};

impl BlobError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            BlobError::BadHash(_) | BlobError::Upload(_) => StatusCode::BAD_REQUEST,
            BlobError::NotFound { .. } | BlobError::NotHere(_) => StatusCode::NOT_FOUND,
            BlobError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BlobError::Quota(_) => StatusCode::INSUFFICIENT_STORAGE,
            BlobError::TooManyFetches(_) => StatusCode::TOO_MANY_REQUESTS,
            BlobError::FetchFailed { .. } | BlobError::Probe(_) => StatusCode::BAD_GATEWAY,
            BlobError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            BlobError::BadRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            BlobError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            BlobError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for BlobError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = crate::http_errors::ErrorCode::for_status(status).as_str();
        let mut resp = (
            status,
            Json(json!({ "error": self.to_string(), "code": code })),
        )
            .into_response();
        if let BlobError::BadRange { size, .. } = &self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        resp
    }
}

#[derive(Clone)]
pub(crate) struct BlobState {
    blobs: Blobs,
    timeout: Duration,
}

impl BlobState {
    async fn call<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, BlobError>>,
    ) -> Result<T, BlobError> {
        tokio::time::timeout(self.timeout, f).await.map_err(|_| {
            BlobError::Timeout(format!("{what} did not finish within {:?}", self.timeout))
        })?
    }
}

/// The blob routes, each registered with its OpenAPI description.
pub(crate) fn documented_routes() -> OpenApiRouter<BlobState> {
    OpenApiRouter::new()
        .routes(routes!(add, list))
        .routes(routes!(read))
        .routes(routes!(status))
        .routes(routes!(pin, unpin))
        .routes(routes!(probe))
}

/// The blob routes, with `timeout` as the deadline of each request until its response
/// starts.
pub(crate) fn router(blobs: Blobs, timeout: Duration) -> Router {
    let (routes, _) = documented_routes().split_for_parts();
    routes.with_state(BlobState { blobs, timeout })
}

#[utoipa::path(post, path = "/v1/blobs", tag = "blobs", summary = "Add a blob (streamed to disk, announced as provided)",
    request_body(content = crate::openapi::Binary, content_type = "application/octet-stream", description = "The content"),
    responses((status = 200, description = "Stored", body = super::AddReply),
        (status = 413, description = "Over [blobs] max_upload_bytes", body = crate::openapi::ErrorBody),
        (status = 507, description = "Over the disk quota", body = crate::openapi::ErrorBody),
        crate::openapi::ErrorResponses))]
/// `POST /v1/blobs`: the body, streamed to disk.
async fn add(
    State(s): State<BlobState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, BlobError> {
    let max = s.blobs.config().max_upload_bytes;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max
    {
        return Err(BlobError::TooLarge { size: len, max });
    }
    let reply = s.blobs.add_stream(body.into_data_stream()).await?;
    Ok(Json(reply).into_response())
}

#[utoipa::path(get, path = "/v1/blobs", tag = "blobs", summary = "The blobs held here",
    responses((status = 200, description = "Every blob", body = Vec<super::BlobEntry>), crate::openapi::ErrorResponses))]
/// `GET /v1/blobs`.
async fn list(State(s): State<BlobState>) -> Result<Response, BlobError> {
    let list = s.call("listing the blobs", s.blobs.list()).await?;
    Ok(Json(list).into_response())
}

#[utoipa::path(get, path = "/v1/blobs/{hash}/status", tag = "blobs", summary = "A blob's state here and its fetch's providers",
    params(("hash" = String, Path, description = "The blob: 64 hex digits (BLAKE3) or a base32 CIDv1 of raw content")),
    responses((status = 200, description = "The status", body = super::BlobStatus), crate::openapi::ErrorResponses))]
/// `GET /v1/blobs/{hash}/status`.
async fn status(
    State(s): State<BlobState>,
    Path(hash): Path<String>,
) -> Result<Response, BlobError> {
    let hash = parse_hash(&hash)?;
    let status = s.call("status", s.blobs.status(hash)).await?;
    Ok(Json(status).into_response())
}

#[utoipa::path(put, path = "/v1/blobs/{hash}/pin", tag = "blobs", summary = "Pin a blob (never evicted)",
    params(("hash" = String, Path, description = "The blob: 64 hex digits (BLAKE3) or a base32 CIDv1 of raw content")),
    responses((status = 200, description = "Pinned", body = crate::openapi::PinReply), crate::openapi::ErrorResponses))]
/// `PUT /v1/blobs/{hash}/pin`.
async fn pin(State(s): State<BlobState>, Path(text): Path<String>) -> Result<Response, BlobError> {
    let hash = parse_hash(&text)?;
    s.call("pin", s.blobs.pin(hash)).await?;
    Ok(Json(crate::openapi::PinReply {
        hash: hash.to_hex(),
        pinned: true,
    })
    .into_response())
}

#[utoipa::path(delete, path = "/v1/blobs/{hash}/pin", tag = "blobs", summary = "Unpin a blob (evictable under the quota)",
    params(("hash" = String, Path, description = "The blob: 64 hex digits (BLAKE3) or a base32 CIDv1 of raw content")),
    responses((status = 200, description = "Unpinned", body = crate::openapi::PinReply), crate::openapi::ErrorResponses))]
/// `DELETE /v1/blobs/{hash}/pin`.
async fn unpin(
    State(s): State<BlobState>,
    Path(text): Path<String>,
) -> Result<Response, BlobError> {
    let hash = parse_hash(&text)?;
    s.call("unpin", s.blobs.unpin(hash)).await?;
    Ok(Json(crate::openapi::PinReply {
        hash: hash.to_hex(),
        pinned: false,
    })
    .into_response())
}

#[utoipa::path(get, path = "/v1/blobs/{hash}", tag = "blobs", summary = "A blob's content, fetched from providers when not here, verified as it streams",
    params(("hash" = String, Path, description = "The blob: 64 hex digits (BLAKE3) or a base32 CIDv1 of raw content"), ("Range" = Option<String>, Header, description = "`bytes=a-b`, `bytes=a-` or `bytes=-n`")),
    responses(
        (status = 200, description = "The content", content_type = "application/octet-stream", body = crate::openapi::Binary),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = crate::openapi::Binary),
        (status = 404, description = "Not here and no provider found", body = crate::openapi::ErrorBody),
        (status = 416, description = "The range does not fit", body = crate::openapi::ErrorBody),
        crate::openapi::ErrorResponses))]
/// `GET /v1/blobs/{hash}`: the content (or a `Range` of it), streamed as it is verified.
async fn read(
    State(s): State<BlobState>,
    Path(text): Path<String>,
    headers: HeaderMap,
) -> Result<Response, BlobError> {
    let hash = parse_hash(&text)?;
    let read = s.call("opening the blob", s.blobs.open_read(hash)).await?;
    let size = read.size();
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(spec) => parse_range(spec, size)?,
    };
    let (status, bytes) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.clone()),
        None => (StatusCode::OK, 0..size),
    };
    let len = bytes.end - bytes.start;
    let stream = read.into_stream(bytes.clone());
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", hash.to_hex())) {
        h.insert(header::ETAG, etag);
    }
    if range.is_some()
        && let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{size}",
            bytes.start,
            bytes.end.saturating_sub(1)
        ))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

/// Parses a `Range` header for a blob of `size` bytes: `Ok(None)` to send the whole blob (a
/// unit other than bytes, or several ranges: RFC 9110 lets a server ignore them), the byte
/// range of a single `bytes=a-b`, `bytes=a-` or `bytes=-n`, or 416 when it does not fit.
fn parse_range(spec: &str, size: u64) -> Result<Option<std::ops::Range<u64>>, BlobError> {
    let bad = || BlobError::BadRange {
        range: spec.chars().take(100).collect(),
        size,
    };
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if set.contains(',') {
        return Ok(None);
    }
    let (first, last) = set.trim().split_once('-').ok_or_else(bad)?;
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    let range = match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => {
            let n = number(last)?;
            if n == 0 {
                return Err(bad());
            }
            size.saturating_sub(n)..size
        }
        (false, true) => number(first)?..size,
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            if b < a {
                return Err(bad());
            }
            a..b.saturating_add(1).min(size)
        }
        (true, true) => return Err(bad()),
    };
    if range.start >= size {
        return Err(bad());
    }
    Ok(Some(range))
}

#[utoipa::path(post, path = "/v1/admin/stream-probe/{peer}", tag = "admin", summary = "Measure the raw rate of one stream from a peer",
    params(("peer" = String, Path, description = "A peer id with [blobs] stream_probe on"),
        ("bytes" = Option<u64>, Query, description = "Bytes to transfer (default 64 MiB)")),
    security(("api_token" = [])),
    responses((status = 200, description = "What the probe measured", body = super::probe::ProbeReport), crate::openapi::ErrorResponses))]
/// `POST /v1/admin/stream-probe/{peer}?bytes=N` (default 64 MiB).
async fn probe(
    State(s): State<BlobState>,
    Path(peer): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, Response> {
    let bad = |m: String| {
        let body = json!({ "error": m, "code": "bad_request" });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    };
    let peer: libp2p::PeerId = peer
        .parse()
        .map_err(|_| bad(format!("{peer:?} is not a peer id")))?;
    let bytes = match q.get("bytes") {
        None => 64 << 20,
        Some(b) => match b.parse::<u64>() {
            Ok(n) if (1..=super::probe::MAX_PROBE_BYTES).contains(&n) => n,
            _ => {
                return Err(bad(format!(
                    "bytes must be 1 to {}, got {b:?}",
                    super::probe::MAX_PROBE_BYTES
                )));
            }
        },
    };
    // A transfer of this size may take longer than the request timeout: only stalls end it.
    let report = s
        .blobs
        .probe_stream(peer, bytes)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(Json(report).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_parse_and_out_of_bounds_ones_are_refused() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some(0..10));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), Some(90..100));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some(90..100));
        assert_eq!(parse_range("bytes=-500", 100).unwrap(), Some(0..100));
        assert_eq!(parse_range("bytes=95-200", 100).unwrap(), Some(95..100));
        assert_eq!(parse_range("items=0-1", 100).unwrap(), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100).unwrap(), None);
        for bad in [
            "bytes=100-",
            "bytes=5-2",
            "bytes=-0",
            "bytes=-",
            "bytes=x-1",
            "bytes=7",
        ] {
            assert!(
                matches!(parse_range(bad, 100), Err(BlobError::BadRange { .. })),
                "{bad}"
            );
        }
        assert!(
            parse_range("bytes=0-", 0).is_err(),
            "an empty blob has no range"
        );
    }
}
