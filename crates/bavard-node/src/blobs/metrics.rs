//! The blob metrics, registered in the node's registry at start (`bavard_blobs_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::RejectLabels;

/// Every blob metric.
#[derive(Clone, Default)]
pub(crate) struct BlobMetrics {
    /// Blob bytes served to peers (block data, proofs excluded).
    pub(crate) served_bytes: Counter,
    /// Verified blob bytes received from peers, duplicates included.
    pub(crate) fetched_bytes: Counter,
    /// Blocks, tree nodes or size proofs from peers that failed verification.
    pub(crate) verification_failures: Counter,
    /// Providers a fetch stopped using, by reason (`bad_data`, `stalled`, `failed`).
    pub(crate) providers_dropped: Family<RejectLabels, Counter>,
    /// Fetches running.
    pub(crate) fetches_active: Gauge,
    /// Bytes the blob store holds (data and hash trees).
    pub(crate) stored_bytes: Gauge,
}

impl BlobMetrics {
    /// Creates the metrics and registers them in `registry` (prefixed `bavard_` by it).
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "blobs_served_bytes",
            "Blob bytes served to peers",
            m.served_bytes.clone(),
        );
        registry.register(
            "blobs_fetched_bytes",
            "Verified blob bytes received from peers, duplicates included",
            m.fetched_bytes.clone(),
        );
        registry.register(
            "blobs_verification_failures",
            "Blob blocks, tree nodes or size proofs from peers that failed verification",
            m.verification_failures.clone(),
        );
        registry.register(
            "blobs_providers_dropped",
            "Providers a blob fetch stopped using, by reason",
            m.providers_dropped.clone(),
        );
        registry.register(
            "blobs_fetches_active",
            "Blob fetches running",
            m.fetches_active.clone(),
        );
        registry.register(
            "blobs_stored_bytes",
            "Bytes the blob store holds",
            m.stored_bytes.clone(),
        );
        m
    }

    /// Counts a provider dropped for `reason`.
    pub(crate) fn provider_dropped(&self, reason: &str) {
        self.providers_dropped
            .get_or_create(&RejectLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}
