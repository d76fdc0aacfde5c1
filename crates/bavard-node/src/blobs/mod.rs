//! Content-addressed blobs (issue 15): the node's side of `bavard-blobs` — the store at
//! `DATA_DIR/blobs`, the `/bavard/blobs/1` server, the fetch driver and the HTTP endpoints.
//!
//! A blob is named by the BLAKE3 hash of its bytes and moved with verified streaming (16 KiB
//! blocks, each checked against the root hash as it arrives; see the `bavard-blobs` crate
//! for the scheme and why BLAKE3/bao-tree). The DHT answers "who has it?" with provider
//! records under the hash's 32 bytes, as for any key; this module makes the answer useful.
//!
//! # The pieces
//!
//! - [`service`]: [`Blobs`], the service: the [`Store`](bavard_blobs::store::Store) behind
//!   a mutex that only blocking tasks take (no store call runs on an async worker), adds
//!   (the body is spooled and hashed without the lock, then committed), reads, listing,
//!   pinning, and the provider records: a blob is announced (ADD_PROVIDER, republished
//!   with the node's other provider records) once it is complete here, and withdrawn when
//!   it is evicted.
//! - [`server`]: the `/bavard/blobs/1` server (one request per stream: a size query, a have
//!   query or a get of block ranges). It serves only verified blocks, re-hashed on the way
//!   out, including those of a blob still being fetched.
//! - [`fetch`]: the fetch driver. It finds providers through the DHT (GET_PROVIDERS, asked
//!   again while it needs more), proves the size with one provider, and drives the
//!   scheduler [`Fetch`](bavard_blobs::swarm::Fetch): parallel range requests to several
//!   providers, more to faster ones, a provider dropped at its first bad block or when it
//!   stalls, its ranges asked of others. Verified blocks are written in place and
//!   checkpointed by the store, so a fetch interrupted by a crash or a restart resumes
//!   with the blocks it had; partial blobs found at start are resumed.
//! - [`http`]: `POST /v1/blobs`, `GET /v1/blobs`, `GET /v1/blobs/{hash}` (with `Range`),
//!   `GET /v1/blobs/{hash}/status`, `PUT`/`DELETE /v1/blobs/{hash}/pin`.
//! - [`probe`]: `/bavard/stream-probe/1` (off by default), the raw stream rate that
//!   `cargo xtask bench blobs` compares fetches with.
//!
//! # Who may fetch
//!
//! Any peer, cluster member or not, like the DHT's provider records: blobs are
//! content-addressed and verified, so serving one to the open network is BitTorrent's
//! model — knowing the hash is the capability, and nothing a peer sends can make this node
//! store or serve wrong bytes. No peer can list what a node holds. What serving costs is
//! bounded per peer (`[blobs] max_streams_per_peer` streams, the node's request rate limit,
//! `serve_bytes_per_sec_per_peer`) and overall (`max_concurrent_serves` gets at once; more
//! are answered busy). Malformed requests are typed errors, counted in
//! `bavard_inbound_rejected{reason="blobs_…"}`, and cost the peer its stream.

pub mod config;
pub(crate) mod fetch;
pub mod http;
mod metrics;
pub mod probe;
mod read;
pub(crate) mod server;
pub mod service;

use std::time::Duration;

use bavard_blobs::BlobHash;
use bavard_blobs::store::StoreError;
use serde::{Deserialize, Serialize};

pub use config::BlobsConfig;
pub(crate) use metrics::BlobMetrics;
pub use read::BlobRead;
pub use service::Blobs;

/// The blob transfer protocol.
pub const BLOBS_PROTOCOL: libp2p::StreamProtocol =
    libp2p::StreamProtocol::new(bavard_blobs::protocol::PROTOCOL_NAME);

/// What an add returns (`POST /v1/blobs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AddReply {
    /// The blob's hash (64 hex digits).
    pub hash: String,
    /// Its size in bytes.
    pub size: u64,
    /// Nodes that accepted this node's provider record, itself included.
    #[serde(default)]
    pub announced: usize,
}

/// A blob held here, as `GET /v1/blobs` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobEntry {
    /// Its hash.
    pub hash: String,
    /// Its size in bytes.
    pub size: u64,
    /// Bytes verified here (`size` when complete).
    pub verified_bytes: u64,
    /// Whether every block is here.
    pub complete: bool,
    /// Whether it is pinned (never evicted).
    pub pinned: bool,
}

/// One provider's part in a fetch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderStatus {
    /// Its peer id.
    pub peer_id: String,
    /// New verified bytes it delivered.
    pub bytes: u64,
    /// Whether the fetch still uses it.
    pub active: bool,
    /// Its measured rate, while in use.
    pub rate_bytes_per_sec: Option<f64>,
    /// Why the fetch stopped using it: `bad_data` (it sent a block that failed
    /// verification: banned from this fetch), `stalled` or `failed`.
    pub dropped: Option<String>,
}

