//! Lifeguard local health awareness (Dadgar, Phillips, Currey 2018, §4.1).
//!
//! A node that is itself slow (CPU starved, dropping packets) sees everyone else fail its probes
//! and would wrongly suspect healthy members. The Local Health Multiplier is a saturating counter
//! that rises on evidence of local trouble — a probe that failed, nacks that did not come back
//! from ping-req relays, having to refute a suspicion about ourselves — and falls on every
//! successful probe. Probe interval and probe timeout are multiplied by `score + 1`, so an
//! unhealthy node probes more slowly and waits longer before suspecting. As in memberlist the
//! score stays in `0..max`, so the multiplier never exceeds `awareness_max_multiplier` (8).

use std::time::Duration;

/// The Local Health Multiplier counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Awareness {
    score: u32,
    max: u32,
}

impl Awareness {
    pub(crate) fn new(max_multiplier: u32) -> Self {
        Self {
            score: 0,
            max: max_multiplier.max(1),
        }
    }

    /// Adds `delta`, saturating at `0` and `max − 1`.
    pub(crate) fn apply(&mut self, delta: i64) {
        let s = (self.score as i64 + delta).clamp(0, (self.max - 1) as i64);
        self.score = s as u32;
    }

    pub(crate) fn score(&self) -> u32 {
        self.score
    }

    /// Scales a timeout by `score + 1`.
    pub(crate) fn scale(&self, d: Duration) -> Duration {
        d * (self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_saturates_at_both_ends() {
        let mut a = Awareness::new(8);
        a.apply(-3);
        assert_eq!(a.score(), 0);
        a.apply(100);
        assert_eq!(a.score(), 7);
        assert_eq!(a.scale(Duration::from_secs(1)), Duration::from_secs(8));
        a.apply(-1);
        assert_eq!(a.score(), 6);
    }
}
