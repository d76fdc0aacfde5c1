//! Provider records: "peer P can serve key K, at these addresses, until T".

use serde::{Deserialize, Serialize};

/// A provider record, as announced by Kademlia's `ADD_PROVIDER`.
///
/// A store holds at most one record per `(key, provider)`: a re-announcement replaces (refreshes)
/// the previous one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// The provided key.
    pub key: Vec<u8>,
    /// The provider's peer id bytes.
    pub provider: Vec<u8>,
    /// The provider's addresses (multiaddr bytes).
    pub addrs: Vec<Vec<u8>>,
    /// Wall-clock expiry in unix ms; expired when `now_ms >= expires_at_ms`.
    pub expires_at_ms: u64,
}

impl ProviderRecord {
    /// A provider record.
    pub fn new(
        key: impl Into<Vec<u8>>,
        provider: impl Into<Vec<u8>>,
        addrs: Vec<Vec<u8>>,
        expires_at_ms: u64,
    ) -> Self {
        Self {
            key: key.into(),
            provider: provider.into(),
            addrs,
            expires_at_ms,
        }
    }

    /// Whether the record has expired at `now_ms` (unix ms).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_record_expires_at_its_deadline() {
        let p = ProviderRecord::new(b"k".to_vec(), b"p".to_vec(), vec![], 50);
        assert!(!p.is_expired(49));
        assert!(p.is_expired(50));
    }
}
