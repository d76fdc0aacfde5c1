//! Record versions: last-writer-wins by hybrid logical clock, then writer id.
//!
//! Every write carries a [`Version`]: the writer's [HLC](crate::hlc) timestamp when it wrote, and
//! the writer's id (peer id bytes). Versions are totally ordered by `(hlc, writer)`; a store keeps
//! the record with the greatest version (LWW register, as Cassandra does with timestamps). The
//! writer id breaks ties between two nodes that wrote in the same HLC tick, so every replica picks
//! the same winner without coordination.
//!
//! LWW loses concurrent writes by design (Riak's Jepsen results are the cautionary tale): the
//! HLC narrows the window to causally concurrent writes, but does not close it.

use serde::{Deserialize, Serialize};

use crate::hlc::HlcTimestamp;

/// The version of a record: compared by `hlc`, then by `writer` (bytewise).
///
/// The derived order is the field order, which is exactly the LWW order.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// The writer's hybrid logical clock timestamp, packed as described in [`crate::hlc`].
    pub hlc: u64,
    /// The writer's id (peer id bytes); breaks ties between equal `hlc`.
    pub writer: Vec<u8>,
}

impl Version {
    /// A version stamped `hlc` by `writer`.
    pub fn new(hlc: HlcTimestamp, writer: impl Into<Vec<u8>>) -> Self {
        Self {
            hlc: hlc.as_u64(),
            writer: writer.into(),
        }
    }

    /// The HLC timestamp of this version.
    pub const fn timestamp(&self) -> HlcTimestamp {
        HlcTimestamp::from_u64(self.hlc)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.timestamp(), hex::encode(&self.writer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_hlc_wins_regardless_of_writer() {
        let old = Version::new(HlcTimestamp::new(10, 0), vec![0xff]);
        let new = Version::new(HlcTimestamp::new(10, 1), vec![0x00]);
        assert!(new > old);
    }

    #[test]
    fn equal_hlc_is_broken_by_writer_bytes() {
        let a = Version::new(HlcTimestamp::new(10, 0), b"a".to_vec());
        let b = Version::new(HlcTimestamp::new(10, 0), b"b".to_vec());
        assert!(b > a);
        assert_eq!(a.clone().max(b.clone()), b);
    }

    #[test]
    fn display_shows_timestamp_and_hex_writer() {
        let v = Version::new(HlcTimestamp::new(5, 2), vec![0xab, 0x01]);
        assert_eq!(v.to_string(), "5.2@ab01");
    }
}
