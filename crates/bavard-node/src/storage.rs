//! The node's local storage: the record store (`records.redb`), the group committer every local
//! write goes through, and the hybrid logical clock with its durable lease, which stamps this
//! node's versions and bounds the versions it accepts from others.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use bavard_store::{
    Hlc, HlcTimestamp, MemoryStore, Record, RecordStore, RedbStore, StoreConfig as BackendConfig,
    StoreLimits, Version,
};
use libp2p::PeerId;

use crate::api::NodeError;
use crate::closable::Closable;
use crate::config::{NodeConfig, secs};
use crate::replica::commit::Committer;
use crate::util::unix_ms;

/// Records, the committer and the clock.
pub(crate) struct Storage {
    /// The record store of the replicated KV store (closable, so a restart in the same process
    /// can reopen it).
    pub(crate) store: Arc<Closable>,
    /// DHT records (what Kademlia's PUT_VALUE stores and GET_VALUE serves), apart from the KV
    /// store: `dht.redb`.
    pub(crate) dht: Arc<Closable>,
    /// Group commit for every local write.
    pub(crate) committer: Committer,
    hlc: Mutex<Hlc>,
    /// The persisted upper bound on issued timestamps (see [`crate::clock`]); locked after
    /// `hlc`, only by [`Storage::next_version`].
    lease: Mutex<crate::clock::ClockLease>,
    writer: Vec<u8>,
}

impl Storage {
    /// Opens the record store, starts the committer and restores the clock above its lease.
    pub(crate) fn open(config: &NodeConfig, peer_id: &PeerId) -> anyhow::Result<Self> {
        let limits = StoreLimits {
            max_value_bytes: config.store.max_value_size,
            max_key_bytes: config.store.max_key_size,
            max_records: config.store.max_records,
            max_providers_per_key: config.store.max_providers_per_key,
            max_provided_keys: config.store.max_provided_keys,
            ..StoreLimits::default()
        };
        let backend = BackendConfig::new(peer_id.to_bytes())
            .with_fsync(config.store.fsync)
            .with_limits(limits)
            .with_tombstone_grace_ms(
                secs(config.replication.tombstone_grace_secs).as_millis() as u64
            );
        let store: Arc<dyn RecordStore> = if config.store.in_memory {
            Arc::new(MemoryStore::new(backend))
        } else {
            let path = config.data_dir.join("records.redb");
            Arc::new(
                RedbStore::open(&path, backend)
                    .with_context(|| format!("cannot open the record store {}", path.display()))?,
            )
        };
        let store = Arc::new(Closable::new(store));
        let dht_limits = StoreLimits {
            // A signed record carries its key, salt, sequence number and signature.
            max_value_bytes: config.dht.max_value_size + 256,
            max_key_bytes: config.store.max_key_size,
            max_records: config.dht.max_records,
            max_providers_per_key: config.store.max_providers_per_key,
            max_provided_keys: config.store.max_provided_keys,
            ..StoreLimits::default()
        };
        let dht_backend = BackendConfig::new(peer_id.to_bytes())
            .with_fsync(config.store.fsync)
            .with_limits(dht_limits);
        let dht: Arc<dyn RecordStore> =
            if config.store.in_memory {
                Arc::new(MemoryStore::new(dht_backend))
            } else {
                let path = config.data_dir.join("dht.redb");
                Arc::new(RedbStore::open(&path, dht_backend).with_context(|| {
                    format!("cannot open the DHT record store {}", path.display())
                })?)
            };
        let dht = Arc::new(Closable::new(dht));
        let lease =
            crate::clock::ClockLease::open((!config.store.in_memory).then_some(&config.data_dir))?;
        let mut hlc = Hlc::new(bavard_store::hlc::DEFAULT_MAX_DRIFT_MS);
        hlc.observe_persisted(HlcTimestamp::new(lease.until_ms(), 0));
        let behind_ms = lease.until_ms().saturating_sub(unix_ms());
        if behind_ms > hlc.max_drift_ms() {
            tracing::warn!(
                behind_ms,
                "the wall clock is behind the versions this node issued before it restarted; \
                 replicas refuse its writes until the clock catches up"
            );
        }
        let committer = Committer::start(
            store.clone() as Arc<dyn RecordStore>,
            config.replication.max_batch_records,
        )
        .context("cannot start the committer thread")?;
        Ok(Self {
            store,
            dht,
            committer,
            hlc: Mutex::new(hlc),
            lease: Mutex::new(lease),
            writer: peer_id.to_bytes(),
        })
    }

    /// A new version for a local write, covered by the durable clock lease.
    pub(crate) fn next_version(&self) -> Result<Version, NodeError> {
        let mut hlc = self.hlc.lock().expect("hlc lock");
        let ts = hlc.now(unix_ms());
        self.lease
            .lock()
            .expect("lease lock")
            .cover(ts.physical_ms())
            .map_err(|e| NodeError::Storage(format!("cannot extend the clock lease: {e:#}")))?;
        drop(hlc);
        Ok(Version::new(ts, self.writer.clone()))
    }

    /// A version for a record that arrives without one (a Kademlia PUT_VALUE), written by
    /// `writer`.
    pub(crate) fn stamp(&self, now_ms: u64, writer: &PeerId) -> Version {
        let ts = self.hlc.lock().expect("hlc lock").now(now_ms);
        Version::new(ts, writer.to_bytes())
    }

    /// Refuses a record whose version is too far ahead of our clock: it would win every later
    /// LWW comparison. Every path that stores a version from another node goes through this.
    pub(crate) fn check_clock(&self, record: Record, now_ms: u64) -> Result<Record, String> {
        self.hlc
            .lock()
            .expect("hlc lock")
            .update(HlcTimestamp::from_u64(record.version.hlc), now_ms)
            .map_err(|e| e.to_string())?;
        Ok(record)
    }

    /// Records stored (0 when the store cannot tell).
    pub(crate) fn len(&self) -> usize {
        self.store.len().unwrap_or(0)
    }

    /// Releases the storage engines (at shutdown).
    pub(crate) fn close(&self) {
        self.store.close();
        self.dht.close();
    }
}
