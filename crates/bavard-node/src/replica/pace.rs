//! Pacing of background transfers (anti-entropy, hint delivery): a token bucket in bytes whose
//! rate drops while the node serves clients.
//!
//! Catch-up after an outage moves as much data as the network and the disk allow, but client
//! requests share both (and the CPU): [`Pace::take`] makes background transfers wait once they
//! exceed their rate (averaged over one second of burst). The rate is
//! `replication.sync_max_bytes_per_sec` on a node that serves no client, and
//! `replication.sync_busy_bytes_per_sec` while it does — a coordinator's write or read, or a
//! replica request for a single record (what a coordinator sends; anti-entropy and hint
//! batches carry many) within the last `replication.sync_busy_window_secs`. An idle cluster
//! thus catches up at full speed, and a busy one keeps its client latency while the restarted
//! replica trickles in. 0 turns either rate off (unlimited).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A shared byte budget per second, lower while clients are served.
#[derive(Debug)]
pub(crate) struct Pace {
    idle_rate: f64,
    busy_rate: f64,
    busy_window: Duration,
    /// When the pace was made: the origin of `last_foreground`.
    origin: Instant,
    /// Nanoseconds from `origin` to the last foreground request, plus one (0: none yet).
    last_foreground: AtomicU64,
    /// Tokens (bytes) and when they were last refilled.
    state: Mutex<(f64, Instant)>,
}

impl Pace {
    /// Rates in bytes per second, 0 meaning unlimited; the busy rate applies for `busy_window`
    /// after each [`Pace::foreground`].
    pub(crate) fn new(
        idle_bytes_per_sec: u64,
        busy_bytes_per_sec: u64,
        busy_window: Duration,
    ) -> Self {
        let now = Instant::now();
        Self {
            idle_rate: idle_bytes_per_sec as f64,
            busy_rate: busy_bytes_per_sec as f64,
            busy_window,
            origin: now,
            last_foreground: AtomicU64::new(0),
            state: Mutex::new((idle_bytes_per_sec as f64, now)),
        }
    }

    /// Notes a client's request: background transfers slow to the busy rate for a while.
    pub(crate) fn foreground(&self) {
        let nanos = Instant::now().duration_since(self.origin).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        self.last_foreground.store(nanos, Ordering::Relaxed);
    }

    /// Whether a client was served within the busy window.
    pub(crate) fn is_busy(&self) -> bool {
        match self.last_foreground.load(Ordering::Relaxed) {
            0 => false,
            at => {
                let at = self.origin + Duration::from_nanos(at - 1);
                Instant::now().saturating_duration_since(at) < self.busy_window
            }
        }
    }

    /// The rate in force now (0: unlimited).
    fn rate(&self) -> f64 {
        if self.is_busy() {
            self.busy_rate
        } else {
            self.idle_rate
        }
    }

    /// Spends `bytes` of the budget, waiting first if the budget is overdrawn.
    pub(crate) async fn take(&self, bytes: usize) {
        let rate = self.rate();
        if rate <= 0.0 {
            return;
        }
        let wait = {
            let mut state = self.state.lock().expect("pace lock");
            let now = Instant::now();
            let (tokens, since) = *state;
            // Refill, up to one second's worth of burst at the rate in force.
            let tokens =
                (tokens + now.duration_since(since).as_secs_f64() * rate).min(rate) - bytes as f64;
            *state = (tokens, now);
            (tokens < 0.0).then(|| Duration::from_secs_f64(-tokens / rate))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn an_overdrawn_budget_waits_for_the_refill() {
        let pace = Pace::new(1000, 100, WINDOW);
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
        let pace = Pace::new(0, 0, WINDOW);
        let start = Instant::now();
        pace.take(usize::MAX).await;
        pace.foreground();
        pace.take(usize::MAX).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn serving_clients_slows_background_transfers_until_the_window_passes() {
        let pace = Pace::new(1000, 100, WINDOW);
        assert!(!pace.is_busy());
        pace.foreground();
        assert!(pace.is_busy());
        // The burst shrinks to one second at the busy rate: 100 free, 100 more take 1 s.
        let start = Instant::now();
        pace.take(200).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(999) && waited <= Duration::from_millis(1001),
            "{waited:?}"
        );
        // A second after the last client request the idle rate is back.
        assert!(!pace.is_busy());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = Instant::now();
        pace.take(900).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "refilled at the idle rate");
    }
}
