//! Anti-entropy: replicas compare hashed digests of the keys they share and exchange only what
//! differs (Dynamo §4.7 uses Merkle trees per key range; this is a two-level tree).
//!
//! Level 1 is 256 bucket hashes (bucket = first byte of SHA-256(key); hash = XOR of a 64-bit hash
//! of each `key ‖ version` in the bucket), over the keys for which both peers are in the
//! preference list as the sender sees it. Level 2, only for buckets whose hashes differ, is the
//! responder's list of keys and versions. The initiator then pulls the keys where the responder
//! is newer and pushes those where it is newer itself. With converged membership views both sides
//! filter the same keys and identical replicas exchange 2 KiB and nothing else.

use bavard_store::RecordStore as _;
use std::collections::HashMap;

use bavard_proto::store as pb;
use bavard_routing::Key;
use bavard_store::Version;
use libp2p::PeerId;
use rand::seq::IndexedRandom as _;
use sha2::{Digest as _, Sha256};

use super::wire::{record_to_pb, version_from_pb, version_to_pb};
use crate::node::{Node, peer_key};
use crate::util::unix_ms;

/// Buckets in a level-1 digest.
pub(crate) const BUCKETS: usize = 256;

/// Records read per page while computing a digest.
const PAGE: usize = 512;

fn entry_hash(key: &[u8], v: &Version) -> u64 {
    let mut h = Sha256::new();
    h.update((key.len() as u64).to_be_bytes());
    h.update(key);
    h.update(v.hlc.to_be_bytes());
    h.update(&v.writer);
    let out = h.finalize();
    u64::from_be_bytes(out[..8].try_into().expect("8 bytes"))
}

/// A digest of the keys this node shares with `peer`, with the per-bucket entries.
struct LocalDigest {
    buckets: Vec<u64>,
    entries: Vec<Vec<(Vec<u8>, Version)>>,
}

impl Node {
    /// The preference list of `key` as this node sees it, without any network round trip: the
    /// membership's N closest members when gossip knows others, else the routing table's.
    pub(crate) fn local_preference_list(&self, key: &[u8], n: usize) -> Vec<PeerId> {
        let target = Key::hash(key);
        let members = self.inner.gossip.closest_members(&target);
        if members.len() > 1 {
            // The same healthy-first list the coordinator writes to.
            return members
                .into_iter()
                .filter(|(_, dead)| !dead)
                .take(n)
                .map(|(p, _)| p)
                .collect();
        }
        let mut peers: Vec<PeerId> = self
            .inner
            .table
            .lock()
            .expect("table lock")
            .closest(&target, n)
            .into_iter()
            .map(|e| e.peer)
            .collect();
        peers.push(self.inner.peer_id);
        peers.sort_by_key(|p| peer_key(p).distance(&target));
        peers.truncate(n);
        peers
    }
}

fn local_digest(node: &Node, peer: &PeerId) -> Result<LocalDigest, String> {
    let n = node.inner.config.kad.replication_factor;
    let me = node.inner.peer_id;
    let mut d = LocalDigest {
        buckets: vec![0; BUCKETS],
        entries: vec![Vec::new(); BUCKETS],
    };
    let now = unix_ms();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = node
            .inner
            .store
            .scan(after.as_deref(), PAGE, now)
            .map_err(|e| format!("storage error: {e}"))?;
        let done = page.len() < PAGE;
        after = page.last().map(|r| r.key.clone());
        for r in page {
            let list = node.local_preference_list(&r.key, n);
            if !(list.contains(&me) && list.contains(peer)) {
                continue;
            }
            let b = usize::from(Key::hash(&r.key).as_bytes()[0]);
            d.buckets[b] ^= entry_hash(&r.key, &r.version);
            d.entries[b].push((r.key, r.version));
        }
        if done {
            return Ok(d);
        }
    }
}

/// The responder's side: which buckets differ, and our entries in them.
pub(crate) fn answer_digest(
    node: &Node,
    requester: PeerId,
    theirs: &[u64],
) -> Result<pb::DigestResponse, String> {
    let mine = local_digest(node, &requester)?;
    let cap = node.inner.config.replication.max_digest_entries;
    let mut resp = pb::DigestResponse::default();
    for (b, (mine_hash, their_hash)) in mine.buckets.iter().zip(theirs).enumerate() {
        if mine_hash == their_hash {
            continue;
        }
        resp.differing.push(b as u32);
        for (key, version) in &mine.entries[b] {
            if resp.entries.len() >= cap {
                break;
            }
            resp.entries.push(pb::KeyVersion {
                key: key.clone(),
                version: Some(version_to_pb(version)),
            });
        }
    }
    Ok(resp)
}

