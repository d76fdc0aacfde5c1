//! Ballots: the round numbers of Paxos, drawn from the hybrid logical clock.

use std::fmt;

use bavard_store::{HlcTimestamp, Version};

/// A Paxos ballot: a hybrid-logical-clock timestamp and the proposing node's id, ordered by
/// timestamp then id — the same total order as a record's [`Version`], of which it is a newtype.
///
/// Making ballots versions (as Cassandra makes a ballot a timeuuid and stamps the committed
/// mutation with it) is what lets the two orders agree: a value a fresh CAS commits carries its
/// ballot as its LWW version, so the value of a later-committed CAS has a larger version and
/// wins every replica's last-writer-wins merge, read repair and anti-entropy included.
///
/// Two proposers never share a ballot because their ids differ, and one proposer never reuses
/// one as long as its clock never goes back (the node persists its HLC across restarts).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ballot(Version);

impl Ballot {
    /// The ballot of `node` at `timestamp`.
    pub fn new(timestamp: HlcTimestamp, node: impl Into<Vec<u8>>) -> Self {
        Self(Version::new(timestamp, node))
    }

    /// The ballot's timestamp.
    pub const fn timestamp(&self) -> HlcTimestamp {
        self.0.timestamp()
    }

    /// The proposing node's id.
    pub fn node(&self) -> &[u8] {
        &self.0.writer
    }

    /// The ballot as a record version (what a fresh proposal made under it is stamped with).
    pub fn as_version(&self) -> &Version {
        &self.0
    }

    /// The ballot as a record version, by value.
    pub fn into_version(self) -> Version {
        self.0
    }
}

impl From<Version> for Ballot {
    fn from(version: Version) -> Self {
        Self(version)
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_timestamp_then_node_like_versions() {
        let a = Ballot::new(HlcTimestamp::new(10, 0), b"b".to_vec());
        let b = Ballot::new(HlcTimestamp::new(10, 0), b"c".to_vec());
        let c = Ballot::new(HlcTimestamp::new(10, 1), b"a".to_vec());
        assert!(a < b && b < c);
        assert_eq!(a.as_version().cmp(c.as_version()), std::cmp::Ordering::Less);
        assert_eq!(c.node(), b"a");
        assert_eq!(c.timestamp(), HlcTimestamp::new(10, 1));
    }
}
