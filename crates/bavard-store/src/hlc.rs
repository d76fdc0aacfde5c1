//! A sans-IO Hybrid Logical Clock.
//!
//! Implements the HLC of Kulkarni, Demirbas, Madappa, Avva and Leone, *Logical Physical Clocks and
//! Consistent Snapshots in Globally Distributed Databases* (OPODIS 2014). A timestamp is a pair
//! `(l, c)`: `l` is the largest physical time (unix milliseconds) the clock has seen, locally or in
//! a message, and `c` is a logical counter that orders events sharing the same `l`. The clock
//! captures causality (if `e` happened before `f` then `ts(e) < ts(f)`) while staying within the
//! drift bound of physical time, so last-writer-wins on HLC timestamps behaves like wall-clock LWW
//! without its anomalies when clocks are skewed by less than the bound.
//!
//! # Encoding
//!
//! An [`HlcTimestamp`] packs into one `u64` so that integer order equals timestamp order:
//!
//! ```text
//!  63                                16 15               0
//! +------------------------------------+------------------+
//! |   physical time, unix ms (48 bits) | logical (16 bits)|
//! +------------------------------------+------------------+
//! ```
//!
//! 48 bits of milliseconds reach the year 10889; 16 bits allow 65,536 events per millisecond. When
//! the logical counter would overflow, the clock moves its physical part one millisecond forward
//! and restarts the counter at zero, which keeps timestamps strictly increasing at the cost of
//! running at most that much ahead of the wall clock.
//!
//! # Sans-IO
//!
//! The clock never reads the system time: every call takes the caller's physical clock reading
//! `physical_ms` (unix milliseconds). Remote timestamps more than `max_drift_ms` ahead of the local
//! physical clock are rejected ([`ClockError::TooFarAhead`]), as Zenoh's `uhlc` does with its
//! default of 500 ms: accepting them would drag every later local timestamp into the future.

use serde::{Deserialize, Serialize};

/// Default maximum accepted lead of a remote timestamp over the local physical clock, in ms.
///
/// The same default as Zenoh's `uhlc`.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 500;

/// Number of bits of the logical counter in the `u64` encoding.
pub const LOGICAL_BITS: u32 = 16;

/// Largest physical time, in unix milliseconds, representable in 48 bits.
pub const MAX_PHYSICAL_MS: u64 = (1 << (64 - LOGICAL_BITS)) - 1;

const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;

/// A hybrid logical clock timestamp: 48 bits of unix milliseconds, 16 bits of logical counter.
///
/// Ordering (derived from the packed `u64`) is physical time first, then the logical counter.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct HlcTimestamp(u64);

impl HlcTimestamp {
    /// The zero timestamp, older than any other.
    pub const ZERO: Self = Self(0);

    /// Builds a timestamp from its parts.
    ///
    /// A `physical_ms` above [`MAX_PHYSICAL_MS`] (year 10889) is clamped to it rather than
    /// wrapped, so the order of timestamps is never inverted.
    pub const fn new(physical_ms: u64, logical: u16) -> Self {
        let physical = if physical_ms > MAX_PHYSICAL_MS {
            MAX_PHYSICAL_MS
        } else {
            physical_ms
        };
        Self((physical << LOGICAL_BITS) | logical as u64)
    }

    /// Reinterprets a packed `u64` (as stored in [`crate::Version::hlc`]).
    pub const fn from_u64(raw: u64) -> Self {
        Self(raw)
    }

    /// The packed `u64` form.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The physical part: unix milliseconds.
    pub const fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The logical counter.
    pub const fn logical(self) -> u16 {
        // The mask keeps 16 bits, so the cast is lossless.
        (self.0 & LOGICAL_MASK) as u16
    }

    /// The next timestamp after `self`: counter + 1, or the next millisecond when it overflows.
    ///
    /// Saturates at the largest representable timestamp.
    const fn successor(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl From<HlcTimestamp> for u64 {
    fn from(ts: HlcTimestamp) -> Self {
        ts.0
    }
}

impl From<u64> for HlcTimestamp {
    fn from(raw: u64) -> Self {
        Self(raw)
    }
}

impl std::fmt::Display for HlcTimestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.physical_ms(), self.logical())
    }
}

