//! The acceptor state's stable byte encoding (the layout is documented on
//! [`Acceptor::encode`]).

use bavard_store::{Record, Value, Version};

use super::acceptor::Acceptor;
use super::ballot::Ballot;
use super::message::Accepted;

/// The current acceptor row format.
pub const STATE_FORMAT_V1: u8 = 1;

/// Why a persisted acceptor row could not be decoded. Nothing was decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateDecodeError {
    /// The row ended before a field did.
    #[error("acceptor row truncated: {field} needs {needed} bytes, {remaining} remain")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes it needed.
        needed: usize,
        /// Bytes left in the row.
        remaining: usize,
    },
    /// The format byte is not one this version understands.
    #[error("unknown acceptor row format {0}")]
    UnknownFormat(u8),
    /// A tag byte has no meaning.
    #[error("invalid tag {tag} for {field} in an acceptor row")]
    InvalidTag {
        /// The field.
        field: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// Bytes remain after the last field.
    #[error("{0} trailing bytes after the acceptor row")]
    TrailingBytes(usize),
    /// The fields decode but break the acceptor's invariants (an accepted proposal not newer
    /// than the commit, a promise lower than what was accepted or committed).
    #[error("acceptor row is inconsistent: {0}")]
    Inconsistent(&'static str),
}

impl Acceptor {
    /// The row to persist, one per key (the key is the table key and is not repeated):
    ///
    /// ```text
    /// u8  format = 1
    /// u8  promised tag:  0 = none | 1 = ballot
    /// u8  accepted tag:  0 = none | 1 = ballot, proposal
    /// u8  committed tag: 0 = none | 1 = ballot
    ///
    /// ballot   = u64 hlc, u32 len, [u8] node
    /// proposal = u64 version.hlc, u32 len, [u8] version.writer,
    ///            u8 value tag: 0 = Data (u32 len, [u8] bytes) | 1 = Tombstone (u64 deleted_at_ms),
    ///            u8 publisher tag: 0 = none | 1 = (u32 len, [u8] publisher),
    ///            u8 expiry tag: 0 = none | 1 = (u64 expires_at_ms)
    /// ```
    ///
    /// Integers are big-endian. [`Acceptor::decode`] accepts exactly the rows this writes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(STATE_FORMAT_V1);
        put_opt_ballot(&mut out, self.promised.as_ref());
        match &self.accepted {
            None => out.push(0),
            Some(a) => {
                out.push(1);
                put_ballot(&mut out, &a.ballot);
                put_proposal(&mut out, &a.proposal);
            }
        }
        put_opt_ballot(&mut out, self.committed.as_ref());
        out
    }

    /// Decodes the row stored under `key`.
    ///
    /// Never panics and never allocates more than the row's length. A row that fails to
    /// decode must not be treated as empty (that would forget a promise): the node refuses to
    /// answer for that key and reports it.
    ///
    /// # Errors
    ///
    /// A [`StateDecodeError`] for anything but a row [`Acceptor::encode`] wrote: truncation,
    /// an unknown format or tag, trailing bytes, or a state that breaks the acceptor's
    /// invariants.
    pub fn decode(key: &[u8], row: &[u8]) -> Result<Self, StateDecodeError> {
        let mut r = Reader(row);
        match r.u8("format")? {
            STATE_FORMAT_V1 => {}
            other => return Err(StateDecodeError::UnknownFormat(other)),
        }
        let promised = r.opt_ballot("promised")?;
        let accepted = match r.u8("accepted tag")? {
            0 => None,
            1 => Some(Accepted {
                ballot: r.ballot("accepted ballot")?,
                proposal: r.proposal(key)?,
            }),
            tag => {
                return Err(StateDecodeError::InvalidTag {
                    field: "accepted",
                    tag,
                });
            }
        };
        let committed = r.opt_ballot("committed")?;
        if !r.0.is_empty() {
            return Err(StateDecodeError::TrailingBytes(r.0.len()));
        }
        let state = Acceptor {
            promised,
            accepted,
            committed,
        };
        if state.is_consistent() {
            Ok(state)
        } else {
            Err(StateDecodeError::Inconsistent(
                "promise below the accepted or committed ballot, or acceptance not after commit",
            ))
        }
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Store limits keep every field far below 4 GiB; saturating makes an oversized field a row
    // that fails to decode rather than one that decodes wrongly.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_version(out: &mut Vec<u8>, v: &Version) {
    out.extend_from_slice(&v.hlc.to_be_bytes());
    put_bytes(out, &v.writer);
}

fn put_ballot(out: &mut Vec<u8>, b: &Ballot) {
    put_version(out, b.as_version());
}

fn put_opt_ballot(out: &mut Vec<u8>, b: Option<&Ballot>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_ballot(out, b);
        }
    }
}

fn put_proposal(out: &mut Vec<u8>, r: &Record) {
    put_version(out, &r.version);
    match &r.value {
        Value::Data(bytes) => {
            out.push(0);
            put_bytes(out, bytes);
        }
        Value::Tombstone { deleted_at_ms } => {
            out.push(1);
            out.extend_from_slice(&deleted_at_ms.to_be_bytes());
        }
        // A compare-and-set never proposes a blob reference (large values are refused), but
        // a round may carry the key's current record forward: keep it exact.
        Value::Blob { hash, size } => {
            out.push(2);
            out.extend_from_slice(hash);
            out.extend_from_slice(&size.to_be_bytes());
        }
    }
    match &r.publisher {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            put_bytes(out, p);
        }
    }
    match r.expires_at_ms {
        None => out.push(0),
        Some(at) => {
            out.push(1);
            out.extend_from_slice(&at.to_be_bytes());
        }
    }
}

