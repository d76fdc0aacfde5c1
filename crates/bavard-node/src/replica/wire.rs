//! Conversions between the `/bavard/kv/1` wire structs and the store's domain types.
//!
//! Every malformed field is a [`WireError`]; nothing here panics on hostile input.

use bavard_proto::store as pb;
use bavard_replica::{LeafSet, LeafSetSizeError, SyncRequest, SyncResponse};
use bavard_store::{DigestEntry, Record, Value, Version};

/// Why a record from the network was refused.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The record carried no version.
    #[error("record without a version")]
    MissingVersion,
    /// The key was empty.
    #[error("record with an empty key")]
    EmptyKey,
    /// A tombstone carried a value.
    #[error("tombstone with a value")]
    TombstoneWithValue,
    /// A leaf bitmap of the wrong size.
    #[error(transparent)]
    LeafSet(#[from] LeafSetSizeError),
    /// A leaf number above 65,535.
    #[error("leaf {0} is out of range")]
    Leaf(u32),
    /// A subtree number above 255.
    #[error("subtree {0} is out of range")]
    Subtree(u32),
    /// An entry without a version.
    #[error("entry without a version")]
    EntryWithoutVersion,
    /// A message of another kind than expected.
    #[error("unexpected {0} message")]
    Unexpected(&'static str),
    /// The peer refused the request.
    #[error("refused: {0}")]
    Refused(String),
}

fn leaf(l: u32) -> Result<u16, WireError> {
    u16::try_from(l).map_err(|_| WireError::Leaf(l))
}

/// An anti-entropy request on the wire.
pub fn sync_request_to_pb(req: SyncRequest) -> pb::request::Kind {
    match req {
        SyncRequest::Tree { leaves, hashes } => pb::request::Kind::Tree(pb::TreeRequest {
            leaves: leaves.to_bytes(),
            hashes,
        }),
        SyncRequest::Leaves { hashes } => pb::request::Kind::Leaves(pb::LeavesRequest {
            hashes: hashes
                .into_iter()
                .map(|(leaf, hash)| pb::LeafHash {
                    leaf: u32::from(leaf),
                    hash,
                })
                .collect(),
        }),
        SyncRequest::Entries { leaves, after } => pb::request::Kind::Entries(pb::EntriesRequest {
            leaves: leaves.into_iter().map(u32::from).collect(),
            after: after.unwrap_or_default(),
        }),
        SyncRequest::Fetch { keys } => pb::request::Kind::Fetch(pb::FetchRequest { keys }),
        SyncRequest::Store { records } => pb::request::Kind::Store(pb::StoreRequest {
            records: records.iter().map(record_to_pb).collect(),
            hint_for: Vec::new(),
        }),
    }
}

/// A wire request as an anti-entropy request (`Store` requests stay the node's own: they carry
/// hints and go through its clock check and group commit).
pub fn sync_request_from_pb(kind: pb::request::Kind) -> Result<SyncRequest, WireError> {
    Ok(match kind {
        pb::request::Kind::Tree(t) => SyncRequest::Tree {
            leaves: LeafSet::from_bytes(&t.leaves)?,
            hashes: t.hashes,
        },
        pb::request::Kind::Leaves(l) => SyncRequest::Leaves {
            hashes: l
                .hashes
                .into_iter()
                .map(|h| Ok((leaf(h.leaf)?, h.hash)))
                .collect::<Result<_, WireError>>()?,
        },
        pb::request::Kind::Entries(e) => SyncRequest::Entries {
            leaves: e
                .leaves
                .into_iter()
                .map(leaf)
                .collect::<Result<_, WireError>>()?,
            after: (!e.after.is_empty()).then_some(e.after),
        },
        pb::request::Kind::Fetch(f) => SyncRequest::Fetch { keys: f.keys },
        pb::request::Kind::Store(_) => return Err(WireError::Unexpected("store")),
    })
}

/// An anti-entropy answer on the wire.
pub fn sync_response_to_pb(resp: SyncResponse) -> pb::response::Kind {
    match resp {
        SyncResponse::Tree { differing } => pb::response::Kind::Tree(pb::TreeResponse {
            differing: differing.into_iter().map(u32::from).collect(),
        }),
        SyncResponse::Leaves { differing } => pb::response::Kind::Leaves(pb::LeavesResponse {
            differing: differing.into_iter().map(u32::from).collect(),
        }),
        SyncResponse::Entries { entries, more } => {
            pb::response::Kind::Entries(pb::EntriesResponse {
                entries: entries
                    .into_iter()
                    .map(|e| pb::KeyVersion {
                        key: e.key,
                        version: Some(version_to_pb(&e.version)),
                    })
                    .collect(),
                more,
            })
        }
        SyncResponse::Fetch { records, covered } => pb::response::Kind::Fetch(pb::FetchResponse {
            records: records.iter().map(record_to_pb).collect(),
            covered: u32::try_from(covered).unwrap_or(0),
        }),
        SyncResponse::Store { accepted } => pb::response::Kind::Store(pb::StoreResponse {
            results: (0..accepted)
                .map(|_| pb::StoreResult {
                    outcome: pb::Outcome::Stored as i32,
                    current: None,
                    error: String::new(),
                })
                .collect(),
        }),
    }
}

/// A wire answer as an anti-entropy answer; every malformed field is a [`WireError`].
pub fn sync_response_from_pb(kind: pb::response::Kind) -> Result<SyncResponse, WireError> {
    Ok(match kind {
        pb::response::Kind::Tree(t) => SyncResponse::Tree {
            differing: t
                .differing
                .into_iter()
                .map(|s| u8::try_from(s).map_err(|_| WireError::Subtree(s)))
                .collect::<Result<_, _>>()?,
        },
        pb::response::Kind::Leaves(l) => SyncResponse::Leaves {
            differing: l
                .differing
                .into_iter()
                .map(leaf)
                .collect::<Result<_, _>>()?,
        },
        pb::response::Kind::Entries(e) => SyncResponse::Entries {
            entries: e
                .entries
                .into_iter()
                .map(|kv| {
                    Ok(DigestEntry {
                        key: kv.key,
                        version: version_from_pb(kv.version.ok_or(WireError::EntryWithoutVersion)?),
                    })
                })
                .collect::<Result<_, WireError>>()?,
            more: e.more,
        },
        pb::response::Kind::Fetch(f) => SyncResponse::Fetch {
            records: f
                .records
                .into_iter()
                .map(record_from_pb)
                .collect::<Result<_, _>>()?,
            covered: f.covered as usize,
        },
        pb::response::Kind::Store(s) => SyncResponse::Store {
            accepted: s
                .results
                .iter()
                .filter(|r| r.outcome != pb::Outcome::Rejected as i32)
                .count(),
        },
        pb::response::Kind::Error(e) => return Err(WireError::Refused(e)),
    })
}

/// A domain version on the wire.
pub fn version_to_pb(v: &Version) -> pb::Version {
    pb::Version {
        hlc: v.hlc,
        writer: v.writer.clone(),
    }
}

/// A wire version as a domain version.
pub fn version_from_pb(v: pb::Version) -> Version {
    Version {
        hlc: v.hlc,
        writer: v.writer,
    }
}

/// A domain record on the wire.
pub fn record_to_pb(r: &Record) -> pb::Record {
    let (value, tombstone, deleted_at_ms) = match &r.value {
        Value::Data(v) => (v.clone(), false, 0),
        Value::Tombstone { deleted_at_ms } => (Vec::new(), true, *deleted_at_ms),
    };
    pb::Record {
        key: r.key.clone(),
        value,
        tombstone,
        deleted_at_ms,
        version: Some(version_to_pb(&r.version)),
        publisher: r.publisher.clone().unwrap_or_default(),
        expires_at_ms: r.expires_at_ms.unwrap_or(0),
    }
}

/// A wire record as a domain record; every malformed field is a [`WireError`].
pub fn record_from_pb(r: pb::Record) -> Result<Record, WireError> {
    {
        if r.key.is_empty() {
            return Err(WireError::EmptyKey);
        }
        let version = version_from_pb(r.version.ok_or(WireError::MissingVersion)?);
        let value = if r.tombstone {
            if !r.value.is_empty() {
                return Err(WireError::TombstoneWithValue);
            }
            Value::Tombstone {
                deleted_at_ms: r.deleted_at_ms,
            }
        } else {
            Value::Data(r.value)
        };
        Ok(Record {
            key: r.key,
            value,
            publisher: (!r.publisher.is_empty()).then_some(r.publisher),
            expires_at_ms: (r.expires_at_ms != 0).then_some(r.expires_at_ms),
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bavard_store::HlcTimestamp;

    #[test]
    fn records_and_tombstones_roundtrip() {
        let v = Version::new(HlcTimestamp::new(1000, 3), b"w".to_vec());
        let data = Record::new(b"k".to_vec(), b"v".to_vec(), v.clone()).with_expiry(5000);
        let tomb = Record::tombstone(b"k".to_vec(), 77, v);
        for r in [data, tomb] {
            assert_eq!(record_from_pb(record_to_pb(&r)).unwrap(), r);
        }
    }

    #[test]
    fn sync_messages_round_trip_and_bad_numbers_are_typed_errors() {
        let reqs = [
            SyncRequest::Tree {
                leaves: [1u16, 300].into_iter().collect(),
                hashes: vec![7; 256],
            },
            SyncRequest::Leaves {
                hashes: vec![(3, 9), (65535, 1)],
            },
            SyncRequest::Entries {
                leaves: vec![1, 2],
                after: Some(b"k".to_vec()),
            },
            SyncRequest::Fetch {
                keys: vec![b"a".to_vec()],
            },
        ];
        for req in reqs {
            assert_eq!(
                sync_request_from_pb(sync_request_to_pb(req.clone())).unwrap(),
                req
            );
        }
        let entry = DigestEntry {
            key: b"k".to_vec(),
            version: Version::default(),
        };
        let resps = [
            SyncResponse::Tree {
                differing: vec![0, 255],
            },
            SyncResponse::Leaves {
                differing: vec![65535],
            },
            SyncResponse::Entries {
                entries: vec![entry],
                more: true,
            },
        ];
        for resp in resps {
            assert_eq!(
                sync_response_from_pb(sync_response_to_pb(resp.clone())).unwrap(),
                resp
            );
        }
        let bad_leaf = pb::request::Kind::Entries(pb::EntriesRequest {
            leaves: vec![70_000],
            after: Vec::new(),
        });
        assert!(matches!(
            sync_request_from_pb(bad_leaf),
            Err(WireError::Leaf(70_000))
        ));
        let bad_subtree = pb::response::Kind::Tree(pb::TreeResponse {
            differing: vec![256],
        });
        assert!(matches!(
            sync_response_from_pb(bad_subtree),
            Err(WireError::Subtree(256))
        ));
        let bad_bitmap = pb::request::Kind::Tree(pb::TreeRequest {
            leaves: vec![0; 3],
            hashes: Vec::new(),
        });
        assert!(matches!(
            sync_request_from_pb(bad_bitmap),
            Err(WireError::LeafSet(_))
        ));
    }

    #[test]
    fn malformed_records_are_typed_errors() {
        let mut r = record_to_pb(&Record::new(
            b"k".to_vec(),
            b"v".to_vec(),
            Version::default(),
        ));
        r.version = None;
        assert!(matches!(
            record_from_pb(r.clone()),
            Err(WireError::MissingVersion)
        ));
        r.version = Some(pb::Version::default());
        r.tombstone = true;
        assert!(matches!(
            record_from_pb(r.clone()),
            Err(WireError::TombstoneWithValue)
        ));
        r.key.clear();
        assert!(matches!(record_from_pb(r), Err(WireError::EmptyKey)));
    }
}
