//! DHT records through Kademlia: validating and storing what PUT_VALUE brings, putting a record
//! on the k closest nodes, and finding the best copy of one (see [`super::records`] for the
//! namespaces and what "best" means in each).

use std::time::Duration;

use bavard_store::{PutOutcome, Record, RecordStore as _, Version};
use libp2p::PeerId;

use super::client::Kad;
use super::lookup::{LookupKind, to_wire};
use super::records::{self, Kind, SignedRecord};
use super::{Request, Response};
use crate::api::NodeError;
use crate::config::secs;
use crate::util::unix_ms;

impl Kad {
    /// The version a valid DHT record is stored under: a signed record's sequence number (so
    /// the store keeps the highest), nothing for an immutable public key, and for an opaque
    /// record this node's clock (the latest put it receives wins).
    fn dht_version(&self, kind: &Kind, writer: &PeerId, now_ms: u64) -> Version {
        match kind {
            Kind::Signed(r) => Version {
                hlc: r.seq,
                writer: r.public_key.to_vec(),
            },
            Kind::PublicKey => Version::default(),
            Kind::Opaque => self.storage.stamp(now_ms, writer),
        }
    }

    fn validate(&self, key: &[u8], value: &[u8]) -> Result<Kind, records::RecordError> {
        let cfg = &self.ctx.config.dht;
        records::validate(key, value, cfg.accept_unvalidated, cfg.max_value_size)
    }

    /// Validates a DHT record and stores it locally (durably, off the async workers), unless a
    /// better one is stored already. `writer` is who sent it; `ttl_secs` 0 means the default
    /// lifetime.
    pub(crate) async fn store_dht(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        writer: PeerId,
        publisher: Option<PeerId>,
        ttl_secs: u32,
    ) -> Result<PutOutcome, NodeError> {
        let kind = self
            .validate(&key, &value)
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        let now = unix_ms();
        let ttl = if ttl_secs > 0 {
            Duration::from_secs(u64::from(ttl_secs))
        } else {
            secs(self.ctx.config.kad.record_ttl_secs)
        };
        let mut record = Record::new(key, value, self.dht_version(&kind, &writer, now))
            .with_expiry(now.saturating_add(ttl.as_millis() as u64));
        if let Some(p) = publisher {
            record = record.with_publisher(p.to_bytes());
        }
        let store = self.storage.dht.clone();
        tokio::task::spawn_blocking(move || store.put(record, now))
            .await
            .map_err(|e| NodeError::Storage(e.to_string()))?
            .map_err(|e| NodeError::BadRequest(e.to_string()))
    }

    /// Puts a DHT record on this node and the k closest nodes; returns how many stored it (this
    /// node included).
    pub(crate) async fn dht_put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<usize, NodeError> {
        let me = self.ctx.peer_id;
        match self
            .store_dht(key.clone(), value.clone(), me, Some(me), 0)
            .await?
        {
            PutOutcome::Stale { current } => {
                return Err(NodeError::Conflict {
                    current: current.hlc.to_string(),
                });
            }
            PutOutcome::Expired => {
                return Err(NodeError::BadRequest(
                    "the record is already expired".into(),
                ));
            }
            PutOutcome::Stored | PutOutcome::Unchanged => {}
        }
        let Some(local) = self.local_dht(&key)? else {
            return Ok(1);
        };
        Ok(1 + self.replicate_dht(&local).await?)
    }

    /// Sends a stored DHT record to the k closest nodes of its key; returns how many
    /// acknowledged it.
    pub(crate) async fn replicate_dht(&self, record: &Record) -> Result<usize, NodeError> {
        let closest = self
            .lookup(&record.key, LookupKind::FindNode)
            .await?
            .closest;
        let wire = to_wire(record, unix_ms());
        let sends = closest.into_iter().map(|peer| {
            let kad = self.clone();
            let req = Request::PutValue {
                record: wire.clone(),
            };
            async move {
                matches!(
                    kad.request(peer, req).await,
                    Ok(Some(Response::PutValue { .. }))
                )
            }
        });
        Ok(futures::future::join_all(sends)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count())
    }

    /// The record this node stores under `key`, if any.
    pub(crate) fn local_dht(&self, key: &[u8]) -> Result<Option<Record>, NodeError> {
        self.storage
            .dht
            .get(key, unix_ms())
            .map_err(|e| NodeError::Storage(e.to_string()))
    }

    /// The best valid copy of the DHT record under `key`: this node's and those a GET_VALUE
    /// walk finds, the highest sequence number for a signed record, this node's (else the
    /// first found) otherwise. Invalid copies are ignored.
    pub(crate) async fn dht_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, NodeError> {
        let mut candidates: Vec<Vec<u8>> = Vec::new();
        if let Some(r) = self.local_dht(key)?
            && let Some(v) = r.data()
        {
            candidates.push(v.to_vec());
        }
        let found = self
            .lookup(key, LookupKind::GetValue { want: 3 })
            .await?
            .records;
        candidates.extend(
            found
                .into_iter()
                .filter_map(|r| r.data().map(<[u8]>::to_vec)),
        );
        let mut best: Option<(Option<u64>, Vec<u8>)> = None;
        for value in candidates {
            let Ok(kind) = self.validate(key, &value) else {
                self.ctx.metrics.reject("dht_invalid_record");
                continue;
            };
            let seq = match &kind {
                Kind::Signed(r) => Some(r.seq),
                _ => None,
            };
            match &best {
                None => best = Some((seq, value)),
                Some((Some(have), _)) if seq.is_some_and(|s| s > *have) => {
                    best = Some((seq, value));
                }
                _ => {}
            }
        }
        Ok(best.map(|(_, v)| v))
    }

    /// The best signed record of `public_key` with `salt` (see [`Kad::dht_get`]).
    pub(crate) async fn signed_get(
        &self,
        public_key: &[u8; 32],
        salt: &[u8],
    ) -> Result<Option<SignedRecord>, NodeError> {
        let key = records::signed_key(public_key, salt);
        Ok(match self.dht_get(&key).await? {
            Some(v) => {
                Some(SignedRecord::decode(&v).map_err(|e| NodeError::Storage(e.to_string()))?)
            }
            None => None,
        })
    }

    /// Puts a signed record, refusing one whose sequence number does not exceed the stored
    /// one's, and, with `cas`, one whose predecessor is not sequence `cas` (BEP 44's
    /// compare-and-swap); returns how many nodes stored it.
    pub(crate) async fn signed_put(
        &self,
        record: SignedRecord,
        cas: Option<u64>,
    ) -> Result<usize, NodeError> {
        record
            .verify()
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        let current = self.signed_get(&record.public_key, &record.salt).await?;
        let current_seq = current.as_ref().map(|c| c.seq);
        if let Some(expected) = cas
            && current_seq != Some(expected)
        {
            return Err(NodeError::Conflict {
                current: current_seq.map_or("none".into(), |s| s.to_string()),
            });
        }
        if let Some(have) = current_seq
            && record.seq <= have
        {
            return Err(NodeError::Conflict {
                current: have.to_string(),
            });
        }
        self.dht_put(record.key(), record.encode()).await
    }
}