/// `GET /v1/blobs/{hash}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobStatus {
    /// The blob's hash.
    pub hash: String,
    /// Its size, once known (proven by a provider).
    pub size: Option<u64>,
    /// Bytes verified here.
    pub verified_bytes: u64,
    /// Whether every block is here.
    pub complete: bool,
    /// Whether it is pinned.
    pub pinned: bool,
    /// `complete`, `fetching`, `finding_providers`, `partial` (some blocks here, no fetch
    /// running) or `failed`.
    pub state: String,
    /// The providers of the current or last fetch, with the bytes each delivered.
    pub providers: Vec<ProviderStatus>,
    /// Verified bytes the last fetch received, duplicates included.
    pub fetched_bytes: u64,
    /// Bytes the last fetch found already verified here when it started (a resumed fetch).
    pub resumed_bytes: u64,
    /// Why the last fetch failed.
    pub error: Option<String>,
}

/// Why a blob operation failed. Each maps to one HTTP status (see [`http`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Not a hash (400).
    #[error("{0:?} is not a blob hash (64 hex digits, or a CIDv1 of raw content in base32)")]
    BadHash(String),
    /// Not here and no provider found (404).
    #[error("blob {hash} is not here and no provider of it was found within {waited:?}")]
    NotFound {
        /// The blob.
        hash: BlobHash,
        /// How long providers were looked for.
        waited: Duration,
    },
    /// Not held here (404; for pinning and status).
    #[error("blob {0} is not here")]
    NotHere(BlobHash),
    /// An upload over the limit (413).
    #[error(
        "the content is {size} bytes or more, over the {max}-byte limit ([blobs] max_upload_bytes)"
    )]
    TooLarge {
        /// The size, or the bytes received so far.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The store's quota cannot make room (507).
    #[error("the blob store is full: {0}")]
    Quota(String),
    /// Too many fetches at once (429).
    #[error(
        "{0} fetches are running, the most [blobs] max_concurrent_fetches allows; try again later"
    )]
    TooManyFetches(usize),
    /// The fetch failed after providers were found (502).
    #[error("fetching blob {hash} failed: {why}")]
    FetchFailed {
        /// The blob.
        hash: BlobHash,
        /// What went wrong.
        why: String,
    },
    /// A wait ran out (504).
    #[error("{0}")]
    Timeout(String),
    /// The request body failed or was cut short (400).
    #[error("the upload failed: {0}")]
    Upload(String),
    /// A byte range that does not fit the blob (416).
    #[error("the range {range} does not fit a blob of {size} bytes")]
    BadRange {
        /// The range as asked.
        range: String,
        /// The blob's size.
        size: u64,
    },
    /// A stream probe failed (502; 400 for a bad byte count).
    #[error("stream probe failed: {0}")]
    Probe(String),
    /// The blob store failed (500).
    #[error("blob store error: {0}")]
    Store(String),
    /// The node is shutting down (503).
    #[error("node is shutting down")]
    ShuttingDown,
}

impl From<StoreError> for BlobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TooLarge { size, max } => BlobError::TooLarge { size, max },
            StoreError::QuotaExceeded { .. } => BlobError::Quota(e.to_string()),
            StoreError::NotFound(hash) => BlobError::NotHere(hash),
            other => BlobError::Store(other.to_string()),
        }
    }
}

/// Parses a blob hash: 64 hex digits, or a CIDv1 of raw content (`bafkr4i…`, any multibase,
/// the form IPFS prints) whose multihash is a 32-byte BLAKE3 one.
pub fn parse_hash(text: &str) -> Result<BlobHash, BlobError> {
    let bad = || BlobError::BadHash(text.chars().take(100).collect());
    if text.len() == 64 {
        return text.parse().map_err(|_| bad());
    }
    let cid = cid::Cid::try_from(text).map_err(|_| bad())?;
    if cid.version() != cid::Version::V1
        || cid.codec() != u64::from(bavard_blobs::hash::MULTICODEC_RAW)
    {
        return Err(bad());
    }
    BlobHash::from_multihash(&cid.hash().to_bytes()).map_err(|_| bad())
}

/// The CIDv1 (raw content, base32) text form of `hash`, as [`parse_hash`] reads it.
pub fn cid_text(hash: &BlobHash) -> String {
    cid::Cid::try_from(&hash.cid_v1_raw()[..])
        .expect("a raw CIDv1 of a blake3 multihash is a valid CID")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_parse_as_hex_or_as_a_base32_raw_cid() {
        let hash = BlobHash::of(b"hello");
        assert_eq!(parse_hash(&hash.to_hex()).unwrap(), hash);
        let cid = cid_text(&hash);
        assert!(cid.starts_with("bafkr4i"), "{cid}");
        assert_eq!(parse_hash(&cid).unwrap(), hash);
        for bad in [
            "",
            "xyz",
            &hash.to_hex()[1..],
            "bafkr4i!",
            &cid[..cid.len() - 1],
        ] {
            assert!(
                matches!(parse_hash(bad), Err(BlobError::BadHash(_))),
                "{bad:?}"
            );
        }
        // A CID of another codec (dag-pb, 0x70) is not a blob.
        let mut other = hash.cid_v1_raw().to_vec();
        other[1] = 0x70;
        let text = cid::Cid::try_from(&other[..]).unwrap().to_string();
        assert!(parse_hash(&text).is_err());
        // The same CID in another multibase (base58btc, `z…`) names the same blob.
        let z = cid::Cid::try_from(&hash.cid_v1_raw()[..])
            .unwrap()
            .to_string_of_base(cid::multibase::Base::Base58Btc)
            .unwrap();
        assert_eq!(parse_hash(&z).unwrap(), hash);
    }
}
