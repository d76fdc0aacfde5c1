//! Randomised exponential backoff between contended attempts.

use std::time::Duration;

/// Exponential backoff with jitter (Brooker, *Exponential Backoff and Jitter*, AWS
/// Architecture Blog, 2015): before attempt `n + 1`, wait `base` plus a uniformly random part
/// of `min(max, base · 2ⁿ)`. The randomness decorrelates proposers that collided, which is what
/// ends a duel of prepares (each one's higher ballot invalidating the other's promise).
///
/// The random numbers come from a splitmix64 stream seeded by the caller, so a simulation or a
/// failing test replays exactly (and the core needs no RNG dependency).
#[derive(Clone, Debug)]
pub(super) struct Backoff {
    state: u64,
    base: Duration,
    max: Duration,
}

impl Backoff {
    pub(super) fn new(seed: u64, base: Duration, max: Duration) -> Self {
        Self {
            state: seed,
            base,
            max: max.max(base),
        }
    }

    /// The delay after `failures` failed attempts (1 for the first).
    pub(super) fn delay(&mut self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        let cap = self.base.saturating_mul(1 << exp).min(self.max);
        let cap_us = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX);
        let jitter = if cap_us == 0 {
            0
        } else {
            self.next_u64() % (cap_us + 1)
        };
        self.base + Duration::from_micros(jitter)
    }

    /// splitmix64 (Steele, Lea and Flood, *Fast splittable pseudorandom number generators*,
    /// OOPSLA 2014).
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_bounded_and_replay_from_the_seed() {
        let base = Duration::from_millis(10);
        let max = Duration::from_millis(200);
        let mut a = Backoff::new(7, base, max);
        let mut b = Backoff::new(7, base, max);
        for failures in 1..30 {
            let d = a.delay(failures);
            assert_eq!(d, b.delay(failures), "same seed, same delays");
            let cap = base.saturating_mul(1 << (failures - 1).min(20)).min(max);
            assert!(d >= base && d <= base + cap, "{d:?} after {failures}");
        }
    }

    #[test]
    fn different_seeds_decorrelate_colliding_proposers() {
        let base = Duration::from_millis(10);
        let max = Duration::from_millis(500);
        let mut a = Backoff::new(1, base, max);
        let mut b = Backoff::new(2, base, max);
        let differ = (1..10).filter(|&n| a.delay(n) != b.delay(n)).count();
        assert!(differ >= 8, "only {differ} of 9 delays differed");
    }
}
