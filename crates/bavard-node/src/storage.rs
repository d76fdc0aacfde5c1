//! The node's local storage: the record store (`records.redb`), the group committer every local
//! write goes through, the per-key locks of the compare-and-set acceptors (whose state lives in
//! the record store's `paxos` table), and the hybrid logical clock with its durable lease, which
//! stamps this node's versions and ballots and bounds the versions it accepts from others.

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

/// The persistent stores' files and settings.
struct Files {
    records: std::path::PathBuf,
    records_config: BackendConfig,
    dht: std::path::PathBuf,
    dht_config: BackendConfig,
}

/// Opens a redb store, refusing an empty (0-byte) file: redb would silently make it an empty
/// store, and a node that lost its data must not pretend it has none.
fn open_redb(
    path: &std::path::Path,
    config: BackendConfig,
    what: &str,
) -> anyhow::Result<Arc<dyn RecordStore>> {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.len() == 0
    {
        anyhow::bail!(
            "the {what} {} is empty (0 bytes): refusing to start on it as if it were a new \
             store; restore it from a backup, or delete it to start with an empty one",
            path.display()
        );
    }
    Ok(Arc::new(RedbStore::open(path, config).with_context(
        || format!("cannot open the {what} {}", path.display()),
    )?))
}

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
    /// One compare-and-set acceptor step at a time per key (see [`crate::replica::paxos`]).
    pub(crate) acceptor_locks: crate::replica::paxos::KeyLocks,
    /// Where the persistent stores live, to reopen them after a storage failure.
    files: Option<Files>,
    hlc: Mutex<Hlc>,
    /// The persisted upper bound on issued timestamps (see [`crate::clock`]); locked after
    /// `hlc`, only by [`Storage::next_version`].
    lease: Mutex<crate::clock::ClockLease>,
    writer: Vec<u8>,
}

impl Storage {
    /// Opens the record store, starts the committer and restores the clock above its lease.
    pub(crate) fn open(
        config: &NodeConfig,
        peer_id: &PeerId,
        stages: crate::metrics::Stages,
    ) -> anyhow::Result<Self> {
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
        let records_path = (!config.store.in_memory).then(|| config.data_dir.join("records.redb"));
        let store: Arc<dyn RecordStore> = match &records_path {
            None => Arc::new(MemoryStore::new(backend.clone())),
            Some(path) => open_redb(path, backend.clone(), "record store")?,
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
        let dht_path = (!config.store.in_memory).then(|| config.data_dir.join("dht.redb"));
        let dht: Arc<dyn RecordStore> = match &dht_path {
            None => Arc::new(MemoryStore::new(dht_backend.clone())),
            Some(path) => open_redb(path, dht_backend.clone(), "DHT record store")?,
        };
        let dht = Arc::new(Closable::new(dht));
        let lease =
            crate::clock::ClockLease::open((!config.store.in_memory).then_some(&config.data_dir))?;
        let mut hlc = Hlc::new(bavard_store::hlc::DEFAULT_MAX_DRIFT_MS);
        hlc.observe_persisted(HlcTimestamp::new(lease.until_ms(), 0));
        // Ballots this node promised to others were only observed by the clock, never issued,
        // so the lease does not cover them: start above every ballot in the acceptor table, so
        // that this node's own next ballots are not refused at once.
        hlc.observe_persisted(crate::replica::paxos::highest_ballot(&*store));
        let behind_ms = lease.until_ms().saturating_sub(unix_ms());
        if behind_ms > hlc.max_drift_ms() {
            tracing::warn!(
                behind_ms,
                "the wall clock is behind the versions this node issued before it restarted; \
                 replicas refuse its writes until the clock catches up"
            );
        }
        // Background writes (repair) take at most a sixteenth of a commit (16 records by
        // default; see `commit`): a client write on a node that is catching up waits for the
        // commit in progress, so the smaller the catch-up's share, the shorter that wait. In
        // `scenario outage` (issue 17) a quarter (64) gave the returning node's client writes a
        // `commit_queue` p99 of 5.6 and 8.3 ms, a sixteenth 4.1 and 3.1 ms, with the same
        // catch-up time.
        let max_batch = config.replication.max_batch_records;
        let committer = Committer::start(
            store.clone() as Arc<dyn RecordStore>,
            max_batch,
            max_batch.div_ceil(16),
            stages,
        )
        .context("cannot start the committer thread")?;
        Ok(Self {
            store,
            dht,
            files: records_path.zip(dht_path).map(|(records, dht)| Files {
                records,
                records_config: backend,
                dht,
                dht_config: dht_backend,
            }),
            committer,
            acceptor_locks: crate::replica::paxos::KeyLocks::default(),
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

    /// A fresh timestamp for a compare-and-set ballot, above `floor` (the highest ballot or
    /// version the proposer saw) and covered by the durable clock lease: a ballot is never
    /// reused, across restarts included.
    pub(crate) fn next_ballot(&self, floor: HlcTimestamp) -> Result<HlcTimestamp, NodeError> {
        let mut hlc = self.hlc.lock().expect("hlc lock");
        hlc.observe_persisted(floor);
        let ts = hlc.now(unix_ms());
        self.lease
            .lock()
            .expect("lease lock")
            .cover(ts.physical_ms())
            .map_err(|e| NodeError::Storage(format!("cannot extend the clock lease: {e:#}")))?;
        drop(hlc);
        Ok(ts)
    }

    /// Refuses a timestamp (a ballot, a proposal's version) too far ahead of our clock, and
    /// otherwise makes the clock observe it.
    pub(crate) fn check_timestamp(&self, ts: HlcTimestamp, now_ms: u64) -> Result<(), String> {
        self.hlc
            .lock()
            .expect("hlc lock")
            .update(ts, now_ms)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// A version for a record that arrives without one (a Kademlia PUT_VALUE), written by
    /// `writer`.
    pub(crate) fn stamp(&self, now_ms: u64, writer: &PeerId) -> Version {
        let ts = self.hlc.lock().expect("hlc lock").now(now_ms);
        Version::new(ts, writer.to_bytes())
    }

    /// Fails with [`NodeError::StorageFailed`] while the stores are failed.
    pub(crate) fn check_writable(&self) -> Result<(), NodeError> {
        match self.failure() {
            Some(e) => Err(NodeError::StorageFailed(e)),
            None => Ok(()),
        }
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

    /// The storage error that stopped this node's stores, if one did.
    pub(crate) fn failure(&self) -> Option<String> {
        self.store.failure().or_else(|| self.dht.failure())
    }

    /// Resolves once a store has failed.
    pub(crate) async fn failed(&self) {
        tokio::select! {
            _ = self.store.failed() => {}
            _ = self.dht.failed() => {}
        }
    }

    /// Reopens the persistent stores (after a failure: redb fails every call after an I/O
    /// error). Succeeds once the disk takes a commit again (opening one commits).
    pub(crate) fn reopen(&self) -> anyhow::Result<()> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        self.store.close();
        self.dht.close();
        let store = open_redb(&files.records, files.records_config.clone(), "record store");
        let dht = open_redb(&files.dht, files.dht_config.clone(), "DHT record store");
        match (store, dht) {
            (Ok(store), Ok(dht)) => {
                self.store.replace(store);
                self.dht.replace(dht);
                Ok(())
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// Releases the storage engines (at shutdown).
    pub(crate) fn close(&self) {
        self.store.close();
        self.dht.close();
    }
}
