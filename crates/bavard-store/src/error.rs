//! Store errors.
//!
//! Every error leaves the store unchanged: operations validate before writing, and a failed
//! batch or transaction is rolled back as a whole.

use crate::codec::DecodeError;

/// Why a store operation failed. In every case, nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key is longer than [`crate::StoreLimits::max_key_bytes`]. Nothing was written.
    #[error("key of {len} bytes exceeds the maximum of {max} bytes")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is longer than [`crate::StoreLimits::max_value_bytes`]. Nothing was written.
    #[error("value of {len} bytes exceeds the maximum of {max} bytes")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A peer id (writer, publisher or provider) is longer than
    /// [`crate::StoreLimits::max_id_bytes`]. Nothing was written.
    #[error("{what} id of {len} bytes exceeds the maximum of {max} bytes")]
    IdTooLarge {
        /// Which id: `"writer"`, `"publisher"` or `"provider"`.
        what: &'static str,
        /// The id's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The store holds [`crate::StoreLimits::max_records`] records and the write would add a
    /// new key. Nothing was written; updates of existing keys still succeed.
    #[error("the store is full: it holds the maximum of {max} records")]
    TooManyRecords {
        /// The limit.
        max: usize,
    },
    /// The key already has [`crate::StoreLimits::max_providers_per_key`] unexpired providers
    /// and the announcement came from a new one. Nothing was written; existing providers can
    /// still refresh their records.
    #[error("key {} already has the maximum of {max} providers", hex::encode(key))]
    TooManyProviders {
        /// The key.
        key: Vec<u8>,
        /// The limit.
        max: usize,
    },
    /// The store holds [`crate::StoreLimits::max_provider_records`] provider records. Nothing
    /// was written.
    #[error("the store is full: it holds the maximum of {max} provider records")]
    TooManyProviderRecords {
        /// The limit.
        max: usize,
    },
    /// The local peer already provides [`crate::StoreLimits::max_provided_keys`] keys. Nothing
    /// was written.
    #[error("this node already provides the maximum of {max} keys")]
    TooManyProvidedKeys {
        /// The limit.
        max: usize,
    },
    /// A provider record lists more than [`crate::StoreLimits::max_addrs_per_provider`]
    /// addresses. Nothing was written.
    #[error("provider record with {len} addresses exceeds the maximum of {max}")]
    TooManyAddrs {
        /// The number of addresses.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An address is longer than [`crate::StoreLimits::max_addr_bytes`]. Nothing was written.
    #[error("address of {len} bytes exceeds the maximum of {max} bytes")]
    AddrTooLarge {
        /// The address's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A consensus row ([`crate::RecordStore::paxos_write`]) is longer than
    /// [`crate::StoreLimits::max_paxos_row_bytes`]. Nothing was written.
    #[error("consensus row of {len} bytes exceeds the maximum of {max} bytes")]
    PaxosRowTooLarge {
        /// The row's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A stored row could not be decoded (disk corruption, or a newer format). The operation
    /// was abandoned and nothing was written; [`crate::RecordStore::remove`] (or
    /// [`crate::RecordStore::remove_provider`]) deletes the row without decoding it.
    #[error("corrupt row in table {table} at key {}: {source}", hex::encode(key))]
    Corrupt {
        /// The table: `"records"` or `"providers"`.
        table: &'static str,
        /// The row's key in that table.
        key: Vec<u8>,
        /// What was wrong.
        source: DecodeError,
    },
    /// The storage engine failed (I/O error, full disk, lock held by another process). The
    /// transaction was rolled back: nothing was written.
    #[error("storage engine failed during {operation}: {source}")]
    Storage {
        /// What the store was doing.
        operation: &'static str,
        /// The engine's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Wraps an engine error.
    pub fn storage(
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Storage {
            operation,
            source: source.into(),
        }
    }
}
