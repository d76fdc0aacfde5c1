//! Store configuration: the local peer id, the limits and the tombstone grace period.

use crate::limits::StoreLimits;

/// Default time a tombstone is kept after its delete, ms: 10 days, Cassandra's
/// `gc_grace_seconds`. It must exceed the longest partition anti-entropy is expected to heal,
/// or a replica that missed the delete resurrects the value.
pub const DEFAULT_TOMBSTONE_GRACE_MS: u64 = 10 * 24 * 60 * 60 * 1000;

/// Configuration shared by every backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// The local peer's id bytes: provider records with this provider are "provided keys",
    /// listed by [`crate::RecordStore::provided`] for republishing and bounded by
    /// [`StoreLimits::max_provided_keys`].
    pub local_peer: Vec<u8>,
    /// Resource limits.
    pub limits: StoreLimits,
    /// How long a tombstone is kept after `deleted_at_ms` before [`crate::RecordStore::expire`]
    /// purges it, ms.
    pub tombstone_grace_ms: u64,
    /// Whether each commit is fsynced before it returns (default `true`). With `false`, redb
    /// commits without syncing ([`redb::Durability::None`]): a crash can lose every write since
    /// the last synced commit. Only for benchmarks that measure the cost of durability.
    pub fsync: bool,
}

impl StoreConfig {
    /// Default limits and grace period for the local peer `local_peer`.
    pub fn new(local_peer: impl Into<Vec<u8>>) -> Self {
        Self {
            local_peer: local_peer.into(),
            limits: StoreLimits::default(),
            tombstone_grace_ms: DEFAULT_TOMBSTONE_GRACE_MS,
            fsync: true,
        }
    }

    /// Replaces the limits.
    #[must_use]
    pub fn with_limits(mut self, limits: StoreLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Turns fsync on commit on or off (see [`StoreConfig::fsync`]).
    #[must_use]
    pub fn with_fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Replaces the tombstone grace period, ms.
    #[must_use]
    pub fn with_tombstone_grace_ms(mut self, grace_ms: u64) -> Self {
        self.tombstone_grace_ms = grace_ms;
        self
    }
}