/// Why a remote timestamp was refused. The clock's state is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The remote timestamp is further ahead of the local physical clock than the drift bound.
    /// The clock was not advanced; the message carrying the timestamp should be refused.
    #[error(
        "remote timestamp {remote} is {lead_ms} ms ahead of the local clock ({local_ms} ms), \
         more than the maximum drift of {max_drift_ms} ms"
    )]
    TooFarAhead {
        /// The refused timestamp.
        remote: HlcTimestamp,
        /// The local physical clock reading, unix ms.
        local_ms: u64,
        /// How far ahead the remote physical part was, ms.
        lead_ms: u64,
        /// The configured bound, ms.
        max_drift_ms: u64,
    },
}

/// A hybrid logical clock (Kulkarni et al. 2014). Sans-IO: the physical time is a parameter.
///
/// Call [`Hlc::now`] to timestamp a local event (a write) and [`Hlc::update`] when a message
/// carrying a remote timestamp arrives. Both return a timestamp strictly greater than every
/// timestamp this clock returned or accepted before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hlc {
    last: HlcTimestamp,
    max_drift_ms: u64,
}

impl Default for Hlc {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_DRIFT_MS)
    }
}

impl Hlc {
    /// A clock at [`HlcTimestamp::ZERO`] that refuses remote timestamps more than `max_drift_ms`
    /// ahead of the local physical clock.
    pub const fn new(max_drift_ms: u64) -> Self {
        Self {
            last: HlcTimestamp::ZERO,
            max_drift_ms,
        }
    }

    /// The last timestamp returned or accepted (for persisting across restarts).
    pub const fn last(&self) -> HlcTimestamp {
        self.last
    }

