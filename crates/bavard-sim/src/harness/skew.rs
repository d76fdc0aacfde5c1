//! [`Skew`]: how far a node's clock is from virtual time.

use std::time::{Duration, Instant};

/// A node's clock offset: the node sees `virtual now + skew`.
///
/// The harness passes every core its skewed time and reads its deadlines back on the same
/// clock, so a node whose clock is ahead behaves as if it lived in the future (its timers fire
/// early in virtual time). A node's clock never goes backwards: setting it back makes it stand
/// still until virtual time catches up, as a monotonic clock would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Skew {
    /// Microseconds ahead (positive) or behind (negative).
    micros: i64,
}

impl Skew {
    /// No offset.
    pub const NONE: Skew = Skew { micros: 0 };

    /// The largest offset either way: one day.
    pub const MAX: Duration = Duration::from_secs(24 * 3600);

    /// A clock `by` ahead of virtual time. Panics beyond [`Skew::MAX`].
    pub fn ahead(by: Duration) -> Self {
        Self {
            micros: Self::micros(by),
        }
    }

    /// A clock `by` behind virtual time. Panics beyond [`Skew::MAX`].
    pub fn behind(by: Duration) -> Self {
        Self {
            micros: -Self::micros(by),
        }
    }

    fn micros(by: Duration) -> i64 {
        assert!(by <= Self::MAX, "a clock skew of {by:?} exceeds one day");
        i64::try_from(by.as_micros()).expect("one day fits")
    }

    /// What a node with this skew reads when the true time is `t`.
    pub fn apply(self, t: Instant) -> Instant {
        let d = Duration::from_micros(self.micros.unsigned_abs());
        if self.micros >= 0 { t + d } else { t - d }
    }

    /// The true time at which a node with this skew reads `local`.
    pub fn remove(self, local: Instant) -> Instant {
        let d = Duration::from_micros(self.micros.unsigned_abs());
        if self.micros >= 0 {
            local - d
        } else {
            local + d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_skew_undoes_applying_it() {
        let t = Instant::now() + Duration::from_secs(3600);
        for skew in [
            Skew::NONE,
            Skew::ahead(Duration::from_millis(250)),
            Skew::behind(Duration::from_secs(30)),
        ] {
            assert_eq!(skew.remove(skew.apply(t)), t);
        }
        assert_eq!(
            Skew::behind(Duration::from_secs(1)).apply(t),
            t - Duration::from_secs(1)
        );
    }

    #[test]
    #[should_panic(expected = "exceeds one day")]
    fn a_skew_beyond_a_day_is_refused() {
        Skew::ahead(Duration::from_secs(24 * 3600 + 1));
    }
}
