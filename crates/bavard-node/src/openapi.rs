//! The HTTP API described as OpenAPI 3.1, served at `GET /v1/openapi.json`.
//!
//! The document is generated from the handlers: each carries a `#[utoipa::path]` annotation
//! (method, path, parameters, answers), and the routers register them through
//! `utoipa_axum::routes!`, which builds the axum route *and* its entry in the document from that
//! one annotation. A route cannot be served without being described, and the test
//! `openapi.rs` in `tests/` checks the result against the OpenAPI 3.1 schema and against the
//! router (every documented operation answers; undocumented paths get `no_such_endpoint`).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document's frame: title, description, tags, security schemes. The paths and schemas come
/// from the routers ([`document`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "bavard node API",
        description = "The HTTP API of a bavard node: a replicated key-value store (tunable \
            consistency, compare-and-set), the Kademlia DHT (values, signed records, providers), \
            membership and topic pub/sub, content-addressed blobs, and operations. Every error \
            is `{\"error\", \"code\"}` with a stable code. On a loopback address the API is open \
            to local clients; bound to any other address every request needs the node's bearer \
            token (DATA_DIR/api.token), and `/v1/admin/…` always does.",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "kv", description = "The replicated key-value store"),
        (name = "dht", description = "Kademlia values, signed records and provider records"),
        (name = "gossip", description = "Membership and topic publish/subscribe"),
        (name = "blobs", description = "Content-addressed blobs, fetched from providers"),
        (name = "node", description = "This node: status, peers, routing table, metrics"),
        (name = "admin", description = "Operator endpoints (always need the API token)"),
        (name = "console", description = "The web console's static assets"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerToken),
)]
pub(crate) struct ApiDoc;

/// Declares the `api_token` bearer scheme and applies it to every operation: it is required
/// off loopback and on admin endpoints (see [`crate::http::Access`]).
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every error answer's body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What was wrong, for people.
    pub error: String,
    /// A stable code, for programs (`bad_request`, `not_found`, `unavailable`, `conflict`,
    /// `timeout`, `limit_exceeded`, `no_such_endpoint`, …).
    pub code: String,
    /// For a compare-and-set that did not apply or whose outcome is unknown:
    /// `condition_failed`, `not_applied` or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// For a failed condition: the version to compare with next (null when the key is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
}

/// Opaque bytes (a value, a blob, a metrics page): the schema of binary request and answer
/// bodies.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(#[allow(dead_code)] Vec<u8>);

/// The answer of a write that only counts acknowledgements (DHT put, provider announce).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AcksReply {
    /// Nodes that stored the record.
    pub acks: usize,
    /// The key as the request wrote it.
    pub key: String,
    /// How the request wrote the key (`utf8`, `hex`, `base64url`, `cid`).
    pub key_encoding: String,
    /// The key's bytes in hex.
    pub key_hex: String,
}

/// The answer of `PUT /v1/signed/{public_key}[/{salt}]`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SignedPutReply {
    /// The record's ed25519 public key, hex.
    pub public_key: String,
    /// Its salt (empty when none).
    pub salt: String,
    /// Its sequence number.
    pub seq: u64,
    /// Nodes that stored it.
    pub acks: usize,
}

/// The answer of `PUT /v1/admin/blocked/{peer}` (`blocked`) or `DELETE` (`unblocked`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockReply {
    /// The peer now blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// The peer no longer blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unblocked: Option<String>,
}

/// The answer of `POST /v1/admin/cluster/token`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenReply {
    /// The join token for one new node.
    pub token: String,
    /// The cluster it joins.
    pub cluster_id: Option<String>,
    /// Its lifetime in seconds.
    pub ttl: u64,
}

/// The answer of `POST /v1/admin/cluster/revoke/{peer}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevokeReply {
    /// The peer revoked.
    pub revoked: String,
    /// The version of the cluster's revocation list that carries it.
    pub revocations_version: u64,
}

/// The answer of `PUT` and `DELETE /v1/blobs/{hash}/pin`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PinReply {
    /// The blob's hash.
    pub hash: String,
    /// Whether it is pinned now.
    pub pinned: bool,
}

/// The errors any endpoint may answer, each as an [`ErrorBody`](ErrorBody).
// Only read by the OpenAPI derive: the answers themselves are built by `ApiError`.
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
pub(crate) enum ErrorResponses {
    /// The request is malformed (a bad key, parameter or body).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// The API token is missing or wrong (off loopback, or an admin endpoint).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The request's `Host` is not one this node answers for.
    #[response(status = 421)]
    MisdirectedRequest(ErrorBody),
    /// A limit was hit (too many topics, requests, fetches).
    #[response(status = 429)]
    TooManyRequests(ErrorBody),
    /// Not enough replicas or peers answered; the message says how many and what to do.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// The request did not finish within `[http] request_timeout_secs`.
    #[response(status = 504)]
    Timeout(ErrorBody),
}

/// The whole document: the frame of [`ApiDoc`] with every route of the API and blob routers.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = crate::http::documented_routes().split_for_parts().1;
        doc.merge(crate::blobs::http::documented_routes().split_for_parts().1);
        doc.merge(crate::ui::documented_routes().split_for_parts().1);
        doc
    })
}
