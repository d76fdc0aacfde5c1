//! The `[blobs]` config section.

use serde::{Deserialize, Serialize};

/// Content-addressed blobs: the store's quota, upload and fetch bounds, and what one peer may
/// cost this node when it serves blobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobsConfig {
    /// Most bytes the blob store holds (data and hash trees; a blob being fetched counts at
    /// its full size). Unpinned complete blobs are evicted, least recently used first, to
    /// make room; past that, adds and fetches are refused (507). 0: no limit.
    pub quota_bytes: u64,
    /// Largest upload through `POST /v1/blobs` (413 past it).
    pub max_upload_bytes: u64,
    /// Most providers one fetch downloads from at once.
    pub max_providers_per_fetch: usize,
    /// Most fetches running at once; more are refused with 429.
    pub max_concurrent_fetches: usize,
    /// Time allowed for opening a stream to a provider and for the answer to a size or
    /// have query.
    pub request_timeout_secs: f64,
    /// A provider with requests in flight that delivers nothing for this long is dropped
    /// and its ranges are asked of the others; a local reader (`GET /v1/blobs/{hash}`) that
    /// gets no new byte for this long ends with an error.
    pub stall_timeout_secs: f64,
    /// A fetch that finds no provider (or has lost them all) for this long fails: the GET
    /// of a blob nobody has answers 404 after it. Keep it below `[http]
    /// request_timeout_secs`.
    pub provider_wait_secs: f64,
    /// While fetching, how often the DHT is asked again for providers (to spread the load
    /// over new seeds), while fewer than `max_providers_per_fetch` are in use.
    pub provider_refresh_secs: f64,
    /// Inbound `/bavard/blobs/1` streams one peer may hold at once; more are reset.
    pub max_streams_per_peer: usize,
    /// Range requests this node serves at once, over every peer; more are answered "busy".
    pub max_concurrent_serves: usize,
    /// Bytes per second of blob data served to one peer; 0: unlimited.
    pub serve_bytes_per_sec_per_peer: u64,
    /// Serve `/bavard/stream-probe/1`, which streams as many zero bytes as the peer asks:
    /// the raw transport ceiling for `cargo xtask bench blobs`. Off by default: it lets any
    /// peer make this node send data.
    pub stream_probe: bool,
    /// Announce a blob being fetched (a provider record) as soon as its first blocks are
    /// verified and stored, not only once it is complete: the node already serves the
    /// blocks it holds, and leechers that arrive together then trade blocks among
    /// themselves instead of all queueing on the seeders (20× faster at the median for 200
    /// leechers of 256 MiB in `cargo xtask sim blobs --announce-partial`).
    pub announce_partial: bool,
}

impl Default for BlobsConfig {
    fn default() -> Self {
        Self {
            quota_bytes: 10 << 30,
            max_upload_bytes: 4 << 30,
            max_providers_per_fetch: 8,
            max_concurrent_fetches: 16,
            request_timeout_secs: 10.0,
            stall_timeout_secs: 10.0,
            provider_wait_secs: 20.0,
            provider_refresh_secs: 10.0,
            max_streams_per_peer: 8,
            max_concurrent_serves: 64,
            serve_bytes_per_sec_per_peer: 0,
            stream_probe: false,
            announce_partial: true,
        }
    }
}

impl BlobsConfig {
    /// Checks the settings that can be wrong in ways serde cannot see.
    pub fn validate(&self) -> anyhow::Result<()> {
        let counts = [
            ("max_providers_per_fetch", self.max_providers_per_fetch),
            ("max_concurrent_fetches", self.max_concurrent_fetches),
            ("max_streams_per_peer", self.max_streams_per_peer),
            ("max_concurrent_serves", self.max_concurrent_serves),
        ];
        for (name, value) in counts {
            if value == 0 {
                anyhow::bail!("blobs.{name} must be at least 1");
            }
        }
        let durations = [
            ("request_timeout_secs", self.request_timeout_secs),
            ("stall_timeout_secs", self.stall_timeout_secs),
            ("provider_wait_secs", self.provider_wait_secs),
            ("provider_refresh_secs", self.provider_refresh_secs),
        ];
        for (name, value) in durations {
            if !(value.is_finite() && value > 0.0) {
                anyhow::bail!("blobs.{name} must be a positive number of seconds, got {value}");
            }
        }
        if self.max_upload_bytes == 0 {
            anyhow::bail!("blobs.max_upload_bytes must be at least 1");
        }
        if self.max_upload_bytes > bavard_blobs::protocol::Limits::default().max_blob_size {
            anyhow::bail!(
                "blobs.max_upload_bytes ({}) is over the largest blob the protocol carries ({})",
                self.max_upload_bytes,
                bavard_blobs::protocol::Limits::default().max_blob_size
            );
        }
        Ok(())
    }
}
