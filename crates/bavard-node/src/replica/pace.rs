//! Pacing of background transfers (anti-entropy, hint delivery): a token bucket in bytes.
//!
//! Catch-up after an outage moves as much data as the network and the disk allow, but client
//! requests share both: [`Pace::take`] makes background transfers wait once they exceed
//! `replication.sync_max_bytes_per_sec` (averaged over one second of burst), so client writes
//! keep their latency while a replica catches up. 0 turns pacing off.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A shared byte budget per second.
#[derive(Debug)]
pub(crate) struct Pace {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Pace {
    /// `bytes_per_sec` = 0: unlimited.
    pub(crate) fn new(bytes_per_sec: u64) -> Self {
        Self {
            rate: bytes_per_sec as f64,
            state: Mutex::new((bytes_per_sec as f64, Instant::now())),
        }
    }

    /// Spends `bytes` of the budget, waiting first if the budget is overdrawn.
    pub(crate) async fn take(&self, bytes: usize) {
        if self.rate <= 0.0 {
            return;
        }
        let wait = {
            let mut state = self.state.lock().expect("pace lock");
            let now = Instant::now();
            let (tokens, since) = *state;
            // Refill, up to one second's worth of burst.
            let tokens = (tokens + now.duration_since(since).as_secs_f64() * self.rate)
                .min(self.rate)
                - bytes as f64;
            *state = (tokens, now);
            (tokens < 0.0).then(|| Duration::from_secs_f64(-tokens / self.rate))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_overdrawn_budget_waits_for_the_refill() {
        let pace = Pace::new(1000);
        let start = Instant::now();
        pace.take(1000).await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "one second of burst is free"
        );
        pace.take(500).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(499) && waited <= Duration::from_millis(501),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_unlimited() {
        let pace = Pace::new(0);
        let start = Instant::now();
        pace.take(usize::MAX).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
