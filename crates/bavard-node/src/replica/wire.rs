//! Conversions between the `/bavard/kv/1` wire structs and the store's domain types, and the
//! replica core's Paxos messages ([`PaxosRequest`], [`PaxosResponse`]).
//!
//! Every malformed field is a [`WireError`]; nothing here panics on hostile input.

use bavard_proto::store as pb;
use bavard_replica::paxos::{Accepted, Ballot, PaxosRequest, PaxosResponse};
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
    /// A blob reference alongside inline bytes or a tombstone, or with a hash that is not 32
    /// bytes.
    #[error("malformed blob reference: {0}")]
    BadBlobRef(&'static str),
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
    /// A Paxos message without its ballot.
    #[error("{0} without a ballot")]
    MissingBallot(&'static str),
    /// A ballot without a node id, or with one longer than [`MAX_BALLOT_NODE_BYTES`].
    #[error("ballot node id of {len} bytes (must be 1 to {max})")]
    BallotNode {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A Paxos message without the record it is about.
    #[error("{0} without its proposal")]
    MissingProposal(&'static str),
    /// A message of another kind than the exchange expects (a Paxos answer to a store, a store
    /// answer to a prepare…).
    #[error("unexpected {0} message")]
    UnexpectedKind(&'static str),
}

/// The longest ballot node id accepted from the network: a ballot's node is the proposer's
/// peer id (38 bytes for an ed25519 libp2p `PeerId`), as a record's writer is, and the store
/// bounds writers at 128 bytes.
pub const MAX_BALLOT_NODE_BYTES: usize = 128;

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
    let (value, tombstone, deleted_at_ms, blob) = match &r.value {
        Value::Data(v) => (v.clone(), false, 0, None),
        Value::Tombstone { deleted_at_ms } => (Vec::new(), true, *deleted_at_ms, None),
        Value::Blob { hash, size } => (
            Vec::new(),
            false,
            0,
            Some(pb::BlobRef {
                hash: hash.to_vec(),
                size: *size,
            }),
        ),
    };
    pb::Record {
        key: r.key.clone(),
        value,
        tombstone,
        deleted_at_ms,
        version: Some(version_to_pb(&r.version)),
        publisher: r.publisher.clone().unwrap_or_default(),
        expires_at_ms: r.expires_at_ms.unwrap_or(0),
        blob,
    }
}

/// A wire record as a domain record; every malformed field is a [`WireError`].
pub fn record_from_pb(r: pb::Record) -> Result<Record, WireError> {
    {
        if r.key.is_empty() {
            return Err(WireError::EmptyKey);
        }
        let version = version_from_pb(r.version.ok_or(WireError::MissingVersion)?);
        let value = if let Some(blob) = r.blob {
            if r.tombstone {
                return Err(WireError::BadBlobRef("a tombstone with a blob"));
            }
            if !r.value.is_empty() {
                return Err(WireError::BadBlobRef("inline bytes beside a blob"));
            }
            let hash = <[u8; 32]>::try_from(blob.hash.as_slice())
                .map_err(|_| WireError::BadBlobRef("the hash is not 32 bytes"))?;
            Value::Blob {
                hash,
                size: blob.size,
            }
        } else if r.tombstone {
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
        pb::request::Kind::PaxosPrepare(_)
        | pb::request::Kind::PaxosPropose(_)
        | pb::request::Kind::PaxosCommit(_) => {
            return Err(WireError::UnexpectedKind("paxos request"));
        }
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
        pb::response::Kind::PaxosPromise(_)
        | pb::response::Kind::PaxosAccepted(_)
        | pb::response::Kind::PaxosCommitted(_)
        | pb::response::Kind::PaxosRejected(_) => {
            return Err(WireError::UnexpectedKind("paxos answer"));
        }
    })
}

fn ballot_to_pb(b: &Ballot) -> pb::Version {
    version_to_pb(b.as_version())
}

fn ballot_from_pb(v: Option<pb::Version>, what: &'static str) -> Result<Ballot, WireError> {
    let v = v.ok_or(WireError::MissingBallot(what))?;
    if v.writer.is_empty() || v.writer.len() > MAX_BALLOT_NODE_BYTES {
        return Err(WireError::BallotNode {
            len: v.writer.len(),
            max: MAX_BALLOT_NODE_BYTES,
        });
    }
    Ok(Ballot::from(version_from_pb(v)))
}

fn proposal_from_pb(r: Option<pb::Record>, what: &'static str) -> Result<Record, WireError> {
    record_from_pb(r.ok_or(WireError::MissingProposal(what))?)
}

/// Whether a wire request is one of the Paxos messages (served by the acceptor, not by
/// [`request_from_pb`]).
pub fn is_paxos_request(kind: &pb::request::Kind) -> bool {
    matches!(
        kind,
        pb::request::Kind::PaxosPrepare(_)
            | pb::request::Kind::PaxosPropose(_)
            | pb::request::Kind::PaxosCommit(_)
    )
}

/// A Paxos request on the wire.
pub fn paxos_request_to_pb(req: &PaxosRequest) -> pb::request::Kind {
    match req {
        PaxosRequest::Prepare { key, ballot } => {
            pb::request::Kind::PaxosPrepare(pb::PaxosPrepare {
                key: key.clone(),
                ballot: Some(ballot_to_pb(ballot)),
            })
        }
        PaxosRequest::Propose { ballot, proposal } => {
            pb::request::Kind::PaxosPropose(pb::PaxosPropose {
                ballot: Some(ballot_to_pb(ballot)),
                proposal: Some(record_to_pb(proposal)),
            })
        }
        PaxosRequest::Commit { ballot, proposal } => {
            pb::request::Kind::PaxosCommit(pb::PaxosCommit {
                ballot: Some(ballot_to_pb(ballot)),
                proposal: Some(record_to_pb(proposal)),
            })
        }
    }
}

/// A wire request as a Paxos request; every malformed field (and any other kind of request) is
/// a [`WireError`].
pub fn paxos_request_from_pb(kind: pb::request::Kind) -> Result<PaxosRequest, WireError> {
    Ok(match kind {
        pb::request::Kind::PaxosPrepare(p) => {
            if p.key.is_empty() {
                return Err(WireError::EmptyKey);
            }
            PaxosRequest::Prepare {
                ballot: ballot_from_pb(p.ballot, "prepare")?,
                key: p.key,
            }
        }
        pb::request::Kind::PaxosPropose(p) => PaxosRequest::Propose {
            ballot: ballot_from_pb(p.ballot, "proposal")?,
            proposal: proposal_from_pb(p.proposal, "proposal")?,
        },
        pb::request::Kind::PaxosCommit(c) => PaxosRequest::Commit {
            ballot: ballot_from_pb(c.ballot, "commit")?,
            proposal: proposal_from_pb(c.proposal, "commit")?,
        },
        _ => return Err(WireError::UnexpectedKind("replica request")),
    })
}

/// A Paxos answer on the wire.
pub fn paxos_response_to_pb(resp: PaxosResponse) -> pb::response::Kind {
    match resp {
        PaxosResponse::Promise {
            current,
            accepted,
            committed,
        } => pb::response::Kind::PaxosPromise(pb::PaxosPromise {
            current: current.as_ref().map(record_to_pb),
            accepted: accepted.map(|a| pb::PaxosAccepted {
                ballot: Some(ballot_to_pb(&a.ballot)),
                proposal: Some(record_to_pb(&a.proposal)),
            }),
            committed: committed.as_ref().map(ballot_to_pb),
        }),
        PaxosResponse::Accepted => pb::response::Kind::PaxosAccepted(pb::PaxosAck {}),
        PaxosResponse::Committed => pb::response::Kind::PaxosCommitted(pb::PaxosAck {}),
        PaxosResponse::Rejected { promised } => {
            pb::response::Kind::PaxosRejected(pb::PaxosRejected {
                promised: Some(ballot_to_pb(&promised)),
            })
        }
    }
}

/// A wire answer as a Paxos answer; a refusal is [`WireError::Refused`], every malformed field
/// (and any other kind of answer) a [`WireError`].
pub fn paxos_response_from_pb(kind: pb::response::Kind) -> Result<PaxosResponse, WireError> {
    Ok(match kind {
        pb::response::Kind::PaxosPromise(p) => PaxosResponse::Promise {
            current: p.current.map(record_from_pb).transpose()?,
            accepted: p
                .accepted
                .map(|a| {
                    Ok::<_, WireError>(Accepted {
                        ballot: ballot_from_pb(a.ballot, "accepted proposal")?,
                        proposal: proposal_from_pb(a.proposal, "accepted proposal")?,
                    })
                })
                .transpose()?,
            committed: p
                .committed
                .map(|c| ballot_from_pb(Some(c), "committed ballot"))
                .transpose()?,
        },
        pb::response::Kind::PaxosAccepted(_) => PaxosResponse::Accepted,
        pb::response::Kind::PaxosCommitted(_) => PaxosResponse::Committed,
        pb::response::Kind::PaxosRejected(r) => PaxosResponse::Rejected {
            promised: ballot_from_pb(r.promised, "refusal")?,
        },
        pb::response::Kind::Error(e) => return Err(WireError::Refused(e)),
        _ => return Err(WireError::UnexpectedKind("replica answer")),
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
        let tomb = Record::tombstone(b"k".to_vec(), 77, v.clone());
        let blob = Record::blob_ref(b"k".to_vec(), [5; 32], 1 << 30, v);
        for r in [data, tomb, blob] {
            assert_eq!(record_from_pb(record_to_pb(&r)).unwrap(), r);
        }
    }

    #[test]
    fn malformed_blob_references_are_typed_errors() {
        let v = Version::new(HlcTimestamp::new(1000, 3), b"w".to_vec());
        let good = record_to_pb(&Record::blob_ref(b"k".to_vec(), [5; 32], 10, v));
        let mut short = good.clone();
        short.blob.as_mut().unwrap().hash.pop();
        let mut inline = good.clone();
        inline.value = b"x".to_vec();
        let mut dead = good;
        dead.tombstone = true;
        for bad in [short, inline, dead] {
            assert!(matches!(record_from_pb(bad), Err(WireError::BadBlobRef(_))));
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

    fn ballot(t: u64, node: &[u8]) -> Ballot {
        Ballot::new(HlcTimestamp::new(t, 0), node.to_vec())
    }

    #[test]
    fn paxos_messages_round_trip() {
        let b = ballot(10, b"node-a");
        let r = Record::new(b"k".to_vec(), b"v".to_vec(), b.as_version().clone());
        let tomb = Record::tombstone(b"k".to_vec(), 5, ballot(9, b"node-b").into_version());
        let reqs = [
            PaxosRequest::Prepare {
                key: b"k".to_vec(),
                ballot: b.clone(),
            },
            PaxosRequest::Propose {
                ballot: b.clone(),
                proposal: r.clone(),
            },
            PaxosRequest::Commit {
                ballot: b.clone(),
                proposal: tomb.clone(),
            },
        ];
        for req in reqs {
            let kind = paxos_request_to_pb(&req);
            assert!(is_paxos_request(&kind));
            assert_eq!(paxos_request_from_pb(kind).unwrap(), req);
        }
        let resps = [
            PaxosResponse::Promise {
                current: Some(tomb),
                accepted: Some(Accepted {
                    ballot: b.clone(),
                    proposal: r,
                }),
                committed: Some(ballot(8, b"node-c")),
            },
            PaxosResponse::Promise {
                current: None,
                accepted: None,
                committed: None,
            },
            PaxosResponse::Accepted,
            PaxosResponse::Committed,
            PaxosResponse::Rejected { promised: b },
        ];
        for resp in resps {
            assert_eq!(
                paxos_response_from_pb(paxos_response_to_pb(resp.clone())).unwrap(),
                resp
            );
        }
    }

    #[test]
    fn malformed_paxos_messages_are_typed_errors() {
        let good = pb::Version {
            hlc: 1,
            writer: b"n".to_vec(),
        };
        let record = Some(record_to_pb(&Record::new(
            b"k".to_vec(),
            b"v".to_vec(),
            Version::default(),
        )));
        let prepare = |key: &[u8], ballot: Option<pb::Version>| {
            pb::request::Kind::PaxosPrepare(pb::PaxosPrepare {
                key: key.to_vec(),
                ballot,
            })
        };
        assert!(matches!(
            paxos_request_from_pb(prepare(b"k", None)),
            Err(WireError::MissingBallot("prepare"))
        ));
        assert!(matches!(
            paxos_request_from_pb(prepare(b"", Some(good.clone()))),
            Err(WireError::EmptyKey)
        ));
        for writer in [Vec::new(), vec![7; MAX_BALLOT_NODE_BYTES + 1]] {
            let bad = pb::Version { hlc: 1, writer };
            assert!(matches!(
                paxos_request_from_pb(prepare(b"k", Some(bad))),
                Err(WireError::BallotNode {
                    max: MAX_BALLOT_NODE_BYTES,
                    ..
                })
            ));
        }
        let propose = pb::request::Kind::PaxosPropose(pb::PaxosPropose {
            ballot: Some(good.clone()),
            proposal: None,
        });
        assert!(matches!(
            paxos_request_from_pb(propose),
            Err(WireError::MissingProposal("proposal"))
        ));
        let mut unversioned = record.clone().unwrap();
        unversioned.version = None;
        let commit = pb::request::Kind::PaxosCommit(pb::PaxosCommit {
            ballot: Some(good.clone()),
            proposal: Some(unversioned),
        });
        assert!(matches!(
            paxos_request_from_pb(commit),
            Err(WireError::MissingVersion)
        ));
        // A store is not a Paxos request, and a Paxos request is not a replica request.
        let store = pb::request::Kind::Fetch(pb::FetchRequest { keys: vec![] });
        assert!(!is_paxos_request(&store));
        assert!(matches!(
            paxos_request_from_pb(store),
            Err(WireError::UnexpectedKind(_))
        ));
        assert!(matches!(
            request_from_pb(prepare(b"k", Some(good.clone()))),
            Err(WireError::UnexpectedKind("paxos request"))
        ));
        // Answers: a promise whose accepted proposal lacks its ballot, a refusal without one,
        // an error, an answer of another protocol.
        let promise = pb::response::Kind::PaxosPromise(pb::PaxosPromise {
            current: None,
            accepted: Some(pb::PaxosAccepted {
                ballot: None,
                proposal: record,
            }),
            committed: None,
        });
        assert!(matches!(
            paxos_response_from_pb(promise),
            Err(WireError::MissingBallot("accepted proposal"))
        ));
        let refusal = pb::response::Kind::PaxosRejected(pb::PaxosRejected { promised: None });
        assert!(matches!(
            paxos_response_from_pb(refusal),
            Err(WireError::MissingBallot("refusal"))
        ));
        assert!(matches!(
            paxos_response_from_pb(pb::response::Kind::Error("no".into())),
            Err(WireError::Refused(m)) if m == "no"
        ));
        assert!(matches!(
            paxos_response_from_pb(pb::response::Kind::Tree(pb::TreeResponse {
                differing: vec![]
            })),
            Err(WireError::UnexpectedKind(_))
        ));
        assert!(matches!(
            response_from_pb(pb::response::Kind::PaxosAccepted(pb::PaxosAck {})),
            Err(WireError::UnexpectedKind("paxos answer"))
        ));
    }
}