/// A cursor over a row that returns errors instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, needed: usize) -> Result<&'a [u8], StateDecodeError> {
        if self.0.len() < needed {
            return Err(StateDecodeError::Truncated {
                field,
                needed,
                remaining: self.0.len(),
            });
        }
        let (head, tail) = self.0.split_at(needed);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], StateDecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, StateDecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, StateDecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], StateDecodeError> {
        let len = u32::from_be_bytes(self.array(field)?) as usize;
        self.take(field, len)
    }

    fn version(&mut self, field: &'static str) -> Result<Version, StateDecodeError> {
        let hlc = self.u64(field)?;
        let writer = self.bytes(field)?.to_vec();
        Ok(Version { hlc, writer })
    }

    fn ballot(&mut self, field: &'static str) -> Result<Ballot, StateDecodeError> {
        self.version(field).map(Ballot::from)
    }

    fn opt_ballot(&mut self, field: &'static str) -> Result<Option<Ballot>, StateDecodeError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => self.ballot(field).map(Some),
            tag => Err(StateDecodeError::InvalidTag { field, tag }),
        }
    }

    fn proposal(&mut self, key: &[u8]) -> Result<Record, StateDecodeError> {
        let version = self.version("proposal version")?;
        let value = match self.u8("proposal value tag")? {
            0 => Value::Data(self.bytes("proposal value")?.to_vec()),
            1 => Value::Tombstone {
                deleted_at_ms: self.u64("proposal deleted_at_ms")?,
            },
            2 => {
                let hash = self.array::<32>("proposal blob hash")?;
                Value::Blob {
                    hash,
                    size: self.u64("proposal blob size")?,
                }
            }
            tag => {
                return Err(StateDecodeError::InvalidTag {
                    field: "proposal value",
                    tag,
                });
            }
        };
        let publisher = match self.u8("proposal publisher tag")? {
            0 => None,
            1 => Some(self.bytes("proposal publisher")?.to_vec()),
            tag => {
                return Err(StateDecodeError::InvalidTag {
                    field: "proposal publisher",
                    tag,
                });
            }
        };
        let expires_at_ms = match self.u8("proposal expiry tag")? {
            0 => None,
            1 => Some(self.u64("proposal expires_at_ms")?),
            tag => {
                return Err(StateDecodeError::InvalidTag {
                    field: "proposal expiry",
                    tag,
                });
            }
        };
        Ok(Record {
            key: key.to_vec(),
            value,
            publisher,
            expires_at_ms,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bavard_store::HlcTimestamp;
    use proptest::prelude::*;

    fn ballot(t: u64, node: &[u8]) -> Ballot {
        Ballot::new(HlcTimestamp::new(t, 0), node.to_vec())
    }

    fn full() -> Acceptor {
        let b = ballot(9, b"n1");
        Acceptor {
            promised: Some(ballot(10, b"n2")),
            accepted: Some(Accepted {
                ballot: b.clone(),
                proposal: Record::new(b"key".to_vec(), b"value".to_vec(), b.into_version())
                    .with_publisher(b"pub".to_vec())
                    .with_expiry(77),
            }),
            committed: Some(ballot(8, b"n3")),
        }
    }

    #[test]
    fn states_round_trip() {
        for state in [
            Acceptor::default(),
            full(),
            Acceptor {
                promised: Some(ballot(3, b"")),
                accepted: Some(Accepted {
                    ballot: ballot(3, b""),
                    proposal: Record::tombstone(b"key".to_vec(), 5, Version::default()),
                }),
                committed: None,
            },
            Acceptor {
                promised: Some(ballot(4, b"n")),
                accepted: Some(Accepted {
                    ballot: ballot(4, b"n"),
                    proposal: Record::blob_ref(
                        b"key".to_vec(),
                        [3; 32],
                        1 << 20,
                        Version::default(),
                    ),
                }),
                committed: None,
            },
        ] {
            assert_eq!(Acceptor::decode(b"key", &state.encode()), Ok(state));
        }
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let row = full().encode();
        for len in 0..row.len() {
            assert!(
                Acceptor::decode(b"key", &row[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn unknown_format_bad_tags_and_trailing_bytes_are_typed_errors() {
        let mut row = Acceptor::default().encode();
        row.push(0);
        assert_eq!(
            Acceptor::decode(b"k", &row),
            Err(StateDecodeError::TrailingBytes(1))
        );
        assert_eq!(
            Acceptor::decode(b"k", &[2, 0, 0, 0]),
            Err(StateDecodeError::UnknownFormat(2))
        );
        assert_eq!(
            Acceptor::decode(b"k", &[1, 7, 0, 0]),
            Err(StateDecodeError::InvalidTag {
                field: "promised",
                tag: 7
            })
        );
        assert!(matches!(
            Acceptor::decode(b"k", &[]),
            Err(StateDecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn a_huge_length_fails_without_allocating() {
        let mut row = vec![STATE_FORMAT_V1, 1];
        row.extend_from_slice(&0u64.to_be_bytes());
        row.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Acceptor::decode(b"k", &row),
            Err(StateDecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn a_state_breaking_the_invariants_is_refused() {
        let mut state = full();
        state.promised = Some(ballot(1, b"n"));
        assert!(matches!(
            Acceptor::decode(b"key", &state.encode()),
            Err(StateDecodeError::Inconsistent(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(16),
            ..ProptestConfig::default()
        })]

        #[test]
        fn decoding_garbage_never_panics_and_accepts_only_canonical_rows(
            tail in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            // Most rows start with the right format byte so the decoder gets past it.
            let mut row = vec![STATE_FORMAT_V1];
            row.extend_from_slice(&tail);
            if let Ok(state) = Acceptor::decode(b"k", &row) {
                prop_assert_eq!(state.encode(), row);
            }
        }
    }
}
