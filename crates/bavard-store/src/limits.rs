//! Resource limits of a store, and the validation of incoming records against them.
//!
//! See [`StoreLimits`] for the defaults and their reasons.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::provider::ProviderRecord;
use crate::record::{Record, Value};

/// Resource limits of a store.
///
/// Every record and provider record that reaches a store may come from an untrusted peer, so
/// each dimension that costs memory or disk is bounded. The defaults, and why:
///
/// | limit | default | why |
/// |---|---|---|
/// | `max_key_bytes` | 1 KiB | DHT keys are hashes or short names; bounds the per-key index cost |
/// | `max_value_bytes` | 64 KiB | libp2p's `MemoryStore` allows 65 KiB, GossipSub 64 KiB; the kad max message size must exceed it (rust-libp2p's default is 16 KiB) |
/// | `max_id_bytes` | 128 | writer, publisher and provider peer ids; an ed25519 libp2p `PeerId` is 38 bytes |
/// | `max_records` | 100,000 | value rows, tombstones included; worst case ≈ 6.5 GB at 64 KiB each, typically a few MB |
/// | `max_providers_per_key` | 20 | k, as libp2p's `MemoryStore` |
/// | `max_provider_records` | 200,000 | all provider records; ≈ 10,000 keys × 20 providers |
/// | `max_provided_keys` | 10,000 | keys this node itself provides (and must republish every 22 h) |
/// | `max_addrs_per_provider` | 16 | listen addresses kept per provider |
/// | `max_addr_bytes` | 256 | one multiaddr |
///
/// Expired records and tombstones count against `max_records` until
/// [`crate::RecordStore::expire`] removes them, so the node should call it periodically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreLimits {
    /// Largest key, bytes.
    pub max_key_bytes: usize,
    /// Largest value, bytes.
    pub max_value_bytes: usize,
    /// Largest peer id (writer, publisher, provider), bytes.
    pub max_id_bytes: usize,
    /// Most value records (tombstones included) a store holds.
    pub max_records: usize,
    /// Most providers per key.
    pub max_providers_per_key: usize,
    /// Most provider records a store holds, all keys together.
    pub max_provider_records: usize,
    /// Most keys the local peer provides.
    pub max_provided_keys: usize,
    /// Most addresses per provider record.
    pub max_addrs_per_provider: usize,
    /// Largest address, bytes.
    pub max_addr_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 1024,
            max_value_bytes: 64 * 1024,
            max_id_bytes: 128,
            max_records: 100_000,
            max_providers_per_key: 20,
            max_provider_records: 200_000,
            max_provided_keys: 10_000,
            max_addrs_per_provider: 16,
            max_addr_bytes: 256,
        }
    }
}

impl StoreLimits {
    /// Checks the sizes of a value record (not the counts, which depend on the store).
    ///
    /// # Errors
    ///
    /// [`StoreError::KeyTooLarge`], [`StoreError::ValueTooLarge`] or [`StoreError::IdTooLarge`].
    pub fn check_record(&self, record: &Record) -> Result<(), StoreError> {
        self.check_key(&record.key)?;
        if let Value::Data(bytes) = &record.value
            && bytes.len() > self.max_value_bytes
        {
            return Err(StoreError::ValueTooLarge {
                len: bytes.len(),
                max: self.max_value_bytes,
            });
        }
        self.check_id("writer", &record.version.writer)?;
        if let Some(publisher) = &record.publisher {
            self.check_id("publisher", publisher)?;
        }
        Ok(())
    }

    /// Checks the sizes of a provider record (not the counts, which depend on the store).
    ///
    /// # Errors
    ///
    /// [`StoreError::KeyTooLarge`], [`StoreError::IdTooLarge`], [`StoreError::TooManyAddrs`] or
    /// [`StoreError::AddrTooLarge`].
    pub fn check_provider(&self, record: &ProviderRecord) -> Result<(), StoreError> {
        self.check_key(&record.key)?;
        self.check_id("provider", &record.provider)?;
        if record.addrs.len() > self.max_addrs_per_provider {
            return Err(StoreError::TooManyAddrs {
                len: record.addrs.len(),
                max: self.max_addrs_per_provider,
            });
        }
        if let Some(addr) = record.addrs.iter().find(|a| a.len() > self.max_addr_bytes) {
            return Err(StoreError::AddrTooLarge {
                len: addr.len(),
                max: self.max_addr_bytes,
            });
        }
        Ok(())
    }

    /// Checks a key's size.
    ///
    /// # Errors
    ///
    /// [`StoreError::KeyTooLarge`].
    pub fn check_key(&self, key: &[u8]) -> Result<(), StoreError> {
        if key.len() > self.max_key_bytes {
            return Err(StoreError::KeyTooLarge {
                len: key.len(),
                max: self.max_key_bytes,
            });
        }
        Ok(())
    }

    /// The largest consensus row ([`crate::RecordStore::paxos_write`]) a store accepts:
    /// `bavard_replica::paxos`'s acceptor row holds at most three ballots (a timestamp and a
    /// peer id each) and one proposed record (value, writer, publisher, expiry), so this is
    /// `max_value_bytes + 5 · max_id_bytes` and 256 bytes of framing.
    pub fn max_paxos_row_bytes(&self) -> usize {
        self.max_value_bytes
            .saturating_add(self.max_id_bytes.saturating_mul(5))
            .saturating_add(256)
    }

    /// Checks a consensus row's key and size.
    ///
    /// # Errors
    ///
    /// [`StoreError::KeyTooLarge`] or [`StoreError::PaxosRowTooLarge`].
    pub fn check_paxos_row(&self, key: &[u8], row: &[u8]) -> Result<(), StoreError> {
        self.check_key(key)?;
        if row.len() > self.max_paxos_row_bytes() {
            return Err(StoreError::PaxosRowTooLarge {
                len: row.len(),
                max: self.max_paxos_row_bytes(),
            });
        }
        Ok(())
    }

    fn check_id(&self, what: &'static str, id: &[u8]) -> Result<(), StoreError> {
        if id.len() > self.max_id_bytes {
            return Err(StoreError::IdTooLarge {
                what,
                len: id.len(),
                max: self.max_id_bytes,
            });
        }
        Ok(())
    }
}
