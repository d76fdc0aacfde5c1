//! The error format of the HTTP API: every 4xx and 5xx answer is
//! `{"error": "<what was wrong>", "code": "<ErrorCode>"}` with `Content-Type: application/json`
//! (DESIGN.md), including the answers the handlers never see: axum's own rejections (a path
//! segment that is not UTF-8, a body over `[http] max_body_size`, a method a route does not
//! take) answer in plain text or with no body. [`json_errors`], the outermost layer of the
//! router, rewrites any 4xx or 5xx that is not JSON into that form, keeping its status and
//! headers, using the text as the message and taking the code from the status.
//!
//! `error` is for people and may change; `code` is for programs and is stable: one of
//! [`ErrorCode`]'s snake_case names.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};

/// The longest plain-text error body carried over into the JSON message.
const MAX_MESSAGE: usize = 4096;

/// What kind of error an API answer is: the `code` field of every error body. Each code goes
/// with one status (listed on the variant), except where noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a malformed request (a bad parameter, key, peer id, body or path segment).
    BadRequest,
    /// 401: the request needs the node's API token.
    Unauthorized,
    /// 404: the key, record or provider asked for does not exist.
    NotFound,
    /// 404: no endpoint has this path.
    NoSuchEndpoint,
    /// 405: the endpoint does not take this method (the `Allow` header lists those it does).
    MethodNotAllowed,
    /// 409: a conditional write found another version.
    Conflict,
    /// 413: the body is over `[http] max_body_size` (a KV value: over `[store]
    /// max_large_value_size`).
    PayloadTooLarge,
    /// 415: the body's content type is not one the endpoint takes.
    UnsupportedMediaType,
    /// 421: the `Host` header names a host the node does not answer for.
    HostNotAllowed,
    /// 429: a configured limit on what clients may create was reached.
    LimitExceeded,
    /// 500: local storage failed on this request.
    StorageError,
    /// 500: anything else that went wrong inside the node.
    Internal,
    /// 503: too few replicas answered for the consistency level.
    Unavailable,
    /// 503: the node is shutting down.
    ShuttingDown,
    /// 504: the request did not finish within its deadline (`[http] request_timeout_secs`).
    Timeout,
    /// 507: this node's storage failed; it takes no writes until its disk works again.
    StorageFailed,
    /// Any other 4xx status.
    ClientError,
}

impl ErrorCode {
    /// The code of an error answer that carries only its status.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Self::BadRequest,
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::CONFLICT => Self::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::MISDIRECTED_REQUEST => Self::HostNotAllowed,
            StatusCode::TOO_MANY_REQUESTS => Self::LimitExceeded,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => Self::Timeout,
            StatusCode::INSUFFICIENT_STORAGE => Self::StorageFailed,
            s if s.is_client_error() => Self::ClientError,
            _ => Self::Internal,
        }
    }

    /// The snake_case name, as in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::NoSuchEndpoint => "no_such_endpoint",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::HostNotAllowed => "host_not_allowed",
            Self::LimitExceeded => "limit_exceeded",
            Self::StorageError => "storage_error",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::Timeout => "timeout",
            Self::StorageFailed => "storage_failed",
            Self::ClientError => "client_error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of an error.
pub(crate) fn body(code: ErrorCode, message: &str) -> String {
    serde_json::json!({ "error": message, "code": code }).to_string()
}

/// Rewrites non-JSON error responses as `{"error": …, "code": …}` (see the module docs).
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
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(
        parts,
        Body::from(self::body(ErrorCode::for_status(status), &message)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_names_and_statuses_map_to_codes() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::NoSuchEndpoint,
            ErrorCode::HostNotAllowed,
            ErrorCode::StorageFailed,
            ErrorCode::ClientError,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::from(code.as_str())
            );
        }
        assert_eq!(
            ErrorCode::for_status(StatusCode::PAYLOAD_TOO_LARGE),
            ErrorCode::PayloadTooLarge
        );
        assert_eq!(
            ErrorCode::for_status(StatusCode::IM_A_TEAPOT),
            ErrorCode::ClientError
        );
        assert_eq!(
            ErrorCode::for_status(StatusCode::BAD_GATEWAY),
            ErrorCode::Internal
        );
        let v: serde_json::Value =
            serde_json::from_str(&body(ErrorCode::Timeout, "too slow")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "too slow", "code": "timeout"})
        );
    }
}