/// One anti-entropy round with a random peer near us; returns the keys exchanged.
pub(crate) async fn round(node: &Node) -> usize {
    let n = node.inner.config.kad.replication_factor;
    let candidates: Vec<PeerId> = node
        .inner
        .table
        .lock()
        .expect("table lock")
        .closest(&node.inner.local_key, 2 * n)
        .into_iter()
        .map(|e| e.peer)
        .collect();
    let Some(peer) = candidates.choose(&mut rand::rng()).copied() else {
        return 0;
    };
    match round_with(node, peer).await {
        Ok(exchanged) => {
            node.inner.metrics.anti_entropy_rounds.inc();
            node.inner
                .metrics
                .anti_entropy_keys
                .inc_by(exchanged as u64);
            exchanged
        }
        Err(e) => {
            tracing::debug!(%peer, "anti-entropy round failed: {e}");
            0
        }
    }
}

/// An anti-entropy round with `peer`.
pub(crate) async fn round_with(node: &Node, peer: PeerId) -> Result<usize, String> {
    let mine = local_digest(node, &peer)?;
    let req = pb::request::Kind::Digest(pb::DigestRequest {
        buckets: mine.buckets.clone(),
    });
    let resp = match node
        .kv_request(peer, req)
        .await
        .map_err(|e| e.to_string())?
    {
        pb::response::Kind::Digest(d) => d,
        pb::response::Kind::Error(e) => return Err(e),
        _ => return Err("unexpected response to a digest".into()),
    };
    let mut theirs: HashMap<Vec<u8>, Version> = HashMap::new();
    for kv in resp.entries {
        if let Some(v) = kv.version {
            theirs.insert(kv.key, version_from_pb(v));
        }
    }
    let mut pull = Vec::new();
    let mut push = Vec::new();
    let mut local: HashMap<&[u8], &Version> = HashMap::new();
    for b in resp.differing {
        let Some(entries) = mine.entries.get(b as usize) else {
            continue;
        };
        for (key, version) in entries {
            local.insert(key, version);
            match theirs.get(key) {
                Some(v) if v >= version => {}
                _ => push.push(key.clone()),
            }
        }
    }
    for (key, version) in &theirs {
        match local.get(key.as_slice()) {
            Some(v) if *v >= version => {}
            _ => pull.push(key.clone()),
        }
    }
    let max = node.inner.config.replication.max_batch_records.max(1);
    let mut exchanged = 0;
    for chunk in pull.chunks(max) {
        let req = pb::request::Kind::Fetch(pb::FetchRequest {
            keys: chunk.to_vec(),
        });
        if let Ok(pb::response::Kind::Fetch(f)) = node.kv_request(peer, req).await {
            for r in f.records {
                if let Ok(record) = super::wire::record_from_pb(r)
                    && node.inner.committer.put(record).await.is_ok()
                {
                    exchanged += 1;
                }
            }
        }
    }
    let now = unix_ms();
    for chunk in push.chunks(max) {
        let records: Vec<pb::Record> = chunk
            .iter()
            .filter_map(|k| node.inner.store.get(k, now).ok().flatten())
            .map(|r| record_to_pb(&r))
            .collect();
        let count = records.len();
        let req = pb::request::Kind::Store(pb::StoreRequest {
            records,
            hint_for: Vec::new(),
        });
        if let Ok(pb::response::Kind::Store(_)) = node.kv_request(peer, req).await {
            exchanged += count;
        }
    }
    Ok(exchanged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_hash_depends_on_key_and_version() {
        let v1 = Version {
            hlc: 1,
            writer: b"a".to_vec(),
        };
        let v2 = Version {
            hlc: 2,
            writer: b"a".to_vec(),
        };
        assert_ne!(entry_hash(b"k", &v1), entry_hash(b"k", &v2));
        assert_ne!(entry_hash(b"k", &v1), entry_hash(b"j", &v1));
        // Length-prefixing keeps ("ab", writer "c") apart from ("a", writer "bc").
        let a = Version {
            hlc: 0,
            writer: b"c".to_vec(),
        };
        let b = Version {
            hlc: 0,
            writer: b"bc".to_vec(),
        };
        assert_ne!(entry_hash(b"ab", &a), entry_hash(b"a", &b));
    }
}
