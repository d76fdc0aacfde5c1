//! Conversions between the `/bavard/kv/1` wire structs and the store's domain types.
//!
//! Every malformed field is a [`WireError`]; nothing here panics on hostile input.

use bavard_proto::store as pb;
use bavard_replica::{LeafSet, LeafSetSizeError, Request, Response, StoreOutcome};
use bavard_store::{DigestEntry, Record, Value, Version};
use libp2p::PeerId;

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
    /// A store's `hint_for` that is not a peer id.
    #[error("invalid hint_for peer id")]
    HintFor,
    /// The peer refused the request.
    #[error("refused: {0}")]
    Refused(String),
}

fn leaf(l: u32) -> Result<u16, WireError> {
    u16::try_from(l).map_err(|_| WireError::Leaf(l))
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

fn outcome_to_pb(o: StoreOutcome) -> pb::StoreResult {
    let (outcome, current, error) = match o {
        StoreOutcome::Stored => (pb::Outcome::Stored, None, String::new()),
        StoreOutcome::Unchanged => (pb::Outcome::Unchanged, None, String::new()),
        StoreOutcome::Stale { current } => (
            pb::Outcome::Stale,
            Some(version_to_pb(&current)),
            String::new(),
        ),
        StoreOutcome::Rejected(e) => (pb::Outcome::Rejected, None, e),
    };
    pb::StoreResult {
        outcome: outcome as i32,
        current,
        error,
    }
}

fn outcome_from_pb(r: pb::StoreResult) -> StoreOutcome {
    match pb::Outcome::try_from(r.outcome) {
        Ok(pb::Outcome::Stored) => StoreOutcome::Stored,
        Ok(pb::Outcome::Unchanged) => StoreOutcome::Unchanged,
        Ok(pb::Outcome::Stale) => match r.current {
            Some(v) => StoreOutcome::Stale {
                current: version_from_pb(v),
            },
            None => StoreOutcome::Rejected("a stale outcome without the current version".into()),
        },
        Ok(pb::Outcome::Rejected) => StoreOutcome::Rejected(r.error),
        Err(_) => StoreOutcome::Rejected(format!("unknown outcome {}", r.outcome)),
    }
}

/// A replica-protocol request on the wire.
pub fn request_to_pb(req: Request<PeerId>) -> pb::request::Kind {
    match req {
        Request::Store { records, hint_for } => pb::request::Kind::Store(pb::StoreRequest {
            records: records.iter().map(record_to_pb).collect(),
            hint_for: hint_for.map(|p| p.to_bytes()).unwrap_or_default(),
        }),
        Request::Fetch { keys } => pb::request::Kind::Fetch(pb::FetchRequest { keys }),
        Request::Tree { leaves, hashes } => pb::request::Kind::Tree(pb::TreeRequest {
            leaves: leaves.to_bytes(),
            hashes,
        }),
        Request::Leaves { hashes } => pb::request::Kind::Leaves(pb::LeavesRequest {
            hashes: hashes
                .into_iter()
                .map(|(leaf, hash)| pb::LeafHash {
                    leaf: u32::from(leaf),
                    hash,
                })
                .collect(),
        }),
        Request::Entries { leaves, after } => pb::request::Kind::Entries(pb::EntriesRequest {
            leaves: leaves.into_iter().map(u32::from).collect(),
            after: after.unwrap_or_default(),
        }),
    }
}

/// A wire request as a replica-protocol request; every malformed field is a [`WireError`].
pub fn request_from_pb(kind: pb::request::Kind) -> Result<Request<PeerId>, WireError> {
    Ok(match kind {
        pb::request::Kind::Store(s) => Request::Store {
            records: s
                .records
                .into_iter()
                .map(record_from_pb)
                .collect::<Result<_, _>>()?,
            hint_for: if s.hint_for.is_empty() {
                None
            } else {
                Some(PeerId::from_bytes(&s.hint_for).map_err(|_| WireError::HintFor)?)
            },
        },
        pb::request::Kind::Fetch(f) => Request::Fetch { keys: f.keys },
        pb::request::Kind::Tree(t) => Request::Tree {
            leaves: LeafSet::from_bytes(&t.leaves)?,
            hashes: t.hashes,
        },
        pb::request::Kind::Leaves(l) => Request::Leaves {
            hashes: l
                .hashes
                .into_iter()
                .map(|h| Ok((leaf(h.leaf)?, h.hash)))
                .collect::<Result<_, WireError>>()?,
        },
        pb::request::Kind::Entries(e) => Request::Entries {
            leaves: e
                .leaves
                .into_iter()
                .map(leaf)
                .collect::<Result<_, WireError>>()?,
            after: (!e.after.is_empty()).then_some(e.after),
        },
    })
}

/// A replica-protocol answer on the wire.
pub fn response_to_pb(resp: Response) -> pb::response::Kind {
    match resp {
        Response::Store { results } => pb::response::Kind::Store(pb::StoreResponse {
            results: results.into_iter().map(outcome_to_pb).collect(),
        }),
        Response::Fetch { records, covered } => pb::response::Kind::Fetch(pb::FetchResponse {
            records: records.iter().map(record_to_pb).collect(),
            covered: u32::try_from(covered).unwrap_or(0),
        }),
        Response::Tree { differing } => pb::response::Kind::Tree(pb::TreeResponse {
            differing: differing.into_iter().map(u32::from).collect(),
        }),
        Response::Leaves { differing } => pb::response::Kind::Leaves(pb::LeavesResponse {
            differing: differing.into_iter().map(u32::from).collect(),
        }),
        Response::Entries { entries, more } => pb::response::Kind::Entries(pb::EntriesResponse {
            entries: entries
                .into_iter()
                .map(|e| pb::KeyVersion {
                    key: e.key,
                    version: Some(version_to_pb(&e.version)),
                })
                .collect(),
            more,
        }),
    }
}

/// A wire answer as a replica-protocol answer; a refusal is [`WireError::Refused`] and every
/// malformed field a [`WireError`].
pub fn response_from_pb(kind: pb::response::Kind) -> Result<Response, WireError> {
    Ok(match kind {
        pb::response::Kind::Store(s) => Response::Store {
            results: s.results.into_iter().map(outcome_from_pb).collect(),
        },
        pb::response::Kind::Fetch(f) => Response::Fetch {
            records: f
                .records
                .into_iter()
                .map(record_from_pb)
                .collect::<Result<_, _>>()?,
            covered: f.covered as usize,
        },
        pb::response::Kind::Tree(t) => Response::Tree {
            differing: t
                .differing
                .into_iter()
                .map(|s| u8::try_from(s).map_err(|_| WireError::Subtree(s)))
                .collect::<Result<_, _>>()?,
        },
        pb::response::Kind::Leaves(l) => Response::Leaves {
            differing: l
                .differing
                .into_iter()
                .map(leaf)
                .collect::<Result<_, _>>()?,
        },
        pb::response::Kind::Entries(e) => Response::Entries {
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
        pb::response::Kind::Error(e) => return Err(WireError::Refused(e)),
    })
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
    fn replica_messages_round_trip_and_bad_numbers_are_typed_errors() {
        let record = Record::new(b"k".to_vec(), b"v".to_vec(), Version::default());
        let reqs = [
            Request::Store {
                records: vec![record.clone()],
                hint_for: Some(PeerId::random()),
            },
            Request::Tree {
                leaves: [1u16, 300].into_iter().collect(),
                hashes: vec![7; 256],
            },
            Request::Leaves {
                hashes: vec![(3, 9), (65535, 1)],
            },
            Request::Entries {
                leaves: vec![1, 2],
                after: Some(b"k".to_vec()),
            },
            Request::Fetch {
                keys: vec![b"a".to_vec()],
            },
        ];
        for req in reqs {
            assert_eq!(request_from_pb(request_to_pb(req.clone())).unwrap(), req);
        }
        let entry = DigestEntry {
            key: b"k".to_vec(),
            version: Version::default(),
        };
        let resps = [
            Response::Store {
                results: vec![
                    StoreOutcome::Stored,
                    StoreOutcome::Unchanged,
                    StoreOutcome::Stale {
                        current: Version::default(),
                    },
                    StoreOutcome::Rejected("full".into()),
                ],
            },
            Response::Fetch {
                records: vec![record],
                covered: 3,
            },
            Response::Tree {
                differing: vec![0, 255],
            },
            Response::Leaves {
                differing: vec![65535],
            },
            Response::Entries {
                entries: vec![entry],
                more: true,
            },
        ];
        for resp in resps {
            assert_eq!(
                response_from_pb(response_to_pb(resp.clone())).unwrap(),
                resp
            );
        }
        let bad_leaf = pb::request::Kind::Entries(pb::EntriesRequest {
            leaves: vec![70_000],
            after: Vec::new(),
        });
        assert!(matches!(
            request_from_pb(bad_leaf),
            Err(WireError::Leaf(70_000))
        ));
        let bad_subtree = pb::response::Kind::Tree(pb::TreeResponse {
            differing: vec![256],
        });
        assert!(matches!(
            response_from_pb(bad_subtree),
            Err(WireError::Subtree(256))
        ));
        let bad_bitmap = pb::request::Kind::Tree(pb::TreeRequest {
            leaves: vec![0; 3],
            hashes: Vec::new(),
        });
        assert!(matches!(
            request_from_pb(bad_bitmap),
            Err(WireError::LeafSet(_))
        ));
        let bad_hint = pb::request::Kind::Store(pb::StoreRequest {
            records: Vec::new(),
            hint_for: vec![1, 2, 3],
        });
        assert!(matches!(request_from_pb(bad_hint), Err(WireError::HintFor)));
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
