//! The replica protocol's messages, as domain types (the node converts them to and from
//! `/bavard/kv/1`'s protobuf in one module; the simulator passes them as they are).

use bavard_store::{DigestEntry, Record, Version};

use crate::leafset::LeafSet;

/// What one replica asks another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<P> {
    /// Store these records durably (a coordinator's write, a read repair, an anti-entropy push,
    /// a hint delivery). With `hint_for`, the receiver is not a replica of them: it keeps them as
    /// hints for that peer and hands them over when it can (sloppy quorum, hinted handoff).
    Store {
        /// The records.
        records: Vec<Record>,
        /// The replica the records are meant for, when the receiver only keeps hints.
        hint_for: Option<P>,
    },
    /// The records under these keys.
    Fetch {
        /// The keys.
        keys: Vec<Vec<u8>>,
    },
    /// Anti-entropy, level 1: the sender's subtree hashes over `leaves`; which differ?
    Tree {
        /// The leaves compared (both replicate keys there).
        leaves: LeafSet,
        /// [`crate::sync::SUBTREES`] hashes.
        hashes: Vec<u64>,
    },
    /// Anti-entropy, level 2: the sender's hashes of these leaves; which differ?
    Leaves {
        /// `(leaf, hash)` pairs.
        hashes: Vec<(u16, u64)>,
    },
    /// Anti-entropy, level 3: the receiver's keys and versions in these leaves (ascending),
    /// starting after key `after` in the first one.
    Entries {
        /// Ascending leaves.
        leaves: Vec<u16>,
        /// Where a previous page of the first leaf stopped.
        after: Option<Vec<u8>>,
    },
}

/// What a replica did with one stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored (durably, before the answer was sent).
    Stored,
    /// The replica already held this version.
    Unchanged,
    /// The replica holds a newer version (which wins): the write is superseded there.
    Stale {
        /// The newer version.
        current: Version,
    },
    /// Refused (a limit, a clock too far ahead, a storage error), with the reason.
    Rejected(String),
}

impl StoreOutcome {
    /// Whether the replica now holds this version or a newer one: what a write counts as an
    /// acknowledgement.
    pub fn holds(&self) -> bool {
        !matches!(self, StoreOutcome::Rejected(_))
    }
}

/// The answers to [`Request`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// One outcome per stored record, in order.
    Store {
        /// The outcomes.
        results: Vec<StoreOutcome>,
    },
    /// The records found among the first `covered` keys asked (absent keys are missing).
    Fetch {
        /// The records.
        records: Vec<Record>,
        /// How many of the keys, from the first, this answer covers.
        covered: usize,
    },
    /// The subtrees whose hashes differ.
    Tree {
        /// Subtree indexes.
        differing: Vec<u8>,
    },
    /// The leaves whose hashes differ.
    Leaves {
        /// Leaves.
        differing: Vec<u16>,
    },
    /// Entries of the leaves asked, in order; `more` when the page stopped early (the next
    /// request starts after the last entry).
    Entries {
        /// The entries.
        entries: Vec<DigestEntry>,
        /// Whether entries remain in the leaves asked.
        more: bool,
    },
}

impl Response {
    /// The message kind, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Store { .. } => "store",
            Response::Fetch { .. } => "fetch",
            Response::Tree { .. } => "tree",
            Response::Leaves { .. } => "leaves",
            Response::Entries { .. } => "entries",
        }
    }
}

/// Why a request got no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No answer within the request timeout (or the peer could not be reached).
    #[error("no answer: {0}")]
    NoAnswer(String),
    /// The peer refused the request as a whole.
    #[error("refused: {0}")]
    Refused(String),
}