    /// The configured drift bound, ms.
    pub const fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }

    /// Restores a clock whose last timestamp was `last` (e.g. the largest version in a store
    /// reopened after a restart), so that new timestamps are never older than persisted ones.
    pub fn observe_persisted(&mut self, last: HlcTimestamp) {
        self.last = self.last.max(last);
    }

    /// Timestamps a local or send event, given the local physical clock in unix ms.
    ///
    /// `l' = max(l, pt)`; the counter increments when `l` did not move and resets otherwise.
    pub fn now(&mut self, physical_ms: u64) -> HlcTimestamp {
        let physical = HlcTimestamp::new(physical_ms, 0);
        self.last = if physical.physical_ms() > self.last.physical_ms() {
            physical
        } else {
            self.last.successor()
        };
        self.last
    }

    /// Merges a timestamp received from a remote node, given the local physical clock in unix ms.
    ///
    /// Returns the timestamp of the receive event: greater than `remote`, than every timestamp
    /// this clock produced before, and with physical part `max(l, remote.l, pt)`.
    ///
    /// # Errors
    ///
    /// [`ClockError::TooFarAhead`] when `remote` is more than `max_drift_ms` ahead of
    /// `physical_ms`; the clock is left unchanged.
    pub fn update(
        &mut self,
        remote: HlcTimestamp,
        physical_ms: u64,
    ) -> Result<HlcTimestamp, ClockError> {
        let lead_ms = remote.physical_ms().saturating_sub(physical_ms);
        if lead_ms > self.max_drift_ms {
            return Err(ClockError::TooFarAhead {
                remote,
                local_ms: physical_ms,
                lead_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        let physical = HlcTimestamp::new(physical_ms, 0);
        let latest = self.last.max(remote);
        // Packed order is (l, c) order, so the paper's four cases reduce to: if the physical
        // clock is strictly ahead of both, restart the counter; otherwise take the larger of the
        // two (l, c) pairs and step its counter.
        self.last = if physical.physical_ms() > latest.physical_ms() {
            physical
        } else {
            latest.successor()
        };
        Ok(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_packs_physical_in_high_48_bits_and_logical_in_low_16() {
        let ts = HlcTimestamp::new(1_700_000_000_123, 7);
        assert_eq!(ts.physical_ms(), 1_700_000_000_123);
        assert_eq!(ts.logical(), 7);
        assert_eq!(ts.as_u64(), (1_700_000_000_123 << 16) | 7);
        assert_eq!(HlcTimestamp::from_u64(ts.as_u64()), ts);
    }

    #[test]
    fn physical_time_beyond_48_bits_is_clamped_not_wrapped() {
        let ts = HlcTimestamp::new(u64::MAX, 3);
        assert_eq!(ts.physical_ms(), MAX_PHYSICAL_MS);
        assert!(ts > HlcTimestamp::new(MAX_PHYSICAL_MS - 1, u16::MAX));
    }

    #[test]
    fn now_follows_physical_time_when_it_advances() {
        let mut clock = Hlc::default();
        assert_eq!(clock.now(1000), HlcTimestamp::new(1000, 0));
        assert_eq!(clock.now(1005), HlcTimestamp::new(1005, 0));
    }

    #[test]
    fn now_counts_logically_when_physical_time_stalls_or_goes_back() {
        let mut clock = Hlc::default();
        clock.now(1000);
        assert_eq!(clock.now(1000), HlcTimestamp::new(1000, 1));
        assert_eq!(clock.now(990), HlcTimestamp::new(1000, 2));
    }

    #[test]
    fn logical_overflow_moves_to_the_next_millisecond() {
        let mut clock = Hlc::default();
        clock.observe_persisted(HlcTimestamp::new(1000, u16::MAX));
        assert_eq!(clock.now(1000), HlcTimestamp::new(1001, 0));
    }

    #[test]
    fn update_with_remote_ahead_within_drift_adopts_remote_and_steps_counter() {
        let mut clock = Hlc::new(500);
        clock.now(1000);
        let remote = HlcTimestamp::new(1400, 9);
        assert_eq!(clock.update(remote, 1000), Ok(HlcTimestamp::new(1400, 10)));
        // A later local event stays ahead of the remote one.
        assert_eq!(clock.now(1001), HlcTimestamp::new(1400, 11));
    }

    #[test]
    fn update_with_remote_behind_keeps_local_and_steps_counter() {
        let mut clock = Hlc::default();
        clock.now(2000);
        clock.now(2000);
        assert_eq!(
            clock.update(HlcTimestamp::new(1500, 40), 2000),
            Ok(HlcTimestamp::new(2000, 2))
        );
    }

    #[test]
    fn update_with_physical_clock_ahead_of_both_restarts_counter() {
        let mut clock = Hlc::default();
        clock.now(1000);
        assert_eq!(
            clock.update(HlcTimestamp::new(1200, 5), 3000),
            Ok(HlcTimestamp::new(3000, 0))
        );
    }

    #[test]
    fn update_rejects_remote_beyond_max_drift_and_leaves_clock_unchanged() {
        let mut clock = Hlc::new(500);
        let before = clock.now(10_000);
        let err = clock
            .update(HlcTimestamp::new(10_501, 0), 10_000)
            .unwrap_err();
        assert_eq!(
            err,
            ClockError::TooFarAhead {
                remote: HlcTimestamp::new(10_501, 0),
                local_ms: 10_000,
                lead_ms: 501,
                max_drift_ms: 500
            }
        );
        assert_eq!(clock.last(), before);
        // Exactly at the bound is accepted.
        assert!(clock.update(HlcTimestamp::new(10_500, 0), 10_000).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn timestamps_are_strictly_increasing_and_exceed_accepted_remotes(
            events in proptest::collection::vec(
                (0u64..5_000, proptest::option::of((0u64..6_000, proptest::num::u16::ANY))),
                1..100,
            ),
        ) {
            let mut clock = Hlc::new(500);
            let mut previous = HlcTimestamp::ZERO;
            for (physical, remote) in events {
                let ts = match remote {
                    None => clock.now(physical),
                    Some((remote_ms, logical)) => {
                        let remote = HlcTimestamp::new(remote_ms, logical);
                        match clock.update(remote, physical) {
                            Ok(ts) => {
                                proptest::prop_assert!(ts > remote);
                                ts
                            }
                            Err(_) => {
                                proptest::prop_assert!(remote_ms > physical + 500);
                                continue;
                            }
                        }
                    }
                };
                proptest::prop_assert!(ts > previous);
                proptest::prop_assert!(ts.physical_ms() >= physical);
                previous = ts;
            }
        }
    }
}
