//! Lifeguard dynamic suspicion (Dadgar, Phillips, Currey 2018, §4.2).
//!
//! A suspicion starts with the maximum timeout and shrinks as independent members confirm it:
//! with `c` confirmations out of the `k` expected,
//! `timeout = max − log(c + 1) / log(k + 1) · (max − min)`, never below `min`. A member that is
//! really dead is soon suspected by several probers and declared dead near `min`; a member
//! suspected by one slow or partitioned prober keeps the long timeout, which leaves it time to
//! refute. Only distinct members count, and the first suspecter is not its own confirmation.

use std::collections::HashSet;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The suspicion timeout after `confirmations` of the `expected` independent confirmations.
pub fn suspicion_timeout(
    min: Duration,
    max: Duration,
    expected: u32,
    confirmations: u32,
) -> Duration {
    if expected == 0 || max <= min {
        return min;
    }
    let frac = ((confirmations as f64) + 1.0).ln() / ((expected as f64) + 1.0).ln();
    let span = (max - min).as_secs_f64();
    let timeout = max.as_secs_f64() - frac * span;
    Duration::from_secs_f64(timeout.max(min.as_secs_f64()))
}

/// The minimum suspicion timeout: `suspicion_mult · max(1, log10 n) · probe_interval`.
pub fn min_suspicion_timeout(suspicion_mult: u32, n: usize, probe_interval: Duration) -> Duration {
    let scale = (n.max(1) as f64).log10().max(1.0);
    Duration::from_secs_f64(suspicion_mult as f64 * scale * probe_interval.as_secs_f64())
}

/// One running suspicion about a member.
#[derive(Debug, Clone)]
pub(crate) struct Suspicion<P> {
    pub(crate) incarnation: u64,
    start: Instant,
    min: Duration,
    max: Duration,
    expected: u32,
    /// The first suspecter and every confirmer.
    seen: HashSet<P>,
    /// Set when the timeout ran out without a single confirmation: the suspect was asked
    /// directly, and this is when the suspicion ends if it does not answer.
    last_chance: Option<Instant>,
}

impl<P: Eq + Hash> Suspicion<P> {
    pub(crate) fn new(
        from: P,
        incarnation: u64,
        start: Instant,
        min: Duration,
        max: Duration,
        expected: u32,
    ) -> Self {
        let mut seen = HashSet::new();
        seen.insert(from);
        Self {
            incarnation,
            start,
            min,
            max,
            expected,
            seen,
            last_chance: None,
        }
    }

    /// True when confirmations were expected, none came, and the suspect has not been asked
    /// directly yet: the suspicion may be a stale rumour (a refutation that never reached us),
    /// not a failed probe anyone can repeat.
    pub(crate) fn needs_last_chance(&self) -> bool {
        self.expected > 0 && self.confirmations() == 0 && self.last_chance.is_none()
    }

    /// Gives the suspect until `until` to refute before the suspicion ends.
    pub(crate) fn give_last_chance(&mut self, until: Instant) {
        self.last_chance = Some(until);
    }

    /// Records a confirmation; true if it came from a new member and counted.
    pub(crate) fn confirm(&mut self, from: P) -> bool {
        if self.confirmations() >= self.expected {
            return false;
        }
        self.seen.insert(from)
    }

    pub(crate) fn confirmations(&self) -> u32 {
        (self.seen.len() - 1) as u32
    }

    pub(crate) fn deadline(&self) -> Instant {
        let timeout =
            self.start + suspicion_timeout(self.min, self.max, self.expected, self.confirmations());
        match self.last_chance {
            // A confirmation during the last chance ends it at once.
            Some(t) if self.confirmations() == 0 => t,
            _ => timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_falls_from_max_to_min_with_confirmations() {
        let min = Duration::from_secs(4);
        let max = Duration::from_secs(24);
        assert_eq!(suspicion_timeout(min, max, 2, 0), max);
        let one = suspicion_timeout(min, max, 2, 1);
        assert!(one < max && one > min, "{one:?}");
        assert_eq!(suspicion_timeout(min, max, 2, 2), min);
        assert_eq!(suspicion_timeout(min, max, 2, 7), min);
        assert_eq!(suspicion_timeout(min, max, 0, 0), min);
    }

    #[test]
    fn min_timeout_scales_with_log10_of_cluster_size() {
        let p = Duration::from_secs(1);
        assert_eq!(min_suspicion_timeout(4, 5, p), Duration::from_secs(4));
        assert_eq!(min_suspicion_timeout(4, 1000, p).as_millis(), 12_000);
    }

    #[test]
    fn only_distinct_members_confirm_and_the_suspecter_is_not_its_own_confirmation() {
        let now = Instant::now();
        let mut s = Suspicion::new(
            1u64,
            0,
            now,
            Duration::from_secs(4),
            Duration::from_secs(24),
            2,
        );
        assert!(!s.confirm(1));
        assert!(s.confirm(2));
        assert!(!s.confirm(2));
        assert_eq!(s.confirmations(), 1);
        assert!(s.confirm(3));
        assert!(
            !s.confirm(4),
            "confirmations beyond the expected count are not needed"
        );
        assert_eq!(s.deadline(), now + Duration::from_secs(4));
    }
}
